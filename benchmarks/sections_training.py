"""The sections of ``BENCHMARKS.md`` about the training step: the targets, the
configurations side by side (a), the parameters (c), FLOP/s and the speed levers
(e), float32 against bf16 (g), and the closing note.

Each section maps ``(results, derived)`` to its lines; tables are columns given as
data (:func:`benchmarks.markdown.column_table`).

Authors
 * ser_lib contributors
"""

from benchmarks.config import BenchmarkSize
from benchmarks.figures import STEP_CONFIGS
from benchmarks.markdown import column_table, fmt, percent, render_section, yes
from benchmarks.measure import matmul_flops
from benchmarks.sections_data import memory_label


def _same_batch_sentence(ratios, subject, than="than with"):
    """The side-by-side speed-ups of stages 1 and 2 (sections a and the closing note)."""
    return (
        f"{subject} **{fmt(ratios['stage1_vs_encoder_loop'])}x** faster {than} the "
        "frozen encoder in the loop and "
        f"**{fmt(ratios['stage1_vs_full_finetune'])}x** faster than full "
        f"fine-tuning ({fmt(ratios['tuned_stage1_vs_encoder_loop'])}x and "
        f"{fmt(ratios['tuned_stage1_vs_full_finetune'])}x with the levers); stage 2 "
        f"{fmt(ratios['stage2_vs_encoder_loop'])}x and "
        f"{fmt(ratios['stage2_vs_full_finetune'])}x."
    )


def _own_batch_ratios(ratios):
    """Stage 1 against the others, each at its own batch: 'Ax and Bx faster (...)'."""
    return (
        f"{fmt(ratios['stage1_vs_encoder_loop_paper_batch'])}x and "
        f"{fmt(ratios['stage1_vs_full_finetune_paper_batch'])}x faster"
        f"{{per_epoch}} ({fmt(ratios['tuned_stage1_vs_encoder_loop_paper_batch'])}x "
        f"and {fmt(ratios['tuned_stage1_vs_full_finetune_paper_batch'])}x with the "
        "levers)."
    )


LEVERS = (
    (
        "student forward + backward",
        "student_all_frames",
        "student_masked_frames",
        "outputs of the masked frames only (`output_mask`)",
        "the student's outputs at the masked frames only (`output_mask`)",
    ),
    (
        "teacher forward",
        "teacher_no_grad",
        "teacher_inference_mode",
        "under `torch.inference_mode()`",
        "the teacher under `inference_mode`",
    ),
    (
        "EMA update",
        "ema_per_tensor",
        "ema_foreach",
        "one `torch._foreach_lerp_`",
        "a foreach EMA",
    ),
    ("Adam step", "adam_single_tensor", None, None, "fused or foreach Adam"),
)
"""Parts of the stage-1 step with a faster form: label, timing now, faster timing
(None: the faster Adam), that form, its name in the closing note."""


def _lever_savings(levers):
    """Per lever: (label, seconds as now, seconds in the faster form, form, name)."""
    adam_best = min(("adam_foreach", "adam_fused"), key=lambda k: levers[k])
    rows = []
    for label, now, faster, form, name in LEVERS:
        if faster is None:
            faster, form = adam_best, "`" + adam_best.replace("adam_", "") + "=True`"
        rows.append((label, levers[now], levers[faster], form, name))
    rows.append(
        (
            "k-means update (assigns again)",
            levers["kmeans_update"],
            levers["kmeans_update"] - levers["kmeans_assign"],
            "reuse the pseudo-label assignment",
            "reusing the pseudo-label assignment in the k-means update",
        )
    )
    return rows


TARGET_COLUMNS = (
    ("Target", lambda t: t["name"]),
    ("Required", lambda t: f"{t['comparison']} {t['target']}"),
    ("Now", lambda t: fmt(t["now"])),
    ("Holds", lambda t: yes(t["holds_now"])),
    ("With the levers", lambda t: fmt(t["with_levers"])),
    ("Holds", lambda t: yes(t["holds_with_levers"])),
)
"""The columns of the targets table: header, cell of a target."""


def targets_section(results, derived):
    """The targets, now and with the speed levers."""
    return render_section(
        "Targets",
        '"Now" is `AdapterBrain` (the student computes its outputs at the masked '
        "frames only) with PyTorch's default Adam and random batches; \"with the "
        'levers" uses the fused Adam and length-bucketed batches '
        "(`fused: True`, `ser_lib.sampling.bucketed_sampler`); the recipes' "
        "default batches are pool-sorted instead (section d gives their padding).",
        column_table(TARGET_COLUMNS, derived["targets"]),
    )


STEP_COLUMNS = (
    ("Configuration", lambda step: step["label"]),
    ("Step (s)", lambda step: fmt(step["seconds"])),
    ("x stage 1", lambda step: fmt(step["ratio_to_stage1"])),
    ("Epoch (min)", lambda step: fmt(step["epoch_seconds"] / 60)),
    ("Peak memory (MiB)", lambda step: fmt(step["peak_mib"])),
    (
        "GFLOP / step",
        lambda step: fmt(step["flops"] / 1e9) if step["flops"] else "–",
    ),
    ("Trainable params", lambda step: fmt(step["trainable_params"])),
)
"""The columns of section a: header, cell of a configuration's step."""


def steps_section(results, derived):
    """a. The side-by-side training configurations."""
    size = BenchmarkSize(**results["size"])
    steps, ratios = derived["steps"], derived["ratios"]
    eff = derived["efficiency"]
    frames = results["tasks"]["extraction"]["step_frames"]
    return render_section(
        "a. Training steps and epochs: cached features, encoder in the loop, "
        "full fine-tuning",
        f"One batch for every configuration: {size.step_utterances} utterances x "
        f"{size.step_seconds:g} s ({frames} frames each, no padding). The epoch "
        "column extrapolates to a training fold of the IEMOCAP-like corpus (4/5 of "
        f"{size.corpus_utterances} utterances, bucketed batches): step time per "
        "frame x the fold's padded frames, so epoch ratios equal step ratios. The "
        "derived stage-2 row is the measured encoder forward of the stage-1 loop "
        "plus the cached stage-2 step. Memory: "
        f"{memory_label(results)}, MiB.",
        column_table(STEP_COLUMNS, [steps[name] for name, _ in STEP_CONFIGS]),
        _same_batch_sentence(ratios, "On this batch, stage 1 on cached features is")
        + " In FLOPs the encoder-in-the-"
        f"loop step is {fmt(ratios['flops_encoder_loop_vs_stage1'])}x a cached "
        "stage-1 step and full fine-tuning "
        f"{fmt(ratios['flops_full_finetune_vs_stage1'])}x (the levers cut stage 1 "
        f"to {fmt(ratios['flops_tuned_vs_stage1'])}x its FLOPs); the encoder "
        "forward is "
        f"{percent(ratios['encoder_forward_share_of_loop_step'])} of the "
        "encoder-in-the-loop step.",
        "With each way of training at its own batch (cached stages at the paper's "
        f"{eff['batch_utterances']} utterances, measured in e; the encoder in the "
        "loop as its encoder forward per frame plus that; full fine-tuning at the "
        "batch above, as SpeechBrain's recipe keeps it small), stage 1 on cached "
        "features is " + _own_batch_ratios(ratios).format(per_epoch=" per epoch"),
    )


PARAM_ROWS = (
    ("WAP-Transformer adapter (stage 1)", "adapter"),
    ("Adapter + SAP + classifier (stage 2)", "adapter_sap_classifier"),
    ("Encoder (frozen)", "encoder"),
    (
        "Full fine-tuning (encoder without its CNN, + stage-2 head)",
        "full_finetune_trainable",
    ),
)
"""The rows of section c: label, key of ``derived["params"]``."""


def params_section(results, derived):
    """c. Trainable parameters."""
    params = derived["params"]
    return render_section(
        "c. Trainable parameters",
        (["Module", "Parameters"], [[lab, fmt(params[k])] for lab, k in PARAM_ROWS]),
        f"The trained part has {fmt(params['adapter_share_percent'])} % of the "
        "encoder's parameters (encoder / trained = "
        f"{fmt(params['encoder_over_adapter'])}).",
    )


EFFICIENCY_STAGES = (
    ("stage1", "stage 1"),
    ("stage1_tuned", "stage 1 with the levers"),
    ("stage2", "stage 2"),
)
"""The step rows of section e: key of ``derived["efficiency"]``, label."""


def efficiency_section(results, derived):
    """e. FLOP/s against the matmul peak, and the levers."""
    eff = derived["efficiency"]
    batch = f"{eff['batch_utterances']} x {eff['frames_per_utterance']}"
    size = eff["matmul_size"]
    rows = [
        [
            f"matmul {size} x {size} ({eff['dtype']})",
            "–",
            fmt(matmul_flops(size) / 1e9),
            "–",
            fmt(eff["matmul_peak_flop_per_s"] / 1e9),
            "100 %",
        ]
    ]
    rows += [
        [
            label,
            batch,
            fmt(eff[stage]["flops"] / 1e9),
            fmt(eff[stage]["step_seconds"]),
            fmt(eff[stage]["flop_per_s"] / 1e9),
            percent(eff[stage]["fraction_of_peak"]),
        ]
        for stage, label in EFFICIENCY_STAGES
    ]
    lever_rows = [
        [label, fmt(1e3 * now), fmt(1e3 * faster), form]
        for label, now, faster, form, _ in _lever_savings(eff["levers"])
    ]
    return render_section(
        "e. Achieved FLOP/s of a training step against the matmul peak",
        (["Step", "Batch", "GFLOP", "Step (s)", "GFLOP/s", "Share of peak"], rows),
        "FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` "
        "(matrix products, convolutions and attention; element-wise work is not "
        "counted), the matmul peak in the same process, dtype and threads, the "
        "steps and the matmul in turns (best of the rounds). At this "
        f"batch a cached epoch takes {fmt(eff['stage1']['epoch_seconds'] / 60)} "
        f"min for stage 1 ({fmt(eff['stage1_tuned']['epoch_seconds'] / 60)} with "
        f"the levers) and {fmt(eff['stage2']['epoch_seconds'] / 60)} min for "
        "stage 2.",
        "Parts of the stage-1 step that have a faster form, timed on the same "
        "batch (interleaved):",
        (["Part", "As now (ms)", "Faster (ms)", "Faster form"], lever_rows),
    )


def precision_rows(precision, labels):
    """The fp32 / bf16 rows of both stages (this report's g and the device check).

    Arguments
    ---------
    precision : dict
        :func:`benchmarks.precision.precision_steps`' output.
    labels : sequence of (str, str)
        Per row: the stage (``stage1``, ``stage2``) and its label.

    Returns
    -------
    list of list
        Label, fp32 and bf16 medians (s), fp32 / bf16, share of the matmul peaks.

    Example
    -------
    >>> entry = {"fp32": {"median": 2.0}, "bf16": {"median": 1.0}, "bf16_speedup": 2.0}
    >>> share = {"stage1": {"fp32": 0.5, "bf16": 0.25}}
    >>> precision_rows({"stage1": entry, "peak_share": share}, [("stage1", "s1")])
    [['s1', '2', '1', '2x', '50.0 % / 25.0 %']]
    """
    rows = []
    for stage, label in labels:
        entry, share = precision[stage], precision["peak_share"][stage]
        rows.append(
            [
                label,
                fmt(entry["fp32"]["median"]),
                fmt(entry["bf16"]["median"]),
                f"{fmt(entry['bf16_speedup'])}x",
                f"{percent(share['fp32'])} / {percent(share['bf16'])}",
            ]
        )
    return rows


def precision_section(results, derived):
    """g. float32 against bf16 autocast, both stages, with the bf16 matmul peak."""
    precision = derived["precision"]
    shape = precision["shape"]
    peaks = precision["matmul_peak"]
    matmul = f"{fmt(peaks['fp32'] / 1e9)} / {fmt(peaks['bf16'] / 1e9)} GFLOP/s"
    stages = (("stage1", "stage 1 (fused Adam)"), ("stage2", "stage 2"))
    kmeans = precision["kmeans"]
    return render_section(
        "g. bf16 autocast against float32",
        (
            [
                "Step",
                "fp32 (s)",
                "bf16 (s)",
                "fp32 / bf16",
                "Share of the fp32 / bf16 matmul peak",
            ],
            [["matmul", "–", "–", "–", matmul]] + precision_rows(precision, stages),
        ),
        f"Batch of {shape['batch_utterances']} x {shape['frames']} frames of "
        f"{shape['input_dim']}-d features, d_model {shape['d_model']}, K "
        f"{shape['num_prototypes']}; medians of steps timed in turns, the matmul "
        "peaks in the same rounds. Under bf16 the SAP statistics, the losses, the "
        "EMA teacher and the k-means stay in float32. The k-means update with the "
        f"step's assignment reused takes {fmt(1e3 * kmeans['update_reused'])} ms "
        f"({percent(kmeans['share_of_bf16_step'])} of the bf16 stage-1 step; "
        f"{fmt(1e3 * kmeans['update_recomputed'])} ms when it re-assigns). With "
        "the frozen encoder in the loop, both under bf16, stage 1 per frame is "
        f"{fmt(precision['stage1_vs_encoder_in_loop_bf16'])}x faster on cached "
        "features.",
    )


def closing_note(derived):
    """The closing note: the ratios, which targets hold, what stands in the way.

    Arguments
    ---------
    derived : dict
        :func:`benchmarks.figures.derive`'s output.

    Returns
    -------
    str
        Markdown.
    """
    ratios, eff, params = derived["ratios"], derived["efficiency"], derived["params"]
    padding, scaling = derived["padding"], derived["scaling"]
    step = eff["stage1"]["step_seconds"]
    savings = [
        f"{name} saves {fmt(1e3 * (now - faster))} ms"
        for _, now, faster, _, name in _lever_savings(eff["levers"])
    ]
    targets = [
        f"* {t['name']}: {fmt(t['now'])} now, {fmt(t['with_levers'])} with the "
        f"levers (required {t['comparison']} {t['target']}): "
        + ("holds" if t["holds_with_levers"] else "**missed**")
        + (" (holds now)" if t["holds_now"] else "")
        + "."
        for t in derived["targets"]
    ]
    obstacles = [
        "* **Speed-up ratios on the same batch.** They follow the arithmetic. A "
        f"cached stage-1 step runs the {fmt(params['adapter'] / 1e6)} M-parameter "
        "adapter four times per frame (student forward and backward, teacher "
        "forward) plus the K-way prototype products; the encoder forward alone "
        f"costs {fmt(ratios['flops_encoder_loop_vs_stage1'] - 1.0)}x those FLOPs. A "
        "step with the encoder in the loop does "
        f"{fmt(ratios['flops_encoder_loop_vs_stage1'])}x the FLOPs of a cached "
        f"stage-1 step, full fine-tuning {fmt(ratios['flops_full_finetune_vs_stage1'])}x; "
        "the time ratios are these FLOP ratios times the adapter's hardware "
        "efficiency (FLOP/s) relative to the other configuration's, here "
        f"{fmt(ratios['adapter_efficiency_vs_encoder_loop'])} and "
        f"{fmt(ratios['adapter_efficiency_vs_full_finetune'])}. 20x against the "
        "encoder in the loop thus needs the adapter to run "
        f"{fmt(ratios['adapter_efficiency_needed_vs_encoder_loop'])}x "
        "more efficiently than HuBERT-large's forward, or less stage-1 work per "
        "frame than the method does (the levers remove "
        f"{percent(1.0 - ratios['flops_tuned_vs_stage1'])} of it). Each at its own "
        "batch (the cache lets stage 1 use the paper's batch of "
        f"{eff['batch_utterances']}) the ratios are "
        f"{fmt(ratios['tuned_stage1_vs_encoder_loop_paper_batch'])}x and "
        f"{fmt(ratios['tuned_stage1_vs_full_finetune_paper_batch'])}x with the "
        "levers.",
        f"* **Padding.** Random batches of IEMOCAP-like durations waste "
        f"{percent(padding['random'])} of the frames, bucketed batches "
        f"({padding['recommended_num_buckets']} equal-count buckets) "
        f"{percent(padding['bucketed'])}, and the recipes' default, pool-sorted "
        "batches of exactly the paper's size (`ser_lib.sampling."
        f"PoolSortedBatchSampler`), {percent(padding['pool_sorted'])}.",
        "* **Share of the matmul peak.** Stage 1 reaches "
        f"{percent(eff['stage1']['fraction_of_peak'])} of the matmul peak "
        f"({percent(eff['stage1_tuned']['fraction_of_peak'])} with the levers, "
        "which remove matrix work). The rest goes to work the FLOP count does not "
        "see: layer norms, GELU, softmax, masking and gathers, and the optimiser "
        "and EMA updates, one small tensor at a time (on a shared 2-core machine "
        "every such operation also waits for both threads). Of the "
        f"{fmt(step)} s step, "
        + "; ".join(savings)
        + " (a negative saving is noise: no gain).",
        "* **Memory.** The cache is memory-mapped and read one utterance at a "
        "time, so the peak is set by the largest batch and the models: from the "
        f"smallest to the largest corpus it moves by {percent(scaling['memory_growth'])}.",
    ]
    out = render_section(
        "Closing note",
        _same_batch_sentence(
            ratios,
            "Ratios on the same batch, side by side: stage 1 on cached features is",
            than="per step and epoch than stage 1 with",
        )
        + " Each at its own batch, stage 1 is "
        + _own_batch_ratios(ratios).format(per_epoch=""),
        "\n".join(targets),
        "What stands in the way:",
        "\n".join(obstacles),
    )
    return "\n".join(out)
