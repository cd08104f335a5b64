"""Every figure of the benchmark report, computed from the raw results.

Per-epoch times are extrapolated from step times: a training fold of the
IEMOCAP-like corpus holds ``(folds - 1) / folds`` of its frames, batched with the
recommended bucketing (its padded frames); an epoch costs the time per frame of
the measured step times those padded frames. Time is taken as proportional to
frames, which holds for these lengths, where attention is a small share of the
work (the attention FLOPs are in the counts).

Authors
 * ser_lib contributors
"""

from benchmarks.config import BenchmarkSize
from benchmarks.protocol import protocol_figures
from benchmarks.suite import TARGETS, corpus_durations

STEP_CONFIGS = (
    ("stage1_cached", "Stage 1 on cached features (default Adam)"),
    ("stage1_cached_tuned", "Stage 1 on cached features, fused Adam (as the recipes)"),
    ("stage2_cached", "Stage 2 on cached features"),
    ("stage1_encoder_loop", "Stage 1, frozen encoder in the loop"),
    ("stage2_encoder_loop", "Stage 2, frozen encoder in the loop (derived)"),
    ("full_finetune", "Full fine-tuning of the encoder (+ stage-2 head)"),
)
"""Training configurations compared side by side, in table order."""

REQUIRED_FIGURES = (
    "ratios.stage1_vs_encoder_loop",
    "ratios.stage1_vs_full_finetune",
    "ratios.tuned_stage1_vs_encoder_loop",
    "ratios.tuned_stage1_vs_full_finetune",
    "ratios.stage2_vs_encoder_loop",
    "ratios.stage2_vs_full_finetune",
    "ratios.flops_encoder_loop_vs_stage1",
    "ratios.flops_full_finetune_vs_stage1",
    "ratios.stage1_vs_encoder_loop_paper_batch",
    "ratios.stage1_vs_full_finetune_paper_batch",
    "steps.stage1_cached.seconds",
    "steps.stage1_cached.peak_mib",
    "steps.stage1_cached.epoch_seconds",
    "steps.stage1_cached_tuned.seconds",
    "steps.stage2_cached.seconds",
    "steps.stage2_cached.peak_mib",
    "steps.stage1_encoder_loop.seconds",
    "steps.stage1_encoder_loop.peak_mib",
    "steps.stage1_encoder_loop.epoch_seconds",
    "steps.full_finetune.seconds",
    "steps.full_finetune.peak_mib",
    "steps.full_finetune.epoch_seconds",
    "extraction.audio_seconds_per_second",
    "params.adapter_sap_classifier",
    "params.encoder",
    "params.encoder_over_adapter",
    "padding.random",
    "padding.bucketed",
    "efficiency.matmul_peak_flop_per_s",
    "efficiency.stage1.flop_per_s",
    "efficiency.stage1.fraction_of_peak",
    "efficiency.stage1_tuned.fraction_of_peak",
    "scaling.memory_growth",
    "scaling.time_per_frame_spread",
    "protocol.cached_hours",
    "protocol.encoder_loop_hours",
    "protocol.full_finetune_hours",
    "headline.bf16_speedup_stage1",
    "headline.bf16_speedup_stage2",
    "headline.stage1_bf16_peak_share",
    "headline.kmeans_share_of_step",
    "headline.stage1_vs_encoder_in_loop",
    "headline.whisper_native_vs_pad30",
)
"""Dotted paths into :func:`derive`'s output that every report must hold."""

HEADLINE_NOTES = {
    "bf16_speedup_stage1": "fp32 step / bf16-autocast step of stage 1 (fused Adam, "
    "as the recipes) at the paper's batch, medians of steps timed in turns",
    "bf16_speedup_stage2": "the same for stage 2",
    "stage1_bf16_peak_share": "stage-1 bf16 step FLOP/s / bf16 matmul peak measured "
    "in the same process",
    "kmeans_share_of_step": "k-means update (eqn 5) with the step's eqn-4 "
    "assignment reused / stage-1 bf16 step",
    "stage1_vs_encoder_in_loop": "(frozen-encoder forward + stage-1 step) / stage-1 "
    "step per frame, both under bf16 autocast, stage 1 at the paper's batch",
    "whisper_native_vs_pad30": "Whisper-base extraction wall time with every input "
    "padded to 30 s (pad30) / at its own length (native), float32, on EmoDB "
    "utterances, length-sorted batches",
}
"""What each headline figure of ``benchmarks.json`` is (written next to them)."""


def best_step(task):
    """The best step time of a task result (seconds).

    Example
    -------
    >>> best_step({"step_seconds": {"best": 1.5}})
    1.5
    """
    return task["step_seconds"]["best"]


def peak_mib(task):
    """Peak memory of a task, MiB: the CUDA peak on GPU, else the RSS growth.

    Example
    -------
    >>> peak_mib({"peak_cuda_mib": None, "peak_rss_mib": 12.0})
    12.0
    """
    if task.get("peak_cuda_mib") is not None:
        return task["peak_cuda_mib"]
    return task["peak_rss_mib"]


def spread(values):
    """``(max - min) / min`` of positive values.

    Example
    -------
    >>> spread([2.0, 3.0])
    0.5
    """
    return (max(values) - min(values)) / min(values)


def figure(derived, dotted):
    """The figure at a dotted path of :func:`derive`'s output (KeyError if absent).

    Example
    -------
    >>> figure({"a": {"b": 2.0}}, "a.b")
    2.0
    """
    value = derived
    for key in dotted.split("."):
        value = value[key]
    return value


def _steps(tasks, encoder_forward, step_frames, fold_padded_frames):
    """The side-by-side table of training configurations (same batch)."""
    seconds = {
        name: best_step(tasks[name]) for name, _ in STEP_CONFIGS if name in tasks
    }
    seconds["stage2_encoder_loop"] = encoder_forward + seconds["stage2_cached"]
    trainable = {
        "stage1_encoder_loop": tasks["stage1_cached"]["trainable_params"],
        "stage2_encoder_loop": tasks["stage2_cached"]["trainable_params"],
    }
    steps = {}
    for name, label in STEP_CONFIGS:
        task = tasks.get(name)  # None for the derived row
        steps[name] = {
            "label": label,
            "seconds": seconds[name],
            "ratio_to_stage1": seconds[name] / seconds["stage1_cached"],
            "ratio_to_stage2": seconds[name] / seconds["stage2_cached"],
            "epoch_seconds": seconds[name] / step_frames * fold_padded_frames,
            "peak_mib": peak_mib(task) if task else None,
            "flops": task["flops"] if task else None,
            "trainable_params": (
                task["trainable_params"]
                if task and "trainable_params" in task
                else trainable[name]
            ),
        }
    return steps


def _efficiency(eff, fold_padded_frames):
    """FLOP/s against the matmul peak at the paper's batch, epochs, levers."""
    frames = eff["batch_utterances"] * eff["frames"]
    out = {
        "batch_utterances": eff["batch_utterances"],
        "frames_per_utterance": eff["frames"],
        "matmul_peak_flop_per_s": eff["matmul_peak"]["flop_per_s"],
        "matmul_size": eff["matmul_peak"]["size"],
        "dtype": eff["matmul_peak"]["dtype"],
        "levers": {name: lever["best"] for name, lever in eff["levers"].items()},
    }
    for stage in ("stage1", "stage1_tuned", "stage2"):
        step = best_step(eff[stage])
        out[stage] = {
            "step_seconds": step,
            "flops": eff[stage]["flops"],
            "flop_per_s": eff[stage]["flop_per_s"],
            "fraction_of_peak": eff[stage]["fraction_of_peak"],
            "seconds_per_frame": step / frames,
            "epoch_seconds": step / frames * fold_padded_frames,
        }
    return out


def _scaling(rows):
    """Epoch time and peak memory against corpus size."""
    table = []
    for row in rows:
        table.append(
            {
                "factor": row["factor"],
                "utterances": row["utterances"],
                "valid_frames": row["valid_frames"],
                "steps": row["steps"],
                "padding_waste": row["padding_waste"],
                "epoch_seconds": row["epoch_seconds"],
                "ms_per_padded_frame": row["steady_ms_per_padded_frame"],
                "peak_mib": peak_mib(row),
                "cache_mib": row["cache_mib"],
                "malloc_mmap_threshold_set": row["malloc_mmap_threshold_set"],
            }
        )
    return {
        "rows": table,
        "memory_growth": spread([max(r["peak_mib"], 1e-9) for r in table]),
        "time_per_frame_spread": spread([r["ms_per_padded_frame"] for r in table]),
    }


def _target(name, key, now, with_levers, at_least):
    """One line of the targets table."""

    def holds(value):
        return bool(value >= TARGETS[key] if at_least else value < TARGETS[key])

    return {
        "name": name,
        "target": TARGETS[key],
        "comparison": ">=" if at_least else "<",
        "now": now,
        "with_levers": with_levers,
        "holds_now": holds(now),
        "holds_with_levers": holds(with_levers),
    }


def derive(results):
    """Every figure of the report (see the module docstring for the method).

    Arguments
    ---------
    results : dict
        As returned by :func:`benchmarks.suite.run_benchmark`.

    Returns
    -------
    dict
        ``headline`` (the plain figures of :data:`HEADLINE_NOTES`), ``precision``
        (fp32 against bf16), ``steps``, ``ratios``, ``extraction``, ``params``,
        ``padding``, ``efficiency``, ``scaling``, ``protocol``, ``targets``.
    """
    size = BenchmarkSize(**results["size"])
    tasks = results["tasks"]
    padding_rows = results["padding"]
    random_row = padding_rows[0]
    bucketed_row = next(
        row
        for row in padding_rows
        if row["batching"] == "bucketed" and row["num_buckets"] == size.num_buckets[0]
    )
    fold_padded_frames = bucketed_row["padded_frames"] * (size.folds - 1) / size.folds
    step_frames = size.step_utterances * tasks["extraction"]["step_frames"]
    loop = tasks["stage1_encoder_loop"]
    encoder_forward = loop["encoder_forward_seconds"]["best"]
    steps = _steps(tasks, encoder_forward, step_frames, fold_padded_frames)
    efficiency = _efficiency(tasks["efficiency"], fold_padded_frames)

    def same_batch(numerator, denominator):
        return steps[numerator]["seconds"] / steps[denominator]["seconds"]

    flops1 = tasks["stage1_cached"]["flops"]
    # Each way of training at its own batch: the cached stages at the paper's batch
    # (measured); the encoder in the loop as its measured encoder forward per frame
    # plus the cached stage; full fine-tuning at the fixed batch (as SpeechBrain's
    # recipe, whose batch memory keeps small).
    encoder_per_frame = encoder_forward / step_frames
    finetune_per_frame = steps["full_finetune"]["seconds"] / step_frames
    s1 = efficiency["stage1"]["seconds_per_frame"]
    s1_tuned = efficiency["stage1_tuned"]["seconds_per_frame"]
    s2 = efficiency["stage2"]["seconds_per_frame"]
    ratios = {
        "stage1_vs_encoder_loop": same_batch("stage1_encoder_loop", "stage1_cached"),
        "stage1_vs_full_finetune": same_batch("full_finetune", "stage1_cached"),
        "tuned_stage1_vs_encoder_loop": same_batch(
            "stage1_encoder_loop", "stage1_cached_tuned"
        ),
        "tuned_stage1_vs_full_finetune": same_batch(
            "full_finetune", "stage1_cached_tuned"
        ),
        "stage2_vs_encoder_loop": same_batch("stage2_encoder_loop", "stage2_cached"),
        "stage2_vs_full_finetune": same_batch("full_finetune", "stage2_cached"),
        "flops_encoder_loop_vs_stage1": loop["flops"] / flops1,
        "flops_full_finetune_vs_stage1": tasks["full_finetune"]["flops"] / flops1,
        "flops_tuned_vs_stage1": tasks["stage1_cached_tuned"]["flops"] / flops1,
        "encoder_forward_share_of_loop_step": encoder_forward
        / steps["stage1_encoder_loop"]["seconds"],
        "memory_encoder_loop_vs_stage1": peak_mib(loop)
        / max(peak_mib(tasks["stage1_cached"]), 1e-9),
        "memory_full_finetune_vs_stage1": peak_mib(tasks["full_finetune"])
        / max(peak_mib(tasks["stage1_cached"]), 1e-9),
        "stage1_vs_encoder_loop_paper_batch": (encoder_per_frame + s1) / s1,
        "stage1_vs_full_finetune_paper_batch": finetune_per_frame / s1,
        "tuned_stage1_vs_encoder_loop_paper_batch": (encoder_per_frame + s1_tuned)
        / s1_tuned,
        "tuned_stage1_vs_full_finetune_paper_batch": finetune_per_frame / s1_tuned,
    }
    # Time ratio = FLOP ratio x the adapter's FLOP/s relative to the other's.
    ratios["adapter_efficiency_vs_encoder_loop"] = (
        ratios["stage1_vs_encoder_loop"] / ratios["flops_encoder_loop_vs_stage1"]
    )
    ratios["adapter_efficiency_vs_full_finetune"] = (
        ratios["stage1_vs_full_finetune"] / ratios["flops_full_finetune_vs_stage1"]
    )
    ratios["adapter_efficiency_needed_vs_encoder_loop"] = (
        TARGETS["stage1_vs_encoder_loop"] / ratios["flops_encoder_loop_vs_stage1"]
    )

    extraction = dict(tasks["extraction"])
    extraction["corpus_hours"] = (
        float(corpus_durations(size).sum())
        / extraction["audio_seconds_per_second"]
        / 3600
    )
    params = {
        "adapter": tasks["stage1_cached"]["trainable_params"],
        "adapter_sap_classifier": tasks["stage2_cached"]["trainable_params"],
        "encoder": tasks["extraction"]["encoder_params"],
        "full_finetune_trainable": tasks["full_finetune"]["trainable_params"],
    }
    params["encoder_over_adapter"] = (
        params["encoder"] / params["adapter_sap_classifier"]
    )
    params["adapter_share_percent"] = (
        100.0 * params["adapter_sap_classifier"] / params["encoder"]
    )
    padding = {
        "random": random_row["padding_waste"],
        "bucketed": bucketed_row["padding_waste"],
        "pool_sorted": next(
            row["padding_waste"]
            for row in padding_rows
            if row["batching"] == "pool_sorted"
        ),
        "recommended_num_buckets": size.num_buckets[0],
        "rows": padding_rows,
    }
    scaling = _scaling(results["scaling"])

    epochs = size.folds * size.epochs_per_stage
    hours = fold_padded_frames * epochs / 3600
    protocol = {
        "folds": size.folds,
        "epochs_per_stage": size.epochs_per_stage,
        "extraction_hours": extraction["corpus_hours"],
        "cached_hours": extraction["corpus_hours"] + hours * (s1 + s2),
        "cached_tuned_hours": extraction["corpus_hours"] + hours * (s1_tuned + s2),
        "encoder_loop_hours": hours * (2 * encoder_per_frame + s1 + s2),
        "full_finetune_hours": hours * finetune_per_frame,
    }
    targets = [
        _target(
            "Stage-1 epoch vs frozen encoder in the loop (x faster, same batch)",
            "stage1_vs_encoder_loop",
            ratios["stage1_vs_encoder_loop"],
            ratios["tuned_stage1_vs_encoder_loop"],
            at_least=True,
        ),
        _target(
            "Stage-1 epoch vs full fine-tuning (x faster, same batch)",
            "stage1_vs_full_finetune",
            ratios["stage1_vs_full_finetune"],
            ratios["tuned_stage1_vs_full_finetune"],
            at_least=True,
        ),
        _target(
            "Padding waste (random batches now, bucketed with the levers)",
            "padding_waste",
            padding["random"],
            padding["bucketed"],
            at_least=False,
        ),
        _target(
            "Stage-1 step FLOP/s / matmul peak",
            "fraction_of_matmul_peak",
            efficiency["stage1"]["fraction_of_peak"],
            efficiency["stage1_tuned"]["fraction_of_peak"],
            at_least=True,
        ),
        _target(
            "Peak memory growth, smallest to largest corpus",
            "memory_growth",
            scaling["memory_growth"],
            scaling["memory_growth"],
            at_least=False,
        ),
    ]
    precision = tasks["precision"]
    headline = {
        "bf16_speedup_stage1": precision["stage1"]["bf16_speedup"],
        "bf16_speedup_stage2": precision["stage2"]["bf16_speedup"],
        "stage1_bf16_peak_share": precision["peak_share"]["stage1"]["bf16"],
        "kmeans_share_of_step": precision["kmeans"]["share_of_bf16_step"],
        "stage1_vs_encoder_in_loop": precision["stage1_vs_encoder_in_loop_bf16"],
        "whisper_native_vs_pad30": None,
    }
    headline_reasons = {}
    whisper = tasks.get("whisper_extraction", {"reason": "not run"})
    if "reason" in whisper:
        headline_reasons["whisper_native_vs_pad30"] = whisper["reason"]
    else:
        headline["whisper_native_vs_pad30"] = whisper["native_vs_pad30_fp32"]["wall"]
    extraction_precision = None
    if "extraction_bf16" in tasks:
        extraction_precision = {
            precision: tasks[name]["audio_seconds_per_second"]
            for precision, name in (("fp32", "extraction"), ("bf16", "extraction_bf16"))
        }
        extraction_precision["bf16_speedup"] = (
            extraction_precision["bf16"] / extraction_precision["fp32"]
        )
    emodb_protocol = None
    if "emodb_protocol" in results:
        emodb_protocol = {
            **results["emodb_protocol"],
            **protocol_figures(results["emodb_protocol"]),
        }
    return {
        "headline": headline,
        "headline_reasons": headline_reasons,
        "whisper": whisper,
        "extraction_precision": extraction_precision,
        "emodb_protocol": emodb_protocol,
        "precision": precision,
        "steps": steps,
        "ratios": ratios,
        "extraction": extraction,
        "params": params,
        "padding": padding,
        "efficiency": efficiency,
        "scaling": scaling,
        "protocol": protocol,
        "targets": targets,
    }
