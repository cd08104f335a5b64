#!/usr/bin/env python3
"""Prepares RAVDESS (audio-only) for speech emotion recognition with speaker folds.

Reads the labels from the file names and writes SpeechBrain CSV manifests with the
columns of every recipe (``ID,duration,wav,emo,spk_id,gender,session,style,dialog``):

* ``save_folder/all.csv``: every kept file;
* ``save_folder/fold{k}/{train,valid,test}.csv``: fold k tests on the actors of fold
  group k and trains on the others (speaker-independent; see
  :mod:`ser_lib.data.speaker_folds`).

Column meanings: ``ID`` the file name without ``.wav``; ``spk_id`` the actor folder
(``Actor_07``); ``gender`` M for odd actors, F for even ones; ``session`` the fold
group; ``style`` ``<vocal channel>_<intensity>`` (``speech_normal``, ``song_strong``);
``dialog`` the statement (``kids``: "Kids are talking by the door", ``dogs``: "Dogs
are sitting by the door").

Expected layout (the Zenodo archives ``Audio_Speech_Actors_01-24.zip`` and, for
songs, ``Audio_Song_Actors_01-24.zip`` unpacked into one folder)::

    data_folder/Actor_01/03-01-01-01-01-01-01.wav
    ...
    data_folder/Actor_24/03-02-06-02-02-02-24.wav

A file name is ``MM-VV-EE-II-SS-RR-AA.wav``: modality (03 = audio-only), vocal channel
(01 speech, 02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry,
06 fearful, 07 disgust, 08 surprised), intensity (01 normal, 02 strong), statement
(01 kids, 02 dogs), repetition (01, 02), actor (01-24; odd = male). A ``.wav`` file
whose name does not follow this pattern, or that lies in another actor's folder, is
an error naming the file; hidden and AppleDouble ``._*`` files are skipped.

The class map (raw names above -> classes) comes from the recipe's YAML
(``class_maps``, ``class_set``): ``4class`` (neutral, happy, angry, sad: comparable
with IEMOCAP) or ``full`` (all 8 emotions).

Command line::

    python recipes/RAVDESS/ravdess_prepare.py --data_folder PATH --save_folder OUT \\
        [--class_set 4class|full] [--vocal_channel speech|song|all] [--n_folds 5]

Authors
 * ser_lib contributors 2025
"""

import os
import re
from functools import partial

from speechbrain.utils.logger import get_logger

from ser_lib.data.corpus_files import audio_utterance, check_codes, match_file_name
from ser_lib.data.preparation import check_folder, list_audio_files, prepare_corpus
from ser_lib.data.prepare_script import configure_script_logging, run_prepare_script

logger = get_logger(__name__)

CORPUS = "RAVDESS"
RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
AUDIO_ONLY = "03"
"""Modality code of the audio-only files."""
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
"""Emotion code -> raw label (the keys of the YAML's class maps)."""
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "kids", "02": "dogs"}
REPETITIONS = ("01", "02")
N_ACTORS = 24
CHANNEL_CHOICES = ("speech", "song", "all")
PREP_VERSION = 1
"""Bump when the outputs change for the same options, so old preparations redo."""

_NAME_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_ACTOR_DIR_RE = re.compile(r"^Actor_(\d{2})$")


def parse_ravdess_filename(path):
    """Decodes the seven fields of a RAVDESS audio file name.

    Arguments
    ---------
    path : str
        The file (only its base name is parsed).

    Returns
    -------
    dict
        ``ID``, ``vocal_channel`` (speech/song), ``label`` (raw emotion name),
        ``intensity``, ``statement``, ``repetition`` (``"01"``/``"02"``), ``actor``
        (int) and ``gender`` (M for odd actors).

    Raises
    ------
    ValueError
        If the name does not have the 7 fields or a field has an unknown code (the
        message names the file).

    Example
    -------
    >>> info = parse_ravdess_filename("Actor_12/03-01-05-02-01-02-12.wav")
    >>> info["label"], info["intensity"], info["statement"], info["actor"], info["gender"]
    ('angry', 'strong', 'kids', 12, 'F')
    >>> parse_ravdess_filename("Actor_12/03-01-09-02-01-02-12.wav")
    Traceback (most recent call last):
    ...
    ValueError: RAVDESS file Actor_12/03-01-09-02-01-02-12.wav: unknown emotion code '09' (expected one of ['01', ..., '08'])
    """
    stem, match = match_file_name(
        path, _NAME_RE, CORPUS, "MM-VV-EE-II-SS-RR-AA.wav (seven 2-digit fields)"
    )
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    check_codes(
        path,
        CORPUS,
        (
            ("modality code", modality, {AUDIO_ONLY: "audio-only"}),
            ("vocal channel code", channel, VOCAL_CHANNELS),
            ("emotion code", emotion, EMOTIONS),
            ("intensity code", intensity, INTENSITIES),
            ("statement code", statement, STATEMENTS),
            ("repetition code", repetition, REPETITIONS),
        ),
    )
    actor_number = int(actor)
    if not 1 <= actor_number <= N_ACTORS:
        raise ValueError(f"RAVDESS file {path}: actor {actor} is not in 01..{N_ACTORS}")
    return {
        "ID": stem,
        "vocal_channel": VOCAL_CHANNELS[channel],
        "label": EMOTIONS[emotion],
        "intensity": INTENSITIES[intensity],
        "statement": STATEMENTS[statement],
        "repetition": repetition,
        "actor": actor_number,
        "gender": "M" if actor_number % 2 == 1 else "F",
    }


def list_actor_folders(data_folder):
    """The ``Actor_XX`` folders of ``data_folder``, sorted.

    Arguments
    ---------
    data_folder : str
        The RAVDESS folder.

    Returns
    -------
    list of str
        Folder names (``Actor_01``...).

    Raises
    ------
    FileNotFoundError
        If ``data_folder`` does not exist or holds no ``Actor_XX`` folder (the message
        names it and the expected layout).

    Example
    -------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> for name in ("Actor_02", "Actor_01", "._Actor_01", "video"):
    ...     os.mkdir(os.path.join(root, name))
    >>> list_actor_folders(root)
    ['Actor_01', 'Actor_02']
    """
    check_folder(data_folder, "RAVDESS data_folder")
    with os.scandir(data_folder) as entries:
        folders = sorted(
            entry.name
            for entry in entries
            if entry.is_dir() and _ACTOR_DIR_RE.match(entry.name)
        )
    if not folders:
        raise FileNotFoundError(
            f"No Actor_XX folder in the RAVDESS data_folder {data_folder} (expected "
            "data_folder/Actor_01/03-01-01-01-01-01-01.wav ...: unpack "
            "Audio_Speech_Actors_01-24.zip into it)"
        )
    return folders


def collect_ravdess(data_folder, vocal_channel="speech"):
    """Lists the audio-only files of the chosen vocal channel with their labels.

    Arguments
    ---------
    data_folder : str
        The folder holding ``Actor_01`` ... ``Actor_24``.
    vocal_channel : str
        ``"speech"`` (default), ``"song"`` or ``"all"``.

    Returns
    -------
    list of dict
        One utterance dict per file (see :mod:`ser_lib.data.preparation`), sorted by
        ID.

    Raises
    ------
    ValueError
        On a file name that does not parse, or a file in another actor's folder.

    Example
    -------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(root, "Actor_03"))
    >>> for name in ("03-01-02-01-01-01-03.wav", "03-02-02-01-01-01-03.wav"):
    ...     open(os.path.join(root, "Actor_03", name), "w").close()
    >>> [(u["ID"], u["label"], u["spk_id"], u["gender"], u["style"], u["wav"])
    ...  for u in collect_ravdess(root)]
    [('03-01-02-01-01-01-03', 'calm', 'Actor_03', 'M', 'speech_normal', 'Actor_03/03-01-02-01-01-01-03.wav')]
    """
    if vocal_channel not in CHANNEL_CHOICES:
        raise ValueError(
            f"vocal_channel must be one of {CHANNEL_CHOICES}, got {vocal_channel!r}"
        )
    utterances = []
    for folder in list_actor_folders(data_folder):
        folder_actor = int(_ACTOR_DIR_RE.match(folder).group(1))
        for path in list_audio_files(os.path.join(data_folder, folder)):
            info = parse_ravdess_filename(path)
            if info["actor"] != folder_actor:
                raise ValueError(
                    f"RAVDESS file {path}: actor {info['actor']:02d} in the name but "
                    f"the file is in {folder}"
                )
            if vocal_channel not in ("all", info["vocal_channel"]):
                continue
            utterances.append(
                audio_utterance(
                    path,
                    folder,
                    ID=info["ID"],
                    label=info["label"],
                    spk_id=folder,
                    gender=info["gender"],
                    style=f"{info['vocal_channel']}_{info['intensity']}",
                    dialog=info["statement"],
                )
            )
    return sorted(utterances, key=lambda utt: utt["ID"])


def prepare_ravdess(
    data_folder,
    save_folder,
    class_map,
    vocal_channel="speech",
    **options,
):
    """Writes the RAVDESS manifests: ``all.csv`` and speaker-independent folds.

    Re-running with the same options skips; other options redo (see
    :func:`ser_lib.data.preparation.prepare_corpus`).

    Arguments
    ---------
    data_folder : str
        The folder holding ``Actor_01`` ... ``Actor_24``.
    save_folder : str
        Output folder.
    class_map : mapping
        ``{raw emotion name: class or None}`` (the YAML's ``class_map``).
    vocal_channel : str
        ``"speech"`` (default), ``"song"`` or ``"all"``.
    **options
        ``fold_mode`` (default ``"speaker_kfold"``), ``n_folds``, ``valid_mode``,
        ``unmapped``, ``skip_prep``: see :func:`ser_lib.data.preparation.prepare_corpus`.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> root, save = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> for actor in (1, 2, 3):
    ...     folder = os.path.join(root, f"Actor_{actor:02d}")
    ...     os.mkdir(folder)
    ...     for emotion in ("01", "05"):
    ...         name = f"03-01-{emotion}-01-01-01-{actor:02d}.wav"
    ...         sf.write(os.path.join(folder, name), np.zeros(1600), 16000)
    >>> prepare_ravdess(root, save, {"neutral": "neu", "angry": "ang"}, n_folds=3)
    >>> print(open(os.path.join(save, "fold2", "test.csv")).read().strip())
    ID,duration,wav,emo,spk_id,gender,session,style,dialog
    03-01-01-01-01-01-02,0.1,$data_root/Actor_02/03-01-01-01-01-01-02.wav,neu,Actor_02,F,2,speech_normal,kids
    03-01-05-01-01-01-02,0.1,$data_root/Actor_02/03-01-05-01-01-01-02.wav,ang,Actor_02,F,2,speech_normal,kids
    """
    prepare_corpus(
        CORPUS,
        partial(collect_ravdess, data_folder, vocal_channel),
        data_folder,
        save_folder,
        class_map,
        settings={"vocal_channel": vocal_channel, "prep_version": PREP_VERSION},
        **options,
    )


def _add_options(parser):
    parser.add_argument("--vocal_channel", default="speech", choices=CHANNEL_CHOICES)


def main(argv=None):
    """Command-line entry point (see the module docstring).

    Example
    -------
    >>> import tempfile
    >>> main(["--data_folder", "/nonexistent", "--save_folder", tempfile.mkdtemp()])
    Traceback (most recent call last):
    ...
    FileNotFoundError: RAVDESS data_folder not found: /nonexistent
    """
    kwargs = run_prepare_script(
        prepare_ravdess, __doc__, RECIPE_DIR, argv, add_options=_add_options
    )
    print(f"RAVDESS manifests in {kwargs['save_folder']}")


if __name__ == "__main__":
    configure_script_logging()
    main()
