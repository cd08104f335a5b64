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

Loading a recipe's hparams as ``train.py`` does lives in :mod:`ser_lib.recipe_hparams`,
the command line and config file of ``cross_validate.py`` in :mod:`ser_lib.cv_options`;
their names stay importable from here.
"""

import os
import subprocess
import sys
import time

import yaml
from speechbrain.utils.logger import get_logger

from ser_lib.cv_options import (
    cv_command,
    driver_logging,
    merge_overrides,
    parse_cv_args,
    read_cv_config,
)
from ser_lib.fold_results import (
    METRICS_FILE,
    aggregate_folds,
    read_fold_metrics,
    results_table,
    write_results,
)
from ser_lib.recipe_hparams import (
    fold_folders,
    load_recipe_hparams,
    needs_adapter_stage,
    overrides_to_args,
    recipe_context,
)
from ser_lib.run_info import (
    git_state,
    read_run_info,
    record_fold,
    stage_schedule,
    write_run_info,
)
from ser_lib.stage_identity import StageSettingsError, check_stage

__all__ = [
    "LOG_FILE",
    "adapter_stage_status",
    "cross_validate",
    "cross_validate_main",
    "run_stage",
    "stage_status",
    # Moved to ser_lib.recipe_hparams and ser_lib.cv_options, importable from here:
    "cv_command",
    "driver_logging",
    "fold_folders",
    "load_recipe_hparams",
    "merge_overrides",
    "needs_adapter_stage",
    "overrides_to_args",
    "parse_cv_args",
    "read_cv_config",
    "recipe_context",
]

logger = get_logger(__name__)

LOG_FILE = "cv_log.txt"
"""The driver's own log (skipped folds, commands, results), in the output folder."""


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

    return finish_cross_validation(
        folds, fold_metrics, stage2_folders, results_folder, post_run
    )


def finish_cross_validation(
    folds, fold_metrics, fold_folders, results_folder, post_run
):
    """Aggregates the finished folds, writes the results files, runs ``post_run``.

    Arguments
    ---------
    folds : list
        Every fold asked for; those without metrics are listed as
        ``missing_folds``.
    fold_metrics : dict
        Fold -> its metrics (the finished folds).
    fold_folders : dict
        Fold -> its final output folder (passed to ``post_run``).
    results_folder : str
        Where ``cv_results.json`` / ``.md`` are written.
    post_run : callable or None
        Called last as ``post_run(fold_folders, results_folder)``.

    Returns
    -------
    dict
        See :func:`ser_lib.fold_results.aggregate_folds`.
    """
    results = aggregate_folds(fold_metrics)
    missing = [f for f in folds if f not in fold_metrics]
    if missing:
        results["missing_folds"] = missing
    json_path, md_path = write_results(results, results_folder)
    logger.info("Results: %s, %s", json_path, md_path)
    if post_run is not None:
        post_run(fold_folders, results_folder)
    return results


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
