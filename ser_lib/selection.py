"""Choosing a setting on held-out-speaker validation, never on the test folds.

Candidate runs (one per setting: a Whisper layer, ``kmeans_update``,
``pce_logits``...) are trained on the same folds with ``valid_mode: speaker`` (one
training speaker of every fold held out, :mod:`ser_lib.data.folds`). Every stage-2
epoch then logs the held-out speaker's scores in ``train_log.jsonl`` (the
``"valid"`` entry of :class:`ser_lib.train_logger.JsonlTrainLogger`). A candidate's
score is the validation UA of its **last** epoch (the model the results rows use:
without a validation speaker the last epoch is the model too), averaged over folds;
the chosen candidate has the highest mean. Nothing here opens ``metrics.json`` or
``predictions.csv`` (the test folds).

A candidate's folds come from a cross-validation results folder (its
``run_info.json`` names each fold's stage-2 folder), a collected row folder
(``fold<k>/`` subfolders, :func:`ser_lib.results.collect_row`) or a list of stage-2
folders whose paths name their fold (``.../fold3/finetune``).
"""

import json
import math
import os
import re

import numpy as np

from ser_lib.inference.hparams import read_saved_hparams
from ser_lib.run_info import RUN_INFO_FILE, read_run_info

__all__ = [
    "SCORES",
    "SelectionError",
    "VALID_LOG_FILE",
    "candidate_folds",
    "last_epoch_validation",
    "select_candidate",
    "selection_markdown",
    "write_selection",
]

VALID_LOG_FILE = "train_log.jsonl"
"""The stage-2 log whose ``"valid"`` entries are read."""
HPARAMS_FILE = "hyperparams.yaml"
SCORES = ("UA", "WA", "F1")
_FOLD = re.compile(r"^fold(\d+)$")


class SelectionError(ValueError):
    """A candidate run cannot be scored (missing folds, no validation speaker...)."""


def last_epoch_validation(folder):
    """The held-out-speaker scores of the last epoch of a stage-2 run.

    The last epoch is the run's ``number_of_epochs`` (its saved
    ``hyperparams.yaml``); when an epoch was logged twice (a run resumed after a
    crash) its last record counts.

    Arguments
    ---------
    folder : str or os.PathLike
        The stage-2 folder (``train_log.jsonl`` and ``hyperparams.yaml``).

    Returns
    -------
    dict
        ``epoch`` and the validation ``UA``, ``WA``, ``F1`` (percent), ``loss``.

    Raises
    ------
    SelectionError
        If the log lacks the last epoch (unfinished run) or its validation scores
        (a run without ``valid_mode: speaker``).

    Example
    -------
    >>> run = getfixture("tmp_path")
    >>> _ = (run / "hyperparams.yaml").write_text("number_of_epochs: 2\\n")
    >>> lines = [{"meta": {"epoch": e}, "train": {"UA": 90.0},
    ...           "valid": {"loss": 1.0, "UA": 50.0 + e, "WA": 60.0, "F1": 40.0}}
    ...          for e in (1, 2)]
    >>> _ = (run / "train_log.jsonl").write_text(
    ...     "".join(json.dumps(line) + "\\n" for line in lines))
    >>> last_epoch_validation(run)
    {'epoch': 2, 'UA': 52.0, 'WA': 60.0, 'F1': 40.0, 'loss': 1.0}
    """
    folder = os.fspath(folder)
    log_path = os.path.join(folder, VALID_LOG_FILE)
    hparams_path = os.path.join(folder, HPARAMS_FILE)
    for path in (log_path, hparams_path):
        if not os.path.isfile(path):
            raise SelectionError(f"{path} is missing: not a stage-2 run folder")
    last_epoch = int(read_saved_hparams(hparams_path)["number_of_epochs"])
    by_epoch = {}
    with open(log_path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SelectionError(
                    f"{log_path}, line {number}: not JSON ({error})"
                ) from error
            epoch = record.get("meta", {}).get("epoch")
            if epoch is not None:
                by_epoch[int(epoch)] = record
    if last_epoch not in by_epoch:
        raise SelectionError(
            f"{log_path} has no record of epoch {last_epoch} (number_of_epochs): the "
            f"run has not finished (last logged epoch: {max(by_epoch, default=None)})"
        )
    valid = by_epoch[last_epoch].get("valid")
    if not valid:
        raise SelectionError(
            f"{log_path}: epoch {last_epoch} has no validation scores; run the "
            "candidates with valid_mode: speaker (a held-out training speaker)"
        )
    scores = {"epoch": last_epoch}
    for name in (*SCORES, "loss"):
        if name not in valid:
            raise SelectionError(f"{log_path}: epoch {last_epoch} lacks valid {name}")
        scores[name] = float(valid[name])
    return scores


def candidate_folds(paths):
    """Fold number -> stage-2 folder of a candidate run.

    Arguments
    ---------
    paths : list of str
        One cross-validation results folder (with ``run_info.json``), one row
        folder (with ``fold<k>/`` subfolders), or the stage-2 folders of the folds
        (each path naming its fold, e.g. ``exp/fold3/finetune``).

    Returns
    -------
    dict
        Fold number -> folder, sorted by fold.

    Raises
    ------
    SelectionError
        If no fold is found, or a stage-2 folder's path names no fold or the same
        fold as another.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> for k in (2, 1):
    ...     (root / "row" / f"fold{k}").mkdir(parents=True)
    >>> {k: os.path.basename(v) for k, v in candidate_folds([str(root / "row")]).items()}
    {1: 'fold1', 2: 'fold2'}
    >>> candidate_folds([f"{root}/exp/fold3/finetune", f"{root}/exp/fold1/finetune"])
    {1: '.../exp/fold1/finetune', 3: '.../exp/fold3/finetune'}
    """
    paths = [os.fspath(path) for path in paths]
    folds = {}
    if len(paths) == 1 and os.path.isfile(os.path.join(paths[0], RUN_INFO_FILE)):
        info = read_run_info(paths[0])
        folds = {int(k): entry["folder"] for k, entry in info["folds"].items()}
    elif len(paths) == 1 and os.path.isdir(paths[0]) and _fold_subfolders(paths[0]):
        folds = _fold_subfolders(paths[0])
    else:
        for path in paths:
            fold = _fold_of_path(path)
            if fold is None:
                raise SelectionError(
                    f"{path} names no fold (a folder fold<k> on its path), and is "
                    f"neither a results folder (with {RUN_INFO_FILE}) nor a row "
                    "folder (with fold<k>/ subfolders)"
                )
            if fold in folds:
                raise SelectionError(
                    f"Fold {fold} is given twice: {folds[fold]} and {path}"
                )
            folds[fold] = path
    if not folds:
        raise SelectionError(f"No fold found in {paths}")
    return dict(sorted(folds.items()))


def select_candidate(candidates, metric="UA"):
    """Scores every candidate on its folds' last-epoch validation and chooses one.

    Arguments
    ---------
    candidates : dict
        Name -> list of paths (see :func:`candidate_folds`), in the order of the
        table; a tie goes to the candidate listed first.
    metric : str
        The score that decides: ``UA`` (default), ``WA`` or ``F1``.

    Returns
    -------
    dict
        ``metric``, ``folds``, ``chosen`` and per candidate ``folders``,
        ``per_fold`` (fold -> scores) and ``mean`` / ``std`` (over folds, sample
        std) of every score.

    Raises
    ------
    SelectionError
        If the candidates do not cover the same folds (they would not be
        comparable), or one of them cannot be scored.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> def fake(name, uas):
    ...     for fold, ua in enumerate(uas, start=1):
    ...         run = root / name / f"fold{fold}"
    ...         run.mkdir(parents=True)
    ...         _ = (run / "hyperparams.yaml").write_text("number_of_epochs: 1\\n")
    ...         line = {"meta": {"epoch": 1},
    ...                 "valid": {"loss": 1.0, "UA": ua, "WA": ua, "F1": ua}}
    ...         _ = (run / "train_log.jsonl").write_text(json.dumps(line) + "\\n")
    ...     return [str(root / name)]
    >>> result = select_candidate({"a": fake("a", [50.0, 70.0]),
    ...                            "b": fake("b", [65.0, 65.0])})
    >>> result["chosen"], result["candidates"]["a"]["mean"]["UA"]
    ('b', 60.0)
    """
    if metric not in SCORES:
        raise ValueError(f"metric must be one of {SCORES}, not {metric!r}")
    if not candidates:
        raise SelectionError("No candidate to choose from")
    folds_of = {name: candidate_folds(paths) for name, paths in candidates.items()}
    reference_name = next(iter(folds_of))
    reference = sorted(folds_of[reference_name])
    for name, folds in folds_of.items():
        if sorted(folds) != reference:
            raise SelectionError(
                f"Candidate {name!r} has folds {sorted(folds)} but "
                f"{reference_name!r} has {reference}: compare on the same folds"
            )
    table = {}
    for name, folds in folds_of.items():
        per_fold = {fold: last_epoch_validation(path) for fold, path in folds.items()}
        mean, std = {}, {}
        for score in (*SCORES, "loss"):
            values = np.array([per_fold[fold][score] for fold in reference])
            mean[score] = float(values.mean())
            std[score] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        table[name] = {
            "folders": {str(fold): folds[fold] for fold in reference},
            "per_fold": {str(fold): per_fold[fold] for fold in reference},
            "mean": mean,
            "std": std,
        }
    best = -math.inf
    chosen = None
    for name, entry in table.items():
        if entry["mean"][metric] > best:
            best, chosen = entry["mean"][metric], name
    return {
        "metric": metric,
        "epoch": "last",
        "folds": reference,
        "chosen": chosen,
        "candidates": table,
    }


def selection_markdown(result, title, command=None):
    """The selection as a markdown section: one row per candidate.

    Arguments
    ---------
    result : dict
        What :func:`select_candidate` returned.
    title : str
        The heading (what was chosen, e.g. "Whisper layer of the baseline").
    command : str, optional
        The command that wrote it, shown so that it can be rebuilt.

    Returns
    -------
    str

    Example
    -------
    >>> result = {"metric": "UA", "folds": [1], "chosen": "a", "candidates": {
    ...     "a": {"per_fold": {"1": {"UA": 60.0}},
    ...           "mean": {"UA": 60.0, "WA": 61.0, "F1": 59.0},
    ...           "std": {"UA": 0.0, "WA": 0.0, "F1": 0.0}}}}
    >>> print(selection_markdown(result, "Layer").splitlines()[-1])
    | **a** (chosen) | 60.00 | 60.00 ± 0.00 | 61.00 ± 0.00 | 59.00 ± 0.00 |
    """
    metric = result["metric"]
    folds = [str(fold) for fold in result["folds"]]
    lines = [
        f"## {title}",
        "",
        f"Chosen on the held-out training speaker of every fold (`valid_mode: "
        f"speaker`), by the mean validation {metric} of the last epoch (the model "
        f"the results rows use) over folds {', '.join(folds)}; the test folds are "
        f"not read. Chosen: **{result['chosen']}**.",
        "",
    ]
    if command:
        lines += [f"Written by `{command}`.", ""]
    header = ["candidate", *[f"fold {fold} {metric}" for fold in folds]]
    header += [f"valid {score} (%)" for score in SCORES]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in result["candidates"].items():
        label = f"**{name}** (chosen)" if name == result["chosen"] else name
        cells = [label, *[f"{entry['per_fold'][f][metric]:.2f}" for f in folds]]
        cells += [
            f"{entry['mean'][score]:.2f} ± {entry['std'][score]:.2f}"
            for score in SCORES
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_selection(json_path, markdown_path, question, title, result, command):
    """Adds (or replaces) one question's selection in the JSON and markdown files.

    The JSON holds ``{"questions": {question: {"title", "command", **result}}}``;
    the markdown is rebuilt from it, one section per question, so the choices of
    several questions (layer, ``kmeans_update``, ``pce_logits``) share one page.

    Arguments
    ---------
    json_path, markdown_path : str or os.PathLike
        The files (created when missing).
    question : str
        The key of this selection, e.g. ``baseline_layer``.
    title : str
        Its heading.
    result : dict
        What :func:`select_candidate` returned.
    command : str
        The command that made it.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> result = {"metric": "UA", "folds": [1], "chosen": "a", "candidates": {
    ...     "a": {"per_fold": {"1": {"UA": 60.0}},
    ...           "mean": {"UA": 60.0, "WA": 61.0, "F1": 59.0},
    ...           "std": {"UA": 0.0, "WA": 0.0, "F1": 0.0}}}}
    >>> for question in ("layer", "kmeans"):
    ...     write_selection(root / "s.json", root / "s.md", question, question.title(),
    ...                     result, "python tools/select_setting.py ...")
    >>> sorted(json.loads((root / "s.json").read_text())["questions"])
    ['kmeans', 'layer']
    >>> [l for l in (root / "s.md").read_text().splitlines() if l.startswith("## ")]
    ['## Layer', '## Kmeans']
    """
    selections = {"questions": {}}
    if os.path.isfile(json_path):
        with open(json_path, encoding="utf-8") as f:
            selections = json.load(f)
    selections["questions"][question] = {"title": title, "command": command, **result}
    sections = [
        "# Settings chosen on held-out-speaker validation",
        "",
        "Written by `tools/select_setting.py` (one section per question) from the "
        "validation scores of candidate runs; never from the test folds.",
        "",
    ]
    for entry in selections["questions"].values():
        sections.append(selection_markdown(entry, entry["title"], entry["command"]))
    _write(json_path, json.dumps(selections, indent=2) + "\n")
    _write(markdown_path, "\n".join(sections))


def _write(path, text):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def _fold_subfolders(folder):
    folds = {}
    for name in os.listdir(folder):
        match = _FOLD.match(name)
        if match and os.path.isdir(os.path.join(folder, name)):
            folds[int(match.group(1))] = os.path.join(folder, name)
    return folds


def _fold_of_path(path):
    for part in reversed(os.path.normpath(path).split(os.sep)):
        match = _FOLD.match(part)
        if match:
            return int(match.group(1))
    return None
