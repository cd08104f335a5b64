"""The rows of the results table: the row spec, collecting a run's files, figures.

A row spec (YAML, e.g. ``docs/results/emodb_rows.yaml``) names every row of the table:

.. code-block:: yaml

    title: EmoDB, leave-one-speaker-out
    rows_folder: emodb            # committed row files, relative to the spec
    json: emodb.json              # machine-readable table, relative to the spec
    markdown: ../RESULTS.md       # the table for people, relative to the spec
    readme: ../../README.md       # gets the headline block between the markers
    headline: [baseline_last_layer, wap_la_random_init, wap_la_teacher]
    n_folds: 5                    # the protocol's folds (a row on fewer says so)
    rows:
      baseline_last_layer:
        description: frozen whisper-base, last layer, mean pooling, linear
        results_folder: recipes/EmoDB/results/EmoDB/baseline  # the run, for collect

:func:`collect_row` copies a finished run's small files (``run_info.json``,
``cv_results.*``, per fold ``metrics.json``, ``predictions.csv`` and the training
logs; never checkpoints) into ``rows_folder/<row>/``, so later sessions extend the
table instead of re-running it. :func:`build_table` reads those files: per fold and
mean ± std over folds (:func:`ser_lib.fold_results.aggregate_folds`), pooled
over every test utterance of the folds (:func:`ser_lib.metrics.ser_scores` on the
concatenated ``predictions.csv``), per-class recall of the pooled confusion
matrix, command, schedule and wall time (``run_info.json``), and the mean ± std of
any other score every fold's ``metrics.json`` holds (``WER``, ``gender_UA``). Rows
without files are pending: they are listed, never given numbers. The table is
written as markdown and JSON by :mod:`ser_lib.results.markdown`.

Authors
 * ser_lib contributors
"""

import os
import re
import shutil

import numpy as np
import pandas as pd
import yaml

from ser_lib.fold_results import (
    METRICS,
    METRICS_FILE,
    aggregate_folds,
    read_fold_metrics,
)
from ser_lib.metrics import ser_scores
from ser_lib.report.plots import per_class_recall
from ser_lib.run_info import RUN_INFO_FILE, read_run_info

ROW_FILES = ("cv_results.json", "cv_results.md")
FOLD_FILES = (
    METRICS_FILE,
    "predictions.csv",
    "train_log.txt",
    "train_log.jsonl",
    "hyperparams.yaml",
)
STAGE1_FILES = ("train_log.txt", "train_log.jsonl")
"""Copied from a fold's stage-1 run folder as ``stage1_<name>``."""
_FOLD_FOLDER = re.compile(r"^fold(\d+)$")


def load_row_spec(path):
    """Reads a row spec; its file paths are made absolute (relative to the spec).

    Arguments
    ---------
    path : str
        The YAML file.

    Returns
    -------
    dict
        ``title``, ``rows_folder``, ``json``, ``markdown``, ``readme`` (absolute),
        ``headline`` (row names), ``rows`` (name -> ``description``,
        ``results_folder``, an optional ``note``: markdown shown in the row's
        section, e.g. why it is pending, and an optional ``compare_on_folds``: rows
        whose figures on this row's folds are shown in its section, for a row run
        on fewer folds than the others), an optional ``notes`` (markdown shown
        above the table: the protocol, the conclusions) and an optional
        ``n_folds`` (the protocol's number of folds: a row run on fewer says
        ``k of n`` in the table) and an optional ``path_names`` (a path of the
        machine that ran the rows -> the placeholder the commands show instead,
        e.g. ``/home/me/EmoDB: /path/to/EmoDB``; see :func:`generic_paths`).

    Raises
    ------
    ValueError
        If a key is missing or a headline row is not a row.
    """
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    base = os.path.dirname(os.path.abspath(path))
    missing = [
        key
        for key in ("title", "rows_folder", "json", "markdown", "readme", "rows")
        if key not in spec
    ]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    for key in ("rows_folder", "json", "markdown", "readme"):
        spec[key] = os.path.normpath(os.path.join(base, spec[key]))
    spec.setdefault("headline", [])
    unknown = [name for name in spec["headline"] if name not in spec["rows"]]
    if unknown:
        raise ValueError(f"{path}: headline rows {unknown} are not in rows")
    for name, row in spec["rows"].items():
        if "description" not in row:
            raise ValueError(f"{path}: row {name} has no description")
        unknown = [r for r in row.get("compare_on_folds", []) if r not in spec["rows"]]
        if unknown:
            raise ValueError(f"{path}: row {name} compares with unknown rows {unknown}")
    return spec


def collect_row(results_folder, row_folder, with_report=False):
    """Copies a finished cross-validation run's small files into ``row_folder``.

    Arguments
    ---------
    results_folder : str
        The run's results folder (``cv_results.json`` and ``run_info.json``,
        which names each fold's folders).
    row_folder : str
        Where the row's files go (replaced).
    with_report : bool
        Also copy ``results_folder/report/`` (the pictures and their README).

    Returns
    -------
    list of int
        The folds copied (those with a ``metrics.json``).

    Raises
    ------
    FileNotFoundError
        If ``run_info.json`` is missing (re-run the driver with ``--aggregate_only``
        to write it) or no fold has finished.
    """
    if not os.path.isfile(os.path.join(results_folder, RUN_INFO_FILE)):
        raise FileNotFoundError(
            f"No {RUN_INFO_FILE} in {results_folder}: run the recipe's "
            "cross_validate.py (with --aggregate_only for finished folds) to write it"
        )
    info = read_run_info(results_folder)
    staging = row_folder.rstrip(os.sep) + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    for name in (RUN_INFO_FILE, *ROW_FILES):
        if os.path.isfile(os.path.join(results_folder, name)):
            shutil.copy2(os.path.join(results_folder, name), staging)
    copied = []
    for fold, entry in sorted(info["folds"].items(), key=lambda item: int(item[0])):
        if read_fold_metrics(entry["folder"]) is None:
            continue
        target = os.path.join(staging, f"fold{fold}")
        os.makedirs(target)
        for name in FOLD_FILES:
            if os.path.isfile(os.path.join(entry["folder"], name)):
                shutil.copy2(os.path.join(entry["folder"], name), target)
        # Multi-stage runs (ser_lib.multistage): every earlier stage's training log.
        for stage, folder in entry.get("stage_folders", {}).items():
            if os.path.normpath(folder) == os.path.normpath(entry["folder"]):
                continue
            for name in STAGE1_FILES:
                if os.path.isfile(os.path.join(folder, name)):
                    shutil.copy2(
                        os.path.join(folder, name),
                        os.path.join(target, f"{stage}_{name}"),
                    )
        if entry.get("adapter_folder"):
            stage1 = os.path.dirname(os.path.normpath(entry["adapter_folder"]))
            for name in STAGE1_FILES:
                if os.path.isfile(os.path.join(stage1, name)):
                    shutil.copy2(
                        os.path.join(stage1, name),
                        os.path.join(target, f"stage1_{name}"),
                    )
        copied.append(int(fold))
    if not copied:
        shutil.rmtree(staging)
        raise FileNotFoundError(f"No finished fold in {results_folder}")
    report = os.path.join(results_folder, "report")
    if with_report and os.path.isdir(report):
        shutil.copytree(report, os.path.join(staging, "report"))
    shutil.rmtree(row_folder, ignore_errors=True)
    os.replace(staging, row_folder)
    return copied


def row_fold_folders(row_folder):
    """Fold number -> ``row_folder/fold<k>`` for the folds with a ``metrics.json``.

    Example
    -------
    >>> row_fold_folders(getfixture("tmp_path"))
    {}
    """
    folders = {}
    if os.path.isdir(row_folder):
        for name in os.listdir(row_folder):
            match = _FOLD_FOLDER.match(name)
            path = os.path.join(row_folder, name)
            if match and os.path.isfile(os.path.join(path, METRICS_FILE)):
                folders[int(match.group(1))] = path
    return dict(sorted(folders.items()))


def pooled_scores(prediction_files):
    """UA, WA, macro F1 (percent) over the concatenated predictions of the folds.

    Arguments
    ---------
    prediction_files : list of str
        ``predictions.csv`` files (columns ``true`` and ``predicted``).

    Returns
    -------
    dict
        ``UA``, ``WA``, ``F1`` in percent.

    Example
    -------
    >>> path = getfixture("tmp_path") / "p.csv"
    >>> _ = path.write_text("ID,true,predicted\\na,neu,neu\\nb,sad,neu\\nc,sad,sad\\n")
    >>> {key: round(value, 2) for key, value in pooled_scores([path]).items()}
    {'UA': 75.0, 'WA': 66.67, 'F1': 66.67}
    """
    frames = [pd.read_csv(path, keep_default_na=False) for path in prediction_files]
    pooled = pd.concat(frames, ignore_index=True)
    scores = ser_scores(pooled["true"].to_numpy(), pooled["predicted"].to_numpy())
    return {key: 100.0 * value for key, value in scores.items()}


def row_figures(row_folder):
    """The table entry of a collected row.

    Arguments
    ---------
    row_folder : str
        ``rows_folder/<row>`` (see :func:`collect_row`).

    Returns
    -------
    dict or None
        None when no fold has finished. Otherwise ``status`` ("done"),
        ``command``, ``git``, ``schedule``, ``folds``, ``n_test`` per fold,
        ``UA`` / ``WA`` / ``F1`` each ``{"mean", "std", "pooled", "per_fold"}``,
        ``extra_metrics`` (the other scores every fold's ``metrics.json`` has, e.g.
        ``WER``, ``gender_UA``: :func:`ser_lib.fold_results.extra_metric_names`),
        each ``{"mean", "std", "per_fold"}``,
        ``per_class_recall`` (class -> pooled recall in percent, None for a class
        without test utterances) and ``wall_s`` (per stage and total).
    """
    folders = row_fold_folders(row_folder)
    if not folders:
        return None
    fold_metrics = {fold: read_fold_metrics(folder) for fold, folder in folders.items()}
    aggregated = aggregate_folds(fold_metrics)
    pooled = pooled_scores(
        [os.path.join(folder, "predictions.csv") for folder in folders.values()]
    )
    classes = fold_metrics[min(fold_metrics)]["classes"]
    matrix = sum(np.asarray(m["confusion_matrix"]) for m in fold_metrics.values())
    recall = per_class_recall(matrix)
    info = read_run_info(row_folder)
    figures = {
        "status": "done",
        "command": info["command"],
        "git": info["git"],
        "schedule": info["schedule"],
        "folds": [row["fold"] for row in aggregated["folds"]],
        "n_test": [row["n_test"] for row in aggregated["folds"]],
    }
    for metric in METRICS:
        figures[metric] = {
            "mean": aggregated["mean"][metric],
            "std": aggregated["std"][metric],
            "pooled": pooled[metric],
            "per_fold": [row[metric] for row in aggregated["folds"]],
        }
    figures["extra_metrics"] = aggregated["extra_metrics"]
    for metric in aggregated["extra_metrics"]:
        figures[metric] = {
            "mean": aggregated["mean"][metric],
            "std": aggregated["std"][metric],
            "per_fold": [row[metric] for row in aggregated["folds"]],
        }
    figures["per_class_recall"] = {
        label: None if np.isnan(value) else 100.0 * float(value)
        for label, value in zip(classes, recall, strict=True)
    }
    figures["wall_s"] = info.get("wall_s")
    return figures


def build_table(spec):
    """Every row of the spec: its figures, or ``{"status": "pending"}``.

    Returns
    -------
    dict
        ``{"title", "rows": {name: {"description", "status", ...}}}``, with the
        spec's ``notes`` and each row's ``note`` when given.
    """
    rows = {}
    for name, row in spec["rows"].items():
        figures = row_figures(os.path.join(spec["rows_folder"], name))
        if figures and figures["command"]:
            figures["command"] = generic_paths(
                figures["command"], spec.get("path_names") or {}
            )
        rows[name] = {
            "description": row["description"],
            **({"note": row["note"]} if row.get("note") else {}),
            **(figures or {"status": "pending"}),
        }
    for name, row in spec["rows"].items():
        if row.get("compare_on_folds") and rows[name]["status"] == "done":
            rows[name]["same_folds"] = {
                other: scores_on_folds(rows[other], rows[name]["folds"])
                for other in row["compare_on_folds"]
            }
    table = {"title": spec["title"], "rows": rows}
    if spec.get("n_folds"):
        table["n_folds"] = spec["n_folds"]
    if spec.get("notes"):
        table["notes"] = spec["notes"]
    return table


def generic_paths(command, path_names):
    """``command`` with the machine's paths replaced by placeholders.

    Longer paths are replaced first, and only where the path ends (at a ``/``, a
    space, a quote, a comma, a brace or the end), so ``/work/EmoDB`` does not touch
    ``/work/EmoDB2``.

    Arguments
    ---------
    command : str
        A command as it ran.
    path_names : dict
        Path -> placeholder.

    Returns
    -------
    str

    Example
    -------
    >>> names = {"/srv/exp": "OUT", "/srv/exp/data": "/path/to/data"}
    >>> generic_paths("run --data=/srv/exp/data --out=/srv/exp/a /srv/exp2", names)
    'run --data=/path/to/data --out=OUT/a /srv/exp2'
    """
    for path in sorted(path_names, key=len, reverse=True):
        pattern = re.escape(path.rstrip("/")) + r"(?=[/\s'\",}]|$)"
        placeholder = path_names[path]
        command = re.sub(pattern, lambda _, name=placeholder: name, command)
    return command


def scores_on_folds(row, folds):
    """A table row's mean UA / WA / F1 over the given folds only.

    Arguments
    ---------
    row : dict
        A row of :func:`build_table` (``status``, ``folds``, per-fold figures).
    folds : list of int
        The folds to average over (e.g. those of a row run on fewer folds).

    Returns
    -------
    dict or None
        ``folds`` (those of ``folds`` the row has) and the mean of each metric
        over them; None when the row is pending or has none of the folds.

    Example
    -------
    >>> row = {"status": "done", "folds": [1, 2, 3],
    ...        "UA": {"per_fold": [60.0, 70.0, 90.0]},
    ...        "WA": {"per_fold": [61.0, 71.0, 91.0]},
    ...        "F1": {"per_fold": [50.0, 60.0, 80.0]}}
    >>> scores_on_folds(row, [1, 2])
    {'folds': [1, 2], 'UA': 65.0, 'WA': 66.0, 'F1': 55.0}
    >>> scores_on_folds({"status": "pending"}, [1]) is None
    True
    """
    if row["status"] != "done":
        return None
    index = [row["folds"].index(fold) for fold in folds if fold in row["folds"]]
    if not index:
        return None
    scores = {"folds": [row["folds"][i] for i in index]}
    for metric in METRICS:
        scores[metric] = float(np.mean([row[metric]["per_fold"][i] for i in index]))
    return scores
