"""The results of cross-validation folds: reading a fold's files, aggregating, tables.

What a fold leaves on disk is read here and nowhere else: the stage-2 folder's
``metrics.json`` (written last, atomically: a fold is finished when it exists) and
``train_log.jsonl``, and the stage-1 ``train_log.jsonl`` named by the saved hparams.
The driver (:mod:`ser_lib.cross_validation`), the report (:mod:`ser_lib.report`) and
cross-corpus evaluation (:mod:`ser_lib.cross_corpus`) all use this module; it uses
none of them.
"""

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser_lib.inference import HPARAMS_FILE, read_saved_hparams

__all__ = [
    "METRICS",
    "METRICS_FILE",
    "FoldRun",
    "aggregate_folds",
    "discover_fold_folders",
    "read_fold_metrics",
    "read_fold_run",
    "read_jsonl",
    "results_table",
    "write_results",
]

METRICS = ("UA", "WA", "F1")
"""The scores aggregated over folds (percentages)."""

NOT_AVERAGED = ("loss", "n_test")
"""Numbers of ``metrics.json`` that are not scores (never averaged as extra metrics)."""

METRICS_FILE = "metrics.json"
"""A finished fold's scores, in its stage-2 folder."""

_FOLD_FOLDER = re.compile(r"^fold(\d+)$")


def read_fold_metrics(folder):
    """Reads a fold's ``metrics.json``, or None when the fold has not finished.

    Arguments
    ---------
    folder : str or os.PathLike
        The fold's stage-2 folder.

    Returns
    -------
    dict or None

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> read_fold_metrics(folder) is None
    True
    >>> _ = (folder / METRICS_FILE).write_text('{"UA": 50.0}')
    >>> read_fold_metrics(folder)
    {'UA': 50.0}
    """
    path = os.path.join(folder, METRICS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def extra_metric_names(fold_metrics):
    """The extra scores of the folds: numbers beyond UA/WA/F1 that every fold has.

    E.g. the ``WER`` of an ASR task or the ``gender_UA`` of an auxiliary task;
    ``loss`` and ``n_test`` are not scores, and a score missing from one fold is
    not averaged.

    Arguments
    ---------
    fold_metrics : dict
        Fold number -> the fold's ``metrics.json`` content.

    Returns
    -------
    list of str
        Sorted names.

    Example
    -------
    >>> extra_metric_names({1: {"UA": 1.0, "WER": 40.0, "gender_UA": 90.0, "loss": 1.0},
    ...                     2: {"UA": 2.0, "WER": 30.0, "classes": ["a"]}})
    ['WER']
    """
    names = None
    for metrics in fold_metrics.values():
        numbers = {
            key
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        names = numbers if names is None else names & numbers
    return sorted((names or set()) - set(METRICS) - set(NOT_AVERAGED))


def aggregate_folds(fold_metrics):
    """Mean and standard deviation of UA/WA/F1 (and extra scores) over folds.

    Arguments
    ---------
    fold_metrics : dict
        Fold number -> the fold's ``metrics.json`` content (percentages).

    Returns
    -------
    dict
        ``{"folds": [{"fold", "UA", "WA", "F1", "n_test", <extra>...}], "mean":
        {...}, "std": {...}, "extra_metrics": [...]}``; std is the sample standard
        deviation over folds (0 for a single fold); the extra metrics are those of
        :func:`extra_metric_names` (e.g. ``WER``, ``gender_UA``).

    Example
    -------
    >>> res = aggregate_folds({1: {"UA": 70.0, "WA": 60.0, "F1": 65.0, "n_test": 10},
    ...                        2: {"UA": 80.0, "WA": 70.0, "F1": 75.0, "n_test": 12}})
    >>> res["mean"]["UA"], round(res["std"]["UA"], 4), res["extra_metrics"]
    (75.0, 7.0711, [])
    """
    extra = extra_metric_names(fold_metrics)
    names = (*METRICS, *extra)
    folds = []
    for fold in sorted(fold_metrics):
        metrics = fold_metrics[fold]
        row = {"fold": int(fold), **{m: float(metrics[m]) for m in names}}
        row["n_test"] = int(metrics["n_test"])
        folds.append(row)
    if not folds:
        raise ValueError("No finished fold to aggregate")
    mean, std = {}, {}
    for m in names:
        values = np.array([row[m] for row in folds])
        mean[m] = float(values.mean())
        std[m] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"folds": folds, "mean": mean, "std": std, "extra_metrics": extra}


def results_table(results):
    """Markdown table of per-fold scores and mean ± std (extra scores as columns).

    Example
    -------
    >>> res = aggregate_folds({1: {"UA": 70.0, "WA": 60.0, "F1": 65.0, "n_test": 10}})
    >>> print(results_table(res).splitlines()[-1])
    | mean ± std | 10 | 70.00 ± 0.00 | 60.00 ± 0.00 | 65.00 ± 0.00 |
    >>> res = aggregate_folds({1: {"UA": 70.0, "WA": 60.0, "F1": 65.0, "n_test": 10,
    ...                            "WER": 41.5}})
    >>> print("\\n".join(results_table(res).splitlines()[::2]))
    | fold | n_test | UA (%) | WA (%) | F1 (%) | WER |
    | 1 | 10 | 70.00 | 60.00 | 65.00 | 41.50 |
    """
    names = (*METRICS, *results.get("extra_metrics", ()))
    lines = [
        "| fold | n_test | UA (%) | WA (%) | F1 (%) |"
        + "".join(f" {m} |" for m in names[len(METRICS) :]),
        "|---|---|" + "---|" * len(names),
    ]
    for row in results["folds"]:
        lines.append(
            f"| {row['fold']} | {row['n_test']} | "
            + " | ".join(f"{row[m]:.2f}" for m in names)
            + " |"
        )
    total = sum(row["n_test"] for row in results["folds"])
    lines.append(
        f"| mean ± std | {total} | "
        + " | ".join(
            f"{results['mean'][m]:.2f} ± {results['std'][m]:.2f}" for m in names
        )
        + " |"
    )
    return "\n".join(lines)


def write_results(results, output_folder, title="Cross-validation results"):
    """Writes ``cv_results.json`` and ``cv_results.md`` (atomically)."""
    os.makedirs(output_folder, exist_ok=True)
    json_path = os.path.join(output_folder, "cv_results.json")
    md_path = os.path.join(output_folder, "cv_results.md")
    for path, text in (
        (json_path, json.dumps(results, indent=2)),
        (md_path, f"# {title}\n\n{results_table(results)}\n"),
    ):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return json_path, md_path


def read_jsonl(path):
    """Reads a JSON-lines file (one object per non-empty line).

    Arguments
    ---------
    path : str or os.PathLike
        The file.

    Returns
    -------
    list of dict

    Example
    -------
    >>> path = getfixture("tmp_path") / "log.jsonl"
    >>> _ = path.write_text('{"a": 1}\\n\\n{"a": 2}\\n')
    >>> read_jsonl(path)
    [{'a': 1}, {'a': 2}]
    """
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class FoldRun:
    """What one fold left on disk.

    Attributes
    ----------
    fold : int
        The fold number.
    folder : pathlib.Path
        Its stage-2 folder.
    metrics : dict or None
        ``metrics.json`` (None: the fold has not finished).
    stage2_log : list of dict
        Its ``train_log.jsonl`` records (empty if none).
    stage1_log : list of dict
        The stage-1 ``train_log.jsonl`` records (empty if none, e.g. a
        ``backbone_init: random`` run).

    Example
    -------
    >>> run = FoldRun(fold=1, folder=Path("fold1/finetune"))
    >>> run.metrics is None, run.stage1_log
    (True, [])
    """

    fold: int
    folder: Path
    metrics: dict = None
    stage2_log: list = field(default_factory=list)
    stage1_log: list = field(default_factory=list)


def read_fold_run(fold, folder):
    """Reads the results and logs of one fold.

    Arguments
    ---------
    fold : int
        The fold number.
    folder : str or os.PathLike
        Its stage-2 folder (``.../fold<k>/finetune``); it may not exist yet.

    Returns
    -------
    FoldRun

    Example
    -------
    >>> run = read_fold_run(3, getfixture("tmp_path") / "fold3" / "finetune")
    >>> run.fold, run.metrics, run.stage2_log
    (3, None, [])
    """
    folder = Path(folder)
    run = FoldRun(fold=int(fold), folder=folder)
    run.metrics = read_fold_metrics(folder)
    if (folder / "train_log.jsonl").is_file():
        run.stage2_log = read_jsonl(folder / "train_log.jsonl")
    if (folder / HPARAMS_FILE).is_file():
        adapter_folder = read_saved_hparams(folder / HPARAMS_FILE).get("adapter_folder")
        # The stage-1 export folder (…/adapter/model) sits in the stage-1 run folder.
        if adapter_folder:
            stage1_log = Path(adapter_folder).parent / "train_log.jsonl"
            if stage1_log.is_file():
                run.stage1_log = read_jsonl(stage1_log)
    return run


def discover_fold_folders(output_root, experiment=None, finetune_name="finetune"):
    """Finds the stage-2 folders ``<output_root>/<experiment>/fold<k>/<finetune_name>``.

    Arguments
    ---------
    output_root : str or os.PathLike
        The ``output_root`` of the runs.
    experiment : str, optional
        The experiment folder name (e.g. ``hubert_large_improvised``); needed when
        ``output_root`` holds several.
    finetune_name : str
        The stage-2 folder name (``finetune_random`` for the ablation).

    Returns
    -------
    dict
        Fold number -> stage-2 folder (existing folders only).

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> for fold in (2, 1):
    ...     (root / "fbank_all" / f"fold{fold}" / "finetune").mkdir(parents=True)
    >>> folders = discover_fold_folders(root)
    >>> sorted(folders), folders[1].relative_to(root).as_posix()
    ([1, 2], 'fbank_all/fold1/finetune')
    """
    output_root = Path(output_root)
    experiments = {}
    for stage2 in output_root.glob(f"*/fold*/{finetune_name}"):
        match = _FOLD_FOLDER.match(stage2.parent.name)
        if match and stage2.is_dir():
            name = stage2.parent.parent.name
            experiments.setdefault(name, {})[int(match.group(1))] = stage2
    if experiment is not None:
        if experiment not in experiments:
            raise FileNotFoundError(
                f"No {output_root}/{experiment}/fold*/{finetune_name} folder "
                f"(experiments there: {sorted(experiments)})"
            )
        return dict(sorted(experiments[experiment].items()))
    if not experiments:
        raise FileNotFoundError(
            f"No */fold*/{finetune_name} folder in {output_root}: is it the "
            "output folder of a cross-validation run?"
        )
    if len(experiments) > 1:
        raise ValueError(
            f"{output_root} holds several experiments {sorted(experiments)}; "
            "choose one (--experiment)"
        )
    return dict(sorted(next(iter(experiments.values())).items()))
