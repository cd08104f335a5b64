"""EmoBox metadata as a corpus source: its published folds as the project's manifests.

EmoBox (Ma et al., Interspeech 2024) fixes train/test folds for 32 SER corpora and
publishes them as JSON-lines metadata::

    <metadata_folder>/<dataset>/fold_<k>/<dataset>_train_fold_<k>.jsonl
    <metadata_folder>/<dataset>/fold_<k>/<dataset>_test_fold_<k>.jsonl

one JSON object a line, with at least ``key`` (utterance id, e.g.
``emodb-03a01Fa``), ``wav`` (path relative to the folder the corpus was downloaded
to, e.g. ``downloads/emodb/wav/03a01Fa.wav``) and ``emo`` (the raw emotion). Other
fields (``length``, ``sample_rate``, ``channel``...) are ignored: durations are read
from the wavs. A ``speaker`` field, when present, becomes ``spk_id``; otherwise the
speaker is unknown and written as the dataset name.

:func:`prepare_emobox` writes, in ``save_folder``, the manifests every recipe reads
(columns ``ID,duration,wav,emo,spk_id,gender,session,style,dialog``):

* ``fold{k}/train.csv`` and ``fold{k}/test.csv``: exactly EmoBox's fold ``k``;
  ``fold{k}/valid.csv`` is empty (model = last epoch; EmoBox has no validation split);
  the stage-1 sets ``fold{k}/adapter_{all_train,labelled,transductive}.csv``
  (:func:`ser_lib.data.folds.write_adapter_sets`; ``all_train`` = ``labelled`` =
  the fold's train set);
* ``all.csv``: every utterance of any fold, with ``session`` = the fold whose test
  set holds it (0 if none).

So a recipe runs on EmoBox's benchmark exactly with ``test_session: k``. EmoBox's
EmoDB folds, for instance, are random utterance-level splits (every test fold holds
all ten speakers: speaker-dependent), unlike the recipes' own speaker folds.

Bad input stops with an error naming the file and line: a missing jsonl, a line that
is not a JSON object with ``key``, ``wav`` and ``emo``, a wav not found under the
download root, an ``emo`` that is not in the label map, or a key listed with two
different wavs or emotions.
"""

import json
import os
import re

from speechbrain.utils.logger import get_logger

from ser_lib.data.class_map import apply_class_map, check_class_map
from ser_lib.data.folds import write_adapter_sets
from ser_lib.data.manifest import MANIFEST_COLUMNS, write_manifest
from ser_lib.data.preparation import (
    UNKNOWN_GENDER,
    already_prepared,
    check_folder,
    clear_prep_options,
    log_counts,
    manifest_rows,
    save_prep_options,
)

__all__ = ["emobox_fold_files", "prepare_emobox", "read_emobox_jsonl"]

logger = get_logger(__name__)

SPLITS = ("train", "test")
REQUIRED_FIELDS = ("key", "wav", "emo")
LABEL_MAP_FILE = "label_map.json"
PREP_VERSION = 1
"""Bump when the outputs change for the same options, so old preparations redo."""
_FOLD_RE = re.compile(r"^fold_(\d+)$")


def emobox_fold_files(metadata_folder, dataset):
    """Lists EmoBox's folds of ``dataset``: ``{k: {"train": path, "test": path}}``.

    Arguments
    ---------
    metadata_folder : str
        EmoBox's ``data`` folder, holding ``<dataset>/fold_<k>/``.
    dataset : str
        The dataset name (``emodb``, ``iemocap``...).

    Returns
    -------
    dict
        Fold number -> split -> jsonl path, folds in increasing order.

    Raises
    ------
    FileNotFoundError
        If the dataset folder has no ``fold_<k>`` folder, or a fold lacks one of its
        two jsonl files (naming the expected path).

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> (root / "demo" / "fold_1").mkdir(parents=True)
    >>> for split in ("train", "test"):
    ...     _ = (root / "demo" / "fold_1" / f"demo_{split}_fold_1.jsonl").write_text("")
    >>> files = emobox_fold_files(root, "demo")
    >>> list(files), os.path.basename(files[1]["test"])
    ([1], 'demo_test_fold_1.jsonl')
    """
    dataset_folder = os.path.join(metadata_folder, dataset)
    check_folder(dataset_folder, f"EmoBox metadata folder of {dataset!r}")
    folds = {}
    for name in os.listdir(dataset_folder):
        match = _FOLD_RE.match(name)
        if match and os.path.isdir(os.path.join(dataset_folder, name)):
            folds[int(match.group(1))] = name
    if not folds:
        raise FileNotFoundError(
            f"EmoBox metadata of {dataset!r}: no fold_<k> folder in {dataset_folder}"
        )
    files = {}
    for fold in sorted(folds):
        files[fold] = {}
        for split in SPLITS:
            path = os.path.join(
                dataset_folder, folds[fold], f"{dataset}_{split}_fold_{fold}.jsonl"
            )
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"EmoBox metadata of {dataset!r}: {path} is missing (fold {fold} "
                    f"needs {dataset}_train_fold_{fold}.jsonl and "
                    f"{dataset}_test_fold_{fold}.jsonl)"
                )
            files[fold][split] = path
    return files


def read_emobox_jsonl(path):
    """Reads one EmoBox jsonl file into ``[(line number, record), ...]``.

    Arguments
    ---------
    path : str
        The jsonl file.

    Returns
    -------
    list of tuple
        ``(line, dict)`` for every non-blank line (1-based line numbers).

    Raises
    ------
    ValueError
        For a line that is not a JSON object with string ``key``, ``wav`` and
        ``emo`` (naming the file and line).

    Example
    -------
    >>> path = getfixture("tmp_path") / "x.jsonl"
    >>> _ = path.write_text('{"key": "a", "wav": "w/a.wav", "emo": "sad"}\\n\\n{"key": 1}\\n')
    >>> read_emobox_jsonl(path)
    Traceback (most recent call last):
    ...
    ValueError: .../x.jsonl, line 3: 'key' must be a non-empty string and 'wav', 'emo' are missing (a line is a JSON object with 'key', 'wav' and 'emo')
    """
    records = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err})") from err
            if not isinstance(record, dict):
                raise ValueError(f"{where}: not a JSON object")
            problems = [
                f"{field!r} must be a non-empty string"
                for field in REQUIRED_FIELDS
                if field in record
                and (not isinstance(record[field], str) or not record[field])
            ]
            missing = [field for field in REQUIRED_FIELDS if field not in record]
            if missing:
                problems.append(
                    f"{', '.join(repr(m) for m in missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} missing"
                )
            if problems:
                raise ValueError(
                    f"{where}: {' and '.join(problems)} (a line is a JSON object "
                    "with 'key', 'wav' and 'emo')"
                )
            records.append((line_number, record))
    return records


def read_label_map(path):
    """EmoBox's ``label_map.json`` as a class map (keys matched case-insensitively).

    EmoBox writes e.g. ``"Neutral"`` in the map but ``"neutral"`` in the data, so
    the map is returned for both spellings of every key.
    """
    with open(path, encoding="utf-8") as f:
        label_map = json.load(f)
    class_map = {}
    for raw, name in label_map.items():
        for spelling in (raw, raw.lower()):
            if class_map.get(spelling, name) != name:
                raise ValueError(
                    f"{path}: {spelling!r} maps to {class_map[spelling]!r} and {name!r}"
                )
            class_map[spelling] = name
    return class_map


def _collect(fold_files, data_folder, class_map, dataset):
    """Reads every fold: the utterance dicts and each fold's train/test IDs."""
    utterances, origin, fold_ids = {}, {}, {}
    for fold, files in fold_files.items():
        fold_ids[fold] = {}
        for split, path in files.items():
            ids = []
            for line, record in read_emobox_jsonl(path):
                where = f"{path}, line {line}"
                if record["emo"] not in class_map:
                    raise ValueError(
                        f"{where}: emo {record['emo']!r} is not in the label map "
                        f"(its keys: {sorted(class_map)})"
                    )
                wav = record["wav"].replace("\\", "/")
                if not os.path.isfile(os.path.join(data_folder, *wav.split("/"))):
                    raise FileNotFoundError(
                        f"{where}: wav {wav!r} not found under the download root "
                        f"{data_folder}"
                    )
                utt = {
                    "ID": record["key"],
                    "label": record["emo"],
                    "wav": wav,
                    "spk_id": str(record.get("speaker", dataset)),
                    "gender": UNKNOWN_GENDER,
                    "session": 0,
                    "style": "",
                    "dialog": "",
                    "source": where,
                }
                known = utterances.get(utt["ID"])
                if known and (known["wav"], known["label"]) != (wav, utt["label"]):
                    raise ValueError(
                        f"{where}: key {utt['ID']!r} has wav {wav!r} and emo "
                        f"{utt['label']!r}, but {known['wav']!r} and "
                        f"{known['label']!r} at {origin[utt['ID']]}"
                    )
                if not known:
                    utterances[utt["ID"]] = utt
                    origin[utt["ID"]] = where
                ids.append(utt["ID"])
            if len(set(ids)) != len(ids):
                raise ValueError(f"{path}: a key is listed twice")
            fold_ids[fold][split] = ids
        overlap = set(fold_ids[fold]["train"]) & set(fold_ids[fold]["test"])
        if overlap:
            raise ValueError(
                f"EmoBox fold {fold} of {dataset!r}: {len(overlap)} key(s) in both "
                f"train and test, e.g. {sorted(overlap)[0]!r}"
            )
        for utt_id in fold_ids[fold]["test"]:
            if not utterances[utt_id]["session"]:
                utterances[utt_id]["session"] = fold
    return list(utterances.values()), fold_ids


def prepare_emobox(
    metadata_folder,
    dataset,
    data_folder,
    save_folder,
    class_map=None,
    skip_prep=False,
):
    """Writes the manifests of EmoBox's folds of ``dataset`` (see the module doc).

    Arguments
    ---------
    metadata_folder : str
        EmoBox's ``data`` folder, holding ``<dataset>/fold_<k>/*.jsonl``.
    dataset : str
        The dataset name as EmoBox spells it (``emodb``, ``iemocap``...).
    data_folder : str
        The download root: the jsonl ``wav`` paths are relative to it (written as
        ``$data_root`` in the manifests).
    save_folder : str
        Output folder: ``all.csv``, ``fold{k}/{train,valid,test}.csv``.
    class_map : mapping or None
        ``{emo: class or None}`` (None drops the utterance); None reads
        ``<metadata_folder>/<dataset>/label_map.json`` (keys matched
        case-insensitively, EmoBox's class names as classes).
    skip_prep : bool
        If True, do nothing.

    Returns
    -------
    bool
        True if manifests were written, False if skipped (``skip_prep``, or a
        finished preparation with the same options is on disk).

    Example
    -------
    >>> import numpy as np, soundfile as sf
    >>> root = getfixture("tmp_path")
    >>> (root / "dl" / "wav").mkdir(parents=True)
    >>> (root / "meta" / "demo" / "fold_1").mkdir(parents=True)
    >>> lines = {"train": [], "test": []}
    >>> for i, (emo, split) in enumerate([("sad", "train"), ("anger", "test")]):
    ...     sf.write(root / "dl" / "wav" / f"{i}.wav", np.zeros(1600), 16000)
    ...     lines[split].append(json.dumps(
    ...         {"key": f"demo-{i}", "wav": f"wav/{i}.wav", "emo": emo}))
    >>> for split, text in lines.items():
    ...     _ = (root / "meta" / "demo" / "fold_1" / f"demo_{split}_fold_1.jsonl"
    ...          ).write_text("\\n".join(text))
    >>> prepare_emobox(root / "meta", "demo", root / "dl", root / "out",
    ...                {"sad": "sad", "anger": "ang"})
    True
    >>> print((root / "out" / "fold1" / "test.csv").read_text().strip())
    ID,duration,wav,emo,spk_id,gender,session,style,dialog
    demo-1,0.1,$data_root/wav/1.wav,ang,demo,U,1,,
    """
    if skip_prep:
        logger.info("EmoBox %s preparation skipped (skip_prep=True)", dataset)
        return False
    metadata_folder, data_folder = str(metadata_folder), str(data_folder)
    save_folder = str(save_folder)
    fold_files = emobox_fold_files(metadata_folder, dataset)
    if class_map is None:
        label_map_path = os.path.join(metadata_folder, dataset, LABEL_MAP_FILE)
        if not os.path.isfile(label_map_path):
            raise FileNotFoundError(
                f"EmoBox metadata of {dataset!r}: no class_map given and no "
                f"{label_map_path}"
            )
        class_map = read_label_map(label_map_path)
    check_class_map(class_map)
    check_folder(data_folder, "EmoBox download root")
    corpus = f"EmoBox {dataset}"
    options = {
        "corpus": corpus,
        "metadata_folder": os.path.realpath(metadata_folder),
        "data_folder": os.path.realpath(data_folder),
        "class_map": dict(class_map),
        "folds": sorted(fold_files),
        "prep_version": PREP_VERSION,
    }
    if already_prepared(save_folder, options, corpus, n_folds=max(fold_files)):
        return False
    logger.info("Preparing %s from %s into %s", corpus, metadata_folder, save_folder)
    clear_prep_options(save_folder)
    utterances, fold_ids = _collect(fold_files, data_folder, class_map, dataset)
    kept, _ = apply_class_map(utterances, class_map, unmapped="error", corpus=corpus)
    rows = {row["ID"]: row for row in manifest_rows(kept, data_folder, corpus)}
    log_counts(list(rows.values()), corpus)
    write_manifest(
        rows.values(), os.path.join(save_folder, "all.csv"), MANIFEST_COLUMNS
    )
    for fold, splits in fold_ids.items():
        folder = os.path.join(save_folder, f"fold{fold}")
        sets = {
            split: [rows[i] for i in ids if i in rows] for split, ids in splits.items()
        }
        for split, split_rows in (*sets.items(), ("valid", [])):
            write_manifest(
                split_rows, os.path.join(folder, f"{split}.csv"), MANIFEST_COLUMNS
            )
        # Stage-1 sets: the fold's labelled train rows (all_train = labelled here).
        write_adapter_sets(folder, sets["train"], sets["test"])
    save_prep_options(save_folder, options)
    logger.info("%s manifests written to %s", corpus, save_folder)
    return True
