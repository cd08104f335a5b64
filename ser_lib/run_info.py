"""``run_info.json``: how a cross-validation results folder was made.

The fold driver (:func:`ser_lib.cross_validation.cross_validate`) writes it next to
``cv_results.json``: the command line, the git commit of the code that trained (per
fold, and the latest at the top), the training
schedule of each stage, and per fold its stage-2 folder, its stage-1 export folder
and the wall time of each stage it ran. A re-run keeps what earlier runs recorded
(folds finished earlier keep their times). The results table
(:mod:`ser_lib.results`, ``tools/results_table.py``) reads it.

Layout::

    {"command": "python recipes/EmoDB/cross_validate.py ...",
     "git": {"commit": "<sha>", "dirty": false},
     "schedule": {"stage1": {...} or null, "stage2": {...}},
     "folds": {"1": {"folder": ".../fold1/finetune", "adapter_folder": ... or null,
                     "stage1_s": 12.5 or null, "stage2_s": 30.1,
                     "git": {"commit": ..., "dirty": ...} of the run that trained it}},
     "wall_s": {"stage1": ..., "stage2": ..., "total": ...}}
"""

import json
import os
import subprocess

RUN_INFO_FILE = "run_info.json"
SCHEDULE_KEYS = ("number_of_epochs", "batch_size", "lr")
"""The hparams that make a stage's schedule (every stage YAML has them)."""
STAGES = ("stage1", "stage2")


def git_state(folder):
    """The git commit of the code in ``folder`` and whether it has local changes.

    Arguments
    ---------
    folder : str
        Any folder inside the working tree.

    Returns
    -------
    dict
        ``commit`` (hex, None outside a git working tree) and ``dirty`` (bool, None
        outside one).

    Example
    -------
    >>> git_state(getfixture("tmp_path"))
    {'commit': None, 'dirty': None}
    """

    def git(*args):
        result = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def stage_schedule(hparams):
    """The schedule of a stage: :data:`SCHEDULE_KEYS` of its loaded hparams.

    Example
    -------
    >>> stage_schedule({"number_of_epochs": 3, "batch_size": 8, "lr": 1e-3, "x": 1})
    {'number_of_epochs': 3, 'batch_size': 8, 'lr': 0.001}
    """
    return {key: hparams[key] for key in SCHEDULE_KEYS}


def read_run_info(folder):
    """The ``run_info.json`` of ``folder``, or an empty record when there is none.

    Example
    -------
    >>> read_run_info(getfixture("tmp_path"))["folds"]
    {}
    """
    path = os.path.join(folder, RUN_INFO_FILE)
    if not os.path.isfile(path):
        return {"command": None, "git": None, "schedule": {}, "folds": {}}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def record_fold(info, fold, folder, adapter_folder, seconds, git=None):
    """Records a fold's folders, and the wall time and code of the stages that ran.

    Arguments
    ---------
    info : dict
        A run-info record (:func:`read_run_info`), changed in place.
    fold : int
        The fold number.
    folder : str
        Its stage-2 folder.
    adapter_folder : str or None
        Its stage-1 export folder (None without an adapter stage).
    seconds : dict
        Stage (``stage1`` / ``stage2``) -> wall time in seconds of the stages run
        now; stages not in it keep their earlier time (None when never timed).
    git : dict, optional
        :func:`git_state` of the code; when a stage ran now, it becomes the fold's
        ``git`` and the run's.

    Example
    -------
    >>> info = read_run_info(getfixture("tmp_path"))
    >>> record_fold(info, 2, "f2", None, {"stage2": 4.0})
    >>> info["folds"]["2"]
    {'folder': 'f2', 'adapter_folder': None, 'stage1_s': None, 'stage2_s': 4.0, 'git': None}
    """
    entry = info["folds"].get(str(fold), {})
    entry["folder"] = folder
    entry["adapter_folder"] = adapter_folder
    for stage in STAGES:
        key = f"{stage}_s"
        entry[key] = seconds.get(stage, entry.get(key))
    if seconds:
        entry["git"] = git
        info["git"] = git
    entry.setdefault("git", None)
    info["folds"][str(fold)] = entry


def fold_stage_seconds(entry):
    """Stage name -> wall time (s, None when never timed) of a fold's run-info entry.

    Two-stage runs record ``stage1_s`` / ``stage2_s``; multi-stage runs
    (:mod:`ser_lib.multistage`) a ``stage_s`` mapping of their own stage names.

    Example
    -------
    >>> fold_stage_seconds({"stage1_s": None, "stage2_s": 3.0})
    {'stage1': None, 'stage2': 3.0}
    >>> fold_stage_seconds({"stage_s": {"A": 2.0, "C": 1.0}})
    {'A': 2.0, 'C': 1.0}
    """
    if "stage_s" in entry:
        return dict(entry["stage_s"])
    return {stage: entry.get(f"{stage}_s") for stage in STAGES}


def total_wall_time(info):
    """Sum of the recorded wall times per stage and in all, in seconds.

    Example
    -------
    >>> info = {"folds": {"1": {"stage1_s": 2.0, "stage2_s": 1.0},
    ...                   "2": {"stage1_s": None, "stage2_s": 3.0}}}
    >>> total_wall_time(info)
    {'stage1': 2.0, 'stage2': 4.0, 'total': 6.0}
    >>> total_wall_time({"folds": {"1": {"stage_s": {"A": 2.0, "C": 1.0}},
    ...                            "2": {"stage_s": {"A": 4.0}}}})
    {'A': 6.0, 'C': 1.0, 'total': 7.0}
    """
    sums = {}
    for fold in info["folds"].values():
        for stage, seconds in fold_stage_seconds(fold).items():
            sums[stage] = sums.get(stage, 0.0) + float(seconds or 0.0)
    sums["total"] = sum(sums.values())
    return sums


def write_run_info(folder, info):
    """Writes ``info`` (with its wall-time sums) as ``folder/run_info.json``, atomically.

    Returns
    -------
    str
        The path written.
    """
    os.makedirs(folder, exist_ok=True)
    info = {**info, "wall_s": total_wall_time(info)}
    path = os.path.join(folder, RUN_INFO_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    os.replace(path + ".tmp", path)
    return path
