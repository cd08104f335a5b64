#!/usr/bin/env python3
"""Prepares MSP-Podcast for speech emotion recognition on its official splits.

Reads ``Labels/labels_consensus.csv`` and writes SpeechBrain CSV manifests with the
columns of every recipe (``ID,duration,wav,emo,spk_id,gender,session,style,dialog``).
MSP-Podcast comes with official speaker-independent splits, so there is a single
"fold" whose parts are those splits:

* ``save_folder/fold1/train.csv``: ``Split_Set == Train``;
* ``save_folder/fold1/valid.csv``: ``Development`` (``use_development=True``: model
  selection on the best validation UA) or header only (``False``: the last epoch);
* ``save_folder/fold1/test.csv``: the chosen official test set (``Test1``,
  ``Test2``...);
* ``save_folder/all.csv``: the union of the three (what the feature cache holds).

Column meanings: ``ID`` the file name without ``.wav``; ``spk_id`` ``SpkrID`` (as
given, ``Unknown`` included); ``gender`` F/M from ``Gender`` (U when unknown);
``session`` the split (``Train``, ``Development``, ``Test1``...); ``style`` empty
(natural speech); ``dialog`` the podcast (``MSP-PODCAST_0002`` for
``MSP-PODCAST_0002_0033``).

Expected layout (the release from the MSP lab)::

    data_folder/Audios/MSP-PODCAST_0001_0008.wav
    ...
    data_folder/Labels/labels_consensus.csv

with at least the columns ``FileName,EmoClass,SpkrID,Gender,Split_Set`` (the
attribute columns ``EmoAct,EmoVal,EmoDom`` are not used). ``EmoClass`` is one of
A angry, S sad, H happy, U surprised, F fearful, D disgust, C contempt, N neutral,
O other, X no agreement; an unknown letter, or no label in a split that is used,
is an error naming the file and line.

The class map comes from the recipe's YAML (``class_maps``, ``class_set``): ``4class``
(neutral, happy, angry, sad: comparable with IEMOCAP) or ``full`` (the 8 primary
emotions; O and X are dropped in both).

Command line::

    python recipes/MSP-Podcast/msp_podcast_prepare.py --data_folder PATH \\
        --save_folder OUT [--class_set 4class|full] [--test_set Test1|Test2] \\
        [--no-use_development]

Authors
 * ser_lib contributors 2025
"""

import argparse
import os
from collections import defaultdict

from speechbrain.utils.logger import get_logger

from ser_lib.data.class_map import (
    apply_class_map,
    class_names,
    unlabelled_utterances,
)
from ser_lib.data.corpus_files import csv_table
from ser_lib.data.folds import write_adapter_sets
from ser_lib.data.manifest import (
    MANIFEST_COLUMNS,
    clear_prep_options,
    save_prep_options,
    write_manifest,
)
from ser_lib.data.preparation import (
    already_prepared,
    check_folder,
    log_counts,
    manifest_rows,
    normalise_gender,
)
from ser_lib.data.prepare_script import configure_script_logging, run_prepare_script

logger = get_logger(__name__)

CORPUS = "MSP-Podcast"
RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
AUDIO_FOLDER = "Audios"
LABELS_FILE = "Labels/labels_consensus.csv"
REQUIRED_COLUMNS = ("FileName", "EmoClass", "SpkrID", "Gender", "Split_Set")
EMOTIONS = {
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
"""EmoClass letter -> raw label (the keys of the YAML's class maps)."""
TRAIN_SET = "Train"
DEVELOPMENT_SET = "Development"
UNKNOWN_SPEAKER = "Unknown"
"""SpkrID of utterances whose speaker is not identified."""
PREP_VERSION = 1
"""Bump when the outputs change for the same options, so old preparations redo."""


def read_labels_consensus(path):
    """Reads every row of ``labels_consensus.csv``.

    Arguments
    ---------
    path : str
        The labels file.

    Returns
    -------
    list of dict
        One dict per row: ``ID`` (file name without ``.wav``), ``label`` (raw emotion
        name, or None when ``EmoClass`` is empty), ``spk_id``, ``gender`` (F/M/U),
        ``split``, ``dialog`` (the podcast), ``style`` (empty), ``wav``
        (``Audios/<file>``) and ``source`` (file and line).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        On a missing column, an unknown ``EmoClass`` letter or a file listed twice
        (names the file and line).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels_consensus.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\\n"
    ...                 "MSP-PODCAST_0002_0033.wav,N,4.0,4.2,4.4,127,Female,Train\\n"
    ...                 "MSP-PODCAST_0003_0001.wav,,,,,Unknown,Unknown,Test3\\n")
    >>> [(r["ID"], r["label"], r["spk_id"], r["gender"], r["split"], r["dialog"])
    ...  for r in read_labels_consensus(path)]
    [('MSP-PODCAST_0002_0033', 'neutral', '127', 'F', 'Train', 'MSP-PODCAST_0002'), ('MSP-PODCAST_0003_0001', None, 'Unknown', 'U', 'Test3', 'MSP-PODCAST_0003')]
    """
    rows, seen = [], {}
    missing = f"MSP-Podcast labels file not found: {path}"
    with csv_table(path, REQUIRED_COLUMNS, missing) as reader:
        for row in reader:
            source = f"{path}, line {reader.line_num}"
            file_name = row["FileName"].strip()
            stem = file_name[:-4] if file_name.lower().endswith(".wav") else file_name
            if not stem:
                raise ValueError(f"{source}: empty FileName")
            if stem in seen:
                raise ValueError(f"{source}: {file_name} is already on {seen[stem]}")
            seen[stem] = source
            code = row["EmoClass"].strip()
            if code and code not in EMOTIONS:
                raise ValueError(
                    f"{source}: unknown EmoClass {code!r} for {file_name} (expected "
                    f"one of {sorted(EMOTIONS)})"
                )
            rows.append(
                {
                    "ID": stem,
                    "label": EMOTIONS[code] if code else None,
                    "spk_id": row["SpkrID"].strip(),
                    "gender": normalise_gender(row["Gender"]),
                    "split": row["Split_Set"].strip(),
                    "dialog": "_".join(stem.split("_")[:2]),
                    "style": "",
                    "wav": f"{AUDIO_FOLDER}/{stem}.wav",
                    "source": source,
                }
            )
    return rows


def split_roles(test_set="Test1", use_development=True):
    """Which official split fills which part of the single fold.

    Arguments
    ---------
    test_set : str
        The official test set (``Test1``, ``Test2``...).
    use_development : bool
        Whether ``Development`` is the validation set.

    Returns
    -------
    dict
        Split name -> ``"train"``, ``"valid"`` or ``"test"``.

    Example
    -------
    >>> split_roles("Test2")
    {'Train': 'train', 'Development': 'valid', 'Test2': 'test'}
    >>> split_roles(use_development=False)
    {'Train': 'train', 'Test1': 'test'}
    """
    if test_set in (TRAIN_SET, DEVELOPMENT_SET):
        raise ValueError(f"test_set must be an official test set, not {test_set!r}")
    roles = {TRAIN_SET: "train"}
    if use_development:
        roles[DEVELOPMENT_SET] = "valid"
    roles[test_set] = "test"
    return roles


def collect_msp_podcast(data_folder, test_set="Test1", use_development=True):
    """The labelled utterances of the splits in use, with ``session`` = their split.

    Arguments
    ---------
    data_folder : str
        The folder holding ``Audios/`` and ``Labels/labels_consensus.csv``.
    test_set : str
        The official test set.
    use_development : bool
        Whether ``Development`` is used (as the validation set).

    Returns
    -------
    list of dict
        Utterance dicts (see :mod:`ser_lib.data.preparation`) of ``Train``,
        ``Development`` (if used) and ``test_set``.

    Raises
    ------
    ValueError
        If a split in use has no row (lists the splits found) or an unlabelled row.

    Example
    -------
    >>> import tempfile
    >>> collect_msp_podcast(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: MSP-Podcast audio folder not found: .../Audios
    """
    check_folder(data_folder, "MSP-Podcast data_folder")
    check_folder(os.path.join(data_folder, AUDIO_FOLDER), "MSP-Podcast audio folder")
    labels_path = os.path.join(data_folder, *LABELS_FILE.split("/"))
    rows = read_labels_consensus(labels_path)
    roles = split_roles(test_set, use_development)
    found = sorted({row["split"] for row in rows})
    absent = [split for split in roles if split not in found]
    if absent:
        raise ValueError(
            f"{labels_path}: no row of Split_Set {absent} (splits found: {found})"
        )
    utterances = []
    for row in rows:
        if row["split"] not in roles:
            continue
        if row["label"] is None:
            raise ValueError(
                f"{row['source']}: {row['ID']} of split {row['split']} has no EmoClass"
            )
        utterances.append({**row, "session": row["split"]})
    return utterances


def check_split_speakers(rows, roles):
    """Warns when an identified speaker is in the test split and in train or valid.

    Arguments
    ---------
    rows : sequence of mapping
        Manifest rows (``session`` = split).
    roles : mapping
        Split name -> part (see :func:`split_roles`).

    Returns
    -------
    list of str
        The shared speakers (``Unknown`` is not a speaker).

    Example
    -------
    >>> rows = [{"spk_id": "1", "session": "Train"}, {"spk_id": "1", "session": "Test1"},
    ...         {"spk_id": "Unknown", "session": "Train"},
    ...         {"spk_id": "Unknown", "session": "Test1"}]
    >>> check_split_speakers(rows, {"Train": "train", "Test1": "test"})
    ['1']
    """
    speakers = defaultdict(set)
    for row in rows:
        if row["spk_id"] != UNKNOWN_SPEAKER:
            speakers[roles[row["session"]]].add(row["spk_id"])
    shared = sorted(speakers["test"] & (speakers["train"] | speakers["valid"]))
    if shared:
        logger.warning(
            "MSP-Podcast: %d speakers of the test split are also in train/valid: %s",
            len(shared),
            shared[:10],
        )
    return shared


def prepare_msp_podcast(
    data_folder,
    save_folder,
    class_map,
    test_set="Test1",
    use_development=True,
    unmapped="error",
    skip_prep=False,
):
    """Writes the MSP-Podcast manifests: ``all.csv`` and the official split as fold 1.

    Re-running with the same options skips; other options redo.

    Arguments
    ---------
    data_folder : str
        The folder holding ``Audios/`` and ``Labels/labels_consensus.csv``.
    save_folder : str
        Output folder.
    class_map : mapping
        ``{raw emotion name: class or None}`` (the YAML's ``class_map``).
    test_set : str
        The official test set of ``fold1/test.csv``.
    use_development : bool
        ``Development`` as ``fold1/valid.csv`` (True) or no validation set (False).
    unmapped : str
        ``"error"`` or ``"drop"`` for an emotion missing from ``class_map``.
    skip_prep : bool
        If True, do nothing.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> root, save = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "Labels")); os.mkdir(os.path.join(root, "Audios"))
    >>> lines = ["FileName,EmoClass,SpkrID,Gender,Split_Set"]
    >>> for i, (emo, spk, split) in enumerate([("N", 1, "Train"), ("A", 2, "Development"),
    ...                                        ("H", 3, "Test1"), ("S", 4, "Test2")]):
    ...     name = f"MSP-PODCAST_000{i}_0001.wav"
    ...     sf.write(os.path.join(root, "Audios", name), np.zeros(1600), 16000)
    ...     lines.append(f"{name},{emo},{spk},Male,{split}")
    >>> _ = open(os.path.join(root, "Labels", "labels_consensus.csv"), "w").write(
    ...     "\\n".join(lines) + "\\n")
    >>> class_map = {"neutral": "neu", "angry": "ang", "happy": "hap", "sad": "sad"}
    >>> prepare_msp_podcast(root, save, class_map)
    >>> print(open(os.path.join(save, "fold1", "test.csv")).read().strip())
    ID,duration,wav,emo,spk_id,gender,session,style,dialog
    MSP-PODCAST_0002_0001,0.1,$data_root/Audios/MSP-PODCAST_0002_0001.wav,hap,3,M,Test1,,MSP-PODCAST_0002
    """
    if skip_prep:
        logger.info("MSP-Podcast preparation skipped (skip_prep=True)")
        return
    roles = split_roles(test_set, use_development)
    options = {
        "corpus": CORPUS,
        "data_folder": os.path.realpath(data_folder),
        "class_map": dict(class_map),
        "test_set": test_set,
        "use_development": use_development,
        "unmapped": unmapped,
        "prep_version": PREP_VERSION,
    }
    if already_prepared(save_folder, options, CORPUS, n_folds=1):
        return
    logger.info("Preparing MSP-Podcast from %s into %s", data_folder, save_folder)
    clear_prep_options(save_folder)
    utterances = collect_msp_podcast(data_folder, test_set, use_development)
    kept, _ = apply_class_map(utterances, class_map, unmapped=unmapped, corpus=CORPUS)
    rows = manifest_rows(kept, data_folder, CORPUS)
    parts = {part: [] for part in ("train", "valid", "test")}
    for row in rows:
        parts[roles[row["session"]]].append(row)
    for split, part in roles.items():
        if not parts[part]:
            raise ValueError(
                f"MSP-Podcast: no utterance of the classes {class_names(class_map)} "
                f"in the split {split}"
            )
    check_split_speakers(rows, roles)
    log_counts(rows, CORPUS)
    write_manifest(rows, os.path.join(save_folder, "all.csv"), MANIFEST_COLUMNS)
    for part, part_rows in parts.items():
        path = os.path.join(save_folder, "fold1", f"{part}.csv")
        write_manifest(part_rows, path, MANIFEST_COLUMNS)
    # Stage 1 also trains on the utterances of other labels (X, O, ...) of its split.
    others = unlabelled_utterances(utterances, kept)
    other_rows = manifest_rows(others, data_folder, CORPUS) if others else []
    write_adapter_sets(
        os.path.join(save_folder, "fold1"),
        parts["train"],
        parts["test"],
        other_train=[r for r in other_rows if roles.get(r["session"]) == "train"],
        other_test=[r for r in other_rows if roles.get(r["session"]) == "test"],
    )
    save_prep_options(save_folder, options)
    logger.info("MSP-Podcast manifests written to %s", save_folder)


def _add_options(parser):
    parser.add_argument("--test_set", default="Test1", help="Test1, Test2...")
    parser.add_argument(
        "--use_development",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Development as the validation set (default) or none",
    )


def main(argv=None):
    """Command-line entry point (see the module docstring).

    Example
    -------
    >>> import tempfile
    >>> main(["--data_folder", "/nonexistent", "--save_folder", tempfile.mkdtemp()])
    Traceback (most recent call last):
    ...
    FileNotFoundError: MSP-Podcast data_folder not found: /nonexistent
    """
    kwargs = run_prepare_script(
        prepare_msp_podcast,
        __doc__,
        RECIPE_DIR,
        argv,
        add_options=_add_options,
        folds=False,
    )
    print(f"MSP-Podcast manifests in {kwargs['save_folder']}")


if __name__ == "__main__":
    configure_script_logging()
    main()
