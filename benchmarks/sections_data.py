"""The sections of ``BENCHMARKS.md`` about the data: feature extraction (b),
padding (d), scaling with corpus size (f) and the wall time of the protocols.

Each section maps ``(results, derived)`` to its lines; tables are columns given as
data (:func:`benchmarks.markdown.column_table`).

Authors
 * ser_lib contributors
"""

from benchmarks.config import BenchmarkSize
from benchmarks.markdown import column_table, fmt, percent, render_section


def memory_label(results):
    """What the memory columns measure.

    Example
    -------
    >>> memory_label({"device": "cuda"})
    'peak GPU memory (`torch.cuda.max_memory_allocated`)'
    """
    if results["device"] == "cuda":
        return "peak GPU memory (`torch.cuda.max_memory_allocated`)"
    where = (
        "a fresh process per configuration"
        if results["isolated"]
        else ("every configuration in one process")
    )
    return f"peak RSS growth over the RSS when the configuration starts ({where})"


EXTRACTION_COLUMNS = (
    ("Precision", lambda item: item[0]),
    ("Utterances", lambda item: item[1]["utterances"]),
    ("Audio (s)", lambda item: fmt(item[1]["audio_seconds"])),
    ("Wall (s)", lambda item: fmt(item[1]["seconds"])),
    ("Audio s / s", lambda item: fmt(item[1]["audio_seconds_per_second"])),
    ("IEMOCAP-size (h)", lambda item: fmt(item[2])),
)
"""The extraction table of section b; an item is (precision, the extraction task's
result, hours for the IEMOCAP-like corpus)."""


def extraction_section(results, derived):
    """b. Feature-extraction throughput."""
    size = BenchmarkSize(**results["size"])
    ext = derived["extraction"]
    items = [("fp32", ext, ext["corpus_hours"])]
    by_precision = derived.get("extraction_precision")
    if by_precision:
        bf16_hours = ext["corpus_hours"] / by_precision["bf16_speedup"]
        items.append(("bf16 autocast", results["tasks"]["extraction_bf16"], bf16_hours))
    blocks = [
        column_table(EXTRACTION_COLUMNS, items),
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


WHISPER_COLUMNS = (
    ("Whisper input", lambda item: item[0].split("_")[0]),
    ("Precision", lambda item: item[0].split("_")[1]),
    ("Wall (s)", lambda item: fmt(item[1]["wall_s"])),
    ("Audio s / s", lambda item: fmt(item[1]["audio_s_per_wall_s"])),
    ("Audio s / CPU s", lambda item: fmt(item[1]["audio_s_per_cpu_s"])),
)
"""The Whisper table of section b; an item is (``<mode>_<precision>``, its row)."""


def _whisper_blocks(derived):
    """Whisper-base ``pad30`` against ``native`` extraction (or why it is absent)."""
    whisper = derived.get("whisper") or {"reason": "not run"}
    if "reason" in whisper:
        return [
            "Whisper-base `pad30` against `native` on EmoDB: **not measured** "
            f"({whisper['reason']}); `whisper_native_vs_pad30` is null."
        ]
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
        column_table(WHISPER_COLUMNS, whisper["rows"].items()),
        "The Whisper model of `--whisper_source` (whisper-base, real weights) on "
        f"{whisper['num_utterances']} utterances of `--emodb_wav_folder` "
        f"({fmt(whisper['audio_seconds'])} s of audio, evenly spaced in name "
        "order), `benchmarks.extraction.whisper_throughput` (the code of "
        "`tools/extraction_throughput.py`): " + "; ".join(ratios) + ". Mean "
        "per-frame cosine of the bf16 features to the float32 ones: "
        + ", ".join(cosines)
        + ".",
    ]


PADDING_COLUMNS = (
    ("Batching", lambda row: row["batching"]),
    (
        "Buckets",
        lambda row: row["num_buckets"] if row["num_buckets"] is not None else "–",
    ),
    ("Batches", lambda row: row["batches"]),
    ("Mean utt. / batch", lambda row: fmt(row["mean_batch_utterances"])),
    ("Max utt. / batch", lambda row: row["max_batch_utterances"]),
    ("Padding waste", lambda row: percent(row["padding_waste"])),
)
"""The columns of section d: header, cell of a padding row."""


def padding_section(results, derived):
    """d. Padding waste."""
    size = BenchmarkSize(**results["size"])
    return render_section(
        "d. Padding waste",
        f"IEMOCAP-like corpus: {size.corpus_utterances} log-normal durations (mean "
        f"{size.mean_seconds:g} s, sigma {size.duration_sigma:g}, longest "
        f"{size.max_seconds:g} s), cropped to {size.max_frames} frames as in "
        f"training. Random and pool-sorted batches hold {size.batch_utterances} "
        f"utterances; bucketed ones a budget of {size.batch_utterances} mean-length "
        "utterances. Waste = padded frames / all frames of the padded batches.",
        column_table(PADDING_COLUMNS, derived["padding"]["rows"]),
        "`pool_sorted` is `ser_lib.sampling.PoolSortedBatchSampler`, the recipes' "
        "default `train_sampler` (pools of 20 batches sorted by length, new "
        "batch-mates every epoch; `tools/batch_statistics.py` gives its churn). "
        "`bucketed` is `ser_lib.sampling.bucketed_batch_sampler`: SpeechBrain's "
        "`DynamicBatchSampler` with equal-count bucket boundaries. "
        "`speechbrain_warped` is the same sampler with its own `num_buckets` "
        "boundaries, which lie on a log-normal grid up to the whole batch budget, "
        "so that nearly every utterance falls into the first buckets.",
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


def scaling_section(results, derived):
    """f. Scaling with corpus size."""
    size = BenchmarkSize(**results["size"])
    scaling = derived["scaling"]
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
        f"(warm-up) step. Memory: {memory_label(results)}; {allocator}.",
        column_table(SCALING_COLUMNS, scaling["rows"]),
        "Time per frame varies by "
        f"{percent(scaling['time_per_frame_spread'])} across corpus sizes (0 % is "
        "exactly linear growth) and the peak memory by "
        f"{percent(scaling['memory_growth'])} (0 % is flat).",
    )


def protocol_section(results, derived):
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
