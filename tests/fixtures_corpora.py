"""Tiny RAVDESS, CREMA-D, EmoDB, MSP-Podcast and generic-CSV trees in their real layouts.

Each ``make_<corpus>_fixture(root)`` writes short 16 kHz wavs (a noisy tone, different
per file) named and placed as the corpus's documentation says, plus the clutter of
real copies (``.DS_Store``, AppleDouble ``._*`` files, unrelated folders), and returns
what a correct preparation must find, computed here independently of the preparation
code: ``data_folder`` and ``utterances``, one dict per labelled audio file with
``ID``, ``label`` (the raw emotion name of the corpus documentation), ``spk_id``,
``gender``, ``wav`` (relative path) and corpus-specific keys.

Import from a test module in ``tests/``: ``from fixtures_corpora import ...``.
"""

import os

from conftest import write_wav

SAMPLE_RATE = 16000

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
CREMAD_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
EMODB_EMOTIONS = {
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fearful",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
EMODB_GENDERS = {
    "03": "M",
    "08": "F",
    "09": "F",
    "10": "M",
    "11": "M",
    "12": "M",
    "13": "F",
    "14": "F",
    "15": "M",
    "16": "F",
}
MSP_EMOTIONS = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprised",
    "F": "fearful",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
    "O": "other",
    "X": "no_agreement",
}

FOUR_CLASS = {"neutral": "neu", "happy": "hap", "angry": "ang", "sad": "sad"}
"""The 4 classes comparable with IEMOCAP, as every recipe's ``4class`` set maps them."""


def _clutter(folder):
    """The hidden files of a copied corpus: must be skipped."""
    with open(os.path.join(folder, ".DS_Store"), "wb") as handle:
        handle.write(b"\x00\x00\x00\x01Bud1")
    with open(os.path.join(folder, "._clutter.wav"), "wb") as handle:
        handle.write(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")


def _wav(data_folder, relative, index):
    """Writes a 0.1-0.24 s tone at ``data_folder/relative``; returns its duration."""
    frames = 1600 + 160 * (index % 9)
    path = os.path.join(data_folder, *relative.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_wav(path, SAMPLE_RATE, frames / SAMPLE_RATE, seed=index)
    return frames / SAMPLE_RATE


def make_ravdess_fixture(root, actors=(1, 2, 3, 4, 5, 6)):
    """RAVDESS: ``Actor_XX/03-VV-EE-II-SS-RR-XX.wav``, speech and song.

    Per actor: the 8 emotions at normal intensity (statement 01, repetition 01), angry
    at strong intensity with statement 02, and two songs (neutral and happy).

    Returns
    -------
    dict
        ``data_folder`` and ``utterances`` (keys ``ID``, ``label``, ``spk_id``,
        ``gender``, ``vocal_channel``, ``style``, ``dialog``, ``wav``, ``duration``).
    """
    data_folder = os.path.join(os.fspath(root), "RAVDESS")
    utterances = []
    for actor in actors:
        folder = f"Actor_{actor:02d}"
        files = [("01", emotion, "01", "01") for emotion in RAVDESS_EMOTIONS]
        files += [
            ("01", "05", "02", "02"),
            ("02", "01", "01", "01"),
            ("02", "03", "01", "01"),
        ]
        for channel, emotion, intensity, statement in files:
            stem = f"03-{channel}-{emotion}-{intensity}-{statement}-01-{actor:02d}"
            wav = f"{folder}/{stem}.wav"
            channel_name = {"01": "speech", "02": "song"}[channel]
            intensity_name = {"01": "normal", "02": "strong"}[intensity]
            utterances.append(
                {
                    "ID": stem,
                    "label": RAVDESS_EMOTIONS[emotion],
                    "spk_id": folder,
                    "gender": "M" if actor % 2 else "F",
                    "vocal_channel": channel_name,
                    "style": f"{channel_name}_{intensity_name}",
                    "dialog": {"01": "kids", "02": "dogs"}[statement],
                    "wav": wav,
                    "duration": _wav(data_folder, wav, len(utterances)),
                }
            )
        _clutter(os.path.join(data_folder, folder))
    os.makedirs(os.path.join(data_folder, "Video_Speech_Actor_01"))
    _clutter(data_folder)
    return {"data_folder": data_folder, "utterances": utterances}


def make_cremad_fixture(root, actors=None, sentences=("DFA", "IEO")):
    """CREMA-D: ``AudioWAV/<actor>_<sentence>_<EMO>_<level>.wav`` and the demographics.

    Every actor says every sentence with every emotion; level ``HI`` for IEO, ``XX``
    for the others. ``VideoDemographics.csv`` also lists an actor without audio.

    Returns
    -------
    dict
        ``data_folder``, ``utterances`` (keys ``ID``, ``label``, ``spk_id``,
        ``gender``, ``style``, ``dialog``, ``wav``, ``duration``) and ``genders``.
    """
    actors = actors or {
        "1001": "Male",
        "1002": "Female",
        "1003": "Female",
        "1004": "Male",
        "1005": "Male",
        "1006": "Female",
    }
    data_folder = os.path.join(os.fspath(root), "CREMA-D")
    os.makedirs(os.path.join(data_folder, "AudioMP3"))
    utterances = []
    for actor in actors:
        for sentence in sentences:
            level = "HI" if sentence == "IEO" else "XX"
            for code, label in CREMAD_EMOTIONS.items():
                stem = f"{actor}_{sentence}_{code}_{level}"
                wav = f"AudioWAV/{stem}.wav"
                utterances.append(
                    {
                        "ID": stem,
                        "label": label,
                        "spk_id": actor,
                        "gender": actors[actor][0],
                        "style": {"HI": "high", "XX": "unspecified"}[level],
                        "dialog": sentence,
                        "wav": wav,
                        "duration": _wav(data_folder, wav, len(utterances)),
                    }
                )
    _clutter(os.path.join(data_folder, "AudioWAV"))
    lines = ["ActorID,Age,Sex,Race,Ethnicity"]
    lines += [f"{a},30,{sex},Caucasian,Not Hispanic" for a, sex in actors.items()]
    lines.append("1091,29,Female,Asian,Not Hispanic")
    with open(os.path.join(data_folder, "VideoDemographics.csv"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return {"data_folder": data_folder, "utterances": utterances, "genders": actors}


def make_emodb_fixture(root, speakers=tuple(EMODB_GENDERS), texts=("a01",)):
    """EmoDB: ``wav/<spk><text><E><version>.wav`` for every speaker and emotion.

    Returns
    -------
    dict
        ``data_folder`` and ``utterances`` (keys ``ID``, ``label``, ``spk_id``,
        ``gender``, ``dialog``, ``style``, ``wav``, ``duration``).
    """
    data_folder = os.path.join(os.fspath(root), "EmoDB")
    os.makedirs(os.path.join(data_folder, "lablaut"))
    utterances = []
    for speaker in speakers:
        for text in texts:
            for letter, label in EMODB_EMOTIONS.items():
                version = "b" if letter == "W" else "a"
                stem = f"{speaker}{text}{letter}{version}"
                wav = f"wav/{stem}.wav"
                utterances.append(
                    {
                        "ID": stem,
                        "label": label,
                        "spk_id": speaker,
                        "gender": EMODB_GENDERS[speaker],
                        "dialog": text,
                        "style": version,
                        "wav": wav,
                        "duration": _wav(data_folder, wav, len(utterances)),
                    }
                )
    _clutter(os.path.join(data_folder, "wav"))
    return {"data_folder": data_folder, "utterances": utterances}


MSP_PLAN = (
    # (split, speakers, gender, EmoClass letters cycled per speaker)
    ("Train", ("101", "102", "103", "104"), ("Male", "Female"), "NHASUOXC"),
    ("Train", ("Unknown",), ("Unknown",), "NHAS"),
    ("Development", ("201", "202"), ("Female", "Male"), "NHAS"),
    ("Test1", ("301", "302"), ("Male", "Female"), "NHASF"),
    ("Test2", ("401",), ("Female",), "NHAS"),
    ("Test3", ("Unknown",), ("Unknown",), "  "),
)


def make_msp_podcast_fixture(root):
    """MSP-Podcast: ``Audios/MSP-PODCAST_<podcast>_<segment>.wav`` and the labels CSV.

    ``Labels/labels_consensus.csv`` has the release's columns; see :data:`MSP_PLAN`
    for the rows (Test3 is unlabelled, as in the release).

    Returns
    -------
    dict
        ``data_folder`` and ``utterances`` (keys ``ID``, ``label`` (None when
        unlabelled), ``spk_id``, ``gender``, ``split``, ``dialog``, ``wav``,
        ``duration``).
    """
    data_folder = os.path.join(os.fspath(root), "MSP-Podcast")
    lines = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
    utterances = []
    podcast = 0
    for split, speakers, genders, letters in MSP_PLAN:
        for index, speaker in enumerate(speakers):
            podcast += 1
            gender = genders[index % len(genders)]
            for segment, letter in enumerate(letters, start=1):
                stem = f"MSP-PODCAST_{podcast:04d}_{segment:04d}"
                wav = f"Audios/{stem}.wav"
                code = letter.strip()
                lines.append(
                    f"{stem}.wav,{code},3.5,4.0,4.5,{speaker},{gender},{split}"
                )
                utterances.append(
                    {
                        "ID": stem,
                        "label": MSP_EMOTIONS[code] if code else None,
                        "spk_id": speaker,
                        "gender": {"Male": "M", "Female": "F"}.get(gender, "U"),
                        "split": split,
                        "dialog": f"MSP-PODCAST_{podcast:04d}",
                        "wav": wav,
                        "duration": _wav(data_folder, wav, len(utterances)),
                    }
                )
    os.makedirs(os.path.join(data_folder, "Labels"))
    with open(os.path.join(data_folder, "Labels", "labels_consensus.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    _clutter(os.path.join(data_folder, "Audios"))
    return {"data_folder": data_folder, "utterances": utterances}


GENERIC_SPEAKERS = {
    # speaker -> (gender as written in the CSV, recording room = the group column)
    "anna": ("female", "roomA"),
    "bert": ("M", "roomA"),
    "carl": ("male", "roomB"),
    "dora": ("F", "roomB"),
    "emil": ("Male", "roomC"),
    "fay": ("Female", "roomC"),
}
GENERIC_LABELS = ("neutral", "happy", "angry", "sad", "frustrated")


def make_generic_fixture(root, speakers=None, labels=GENERIC_LABELS, repeats=2):
    """A corpus described by ``labels.csv``: ``audio/<speaker>/<n>.wav``.

    The CSV has the columns ``wav,emo,spk_id,gender,session`` (``session`` = the
    recording room of :data:`GENERIC_SPEAKERS`) and an extra ignored column; wav
    paths are relative to the corpus folder, no ID column (IDs are derived).

    Returns
    -------
    dict
        ``data_folder``, ``csv_file`` and ``utterances`` (keys ``ID``, ``label``,
        ``spk_id``, ``gender``, ``group``, ``wav``, ``duration``).
    """
    speakers = speakers or GENERIC_SPEAKERS
    data_folder = os.path.join(os.fspath(root), "my_corpus")
    lines = ["wav,emo,spk_id,gender,session,annotator_notes"]
    utterances = []
    for speaker, (gender, room) in speakers.items():
        for repeat in range(repeats):
            for index, label in enumerate(labels):
                wav = f"audio/{speaker}/{repeat}_{index}.wav"
                lines.append(f"{wav},{label},{speaker},{gender},{room},ok")
                utterances.append(
                    {
                        "ID": f"audio_{speaker}_{repeat}_{index}",
                        "label": label,
                        "spk_id": speaker,
                        "gender": gender[0].upper(),
                        "group": room,
                        "wav": wav,
                        "duration": _wav(data_folder, wav, len(utterances)),
                    }
                )
    csv_file = os.path.join(data_folder, "labels.csv")
    with open(csv_file, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return {"data_folder": data_folder, "csv_file": csv_file, "utterances": utterances}
