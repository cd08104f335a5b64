#!/usr/bin/env python3
"""Prepares any labelled corpus described by a CSV file, with speaker-independent folds.

The CSV (``csv_file``) has one row per utterance and the columns

* ``wav`` (required): the audio file, relative to ``data_folder`` (or absolute under
  it; ``$data_root/...`` is accepted too);
* ``emo`` (required): the raw emotion label, mapped to a class by the YAML's class
  map;
* ``spk_id`` (required): the speaker;
* ``ID`` (optional): a unique utterance ID without ``/``; default: the wav path
  without its extension, ``/`` replaced by ``_``;
* ``gender`` (optional): any spelling of female/male (``F``, ``female``, ``Male``...);
  other values and a missing column give ``U``;
* the group column (optional, name set by ``group_column``, default ``session``):
  needed by ``fold_mode="leave_one_group_out"`` only;
* ``style``, ``dialog`` (optional): copied to the manifests (empty otherwise).

Other columns are ignored. The manifests have the columns of every recipe
(``ID,duration,wav,emo,spk_id,gender,session,style,dialog``), where ``session`` is the
fold group:

* ``save_folder/all.csv``: every kept utterance;
* ``save_folder/fold{k}/{train,valid,test}.csv``: fold k tests on group k:
  ``speaker_kfold`` deals the speakers into ``n_folds`` balanced groups,
  ``leave_one_speaker_out`` makes one group per speaker, ``leave_one_group_out`` one
  per value of the group column (sorted; every speaker must be in one group only).

Labels missing from the class map are dropped and counted in the log by default
(``unmapped="drop"``; ``"error"`` stops at the first one). Errors name the CSV row:
an empty field, a wav outside ``data_folder``, a missing wav, a duplicate ID.
See ``docs/ADAPTING.md`` for the walk-through.

Command line::

    python recipes/generic/generic_prepare.py --csv_file labels.csv \\
        --data_folder PATH --save_folder OUT [--fold_mode ...] [--n_folds 5]

Authors
 * ser_lib contributors 2025
"""

import hashlib
import os
from functools import partial

from speechbrain.utils.logger import get_logger

from ser_lib.data.manifest import read_manifest
from ser_lib.data.preparation import check_folder, normalise_gender, prepare_corpus
from ser_lib.data.prepare_script import configure_script_logging, run_prepare_script

logger = get_logger(__name__)

CORPUS = "generic"
RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
REQUIRED_COLUMNS = ("wav", "emo", "spk_id")
DATA_ROOT_PREFIX = "$data_root/"
PREP_VERSION = 1
"""Bump when the outputs change for the same options, so old preparations redo."""


def relative_wav_path(wav, data_folder, source):
    """The wav path relative to ``data_folder``, ``/``-separated.

    Arguments
    ---------
    wav : str
        The CSV's ``wav`` value: relative, absolute under ``data_folder``, or starting
        with ``$data_root/``.
    data_folder : str
        The corpus folder.
    source : str
        Where the value comes from, for errors.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If the path is empty or lies outside ``data_folder``.

    Example
    -------
    >>> relative_wav_path("spk1/a.wav", "/data/corpus", "labels.csv, row 1")
    'spk1/a.wav'
    >>> relative_wav_path("/data/corpus/spk1/a.wav", "/data/corpus", "row 1")
    'spk1/a.wav'
    >>> relative_wav_path("$data_root/spk1/a.wav", "/data/corpus", "row 1")
    'spk1/a.wav'
    >>> relative_wav_path("../other/a.wav", "/data/corpus", "labels.csv, row 1")
    Traceback (most recent call last):
    ...
    ValueError: labels.csv, row 1: wav ../other/a.wav is not under data_folder /data/corpus (give paths relative to data_folder, or data_folder=/ for absolute paths)
    """
    text = wav.strip()
    if not text:
        raise ValueError(f"{source}: empty wav")
    if text.startswith(DATA_ROOT_PREFIX):
        text = text[len(DATA_ROOT_PREFIX) :]
    if not os.path.isabs(text):
        text = os.path.join(data_folder, text)
    relative = os.path.relpath(os.path.normpath(text), os.path.normpath(data_folder))
    if relative == ".." or relative.startswith(".." + os.sep):
        raise ValueError(
            f"{source}: wav {wav} is not under data_folder {data_folder} (give paths "
            "relative to data_folder, or data_folder=/ for absolute paths)"
        )
    return relative.replace(os.sep, "/")


def default_utterance_id(relative_wav):
    """The ID of a row without ``ID``: the wav path without extension, ``/`` -> ``_``.

    Example
    -------
    >>> default_utterance_id("spk1/session2/utt_003.wav")
    'spk1_session2_utt_003'
    """
    return os.path.splitext(relative_wav)[0].replace("/", "_")


def read_labels_csv(csv_file, data_folder, group_column=None):
    """Reads the labelled CSV into utterance dicts.

    Arguments
    ---------
    csv_file : str
        The CSV (columns in the module docstring).
    data_folder : str
        The folder the wav paths are relative to.
    group_column : str, optional
        The column holding the groups (required only when given); copied to the
        ``group`` key.

    Returns
    -------
    list of dict
        Utterance dicts (see :mod:`ser_lib.data.preparation`), in file order.

    Raises
    ------
    FileNotFoundError
        If the CSV does not exist.
    ValueError
        On a missing column, an empty ``emo``/``spk_id``/group, an ID that cannot be a
        file name, or an ID used twice (the message names the rows).

    Example
    -------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> path = os.path.join(root, "labels.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("wav,emo,spk_id,gender,room\\nspk1/a.wav,happy,spk1,female,A\\n")
    >>> utt = read_labels_csv(path, root, group_column="room")[0]
    >>> utt["ID"], utt["label"], utt["spk_id"], utt["gender"], utt["group"], utt["wav"]
    ('spk1_a', 'happy', 'spk1', 'F', 'A', 'spk1/a.wav')
    """
    required = list(REQUIRED_COLUMNS) + ([group_column] if group_column else [])
    rows = read_manifest(csv_file, required_columns=required)
    utterances, first_row = [], {}
    for number, row in enumerate(rows, start=1):
        source = f"{csv_file}, row {number}"
        wav = relative_wav_path(row["wav"], data_folder, source)
        utt_id = (row.get("ID") or "").strip() or default_utterance_id(wav)
        if utt_id.startswith(".") or "/" in utt_id or "\\" in utt_id:
            raise ValueError(
                f"{source}: ID {utt_id!r} cannot be used as a file name (no '/', "
                "'\\' or leading '.')"
            )
        if utt_id in first_row:
            raise ValueError(
                f"{source}: ID {utt_id!r} is already used by row {first_row[utt_id]} "
                "(give an ID column to tell them apart)"
            )
        first_row[utt_id] = number
        utt = {
            "ID": utt_id,
            "label": row["emo"].strip(),
            "spk_id": row["spk_id"].strip(),
            "gender": normalise_gender(row.get("gender")),
            "style": (row.get("style") or "").strip(),
            "dialog": (row.get("dialog") or "").strip(),
            "wav": wav,
            "source": source,
        }
        if group_column:
            utt["group"] = row[group_column].strip()
        for key in ("label", "spk_id") + (("group",) if group_column else ()):
            if not utt[key]:
                raise ValueError(f"{source}: empty {key} (wav {row['wav']})")
        utterances.append(utt)
    if not utterances:
        raise ValueError(f"{csv_file} has no row")
    return utterances


def file_sha1(path):
    """SHA-1 of a file's bytes (recorded so that an edited CSV is prepared again).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.csv")
    >>> _ = open(path, "w").write("wav,emo,spk_id\\n")
    >>> file_sha1(path)[:12]
    '4c4f8ce2a8ee'
    """
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_generic(
    csv_file,
    data_folder,
    save_folder,
    class_map,
    fold_mode="speaker_kfold",
    n_folds=5,
    group_column="session",
    valid_mode="none",
    unmapped="drop",
    skip_prep=False,
):
    """Writes the manifests of a CSV-described corpus: ``all.csv`` and the folds.

    Re-running with the same options and an unchanged CSV skips; anything else redoes
    (see :func:`ser_lib.data.preparation.prepare_corpus`).

    Arguments
    ---------
    csv_file : str
        The labelled CSV (see the module docstring).
    data_folder : str
        The folder the wav paths are relative to (``$data_root``).
    save_folder : str
        Output folder.
    class_map : mapping
        ``{raw label: class or None}`` (the YAML's ``class_map``).
    fold_mode : str
        ``"speaker_kfold"``, ``"leave_one_speaker_out"`` or ``"leave_one_group_out"``.
    n_folds : int
        Number of speaker folds (``speaker_kfold``).
    group_column : str
        The CSV column of the groups (``leave_one_group_out``).
    valid_mode : str
        ``"none"`` (model = last epoch) or ``"speaker"`` (one training speaker held out).
    unmapped : str
        ``"drop"`` (default) or ``"error"`` for a label missing from ``class_map``.
    skip_prep : bool
        If True, do nothing.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> root, save = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> lines = ["wav,emo,spk_id"]
    >>> for spk in ("a", "b"):
    ...     for label in ("angry", "other"):
    ...         sf.write(os.path.join(root, f"{spk}_{label}.wav"), np.zeros(1600), 16000)
    ...         lines.append(f"{spk}_{label}.wav,{label},{spk}")
    >>> _ = open(os.path.join(root, "labels.csv"), "w").write("\\n".join(lines) + "\\n")
    >>> prepare_generic(os.path.join(root, "labels.csv"), root, save, {"angry": "ang"},
    ...                 n_folds=2)
    >>> print(open(os.path.join(save, "fold2", "test.csv")).read().strip())
    ID,duration,wav,emo,spk_id,gender,session,style,dialog
    b_angry,0.1,$data_root/b_angry.wav,ang,b,U,2,,
    """
    if skip_prep:
        logger.info("generic preparation skipped (skip_prep=True)")
        return
    check_folder(data_folder, "generic data_folder")
    if not os.path.isfile(csv_file):
        raise FileNotFoundError(f"Labelled CSV file not found: {csv_file}")
    by_group = fold_mode == "leave_one_group_out"
    prepare_corpus(
        CORPUS,
        partial(
            read_labels_csv, csv_file, data_folder, group_column if by_group else None
        ),
        data_folder,
        save_folder,
        class_map,
        settings={
            "csv_file": os.path.realpath(csv_file),
            "csv_sha1": file_sha1(csv_file),
            "group_column": group_column if by_group else None,
            "prep_version": PREP_VERSION,
        },
        unmapped=unmapped,
        fold_mode=fold_mode,
        n_folds=n_folds,
        valid_mode=valid_mode,
        group_key="group" if by_group else None,
    )


def _add_options(parser):
    parser.add_argument("--csv_file", required=True, help="the labelled CSV")
    parser.add_argument("--group_column", default="session")


def main(argv=None):
    """Command-line entry point (see the module docstring).

    Example
    -------
    >>> import tempfile
    >>> main(["--csv_file", "/nonexistent/labels.csv", "--data_folder",
    ...       tempfile.mkdtemp(), "--save_folder", tempfile.mkdtemp()])
    Traceback (most recent call last):
    ...
    FileNotFoundError: Labelled CSV file not found: /nonexistent/labels.csv
    """
    kwargs = run_prepare_script(
        prepare_generic,
        __doc__,
        RECIPE_DIR,
        argv,
        add_options=_add_options,
        unmapped="drop",
    )
    print(f"Manifests of {kwargs['csv_file']} in {kwargs['save_folder']}")


if __name__ == "__main__":
    configure_script_logging()
    main()
