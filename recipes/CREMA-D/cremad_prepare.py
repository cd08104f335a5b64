#!/usr/bin/env python3
"""Prepares CREMA-D for speech emotion recognition with speaker-independent folds.

Reads the labels from the file names, the actors' sex from
``VideoDemographics.csv``, and writes SpeechBrain CSV manifests with the columns of
every recipe (``ID,duration,wav,emo,spk_id,gender,session,style,dialog``):

* ``save_folder/all.csv``: every kept file;
* ``save_folder/fold{k}/{train,valid,test}.csv``: fold k tests on the actors of fold
  group k and trains on the others (see :mod:`ser_lib.data.speaker_folds`).

Column meanings: ``ID`` the file name without ``.wav``; ``spk_id`` the actor number
(``1001``); ``gender`` F/M from ``Sex`` in ``VideoDemographics.csv``; ``session`` the
fold group; ``style`` the intensity level (``low``, ``medium``, ``high``,
``unspecified``); ``dialog`` the sentence code (``DFA``, ``IEO``, ...).

Expected layout (the release, e.g. a clone of ``CheyneyComputerScience/CREMA-D``)::

    data_folder/AudioWAV/1001_DFA_ANG_XX.wav
    ...
    data_folder/VideoDemographics.csv     # ActorID,Age,Sex,Race,Ethnicity

A file name is ``<actor>_<sentence>_<EMO>_<level>.wav``: a 4-digit actor, a
3-letter sentence code, the emotion (ANG angry, DIS disgust, FEA fearful, HAP happy,
NEU neutral, SAD sad) and the level (LO, MD, HI, XX). A ``.wav`` file whose name does
not follow this pattern, or whose actor is not in ``VideoDemographics.csv``, is an
error naming the file; hidden and ``._*`` files are skipped, and files without
samples are dropped with a warning.

The class map comes from the recipe's YAML (``class_maps``, ``class_set``): ``4class``
(neutral, happy, angry, sad: comparable with IEMOCAP) or ``full`` (all 6 emotions).

Command line::

    python recipes/CREMA-D/cremad_prepare.py --data_folder PATH --save_folder OUT \\
        [--class_set 4class|full] [--n_folds 5]

Authors
 * ser_lib contributors 2025
"""

import os
import re
from functools import partial

from speechbrain.utils.logger import get_logger

from ser_lib.data.corpus_files import (
    audio_utterance,
    check_codes,
    corpus_audio_files,
    csv_table,
    match_file_name,
)
from ser_lib.data.preparation import normalise_gender, prepare_corpus
from ser_lib.data.prepare_script import configure_script_logging, run_prepare_script

logger = get_logger(__name__)

CORPUS = "CREMA-D"
RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
AUDIO_FOLDER = "AudioWAV"
DEMOGRAPHICS_FILE = "VideoDemographics.csv"
DEMOGRAPHICS_COLUMNS = ("ActorID", "Sex")
EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
"""Emotion code -> raw label (the keys of the YAML's class maps)."""
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
PREP_VERSION = 1
"""Bump when the outputs change for the same options, so old preparations redo."""

_NAME_RE = re.compile(
    r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$"
)
_CODED_FIELDS = (("emotion", EMOTIONS), ("level", LEVELS))


def parse_cremad_filename(path):
    """Decodes ``<actor>_<sentence>_<EMO>_<level>.wav``.

    Arguments
    ---------
    path : str
        The file (only its base name is parsed).

    Returns
    -------
    dict
        ``ID``, ``actor`` (str), ``sentence``, ``label`` (raw emotion name) and
        ``level`` (low/medium/high/unspecified).

    Raises
    ------
    ValueError
        If the name does not have the four fields or a code is unknown (names the
        file).

    Example
    -------
    >>> info = parse_cremad_filename("AudioWAV/1001_DFA_ANG_XX.wav")
    >>> info["actor"], info["sentence"], info["label"], info["level"]
    ('1001', 'DFA', 'angry', 'unspecified')
    >>> parse_cremad_filename("AudioWAV/1001_DFA_CAL_XX.wav")
    Traceback (most recent call last):
    ...
    ValueError: CREMA-D file AudioWAV/1001_DFA_CAL_XX.wav: unknown emotion code 'CAL' (expected one of ['ANG', 'DIS', 'FEA', 'HAP', 'NEU', 'SAD'])
    """
    stem, match = match_file_name(
        path,
        _NAME_RE,
        CORPUS,
        "<actor>_<sentence>_<EMO>_<level>.wav (e.g. 1001_DFA_ANG_XX.wav)",
    )
    check_codes(
        path,
        CORPUS,
        [(f"{name} code", match.group(name), known) for name, known in _CODED_FIELDS],
    )
    return {
        "ID": stem,
        "actor": match.group("actor"),
        "sentence": match.group("sentence"),
        "label": EMOTIONS[match.group("emotion")],
        "level": LEVELS[match.group("level")],
    }


def read_demographics(path):
    """Reads the actors' sex from ``VideoDemographics.csv``.

    Arguments
    ---------
    path : str
        The demographics file (columns ``ActorID,Age,Sex,Race,Ethnicity``).

    Returns
    -------
    dict
        Actor ID (str) -> ``F``/``M`` (``U`` for another value).

    Raises
    ------
    FileNotFoundError
        If the file does not exist (names it).
    ValueError
        If a column is missing or an actor is listed twice (names the file and line).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "VideoDemographics.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("ActorID,Age,Sex,Race,Ethnicity\\n"
    ...                 "1001,51,Male,Caucasian,Not Hispanic\\n"
    ...                 "1002,21,Female,Caucasian,Not Hispanic\\n")
    >>> read_demographics(path)
    {'1001': 'M', '1002': 'F'}
    """
    genders = {}
    missing = f"CREMA-D demographics file not found: {path} (it gives the actors' sex)"
    with csv_table(path, DEMOGRAPHICS_COLUMNS, missing) as reader:
        for row in reader:
            actor = row["ActorID"].strip()
            if actor in genders:
                raise ValueError(
                    f"{path}, line {reader.line_num}: actor {actor} is listed twice"
                )
            genders[actor] = normalise_gender(row["Sex"])
    return genders


def collect_cremad(data_folder):
    """Lists the ``AudioWAV`` files with their labels, actors and genders.

    Arguments
    ---------
    data_folder : str
        The folder holding ``AudioWAV/`` and ``VideoDemographics.csv``.

    Returns
    -------
    list of dict
        One utterance dict per file (see :mod:`ser_lib.data.preparation`), sorted by
        ID.

    Raises
    ------
    FileNotFoundError
        If a folder or the demographics file is missing.
    ValueError
        On an unparseable file name, or an actor missing from the demographics.

    Example
    -------
    >>> import tempfile
    >>> collect_cremad(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: CREMA-D audio folder not found: .../AudioWAV
    """
    paths = corpus_audio_files(data_folder, CORPUS, AUDIO_FOLDER)
    demographics_path = os.path.join(data_folder, DEMOGRAPHICS_FILE)
    genders = read_demographics(demographics_path)
    utterances = []
    for path in paths:
        info = parse_cremad_filename(path)
        if info["actor"] not in genders:
            raise ValueError(
                f"CREMA-D file {path}: actor {info['actor']} is not in "
                f"{demographics_path}"
            )
        utterances.append(
            audio_utterance(
                path,
                AUDIO_FOLDER,
                ID=info["ID"],
                label=info["label"],
                spk_id=info["actor"],
                gender=genders[info["actor"]],
                style=info["level"],
                dialog=info["sentence"],
            )
        )
    return utterances


def prepare_cremad(
    data_folder,
    save_folder,
    class_map,
    **options,
):
    """Writes the CREMA-D manifests: ``all.csv`` and speaker-independent folds.

    Re-running with the same options skips; other options redo (see
    :func:`ser_lib.data.preparation.prepare_corpus`).

    Arguments
    ---------
    data_folder : str
        The folder holding ``AudioWAV/`` and ``VideoDemographics.csv``.
    save_folder : str
        Output folder.
    class_map : mapping
        ``{raw emotion name: class or None}`` (the YAML's ``class_map``).
    **options
        ``fold_mode`` (default ``"speaker_kfold"``), ``n_folds``, ``valid_mode``,
        ``unmapped``, ``skip_prep``: see :func:`ser_lib.data.preparation.prepare_corpus`.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> root, save = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(root, "AudioWAV"))
    >>> with open(os.path.join(root, "VideoDemographics.csv"), "w") as f:
    ...     _ = f.write("ActorID,Age,Sex,Race,Ethnicity\\n1001,51,Male,,\\n1002,21,Female,,\\n")
    >>> for actor in ("1001", "1002"):
    ...     for emotion in ("ANG", "FEA"):
    ...         name = f"{actor}_IEO_{emotion}_HI.wav"
    ...         sf.write(os.path.join(root, "AudioWAV", name), np.zeros(1600), 16000)
    >>> prepare_cremad(root, save, {"angry": "ang", "fearful": None}, n_folds=2)
    >>> print(open(os.path.join(save, "fold1", "test.csv")).read().strip())
    ID,duration,wav,emo,spk_id,gender,session,style,dialog
    1001_IEO_ANG_HI,0.1,$data_root/AudioWAV/1001_IEO_ANG_HI.wav,ang,1001,M,1,high,IEO
    """
    prepare_corpus(
        CORPUS,
        partial(collect_cremad, data_folder),
        data_folder,
        save_folder,
        class_map,
        settings={"prep_version": PREP_VERSION},
        **options,
    )


def main(argv=None):
    """Command-line entry point (see the module docstring).

    Example
    -------
    >>> import tempfile
    >>> main(["--data_folder", "/nonexistent", "--save_folder", tempfile.mkdtemp()])
    Traceback (most recent call last):
    ...
    FileNotFoundError: CREMA-D data_folder not found: /nonexistent
    """
    kwargs = run_prepare_script(prepare_cremad, __doc__, RECIPE_DIR, argv)
    print(f"CREMA-D manifests in {kwargs['save_folder']}")


if __name__ == "__main__":
    configure_script_logging()
    main()
