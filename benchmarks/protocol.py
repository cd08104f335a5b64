"""Wall time of the real-data EmoDB protocol: extrapolated and as actually run.

Extrapolated: one epoch of each stage at the size of a committed experiment config
(``recipes/EmoDB/hparams/whisper_base_cpu.yaml``: its adapter, K, batch, pool,
input dimension and precision, merged into the recipe's adapter/finetune YAMLs as
``cross_validate.py --config`` does) is timed step by step on random features of
EmoDB's own lengths (a training fold's share of the corpus, batched by the recipe's
:class:`ser_lib.sampling.PoolSortedBatchSampler`), then multiplied by the epochs of
each stage and the folds; the one-off extraction is EmoDB's audio over the measured
Whisper ``native`` float32 throughput. Validation and test passes, process start-up
and data loading are not in it. As run: the per-stage ``wall_s`` of a row of
``docs/results/emodb.json`` (each stage's process wall time summed over the folds).

Authors
 * ser_lib contributors
"""

import json
import os
import time
from functools import partial

import numpy as np
import yaml

from benchmarks.config import BenchmarkSize
from benchmarks.measure import time_calls
from ser_lib.multistage import resolved_hparams
from ser_lib.precision import resolve_precision
from ser_lib.sampling import PoolSortedBatchSampler

STAGE_FILES = {"stage1": "hparams/adapter.yaml", "stage2": "hparams/finetune.yaml"}
"""The recipe YAML of each stage (relative to the recipe folder)."""

CONFIG_SECTIONS = {"stage1": "adapter", "stage2": "finetune"}
"""The section of a ``--config`` file that overrides each stage."""

STAGE_KEYS = (
    "input_dim",
    "d_model",
    "num_layers",
    "nhead",
    "num_prototypes",
    "sap_heads",
    "batch_size",
    "pool_batches",
    "number_of_epochs",
    "precision",
    "bf16_cpu_min_d_model",
    "n_folds",
    "seed",
)
"""The settings of a stage that the epoch timing uses (those absent are skipped)."""


def protocol_settings(config_path, recipe_dir):
    """Each stage's settings under an experiment config (``--config`` of the CV driver).

    Arguments
    ---------
    config_path : str or os.PathLike
        YAML with ``common``, ``adapter`` and ``finetune`` sections of overrides.
    recipe_dir : str or os.PathLike
        The recipe folder holding ``hparams/adapter.yaml`` and ``finetune.yaml``.

    Returns
    -------
    dict
        ``stage1`` and ``stage2``: :data:`STAGE_KEYS` -> value.

    Example
    -------
    >>> settings = protocol_settings(
    ...     "recipes/EmoDB/hparams/whisper_base_cpu.yaml", "recipes/EmoDB")
    >>> settings["stage1"]["d_model"], settings["stage2"]["number_of_epochs"]
    (128, 15)
    """
    with open(config_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    settings = {}
    for stage, hparams_file in STAGE_FILES.items():
        overrides = {
            "data_folder": "unused",
            **config.get("common", {}),
            **(config.get(CONFIG_SECTIONS[stage]) or {}),
        }
        values = resolved_hparams(os.fspath(recipe_dir), hparams_file, overrides)
        settings[stage] = {key: values[key] for key in STAGE_KEYS if key in values}
    return settings


def fold_frames(durations, folds, frame_rate):
    """Frames of a training fold: an evenly spaced ``(folds - 1) / folds`` share.

    Example
    -------
    >>> fold_frames([1.0, 2.0, 3.0, 4.0, 5.0], folds=5, frame_rate=50.0)
    [50, 100, 200, 250]
    """
    durations = np.asarray(durations, dtype=np.float64)
    count = int(round(durations.size * (folds - 1) / folds))
    chosen = np.linspace(0, durations.size - 1, count).round().astype(int)
    return [int(round(d * frame_rate)) for d in durations[chosen]]


def as_run_wall_time(results_file, row):
    """The per-stage wall time of a row of a results file (None + reason if absent).

    Returns
    -------
    dict
        ``file``, ``row``, and either ``stage1``, ``stage2``, ``total`` (seconds),
        ``folds``, ``schedule``, ``command``, or ``reason``.

    Example
    -------
    >>> as_run_wall_time("/nonexistent.json", "x")["reason"]
    'no file /nonexistent.json'
    """
    entry = {"file": os.fspath(results_file), "row": row}
    if not os.path.isfile(results_file):
        return {**entry, "reason": f"no file {results_file}"}
    with open(results_file, encoding="utf-8") as f:
        rows = json.load(f).get("rows", {})
    wall = rows.get(row, {}).get("wall_s")
    if not wall:
        return {**entry, "reason": f"row {row!r} has no wall_s in {results_file}"}
    return {
        **entry,
        **{key: wall[key] for key in ("stage1", "stage2", "total") if key in wall},
        "folds": rows[row].get("folds"),
        "schedule": rows[row].get("schedule"),
        "command": rows[row].get("command"),
    }


def task_protocol_epochs(spec):
    """One epoch of each stage at an experiment config's size, timed step by step.

    Spec: ``settings`` (:func:`protocol_settings`), ``frames`` (a training fold's
    utterance lengths, :func:`fold_frames`), ``size``, ``device``. The first batch
    warms up untimed; the first ``size.protocol_epoch_steps`` batches of the epoch
    (all of them when 0) are timed and the epoch is their mean times its batches.
    """
    # Imported here: benchmarks.tasks imports this module for its task.
    from benchmarks.precision import sized
    from benchmarks.tasks import (
        _start_training,
        adapter_brain,
        finetune_brain,
        padded_feature_batch,
    )

    size = BenchmarkSize(**spec["size"])
    device = spec["device"]
    result = {"utterances": len(spec["frames"])}
    for stage, build in (
        ("stage1", partial(adapter_brain, tuned=True)),
        ("stage2", finetune_brain),
    ):
        settings = spec["settings"][stage]
        sampler = PoolSortedBatchSampler(
            spec["frames"],
            settings["batch_size"],
            settings.get("pool_batches", 1),
            seed=size.seed,
        )
        batches = [
            padded_feature_batch(
                [spec["frames"][i] for i in indices],
                settings["input_dim"],
                seed=size.seed + n,
            )
            for n, indices in enumerate(sampler.batches(0))
        ]
        timed = batches[: size.protocol_epoch_steps or len(batches)]
        stage_spec = {
            "size": sized(
                size,
                adapter={
                    key: settings[key] for key in ("d_model", "num_layers", "nhead")
                },
                num_prototypes=settings.get("num_prototypes", size.num_prototypes),
                sap_heads=settings.get("sap_heads", size.sap_heads),
            ),
            "device": device,
            "precision": settings["precision"],
        }
        if settings["precision"] == "auto":  # as train.py resolves it
            stage_spec["precision"] = resolve_precision(
                "auto", device, settings["d_model"], settings["bf16_cpu_min_d_model"]
            )
        brain = build(stage_spec, settings["input_dim"])
        _start_training(brain, len(batches))
        start = time.perf_counter()
        brain.fit_batch(batches[0])  # untimed warm-up
        warmup = time.perf_counter() - start
        times = [
            time_calls(partial(brain.fit_batch, batch), 1, device)[0] for batch in timed
        ]
        result[stage] = {
            "steps_per_epoch": len(batches),
            "timed_steps": len(times),
            "step_seconds": times,
            "warmup_seconds": warmup,
            "epoch_seconds": float(np.mean(times)) * len(batches),
            "precision": stage_spec["precision"],
            "settings": settings,
        }
    return result


def protocol_figures(entry):
    """The extrapolated wall time of the protocol from the benchmark's raw entry.

    Arguments
    ---------
    entry : dict
        ``results["emodb_protocol"]`` of the benchmark: ``epochs`` (the task's
        result or None), ``corpus_audio_seconds``, ``extraction_audio_s_per_s``
        (Whisper native fp32, or None), ``folds``, ``as_run``, ``reason``.

    Returns
    -------
    dict
        ``extrapolated_seconds`` (None with ``reason`` when something is missing),
        its parts (``stage_seconds`` per stage over all folds, ``extraction_seconds``)
        and ``as_run`` (copied).

    Example
    -------
    >>> entry = {"epochs": {"stage1": {"epoch_seconds": 2.0},
    ...                     "stage2": {"epoch_seconds": 3.0}},
    ...          "epochs_per_stage": {"stage1": 10, "stage2": 10}, "folds": 5,
    ...          "corpus_audio_seconds": 100.0, "extraction_audio_s_per_s": 50.0,
    ...          "as_run": None, "reason": None}
    >>> protocol_figures(entry)["extrapolated_seconds"]
    252.0
    """
    out = {"as_run": entry.get("as_run"), "folds": entry.get("folds")}
    if entry.get("epochs") is None or entry.get("extraction_audio_s_per_s") is None:
        return {
            **out,
            "extrapolated_seconds": None,
            "reason": entry.get("reason") or "not measured",
        }
    stage_seconds = {
        stage: entry["epochs"][stage]["epoch_seconds"]
        * entry["epochs_per_stage"][stage]
        * entry["folds"]
        for stage in ("stage1", "stage2")
    }
    extraction = entry["corpus_audio_seconds"] / entry["extraction_audio_s_per_s"]
    return {
        **out,
        "stage_seconds": stage_seconds,
        "extraction_seconds": extraction,
        "extrapolated_seconds": extraction + sum(stage_seconds.values()),
        "reason": None,
    }
