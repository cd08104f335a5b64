"""Writes the benchmark report: ``BENCHMARKS.md`` and ``benchmarks.json``.

Authors
 * ser_lib contributors
"""

import json
import os
from pathlib import Path

from benchmarks.config import HUBERT_LARGE, BenchmarkSize
from benchmarks.figures import (
    HEADLINE_NOTES,
    REQUIRED_FIGURES,
    STEP_CONFIGS,
    derive,
    figure,
)

MD_FILE = "BENCHMARKS.md"
JSON_FILE = "benchmarks.json"


def fmt(value, digits=3):
    """A number for the tables: ``digits`` significant digits, thousands grouped.

    Example
    -------
    >>> fmt(0.012345), fmt(1234.5), fmt(12), fmt(None)
    ('0.0123', '1,234', '12', '–')
    """
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}" if abs(value) < 1e3 else f"{value:,.0f}"


def percent(value):
    """A fraction as a percentage with one decimal.

    Example
    -------
    >>> percent(0.0712)
    '7.1 %'
    """
    return f"{100 * value:.1f} %"


def table(header, rows):
    """A markdown table.

    Example
    -------
    >>> print(table(["a", "b"], [[1, 2]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _memory_label(results):
    """What the memory columns measure."""
    if results["device"] == "cuda":
        return "peak GPU memory (`torch.cuda.max_memory_allocated`)"
    where = (
        "a fresh process per configuration"
        if results["isolated"]
        else ("every configuration in one process")
    )
    return f"peak RSS growth over the RSS when the configuration starts ({where})"


def _header(results, command):
    """Title, command, machine and method."""
    size = BenchmarkSize(**results["size"])
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    gpu = machine["gpu"]
    if gpu:
        device = (
            f"GPU {gpu['name']} ({gpu['memory_gib']:.0f} GiB, CUDA {gpu['cuda']}), "
            "bf16 autocast"
        )
    else:
        device = f"CPU only, {machine['torch_threads']} torch threads, float32"
    large = all(size.encoder.get(k) == v for k, v in HUBERT_LARGE.items())
    after = results.get("machine_after", {}).get("load_average")
    out = [
        "# Benchmarks: the cost of training on cached features",
        "",
        "Regenerate with:",
        "",
        f"    {command}",
        "",
        f"Measured {results['started']} in {results['seconds']:.0f} s (size "
        f"`{size.name}`) on {machine['cpu']} ({machine['cpu_count']} cores, "
        f"{fmt(machine['memory_gib'])} GiB RAM); {device}. {versions}. Commit "
        f"{machine['commit'] or 'unknown'}. Load average (1, 5, 15 min) at the "
        f"start {_loads(machine['load_average'])}, at the end {_loads(after)}: "
        "other jobs shared the machine, so times are noisy (each figure is the "
        "best of its timed steps; other work only ever adds time; every time is in "
        "`benchmarks.json`).",
        "",
        f"The encoder is {'HuBERT-large-sized' if large else 'a toy HuBERT'} "
        f"(`transformers.HubertConfig`: hidden {size.encoder['hidden_size']}, "
        f"{size.encoder['num_hidden_layers']} layers, "
        f"{size.encoder['num_attention_heads']} heads, intermediate "
        f"{size.encoder['intermediate_size']}, layer-norm feature extractor, "
        "pre-LN) with **random weights**, loaded through `HFEncoder` like a real "
        "checkpoint; time and memory do not depend on the weights. Inputs are white "
        "noise and random features of the same shapes. The adapter has width "
        f"{size.adapter['d_model']}, {size.adapter['num_layers']} blocks, "
        f"{size.adapter['nhead']} heads and K = {size.num_prototypes} local "
        "attributes, and trains through the project's own `AdapterBrain` and "
        "`FinetuneBrain`.",
        "",
    ]
    if not gpu:
        out += [
            "**No GPU run was possible**: this session had no GPU machine. On a "
            "machine with CUDA the same command measures the GPU (bf16 autocast, "
            "`torch.cuda.max_memory_allocated`), which gives the GPU table and the "
            "wall time of the paper protocol there.",
            "",
        ]
    return out


def _loads(values):
    """A load-average triple."""
    return "unknown" if not values else ", ".join(f"{v:.2f}" for v in values)


def render_section(title, *blocks):
    """A report section: its title, then paragraphs and tables, blank-line separated.

    Arguments
    ---------
    title : str
        The heading (without ``##``).
    *blocks : str or tuple
        A paragraph, or a table as ``(header, rows)``.

    Returns
    -------
    list of str
        The lines.

    Example
    -------
    >>> print("\\n".join(render_section("x", "Text.", (["a"], [[1]]))))
    ## x
    <BLANKLINE>
    Text.
    <BLANKLINE>
    | a |
    |---|
    | 1 |
    <BLANKLINE>
    """
    out = ["## " + title, ""]
    for block in blocks:
        out += [block if isinstance(block, str) else table(*block), ""]
    return out


def _yes(holds):
    return "yes" if holds else "**no**"


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


def _targets_section(results, derived):
    """The targets, now and with the speed levers."""
    rows = [
        [
            t["name"],
            f"{t['comparison']} {t['target']}",
            fmt(t["now"]),
            _yes(t["holds_now"]),
            fmt(t["with_levers"]),
            _yes(t["holds_with_levers"]),
        ]
        for t in derived["targets"]
    ]
    return render_section(
        "Targets",
        '"Now" is `AdapterBrain` (the student computes its outputs at the masked '
        "frames only) with PyTorch's default Adam and random batches; \"with the "
        'levers" uses the fused Adam and length-bucketed batches '
        "(`fused: True`, `ser_lib.sampling.bucketed_sampler`); the recipes' "
        "default batches are pool-sorted instead (section d gives their padding).",
        (["Target", "Required", "Now", "Holds", "With the levers", "Holds"], rows),
    )


def _steps_section(results, derived):
    """a. The side-by-side training configurations."""
    size = BenchmarkSize(**results["size"])
    steps, ratios = derived["steps"], derived["ratios"]
    eff = derived["efficiency"]
    frames = results["tasks"]["extraction"]["step_frames"]
    rows = [
        [
            steps[name]["label"],
            fmt(steps[name]["seconds"]),
            fmt(steps[name]["ratio_to_stage1"]),
            fmt(steps[name]["epoch_seconds"] / 60),
            fmt(steps[name]["peak_mib"]),
            fmt(steps[name]["flops"] / 1e9) if steps[name]["flops"] else "–",
            fmt(steps[name]["trainable_params"]),
        ]
        for name, _ in STEP_CONFIGS
    ]
    header = [
        "Configuration",
        "Step (s)",
        "x stage 1",
        "Epoch (min)",
        "Peak memory (MiB)",
        "GFLOP / step",
        "Trainable params",
    ]
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
        f"{_memory_label(results)}, MiB.",
        (header, rows),
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


def _extraction_section(results, derived):
    """b. Feature-extraction throughput."""
    size = BenchmarkSize(**results["size"])
    ext = derived["extraction"]
    header = ["Utterances", "Audio (s)", "Wall (s)", "Audio s / s", "IEMOCAP-size (h)"]
    row = [ext["utterances"]] + [
        fmt(ext[key])
        for key in ("audio_seconds", "seconds", "audio_seconds_per_second")
    ]
    rows = [["fp32"] + row + [fmt(ext["corpus_hours"])]]
    by_precision = derived.get("extraction_precision")
    if by_precision:
        bf16 = results["tasks"]["extraction_bf16"]
        rows.append(
            ["bf16 autocast", bf16["utterances"]]
            + [
                fmt(bf16[key])
                for key in ("audio_seconds", "seconds", "audio_seconds_per_second")
            ]
            + [fmt(ext["corpus_hours"] / by_precision["bf16_speedup"])]
        )
    blocks = [
        (["Precision"] + header, rows),
        "`run_feature_extraction` end to end (read the wav, encode, write float16 "
        "`.npy`) with length-sorted batches of at most "
        f"{size.extraction_batch_seconds:g} s of padded audio, on IEMOCAP-like "
        f"durations clipped to {size.extraction_max_seconds:g} s, with the "
        "encoder above (random weights), in float32 and under bf16 autocast"
        + (
            f" (bf16 {fmt(by_precision['bf16_speedup'])}x the float32 throughput)"
            if by_precision
            else ""
        )
        + ". The last column extrapolates to the whole IEMOCAP-like corpus; "
        "extraction runs once, then every epoch reads the cache.",
    ]
    return render_section(
        "b. Feature extraction throughput", *blocks, *_whisper_blocks(derived)
    )


def _whisper_blocks(derived):
    """Whisper-base ``pad30`` against ``native`` extraction (or why it is absent)."""
    whisper = derived.get("whisper") or {"reason": "not run"}
    if "reason" in whisper:
        return [
            "Whisper-base `pad30` against `native` on EmoDB: **not measured** "
            f"({whisper['reason']}); `whisper_native_vs_pad30` is null."
        ]
    rows = []
    for name, row in whisper["rows"].items():
        mode, precision = name.split("_")
        rows.append(
            [
                mode,
                precision,
                fmt(row["wall_s"]),
                fmt(row["audio_s_per_wall_s"]),
                fmt(row["audio_s_per_cpu_s"]),
            ]
        )
    ratios = [
        f"{precision}: native {fmt(whisper[key]['wall'])}x faster than pad30 "
        f"(CPU time {fmt(whisper[key]['cpu'])}x)"
        for precision in ("fp32", "bf16")
        if (key := f"native_vs_pad30_{precision}") in whisper
    ]
    cosines = [
        f"{mode} {whisper[key]:.4f}"
        for mode in ("pad30", "native")
        if (key := f"bf16_vs_fp32_cosine_{mode}") in whisper
    ]
    return [
        (
            [
                "Whisper input",
                "Precision",
                "Wall (s)",
                "Audio s / s",
                "Audio s / CPU s",
            ],
            rows,
        ),
        "The Whisper model of `--whisper_source` (whisper-base, real weights) on "
        f"{whisper['num_utterances']} utterances of `--emodb_wav_folder` "
        f"({fmt(whisper['audio_seconds'])} s of audio, evenly spaced in name "
        "order), `benchmarks.extraction.whisper_throughput` (the code of "
        "`tools/extraction_throughput.py`): " + "; ".join(ratios) + ". Mean "
        "per-frame cosine of the bf16 features to the float32 ones: "
        + ", ".join(cosines)
        + ".",
    ]


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


def _params_section(results, derived):
    """c. Trainable parameters."""
    params = derived["params"]
    return render_section(
        "c. Trainable parameters",
        (["Module", "Parameters"], [[lab, fmt(params[k])] for lab, k in PARAM_ROWS]),
        f"The trained part has {fmt(params['adapter_share_percent'])} % of the "
        "encoder's parameters (encoder / trained = "
        f"{fmt(params['encoder_over_adapter'])}).",
    )


def _padding_section(results, derived):
    """d. Padding waste."""
    size = BenchmarkSize(**results["size"])
    rows = [
        [
            row["batching"],
            row["num_buckets"] if row["num_buckets"] is not None else "–",
            row["batches"],
            fmt(row["mean_batch_utterances"]),
            row["max_batch_utterances"],
            percent(row["padding_waste"]),
        ]
        for row in derived["padding"]["rows"]
    ]
    header = [
        "Batching",
        "Buckets",
        "Batches",
        "Mean utt. / batch",
        "Max utt. / batch",
        "Padding waste",
    ]
    return render_section(
        "d. Padding waste",
        f"IEMOCAP-like corpus: {size.corpus_utterances} log-normal durations (mean "
        f"{size.mean_seconds:g} s, sigma {size.duration_sigma:g}, longest "
        f"{size.max_seconds:g} s), cropped to {size.max_frames} frames as in "
        f"training. Random and pool-sorted batches hold {size.batch_utterances} "
        f"utterances; bucketed ones a budget of {size.batch_utterances} mean-length "
        "utterances. Waste = padded frames / all frames of the padded batches.",
        (header, rows),
        "`pool_sorted` is `ser_lib.sampling.PoolSortedBatchSampler`, the recipes' "
        "default `train_sampler` (pools of 20 batches sorted by length, new "
        "batch-mates every epoch; `tools/batch_statistics.py` gives its churn). "
        "`bucketed` is `ser_lib.sampling.bucketed_batch_sampler`: SpeechBrain's "
        "`DynamicBatchSampler` with equal-count bucket boundaries. "
        "`speechbrain_warped` is the same sampler with its own `num_buckets` "
        "boundaries, which lie on a log-normal grid up to the whole batch budget, "
        "so that nearly every utterance falls into the first buckets.",
    )


def _efficiency_section(results, derived):
    """e. FLOP/s against the matmul peak, and the levers."""
    eff = derived["efficiency"]
    batch = f"{eff['batch_utterances']} x {eff['frames_per_utterance']}"
    size = eff["matmul_size"]
    rows = [
        [
            f"matmul {size} x {size} ({eff['dtype']})",
            "–",
            fmt(2 * size**3 / 1e9),
            "–",
            fmt(eff["matmul_peak_flop_per_s"] / 1e9),
            "100 %",
        ]
    ]
    for stage, label in (
        ("stage1", "stage 1"),
        ("stage1_tuned", "stage 1 with the levers"),
        ("stage2", "stage 2"),
    ):
        entry = eff[stage]
        rows.append(
            [
                label,
                batch,
                fmt(entry["flops"] / 1e9),
                fmt(entry["step_seconds"]),
                fmt(entry["flop_per_s"] / 1e9),
                percent(entry["fraction_of_peak"]),
            ]
        )
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


def _precision_section(results, derived):
    """g. float32 against bf16 autocast, both stages, with the bf16 matmul peak."""
    precision = derived["precision"]
    shape = precision["shape"]
    peaks = precision["matmul_peak"]
    rows = [
        [
            "matmul",
            "–",
            "–",
            "–",
            f"{fmt(peaks['fp32'] / 1e9)} / {fmt(peaks['bf16'] / 1e9)} GFLOP/s",
        ]
    ]
    for stage, label in (("stage1", "stage 1 (fused Adam)"), ("stage2", "stage 2")):
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
            rows,
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


SCALING_COLUMNS = (
    ("Corpus", lambda row: f"{row['factor']}x"),
    ("Utterances", lambda row: row["utterances"]),
    ("Frames", lambda row: fmt(row["valid_frames"])),
    ("Cache (MiB)", lambda row: fmt(row["cache_mib"])),
    ("Steps", lambda row: row["steps"]),
    ("Padding", lambda row: percent(row["padding_waste"])),
    ("Epoch (s)", lambda row: fmt(row["epoch_seconds"])),
    ("ms / padded frame", lambda row: fmt(row["ms_per_padded_frame"])),
    ("Peak memory (MiB)", lambda row: fmt(row["peak_mib"])),
)
"""The columns of section f: header, cell of a scaling row."""


def _scaling_section(results, derived):
    """f. Scaling with corpus size."""
    size = BenchmarkSize(**results["size"])
    scaling = derived["scaling"]
    rows = [[cell(row) for _, cell in SCALING_COLUMNS] for row in scaling["rows"]]
    returned = all(row["malloc_mmap_threshold_set"] for row in scaling["rows"])
    allocator = (
        "glibc returns blocks of 128 KiB and more to the system when they are "
        "freed (`mallopt`), so the peak is that of the memory in use, not of the "
        "heap glibc keeps for reuse"
        if returned
        else "glibc's default allocator (its retained heap counts)"
    )
    return render_section(
        "f. Scaling with corpus size (memory-mapped cache)",
        "One stage-1 epoch through `Brain.fit` on random features written by the "
        "real cache writer (`run_feature_extraction`) and read through "
        "`dataio.feature_dataset` (memory-mapped `.npy`), with bucketed batches of "
        f"{size.scaling_batch} mean-length utterances ({size.scaling_buckets} "
        "buckets). The k-times corpus repeats the lengths of the 1x one, so every "
        "size has the same batch shapes. Time per frame leaves out the first "
        f"(warm-up) step. Memory: {_memory_label(results)}; {allocator}.",
        ([header for header, _ in SCALING_COLUMNS], rows),
        "Time per frame varies by "
        f"{percent(scaling['time_per_frame_spread'])} across corpus sizes (0 % is "
        "exactly linear growth) and the peak memory by "
        f"{percent(scaling['memory_growth'])} (0 % is flat).",
    )


def _protocol_section(results, derived):
    """The paper protocol, extrapolated."""
    protocol = derived["protocol"]
    epochs = protocol["epochs_per_stage"]
    return render_section(
        "The paper protocol on this machine (extrapolated)",
        f"{protocol['folds']} folds x ({epochs} + {epochs}) epochs on an "
        "IEMOCAP-sized corpus, each way of training at its own batch (see a): "
        f"cached features **{fmt(protocol['cached_hours'])} h** "
        f"({fmt(protocol['cached_tuned_hours'])} h with the levers), the one-off "
        f"extraction ({fmt(protocol['extraction_hours'])} h) included; the frozen "
        f"encoder in the loop {fmt(protocol['encoder_loop_hours'])} h; full "
        f"fine-tuning, one stage of {epochs} epochs per fold, "
        f"{fmt(protocol['full_finetune_hours'])} h.",
        *_emodb_protocol_blocks(derived),
    )


def _emodb_protocol_blocks(derived):
    """The real-data EmoDB protocol: extrapolated from measured epochs, as run."""
    entry = derived.get("emodb_protocol")
    if entry is None:
        return []
    as_run = entry["as_run"]
    if "reason" in as_run:
        run_text = f"As actually run: not available ({as_run['reason']})."
    else:
        run_text = (
            f"As actually run: row `{as_run['row']}` of `{as_run['file']}` (its "
            f"command in that file; folds {as_run['folds']}), stage 1 "
            f"{fmt(as_run['stage1'] / 3600)} h + stage 2 "
            f"{fmt(as_run['stage2'] / 3600)} h = **{fmt(as_run['total'] / 3600)} h** "
            "(each stage's process wall time summed over the folds: validation, "
            "test and start-up included; the features were already cached)."
        )
    epochs = entry["epochs_per_stage"]
    head = (
        f"Real-data EmoDB protocol at the size of `{entry['config']}` "
        f"({entry['folds']} folds x ({epochs['stage1']} + {epochs['stage2']}) "
        "epochs): "
    )
    if entry["extrapolated_seconds"] is None:
        measured = entry.get("epochs")
        epoch_text = ""
        if measured:
            epoch_text = (
                " Measured epochs: stage 1 "
                f"{fmt(measured['stage1']['epoch_seconds'])} s, stage 2 "
                f"{fmt(measured['stage2']['epoch_seconds'])} s."
            )
        return [
            head + f"extrapolation **not available** ({entry['reason']})." + epoch_text,
            run_text,
        ]
    measured = entry["epochs"]
    rows = [
        [
            stage,
            measured[stage]["precision"],
            measured[stage]["steps_per_epoch"],
            measured[stage]["timed_steps"],
            fmt(measured[stage]["epoch_seconds"]),
            fmt(entry["stage_seconds"][stage] / 3600),
        ]
        for stage in ("stage1", "stage2")
    ]
    rows.append(
        [
            "extraction (Whisper-base native, fp32)",
            "fp32",
            "–",
            "–",
            "–",
            fmt(entry["extraction_seconds"] / 3600),
        ]
    )
    return [
        head + f"extrapolated **{fmt(entry['extrapolated_seconds'] / 3600)} h**: one "
        "epoch of each stage timed step by step on random features of the lengths "
        f"of a training fold of EmoDB ({measured['utterances']} of "
        f"{entry['corpus_utterances']} utterances, the recipe's pool-sorted "
        "batches), times the epochs and folds, plus EmoDB's "
        f"{fmt(entry['corpus_audio_seconds'])} s of audio at the measured Whisper "
        "native float32 throughput. Validation and test passes, start-up and data "
        "loading are not in it.",
        (
            ["Part", "Precision", "Steps / epoch", "Timed", "Epoch (s)", "Total (h)"],
            rows,
        ),
        run_text,
    ]


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


SECTIONS = (
    _targets_section,
    _steps_section,
    _extraction_section,
    _params_section,
    _padding_section,
    _efficiency_section,
    _precision_section,
    _scaling_section,
    _protocol_section,
)
"""The sections of ``BENCHMARKS.md`` after the header, in order (the closing note
follows them); each maps (results, derived) to its lines."""


def render_markdown(results, derived, command):
    """The text of ``BENCHMARKS.md`` (without the closing note).

    Arguments
    ---------
    results : dict
        Raw results of :func:`benchmarks.suite.run_benchmark`.
    derived : dict
        :func:`benchmarks.figures.derive`'s output.
    command : str
        The command that regenerates the report.

    Returns
    -------
    str
    """
    out = _header(results, command)
    for section in SECTIONS:
        out += section(results, derived)
    return "\n".join(out)


def write_report(results, output_dir, command, notes=""):
    """Writes ``BENCHMARKS.md`` and ``benchmarks.json`` into ``output_dir``.

    Arguments
    ---------
    results : dict
        Raw results of :func:`benchmarks.suite.run_benchmark`.
    output_dir : str or os.PathLike
        Created if needed.
    command : str
        The command that regenerates the report (written into it).
    notes : str
        Markdown appended after the closing note.

    Returns
    -------
    tuple of pathlib.Path
        (markdown path, JSON path).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    derived = derive(results)
    for dotted in REQUIRED_FIGURES:
        figure(derived, dotted)  # raises KeyError if a figure is missing
    text = render_markdown(results, derived, command) + "\n" + closing_note(derived)
    if notes:
        text += "\n" + notes.strip() + "\n"
    # The headline figures under plain top-level keys, what each is next to them.
    document = {
        "command": command,
        **derived["headline"],
        "headline_notes": {
            **HEADLINE_NOTES,
            **{
                key: f"null: {reason}"
                for key, reason in derived["headline_reasons"].items()
            },
        },
        "results": results,
        "derived": derived,
    }
    paths = (output_dir / MD_FILE, output_dir / JSON_FILE)
    for path, content in zip(
        paths, (text, json.dumps(document, indent=2) + "\n"), strict=True
    ):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)
    return paths
