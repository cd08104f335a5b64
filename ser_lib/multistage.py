"""Cross-validation driver for recipes with an ordered list of stages per fold.

The generalisation of :func:`ser_lib.cross_validation.cross_validate` (which runs
the two stages adapter -> finetune) to any number of steps, each a script of the
recipe run as a subprocess exactly as a user would (``python SCRIPT HPARAMS
--key=value ...``). Rules, as in the two-stage driver:

* a fold is finished when the last stage's ``metrics.json`` exists: it is skipped;
* a stage is finished when ``<its output_folder>/<done_file>`` exists (each stage
  writes it last): it is skipped, so a re-run continues with the first unfinished
  stage, which resumes from its own checkpoints;
* ``aggregate_only`` runs nothing and aggregates the finished folds.

``results_folder/run_info.json`` (:mod:`ser_lib.run_info`, read by the results
table) records the command, the git commit, each stage's schedule
(``{"schedule": {stage: {...}}}``), per fold the last stage's folder, every stage's folder and the wall time
of every stage run (``{"folds": {fold: {"folder": ..., "stage_folders": {stage:
folder}, "stage_s": {stage: seconds}}}}``) and their sums (``wall_s``).
"""

import argparse
import os
import sys
import time
from dataclasses import dataclass, field, replace

import yaml
from hyperpyyaml import resolve_references
from speechbrain.utils.logger import get_logger

from ser_lib.cross_validation import (
    finish_cross_validation,
    overrides_to_args,
    recipe_context,
)
from ser_lib.cv_options import cv_command
from ser_lib.data.class_map import _TagIgnoringLoader
from ser_lib.fold_results import (
    METRICS_FILE,
    read_fold_metrics,
    results_table,
)
from ser_lib.report import report_after_cross_validation
from ser_lib.run_info import (
    SCHEDULE_KEYS,
    git_state,
    read_run_info,
    write_run_info,
)

logger = get_logger(__name__)


@dataclass
class Stage:
    """One step of a fold.

    Attributes
    ----------
    name : str
        Short name (logs, run_info, per-stage overrides).
    hparams_file : str
        The step's YAML, relative to the recipe folder.
    script : str
        The recipe script that runs it.
    done_file : str
        Written last in the step's ``output_folder`` when it has finished.
    overrides : dict
        Overrides for this step only.
    schedule_keys : tuple of str
        The hparams recorded as the step's schedule in ``run_info.json`` (those the
        YAML has): the training schedule by default; e.g. the k-means settings for a
        step that trains nothing.
    """

    name: str
    hparams_file: str
    script: str = "train.py"
    done_file: str = "done.json"
    overrides: dict = field(default_factory=dict)
    schedule_keys: tuple = SCHEDULE_KEYS


def resolved_hparams(recipe_dir, hparams_file, overrides):
    """The YAML's plain values with ``!ref`` resolved, without building any object.

    Loading a stage YAML with ``load_hyperpyyaml`` would build its encoder (a large
    model); this only resolves references.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> _ = (folder / "s.yaml").write_text(
    ...     "root: a\\nout: !ref <root>/b\\nenc: !new:torch.nn.Linear [1, 1]\\n")
    >>> values = resolved_hparams(folder, "s.yaml", {"root": "x"})
    >>> values["out"], values["enc"]
    ('x/b', None)
    """
    with recipe_context(recipe_dir):
        with open(hparams_file, encoding="utf-8") as fin:
            text = resolve_references(fin, yaml.safe_dump(overrides or {})).getvalue()
    return yaml.load(text, Loader=_TagIgnoringLoader)  # noqa: S506 (safe loader)


def stage_output_folder(recipe_dir, stage, overrides):
    """Absolute ``output_folder`` of ``stage`` under ``overrides``."""
    values = resolved_hparams(recipe_dir, stage.hparams_file, overrides)
    return os.path.abspath(os.path.join(recipe_dir, values["output_folder"]))


def run_step(recipe_dir, stage, overrides, extra_args=()):
    """Runs ``python SCRIPT HPARAMS --key=value ...`` in the recipe folder."""
    import subprocess
    import sys

    cmd = [sys.executable, stage.script, stage.hparams_file]
    cmd += overrides_to_args(overrides) + list(extra_args)
    logger.info("Running: %s (in %s)", " ".join(cmd), recipe_dir)
    completed = subprocess.run(cmd, cwd=recipe_dir, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"Stage {stage.name} failed with exit code {completed.returncode}: "
            f"{' '.join(cmd)} (in {recipe_dir}); fix the error above and re-run the "
            "same command: finished stages are skipped, the unfinished one resumes"
        )


def stage_schedule_values(values, keys=SCHEDULE_KEYS):
    """The schedule of a stage: the ``keys`` its resolved YAML ``values`` has.

    Example
    -------
    >>> stage_schedule_values({"number_of_epochs": 2, "lr": 0.1, "seed": 3})
    {'number_of_epochs': 2, 'lr': 0.1}
    >>> stage_schedule_values({"kmeans": {"n_init": 1}, "lr": 0.1}, ("kmeans",))
    {'kmeans': {'n_init': 1}}
    """
    return {key: values[key] for key in keys if key in values}


def _record_stage(info, fold, stage_name, folder, seconds, git):
    """Records a stage run of a fold (its wall time, code) in a run-info record."""
    entry = info["folds"].setdefault(
        str(fold), {"folder": None, "adapter_folder": None, "stage_s": {}}
    )
    entry["folder"] = folder
    entry.setdefault("stage_s", {})[stage_name] = seconds
    entry["git"] = git
    info["git"] = git


def run_fold(
    recipe_dir,
    fold,
    stages,
    common_overrides,
    results_folder,
    fold_key="test_session",
    extra_args=(),
    info=None,
    git=None,
):
    """Runs the unfinished stages of one fold in order; returns the last stage folder.

    The wall time of every stage run is recorded in ``info`` (a run-info record,
    :func:`ser_lib.run_info.read_run_info` of ``results_folder`` if None) and
    written to ``results_folder/run_info.json`` as soon as the stage ends.
    """
    if info is None:
        info = _multistage_run_info(results_folder)
    folder = None
    for stage in stages:
        overrides = {**common_overrides, **stage.overrides, fold_key: fold}
        folder = stage_output_folder(recipe_dir, stage, overrides)
        done = os.path.join(folder, stage.done_file)
        if os.path.isfile(done):
            logger.info(
                "Fold %s: stage %s finished earlier (%s)", fold, stage.name, done
            )
            continue
        logger.info("Fold %s: stage %s", fold, stage.name)
        start = time.time()
        run_step(recipe_dir, stage, overrides, extra_args)
        _record_stage(info, fold, stage.name, folder, time.time() - start, git)
        write_run_info(results_folder, info)
        if not os.path.isfile(done):
            raise RuntimeError(
                f"Stage {stage.name} of fold {fold} ended without writing {done}"
            )
    return folder


def _multistage_run_info(results_folder):
    """The run-info record of ``results_folder`` with the keys a multi-stage run uses."""
    info = read_run_info(results_folder)
    info.setdefault("schedule", {})
    info.setdefault("folds", {})
    info.setdefault("command", None)
    info.setdefault("git", None)
    return info


def cross_validate_stages(
    recipe_dir,
    folds,
    stages,
    common_overrides,
    results_folder,
    fold_key="test_session",
    aggregate_only=False,
    extra_args=(),
    post_run=None,
    command=None,
):
    """Runs (or resumes) every fold's stages, then aggregates the finished folds.

    The last stage must write ``metrics.json`` (the fold's result). Writes
    ``results_folder/run_info.json`` (see the module docstring).

    Arguments
    ---------
    post_run : callable, optional
        Called last as ``post_run(fold_folders, results_folder)`` with the last
        stage's folder of every fold (e.g.
        :func:`ser_lib.report.report_after_cross_validation`).
    command : str, optional
        The command line recorded in ``run_info.json`` (an earlier one is kept
        when None).

    Returns
    -------
    dict
        See :func:`ser_lib.fold_results.aggregate_folds`.
    """
    fold_metrics, final_folders = {}, {}
    info = _multistage_run_info(results_folder)
    info["command"] = command or info["command"]
    git = git_state(recipe_dir)
    last = stages[-1]
    for fold in folds:
        stage_folders = {}
        for stage in stages:
            values = resolved_hparams(
                recipe_dir,
                stage.hparams_file,
                {**common_overrides, **stage.overrides, fold_key: fold},
            )
            info["schedule"][stage.name] = stage_schedule_values(
                values, stage.schedule_keys
            )
            stage_folders[stage.name] = os.path.abspath(
                os.path.join(recipe_dir, values["output_folder"])
            )
        final = stage_folders[last.name]
        final_folders[fold] = final
        metrics_path = os.path.join(final, METRICS_FILE)
        if not os.path.isfile(metrics_path) and not aggregate_only:
            run_fold(
                recipe_dir,
                fold,
                stages,
                common_overrides,
                results_folder,
                fold_key=fold_key,
                extra_args=extra_args,
                info=info,
                git=git,
            )
        elif os.path.isfile(metrics_path):
            logger.info("Fold %s: finished earlier (%s)", fold, metrics_path)
        entry = info["folds"].setdefault(
            str(fold), {"adapter_folder": None, "stage_s": {}, "git": None}
        )
        entry["folder"] = final
        entry["stage_folders"] = stage_folders
        write_run_info(results_folder, info)
        metrics = read_fold_metrics(final)
        if metrics is not None:
            fold_metrics[fold] = metrics
        else:
            logger.warning("Fold %s has no results yet (%s)", fold, metrics_path)
    return finish_cross_validation(
        folds, fold_metrics, final_folders, results_folder, post_run
    )


def parse_stage_overrides(text, stages):
    """``{stage name: {key: value}}`` from YAML text; unknown stage names are an error.

    Example
    -------
    >>> parse_stage_overrides("{A: {lr: 0.1}}", [Stage("A", "a.yaml")])
    {'A': {'lr': 0.1}}
    """
    loaded = yaml.safe_load(text) or {}
    names = {stage.name for stage in stages}
    unknown = set(loaded) - names
    if unknown:
        raise ValueError(
            f"Unknown stages {sorted(unknown)}; stages are {sorted(names)}"
        )
    return loaded


def read_stage_config(path, stages):
    """Reads a ``--config`` file: a ``common`` section and one section per stage.

    Arguments
    ---------
    path : str or None
        The YAML file (None: no config).
    stages : list of Stage
        The recipe's stages (their names are the allowed sections).

    Returns
    -------
    common : dict
        Overrides for every stage.
    per_stage : dict
        Stage name -> overrides for that stage only.

    Example
    -------
    >>> path = getfixture("tmp_path") / "cpu.yaml"
    >>> _ = path.write_text("common: {batch_size: 16}\\nA: {number_of_epochs: 2}\\n")
    >>> read_stage_config(str(path), [Stage("A", "a.yaml"), Stage("B", "b.yaml")])
    ({'batch_size': 16}, {'A': {'number_of_epochs': 2}})
    """
    if not path:
        return {}, {}
    with open(path, encoding="utf-8") as f:
        loaded = yaml.safe_load(f) or {}
    names = {stage.name for stage in stages}
    unknown = set(loaded) - names - {"common"}
    if unknown:
        raise ValueError(
            f"{path}: unknown sections {sorted(unknown)}; sections are common and "
            f"the stages {sorted(names)}"
        )
    common = loaded.pop("common", None) or {}
    return common, {name: values or {} for name, values in loaded.items()}


def multistage_main(
    argv,
    recipe_dir,
    stages,
    default_folds,
    description=None,
    post_run=None,
    command=None,
):
    """Main of a multi-stage recipe's ``cross_validate.py``; prints the table.

    Options: ``--data_folder``, ``--output_folder`` (``output_root``), ``--folds``,
    ``--overrides`` (YAML mapping for every stage), ``--stage_overrides`` (YAML
    ``{stage name: mapping}``), ``--config`` (a YAML file of a ``common`` section and
    stage sections, see :func:`read_stage_config`; the two options above override
    its keys), ``--aggregate_only``, ``--results_folder``,
    ``--device``, ``--no_report`` (skips ``post_run``, e.g. the report).
    ``command`` is recorded in ``run_info.json`` (default: ``argv``'s command line;
    nothing new with ``--aggregate_only``).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data_folder", required=True)
    parser.add_argument(
        "--output_folder", required=True, help="output_root of the runs"
    )
    parser.add_argument("--folds", type=int, nargs="+", default=list(default_folds))
    parser.add_argument("--overrides", default="{}", help="YAML mapping, every stage")
    parser.add_argument(
        "--stage_overrides", default="{}", help="YAML {stage name: mapping}"
    )
    parser.add_argument(
        "--config", help="YAML file: common and per-stage override sections"
    )
    parser.add_argument("--aggregate_only", action="store_true")
    parser.add_argument("--results_folder", help="default: the output folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no_report", action="store_true")
    args = parser.parse_args(argv)
    config_common, config_stages = read_stage_config(args.config, stages)
    per_stage = parse_stage_overrides(args.stage_overrides, stages)
    stages = [
        replace(
            s,
            overrides={
                **s.overrides,
                **config_stages.get(s.name, {}),
                **per_stage.get(s.name, {}),
            },
        )
        for s in stages
    ]
    output_folder = os.path.abspath(args.output_folder)
    common = {
        **config_common,
        **(yaml.safe_load(args.overrides) or {}),
        "data_folder": os.path.abspath(args.data_folder),
        "output_root": output_folder,
    }
    results = cross_validate_stages(
        recipe_dir,
        args.folds,
        stages,
        common,
        os.path.abspath(args.results_folder or output_folder),
        aggregate_only=args.aggregate_only,
        extra_args=[f"--device={args.device}"],
        post_run=None if args.no_report else post_run,
        command=None
        if args.aggregate_only
        else (command or cv_command(recipe_dir, argv)),
    )
    print(results_table(results))
    return results


def select_stages(argv, stages):
    """Removes ``--stages=NAME[,NAME]`` from ``argv``; returns the chosen stages and the
    rest (single-stage rows of a table run one stage only).

    Example
    -------
    >>> stages = [Stage("stage1", "a.yaml"), Stage("stage2", "b.yaml")]
    >>> chosen, rest = select_stages(["--stages=stage2", "--folds", "1"], stages)
    >>> [s.name for s in chosen], rest
    (['stage2'], ['--folds', '1'])
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--stages", help="comma-separated stage names")
    args, rest = parser.parse_known_args(argv)
    if args.stages is None:
        return stages, rest
    names = args.stages.split(",")
    unknown = sorted(set(names) - {s.name for s in stages})
    if unknown:
        raise SystemExit(
            f"--stages: unknown {unknown}; stages: {[s.name for s in stages]}"
        )
    return [s for s in stages if s.name in names], rest


def recipe_cross_validate(
    argv, recipe_dir, stages, default_folds, description, stage_option=False
):
    """Body of a multi-stage recipe's ``cross_validate.py``: runs the folds, reports.

    Puts the corpus folder (the recipe folder's parent, where ``*_prepare.py``
    lives) on ``sys.path``, then runs :func:`multistage_main` with
    :func:`ser_lib.report.report_after_cross_validation` as ``post_run``.

    Arguments
    ---------
    argv : list of str or None
        The command line; ``None`` reads ``sys.argv[1:]``.
    recipe_dir : str
        The recipe folder (scripts and ``hparams/``).
    stages : list of Stage
        Every stage of a fold, in order.
    default_folds : list
        Folds run when ``--folds`` is not given.
    description : str
        The ``--help`` text.
    stage_option : bool
        Accept ``--stages=NAME[,NAME]`` (see :func:`select_stages`).

    Returns
    -------
    dict
        See :func:`cross_validate_stages`.
    """
    sys.path.insert(0, os.path.dirname(recipe_dir))  # <corpus>_prepare
    argv = sys.argv[1:] if argv is None else argv
    command = cv_command(recipe_dir, argv)
    if stage_option:
        stages, argv = select_stages(argv, stages)
    return multistage_main(
        argv,
        recipe_dir,
        stages,
        default_folds=default_folds,
        description=description,
        post_run=report_after_cross_validation,
        command=command,
    )
