"""A tiny IEMOCAP tree in the real release format, for tests.

:func:`make_iemocap_fixture` writes ``<root>/IEMOCAP_full_release`` with the five
``Session{s}`` folders, ``dialog/EmoEvaluation/<dialog>.txt`` annotation files (the
``%`` header line, one ``[start - end]<TAB>ID<TAB>label<TAB>[V, A, D]`` line per
utterance followed by ``C-E1:``/``A-E1:`` annotator lines), the ``Categorical/``,
``Attribute/`` and ``Self-evaluation/`` sub-folders with files of other formats,
AppleDouble ``._*`` and ``.DS_Store`` files, and a short 16 kHz mono wav for every
annotated utterance under ``sentences/wav/<dialog>/<ID>.wav``. It returns what a
correct preparation must find, computed independently of the preparation code.

Import it from a test module in ``tests/`` with
``from fixtures_iemocap import make_iemocap_fixture``.
"""

import os
from collections import Counter

import numpy as np
import soundfile as sf

RELEASE_NAME = "IEMOCAP_full_release"

DEFAULT_DIALOGS = {
    1: ("Ses01F_script01_1b", "Ses01F_impro01"),
    2: ("Ses02M_impro05a", "Ses02F_script01_3"),
    3: ("Ses03F_script02_2", "Ses03M_impro08b"),
    4: ("Ses04M_impro03", "Ses04F_script03_2"),
    5: ("Ses05F_impro07", "Ses05M_script01_1"),
}
"""Session -> dialog names, covering the name shapes of the release."""

DEFAULT_LABELS = ("neu", "exc", "fru", "ang", "xxx", "sad", "hap", "sur")
"""Raw labels cycled through the utterances (exc -> hap; fru, xxx, sur dropped)."""

FIXTURE_CLASS_MAP = {
    "neu": "neu",
    "hap": "hap",
    "exc": "hap",
    "ang": "ang",
    "sad": "sad",
}
"""The 4-class mapping the preparation must apply (independent copy for tests)."""

_CATEGORY_NAMES = {
    "neu": "Neutral state",
    "exc": "Excited",
    "hap": "Happiness",
    "fru": "Frustration",
    "ang": "Anger",
    "sad": "Sadness",
    "sur": "Surprise",
    "xxx": "Other",
}


def _style(dialog):
    return "improvised" if "impro" in dialog else "scripted"


def _write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _write_apple_double(path):
    # AppleDouble header bytes: not UTF-8, would break a parser that reads them.
    with open(path, "wb") as handle:
        handle.write(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \xff\xfe\x80")


def make_iemocap_fixture(
    root,
    dialogs=None,
    utterances_per_dialog=6,
    labels=DEFAULT_LABELS,
    sample_rate=16000,
    release_name=RELEASE_NAME,
    extra_files=True,
    seed=0,
):
    """Writes a tiny IEMOCAP release under ``root`` and returns the expected content.

    Dialog ``d`` (0-based) of session ``s`` has ``utterances_per_dialog + s - 1``
    utterances (so sessions differ in size), alternating speakers F, M, F...; the
    ``i``-th one is ``<dialog>_<F|M><iii>`` with raw label
    ``labels[(i + s + d) % len(labels)]`` and lasts ``0.1 + 0.01 * (i % 5)`` s.

    Arguments
    ---------
    root : str or os.PathLike
        Folder receiving ``release_name`` (created if needed).
    dialogs : dict, optional
        Session number -> dialog names (default :data:`DEFAULT_DIALOGS`). Sessions
        left out are not written.
    utterances_per_dialog : int
        Utterances of each dialog of session 1 (session ``s`` has ``s - 1`` more).
    labels : sequence of str
        Raw labels cycled through the utterances.
    sample_rate : int
        Sampling rate of the wavs.
    release_name : str
        Name of the release folder.
    extra_files : bool
        Whether to add the EmoEvaluation sub-folders and the hidden/AppleDouble files.
    seed : int
        Seed of the (tiny, random) wav samples.

    Returns
    -------
    dict
        ``data_folder`` (str, the release folder); ``n_annotated`` (int, annotated
        utterances, all labels); ``utterances`` (list of dict, one per annotated
        utterance: ``ID``, ``label`` (raw), ``emo`` (4-class label or None if
        dropped), ``session`` (int), ``spk_id``, ``gender``, ``dialog``, ``style``,
        ``duration`` (s), ``wav`` (path relative to the release, ``/``-separated),
        ``annotation_file``); ``counts`` (dict: subset ``all``/``improvised``/
        ``scripted`` -> ``{"total": int, "emo": {emo: n}, "session": {s: n}}``,
        counting kept utterances only).

    Example
    -------
    >>> import tempfile
    >>> fixture = make_iemocap_fixture(tempfile.mkdtemp())
    >>> fixture["n_annotated"], fixture["counts"]["all"]["total"]
    (80, 50)
    """
    dialogs = DEFAULT_DIALOGS if dialogs is None else dialogs
    rng = np.random.default_rng(seed)
    data_folder = os.path.join(os.fspath(root), release_name)
    utterances = []
    for session, session_dialogs in sorted(dialogs.items()):
        session_dir = os.path.join(data_folder, f"Session{session}")
        emo_dir = os.path.join(session_dir, "dialog", "EmoEvaluation")
        os.makedirs(emo_dir, exist_ok=True)
        for d, dialog in enumerate(session_dialogs):
            wav_dir = os.path.join(session_dir, "sentences", "wav", dialog)
            os.makedirs(wav_dir, exist_ok=True)
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            categorical, attribute = [], []
            start = 1.5
            for i in range(utterances_per_dialog + session - 1):
                gender = "FM"[i % 2]
                utt_id = f"{dialog}_{gender}{i:03d}"
                label = labels[(i + session + d) % len(labels)]
                frames = int(round(sample_rate * (0.1 + 0.01 * (i % 5))))
                duration = frames / sample_rate
                end = start + duration
                lines += [
                    f"[{start:.4f} - {end:.4f}]\t{utt_id}\t{label}\t"
                    "[2.5000, 3.0000, 2.5000]",
                    f"C-E1:\t{_CATEGORY_NAMES.get(label, 'Other')};\t()",
                    "C-E2:\tNeutral;\t(bored)",
                    f"C-{gender}1:\tNeutral;\t()",
                    "A-E1:\tval 3; act 2; dom  2;\t()",
                    "A-E2:\tval 2; act 3; dom  3;\t(mildly aggravated)",
                    "",
                ]
                categorical.append(
                    f"{utt_id} :{_CATEGORY_NAMES.get(label, 'Other')}; ()"
                )
                attribute.append(f"{utt_id} :act 2; val 3; dom  2; ()")
                start = end + 0.25
                relative = f"Session{session}/sentences/wav/{dialog}/{utt_id}.wav"
                signal = 0.01 * rng.standard_normal(frames).astype("float32")
                sf.write(
                    os.path.join(data_folder, *relative.split("/")), signal, sample_rate
                )
                annotation_file = os.path.join(emo_dir, f"{dialog}.txt")
                utterances.append(
                    {
                        "ID": utt_id,
                        "label": label,
                        "emo": FIXTURE_CLASS_MAP.get(label),
                        "session": session,
                        "spk_id": f"Ses{session:02d}{gender}",
                        "gender": gender,
                        "dialog": dialog,
                        "style": _style(dialog),
                        "duration": duration,
                        "wav": relative,
                        "annotation_file": annotation_file,
                    }
                )
            _write_text(os.path.join(emo_dir, f"{dialog}.txt"), "\n".join(lines) + "\n")
            if extra_files:
                _write_text(
                    os.path.join(emo_dir, "Categorical", f"{dialog}_e1_cat.txt"),
                    "\n".join(categorical) + "\n",
                )
                _write_text(
                    os.path.join(emo_dir, "Attribute", f"{dialog}_e1_atr.txt"),
                    "\n".join(attribute) + "\n",
                )
                _write_text(
                    os.path.join(emo_dir, "Self-evaluation", f"{dialog}.txt"),
                    f"{dialog} self-evaluation: not an utterance file [1, 2, 3]\n",
                )
                _write_apple_double(os.path.join(emo_dir, f"._{dialog}.txt"))
                _write_apple_double(
                    os.path.join(emo_dir, "Categorical", f"._{dialog}_e1_cat.txt")
                )
                _write_apple_double(os.path.join(wav_dir, f"._{dialog}_F000.wav"))
        if extra_files:
            _write_apple_double(os.path.join(emo_dir, ".DS_Store"))
            _write_apple_double(os.path.join(session_dir, "._dialog"))

    counts = {}
    for subset in ("all", "improvised", "scripted"):
        kept = [
            u
            for u in utterances
            if u["emo"] is not None and subset in ("all", u["style"])
        ]
        counts[subset] = {
            "total": len(kept),
            "emo": dict(Counter(u["emo"] for u in kept)),
            "session": dict(Counter(u["session"] for u in kept)),
        }
    return {
        "data_folder": data_folder,
        "n_annotated": len(utterances),
        "utterances": utterances,
        "counts": counts,
    }
