"""K-fold cross-validation driver (corpus-independent).

Each fold runs the recipe's ``train.py`` twice as a subprocess, stage 1 (adapter) then
stage 2 (fine-tuning and test), exactly as a user would run them by hand, so a fold
launched here and one launched as a separate cluster job are the same thing. A fold is
finished when its ``metrics.json`` exists (written last, atomically) and the stage
folders were written with the same settings (:mod:`ser_lib.stage_identity`): a
re-run skips finished folds, ``train.py`` resumes unfinished ones from their
checkpoints, and a run whose settings differ from a stage folder's is refused with
the differing keys named (an ablation gets its own ``adapter_name`` /
``finetune_name``).

The folds' results are read and aggregated by :mod:`ser_lib.fold_results`; the driver
knows nothing of the report: what runs after the folds (the recipes'
``cross_validate.py`` give :func:`ser_lib.report.report_after_cross_validation`) is a
``post_run`` hook.
"""

import argparse
import contextlib
import logging
import os
import shlex
import subprocess
import sys
import time

import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.logger import get_logger

from ser_lib.fold_results import (
    METRICS_FILE,
    aggregate_folds,
    read_fold_metrics,
    results_table,
    write_results,
)
from ser_lib.run_info import (
    git_state,
    read_run_info,
    record_fold,
    stage_schedule,
    write_run_info,
)
from ser_lib.stage_identity import StageSettingsError, check_stage

logger = get_logger(__name__)

LOG_FILE = "cv_log.txt"
"""The driver's own log (skipped folds, commands, results), in the output folder."""

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def overrides_to_args(overrides):
    """Turns a mapping of hparams overrides into ``--key=value`` arguments.

    Values are written as YAML (flow style), which is how SpeechBrain reads them back.

    Example
    -------
    >>> overrides_to_args({"number_of_epochs": 3, "encoder_overrides": {"stack": 2}})
    ['--number_of_epochs=3', '--encoder_overrides={stack: 2}']
    """
    args = []
    for key, value in overrides.items():
        text = yaml.safe_dump(value, default_flow_style=True).strip()
        if text.endswith("\n..."):
            text = text[: -len("\n...")]
        args.append(f"--{key}={text}")
    return args


@contextlib.contextmanager
def recipe_context(recipe_dir):
    """Runs the body inside ``recipe_dir`` with it importable, as ``train.py`` does.

    Relative paths of a recipe's YAML are relative to its folder, and its prepare
    script is imported by name (``!name:cremad_prepare.prepare_cremad``).

    Arguments
    ---------
    recipe_dir : str
        The recipe folder.

    Example
    -------
    >>> import tempfile
    >>> folder = os.path.realpath(tempfile.mkdtemp())
    >>> with recipe_context(folder):
    ...     os.getcwd() == folder, sys.path[0] == folder
    (True, True)
    >>> folder in sys.path
    False
    """
    recipe_dir = os.path.abspath(recipe_dir)
    cwd = os.getcwd()
    sys.path.insert(0, recipe_dir)
    try:
        os.chdir(recipe_dir)
        yield
    finally:
        os.chdir(cwd)
        sys.path.remove(recipe_dir)


def load_recipe_hparams(recipe_dir, hparams_file, overrides=None):
    """Loads a recipe's YAML with overrides, as ``train.py`` would in ``recipe_dir``.

    Arguments
    ---------
    recipe_dir : str
        The recipe folder.
    hparams_file : str
        The YAML, relative to ``recipe_dir`` (or absolute).
    overrides : dict, optional
        Overrides (e.g. ``data_folder``, ``output_root``).

    Returns
    -------
    dict
        The loaded hparams.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "stage.yaml"), "w") as f:
    ...     _ = f.write("output_root: out\\nprep_folder: !ref <output_root>/prepared\\n")
    >>> load_recipe_hparams(folder, "stage.yaml", {"output_root": "/tmp/x"})["prep_folder"]
    '/tmp/x/prepared'
    """
    with recipe_context(recipe_dir):
        with open(hparams_file, encoding="utf-8") as fin:
            return load_hyperpyyaml(fin, yaml.safe_dump(overrides or {}))


def fold_folders(hparams_file, overrides, recipe_dir):
    """Reads ``output_folder`` and ``adapter_folder`` the YAML gives for a fold.

    Arguments
    ---------
    hparams_file : str
        Stage-2 YAML, relative to ``recipe_dir``.
    overrides : dict
        Overrides, including ``test_session``.
    recipe_dir : str
        Where ``train.py`` runs.

    Returns
    -------
    dict
        ``output_folder`` and ``adapter_folder`` as absolute paths
        (``adapter_folder`` None for a configuration without an adapter stage), and
        ``needs_adapter`` (see :func:`needs_adapter_stage`), ``schedule`` (see
        :func:`ser_lib.run_info.stage_schedule`).
    """
    hparams = load_recipe_hparams(recipe_dir, hparams_file, overrides)
    adapter_folder = hparams["adapter_folder"]
    return {
        "output_folder": os.path.abspath(hparams["output_folder"]),
        "adapter_folder": adapter_folder and os.path.abspath(adapter_folder),
        "needs_adapter": needs_adapter_stage(hparams),
        "schedule": stage_schedule(hparams),
    }


def needs_adapter_stage(hparams):
    """Whether a stage-2 configuration needs stage 1 (the adapter) to run first.

    No when ``adapter_folder`` is null (a configuration without an adapter, e.g.
    ``hparams/baseline.yaml``) or the backbone starts at random
    (``backbone_init: random``, the "w/o adapter training" ablation).

    Arguments
    ---------
    hparams : dict
        Loaded stage-2 hparams: ``adapter_folder``, and ``backbone_init`` when
        ``adapter_folder`` is set.

    Returns
    -------
    bool

    Example
    -------
    >>> needs_adapter_stage({"adapter_folder": None})
    False
    >>> needs_adapter_stage({"adapter_folder": "a/model", "backbone_init": "random"})
    False
    >>> needs_adapter_stage({"adapter_folder": "a/model", "backbone_init": "teacher"})
    True
    """
    if hparams["adapter_folder"] is None:
        return False
    return hparams["backbone_init"] != "random"


def run_stage(recipe_dir, train_script, hparams_file, overrides, extra_args=()):
    """Runs ``python train.py HPARAMS --key=value ...`` in the recipe folder.

    Returns
    -------
    float
        Its wall time in seconds.
    """
    start = time.monotonic()
    cmd = [sys.executable, train_script, hparams_file, *overrides_to_args(overrides)]
    cmd += list(extra_args)
    logger.info("Running: %s (in %s)", " ".join(cmd), recipe_dir)
    completed = subprocess.run(cmd, cwd=recipe_dir, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed with exit code {completed.returncode} "
            f"(in {recipe_dir}); fix the error above and re-run: finished work is kept"
        )
    return time.monotonic() - start


def stage_status(recipe_dir, hparams_file, overrides):
    """The identity check of a stage's folder for these overrides.

    Returns ``"new"``, ``"same"`` or ``"resumable"``; raises
    :class:`ser_lib.stage_identity.StageSettingsError` when the folder holds a run
    of other settings (see :func:`ser_lib.stage_identity.check_stage_settings`).
    """
    status, _ = check_stage(load_recipe_hparams(recipe_dir, hparams_file, overrides))
    return status


def adapter_stage_status(recipe_dir, hparams_file, overrides, adapter_folder):
    """The identity check of a fold's stage-1 folder.

    Arguments
    ---------
    recipe_dir, hparams_file, overrides
        As for :func:`run_stage` (stage 1).
    adapter_folder : str
        Where stage 2 looks for the stage-1 export; it must lie in the stage-1
        ``output_folder`` of these overrides (``adapter_name`` given to both stages).

    Returns
    -------
    str
        ``"new"``, ``"same"`` (and finished: the teacher is exported),
        ``"unfinished"`` (same settings, no export yet) or ``"resumable"``.

    Raises
    ------
    ser_lib.stage_identity.StageSettingsError
        If the stage folders disagree or the folder holds a run of other settings.
    """
    hparams = load_recipe_hparams(recipe_dir, hparams_file, overrides)
    output_folder = os.path.abspath(hparams["output_folder"])
    if os.path.dirname(os.path.abspath(adapter_folder)) != output_folder:
        raise StageSettingsError(
            f"Stage 2 would start from {adapter_folder} but stage 1 writes "
            f"{output_folder}: give adapter_name to both stages (--overrides)"
        )
    status, _ = check_stage(hparams)
    if status == "same" and not os.path.isfile(
        os.path.join(adapter_folder, "teacher.ckpt")
    ):
        return "unfinished"
    return status


def cross_validate(
    recipe_dir,
    folds,
    adapter_hparams,
    finetune_hparams,
    common_overrides,
    results_folder,
    adapter_overrides=None,
    finetune_overrides=None,
    fold_key="test_session",
    train_script="train.py",
    skip_adapter=False,
    aggregate_only=False,
    extra_args=(),
    post_run=None,
    command=None,
):
    """Runs (or resumes) the folds, then aggregates every finished fold.

    Also writes ``results_folder/run_info.json`` (:mod:`ser_lib.run_info`): the
    command, git commit, schedules, each fold's folders and stage wall times.

    Arguments
    ---------
    recipe_dir : str
        Folder holding ``train_script`` and the hparams files.
    folds : list of int
        Fold numbers (the value of ``fold_key``).
    adapter_hparams, finetune_hparams : str
        The two stages' YAML files, relative to ``recipe_dir``.
    common_overrides : dict
        Overrides for both stages (``data_folder``, ``output_root``, ...).
    adapter_overrides, finetune_overrides : dict, optional
        Overrides for one stage only.
    fold_key : str
        The hparam selecting the fold.
    train_script : str
        The recipe's training script.
    skip_adapter : bool
        Do not run stage 1. Without it, stage 1 is skipped anyway when the stage-2
        configuration has no adapter stage (:func:`needs_adapter_stage`).
    aggregate_only : bool
        Run nothing; aggregate the folds already finished (folds launched as
        separate jobs).
    results_folder : str
        Where ``cv_results.{json,md}`` go.
    extra_args : sequence of str
        Passed to every ``train.py`` call (e.g. ``--device=cuda:0``).
    post_run : callable, optional
        Called last as ``post_run(fold_folders, results_folder)`` with the stage-2
        folder of every fold (e.g.
        :func:`ser_lib.report.report_after_cross_validation`).
    command : str, optional
        The command line to record in ``run_info.json`` (kept from an earlier run
        when None).

    Returns
    -------
    dict
        The aggregated results (see :func:`ser_lib.fold_results.aggregate_folds`).

    Raises
    ------
    ser_lib.stage_identity.StageSettingsError
        When a stage folder holds a run of other settings (e.g. an ablation run
        into the folders of the paper's settings): the message names the keys.
    """
    adapter_overrides = adapter_overrides or {}
    finetune_overrides = finetune_overrides or {}
    fold_metrics, stage2_folders = {}, {}
    info = read_run_info(results_folder)
    info["command"] = command or info["command"]
    git = git_state(recipe_dir)
    for fold in folds:
        stage2 = {**common_overrides, **finetune_overrides, fold_key: fold}
        stage1 = {**common_overrides, **adapter_overrides, fold_key: fold}
        folders = fold_folders(finetune_hparams, stage2, recipe_dir)
        info["schedule"]["stage2"] = folders["schedule"]
        uses_adapter = folders["needs_adapter"] and not skip_adapter
        if not uses_adapter:
            info["schedule"]["stage1"] = None
        stage2_folders[fold] = folders["output_folder"]
        metrics_path = os.path.join(folders["output_folder"], METRICS_FILE)
        seconds = {}
        if not aggregate_only:
            # Stage 1 first: stage 2's saved settings hold the stage-1 settings it
            # started from, but not the ones this run asks for.
            adapter_status = (
                adapter_stage_status(
                    recipe_dir, adapter_hparams, stage1, folders["adapter_folder"]
                )
                if uses_adapter
                else "same"
            )
            if (
                os.path.isfile(metrics_path)
                and adapter_status == "same"
                and stage_status(recipe_dir, finetune_hparams, stage2) == "same"
            ):
                logger.info("Fold %s: finished earlier (%s)", fold, metrics_path)
            else:
                if not uses_adapter:
                    logger.info("Fold %s: no stage 1 (no adapter stage)", fold)
                elif adapter_status == "same":
                    logger.info(
                        "Fold %s: stage 1 skipped (%s)", fold, folders["adapter_folder"]
                    )
                else:
                    logger.info("Fold %s: stage 1 (adapter training)", fold)
                    info["schedule"]["stage1"] = stage_schedule(
                        load_recipe_hparams(recipe_dir, adapter_hparams, stage1)
                    )
                    seconds["stage1"] = run_stage(
                        recipe_dir, train_script, adapter_hparams, stage1, extra_args
                    )
                stage_status(recipe_dir, finetune_hparams, stage2)  # refuses early
                logger.info("Fold %s: stage 2 (fine-tuning and test)", fold)
                seconds["stage2"] = run_stage(
                    recipe_dir, train_script, finetune_hparams, stage2, extra_args
                )
        elif os.path.isfile(metrics_path):
            logger.info("Fold %s: finished earlier (%s)", fold, metrics_path)
        record_fold(
            info,
            fold,
            folders["output_folder"],
            folders["adapter_folder"] if uses_adapter else None,
            seconds,
            git=git,
        )
        write_run_info(results_folder, info)
        metrics = read_fold_metrics(folders["output_folder"])
        if metrics is not None:
            fold_metrics[fold] = metrics
        else:
            logger.warning("Fold %s has no results yet (%s)", fold, metrics_path)

    results = aggregate_folds(fold_metrics)
    missing = [f for f in folds if f not in fold_metrics]
    if missing:
        results["missing_folds"] = missing
    json_path, md_path = write_results(results, results_folder)
    logger.info("Results: %s, %s", json_path, md_path)
    if post_run is not None:
        post_run(stage2_folders, results_folder)
    return results


def parse_cv_args(argv, default_folds, description):
    """Command line of a recipe's ``cross_validate.py`` (see IEMOCAP's for usage)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data_folder", required=True, help="the corpus folder")
    parser.add_argument(
        "--output_folder", required=True, help="output_root of the runs"
    )
    parser.add_argument("--folds", type=int, nargs="+", default=list(default_folds))
    parser.add_argument("--config", help="YAML with common/adapter/finetune overrides")
    parser.add_argument(
        "--overrides", default="{}", help="YAML mapping for both stages"
    )
    parser.add_argument(
        "--adapter_overrides", default="{}", help="YAML mapping, stage 1"
    )
    parser.add_argument(
        "--finetune_overrides", default="{}", help="YAML mapping, stage 2"
    )
    parser.add_argument("--adapter_hparams", default="hparams/adapter.yaml")
    parser.add_argument("--finetune_hparams", default="hparams/finetune.yaml")
    parser.add_argument("--skip_adapter", action="store_true", help="no stage 1")
    parser.add_argument("--aggregate_only", action="store_true")
    parser.add_argument("--results_folder", help="default: the output folder")
    parser.add_argument("--device", default="cpu", help="e.g. cuda:0")
    parser.add_argument(
        "--no_report", action="store_true", help="do not write OUTPUT/report/"
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def driver_logging(log_file):
    """Shows the driver's INFO messages on the console and appends them to ``log_file``.

    The ``train.py`` subprocesses log on their own; without this the driver's lines
    ("Fold 1: stage 1 skipped ...", "Running: ...", "Results: ...") went nowhere.

    Example
    -------
    >>> path = getfixture("tmp_path") / "cv_log.txt"
    >>> with driver_logging(path):
    ...     logger.info("Fold 1: finished earlier")
    >>> "Fold 1: finished earlier" in path.read_text()
    True
    """
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    package = logging.getLogger(__name__.split(".")[0])
    handlers = [logging.StreamHandler(), logging.FileHandler(log_file)]
    previous_level = package.level
    package.setLevel(logging.INFO)
    for handler in handlers:
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        package.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            package.removeHandler(handler)
            handler.close()
        package.setLevel(previous_level)


def merge_overrides(sections, common, adapter, finetune):
    """Merges the config file's sections with the command line's overrides.

    Precedence, lowest first: the config's ``common`` section, its per-stage
    section, ``--overrides`` (both stages), ``--adapter_overrides`` /
    ``--finetune_overrides``: a value given on the command line always beats the
    config file, also when the file sets it in a per-stage section.

    Arguments
    ---------
    sections : dict
        ``common``, ``adapter``, ``finetune`` mappings (:func:`read_cv_config`).
    common, adapter, finetune : dict
        The command line's ``--overrides``, ``--adapter_overrides``,
        ``--finetune_overrides``.

    Returns
    -------
    tuple of dict
        (common, adapter, finetune) overrides for :func:`cross_validate`, whose
        stage overrides are applied over the common ones.

    Example
    -------
    >>> sections = {"common": {"lr": 0.1}, "adapter": {"number_of_epochs": 8},
    ...             "finetune": {"number_of_epochs": 12}}
    >>> merge_overrides(sections, {"number_of_epochs": 2}, {}, {"lr": 0.5})
    ({'lr': 0.1, 'number_of_epochs': 2}, {}, {'lr': 0.5})
    """
    merged_common = {**sections["common"], **common}
    merged = []
    for stage, given in (("adapter", adapter), ("finetune", finetune)):
        from_file = dict(sections[stage])
        for key in set(from_file) & set(common):
            logger.info(
                "--overrides %s: %r replaces the config's %s value %r",
                key,
                common[key],
                stage,
                from_file.pop(key),
            )
        merged.append({**from_file, **given})
    return (merged_common, *merged)


def read_cv_config(path):
    """Reads a config file of ``common``/``adapter``/``finetune`` override sections."""
    sections = {"common": {}, "adapter": {}, "finetune": {}}
    if path:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        unknown = set(loaded) - set(sections)
        if unknown:
            raise ValueError(f"{path}: unknown sections {sorted(unknown)}")
        sections.update({k: v or {} for k, v in loaded.items()})
    return sections


def cv_command(recipe_dir, argv):
    """The command line of a recipe's ``cross_validate.py``, run from the repository.

    Example
    -------
    >>> cv_command("/x/recipes/EmoDB", ["--folds", "1", "2", "--overrides={a: 1}"])
    "python recipes/EmoDB/cross_validate.py --folds 1 2 '--overrides={a: 1}'"
    """
    script = (
        f"recipes/{os.path.basename(os.path.normpath(recipe_dir))}/cross_validate.py"
    )
    return shlex.join(["python", script, *argv])


def cross_validate_main(
    argv, recipe_dir, default_folds, description=None, post_run=None
):
    """Main of a recipe's ``cross_validate.py``; prints and returns the results.

    ``post_run`` (e.g. :func:`ser_lib.report.report_after_cross_validation`) is
    passed to :func:`cross_validate` unless ``--no_report`` is given.
    """
    args = parse_cv_args(argv, default_folds, description)
    output_folder = os.path.abspath(args.output_folder)
    results_folder = os.path.abspath(args.results_folder or output_folder)
    with driver_logging(os.path.join(results_folder, LOG_FILE)):
        common, adapter, finetune = merge_overrides(
            read_cv_config(args.config),
            yaml.safe_load(args.overrides) or {},
            yaml.safe_load(args.adapter_overrides) or {},
            yaml.safe_load(args.finetune_overrides) or {},
        )
        common.update(
            data_folder=os.path.abspath(args.data_folder), output_root=output_folder
        )
        results = cross_validate(
            recipe_dir=recipe_dir,
            folds=args.folds,
            adapter_hparams=args.adapter_hparams,
            finetune_hparams=args.finetune_hparams,
            common_overrides=common,
            results_folder=results_folder,
            adapter_overrides=adapter,
            finetune_overrides=finetune,
            skip_adapter=args.skip_adapter,
            aggregate_only=args.aggregate_only,
            extra_args=[f"--device={args.device}"],
            post_run=None if args.no_report else post_run,
            command=None if args.aggregate_only else cv_command(recipe_dir, argv),
        )
    print(results_table(results))
    return results
