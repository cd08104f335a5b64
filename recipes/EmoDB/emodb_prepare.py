#!/usr/bin/env python3
"""Prepares EmoDB (Berlin Database of Emotional Speech) with leave-one-speaker-out folds.

Reads the labels and speakers from the file names and writes SpeechBrain CSV
manifests with the columns of every recipe
(``ID,duration,wav,emo,spk_id,gender,session,style,dialog``):

* ``save_folder/all.csv``: every kept file;
* ``save_folder/fold{k}/{train,valid,test}.csv``: with the default
  ``fold_mode="leave_one_speaker_out"``, fold k tests on the k-th speaker (sorted:
  03, 08, 09, 10, 11, 12, 13, 14, 15, 16) and trains on the nine others.

Column meanings: ``ID`` the file name without ``.wav``; ``spk_id`` the 2-digit
speaker (``03``); ``gender`` from the corpus documentation; ``session`` the fold
group; ``style`` the version letter of the take (``a``, ``b``...); ``dialog`` the text
code (``a01`` ... ``b10``).

Expected layout (the release archive ``download.zip`` unpacked)::

    data_folder/wav/03a01Fa.wav
    ...

A file name is ``<speaker><text><emotion><version>.wav``: a 2-digit speaker, a
3-character text code, the emotion letter (W angry, L boredom, E disgust, A fearful,
F happy, T sad, N neutral, from the German names) and a version letter. A ``.wav``
file whose name does not follow this pattern, or whose speaker is not one of the ten,
is an error naming the file; hidden and ``._*`` files are skipped.

The class map comes from the recipe's YAML (``class_maps``, ``class_set``): ``4class``
(neutral, happy, angry, sad: comparable with IEMOCAP) or ``full`` (all 7 emotions).

Command line::

    python recipes/EmoDB/emodb_prepare.py --data_folder PATH --save_folder OUT \\
        [--class_set 4class|full] [--fold_mode leave_one_speaker_out|speaker_kfold]

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
    match_file_name,
)
from ser_lib.data.preparation import prepare_corpus
from ser_lib.data.prepare_script import configure_script_logging, run_prepare_script

logger = get_logger(__name__)

CORPUS = "EmoDB"
RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
AUDIO_FOLDER = "wav"
EMOTIONS = {
    "W": "angry",  # Wut / Ärger
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
"""Emotion letter -> raw label (the keys of the YAML's class maps)."""
SPEAKER_GENDERS = {
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
"""The ten speakers and their gender, from the corpus documentation."""
PREP_VERSION = 1
"""Bump when the outputs change for the same options, so old preparations redo."""

_NAME_RE = re.compile(
    r"^(?P<speaker>\d{2})(?P<text>[a-z]\d{2})(?P<emotion>[A-Z])(?P<version>[a-z])$"
)
_CODED_FIELDS = (("emotion", EMOTIONS), ("speaker", SPEAKER_GENDERS))


def parse_emodb_filename(path):
    """Decodes ``<speaker><text><emotion><version>.wav`` (e.g. ``03a01Fa.wav``).

    Arguments
    ---------
    path : str
        The file (only its base name is parsed).

    Returns
    -------
    dict
        ``ID``, ``speaker``, ``gender``, ``text``, ``label`` (raw emotion name) and
        ``version``.

    Raises
    ------
    ValueError
        If the name does not have this shape, or the emotion letter or the speaker is
        unknown (names the file).

    Example
    -------
    >>> info = parse_emodb_filename("wav/03a01Fa.wav")
    >>> info["speaker"], info["gender"], info["text"], info["label"], info["version"]
    ('03', 'M', 'a01', 'happy', 'a')
    >>> parse_emodb_filename("wav/04a01Fa.wav")
    Traceback (most recent call last):
    ...
    ValueError: EmoDB file wav/04a01Fa.wav: unknown speaker '04' (expected one of ['03', '08', '09', '10', '11', '12', '13', '14', '15', '16'])
    """
    stem, match = match_file_name(
        path,
        _NAME_RE,
        CORPUS,
        "<speaker><text><emotion><version>.wav (e.g. 03a01Fa.wav)",
    )
    check_codes(
        path,
        CORPUS,
        [(name, match.group(name), known) for name, known in _CODED_FIELDS],
    )
    return {
        "ID": stem,
        "speaker": match.group("speaker"),
        "gender": SPEAKER_GENDERS[match.group("speaker")],
        "text": match.group("text"),
        "label": EMOTIONS[match.group("emotion")],
        "version": match.group("version"),
    }


def collect_emodb(data_folder):
    """Lists the ``wav/`` files with their labels and speakers.

    Arguments
    ---------
    data_folder : str
        The folder holding ``wav/``.

    Returns
    -------
    list of dict
        One utterance dict per file (see :mod:`ser_lib.data.preparation`), sorted by
        ID.

    Example
    -------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(root, "wav"))
    >>> open(os.path.join(root, "wav", "16b10Wb.wav"), "w").close()
    >>> [(u["ID"], u["label"], u["spk_id"], u["gender"], u["dialog"], u["wav"])
    ...  for u in collect_emodb(root)]
    [('16b10Wb', 'angry', '16', 'F', 'b10', 'wav/16b10Wb.wav')]
    """
    utterances = []
    for path in corpus_audio_files(data_folder, CORPUS, AUDIO_FOLDER):
        info = parse_emodb_filename(path)
        utterances.append(
            audio_utterance(
                path,
                AUDIO_FOLDER,
                ID=info["ID"],
                label=info["label"],
                spk_id=info["speaker"],
                gender=info["gender"],
                style=info["version"],
                dialog=info["text"],
            )
        )
    return utterances


def prepare_emodb(
    data_folder,
    save_folder,
    class_map,
    fold_mode="leave_one_speaker_out",
    **options,
):
    """Writes the EmoDB manifests: ``all.csv`` and speaker-independent folds.

    Re-running with the same options skips; other options redo (see
    :func:`ser_lib.data.preparation.prepare_corpus`).

    Arguments
    ---------
    data_folder : str
        The folder holding ``wav/``.
    save_folder : str
        Output folder.
    class_map : mapping
        ``{raw emotion name: class or None}`` (the YAML's ``class_map``).
    fold_mode : str
        ``"leave_one_speaker_out"`` (default: 10 folds) or ``"speaker_kfold"``.
    **options
        ``n_folds``, ``valid_mode``, ``unmapped``, ``skip_prep``: see
        :func:`ser_lib.data.preparation.prepare_corpus`.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> root, save = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(root, "wav"))
    >>> for name in ("03a01Wa.wav", "08a01Na.wav", "08a01Lb.wav"):
    ...     sf.write(os.path.join(root, "wav", name), np.zeros(1600), 16000)
    >>> prepare_emodb(root, save, {"angry": "ang", "neutral": "neu", "boredom": None})
    >>> print(open(os.path.join(save, "fold2", "test.csv")).read().strip())
    ID,duration,wav,emo,spk_id,gender,session,style,dialog
    08a01Na,0.1,$data_root/wav/08a01Na.wav,neu,08,F,2,a,a01
    """
    prepare_corpus(
        CORPUS,
        partial(collect_emodb, data_folder),
        data_folder,
        save_folder,
        class_map,
        settings={"prep_version": PREP_VERSION},
        fold_mode=fold_mode,
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
    FileNotFoundError: EmoDB data_folder not found: /nonexistent
    """
    kwargs = run_prepare_script(
        prepare_emodb, __doc__, RECIPE_DIR, argv, fold_mode="leave_one_speaker_out"
    )
    print(f"EmoDB manifests in {kwargs['save_folder']}")


if __name__ == "__main__":
    configure_script_logging()
    main()
