"""The benchmark run: builds the synthetic inputs, runs every task, derives the ratios.

Authors
 * ser_lib contributors
"""

import gc
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from speechbrain.utils.logger import get_logger

from benchmarks.config import SIZES
from benchmarks.extraction import wav_durations
from benchmarks.measure import machine_info
from benchmarks.padding import padding_comparison
from benchmarks.protocol import as_run_wall_time, fold_frames, protocol_settings
from benchmarks.synthetic import (
    iemocap_like_durations,
    random_feature_cache,
    write_noise_corpus,
)
from benchmarks.worker import run_in_subprocess, run_task
from ser_lib.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest

logger = get_logger(__name__)

TARGETS = {
    "stage1_vs_encoder_loop": 20.0,
    "stage1_vs_full_finetune": 50.0,
    "padding_waste": 0.10,
    "fraction_of_matmul_peak": 0.40,
    "memory_growth": 0.10,
}
"""The efficiency targets: speed-up ratios (at least), padding waste (below),
stage-1 FLOP/s as a fraction of the matmul peak (at least, CPU), growth of the peak
memory from the smallest to the largest corpus (below)."""

MALLOC_MMAP_THRESHOLD = 128 * 1024
"""Blocks from this size up are returned to the system when freed in the scaling
runs, so their peak RSS is the peak of the memory in use."""


def save_random_hubert(folder, config_kwargs, seed=0):
    """Saves a randomly initialised HuBERT and its feature-extractor config.

    Loaded back with ``HFEncoder(folder)`` through the same ``from_pretrained`` path
    as a real checkpoint (``do_normalize=True``, as HuBERT-large expects).

    Arguments
    ---------
    folder : str or os.PathLike
        Output directory.
    config_kwargs : dict
        ``transformers.HubertConfig`` settings.
    seed : int
        Seed of the weights.

    Returns
    -------
    int
        The number of parameters.

    Example
    -------
    >>> from benchmarks.config import TINY_HUBERT
    >>> save_random_hubert(getfixture("tmp_path"), TINY_HUBERT) > 0
    True
    """
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = HubertModel(HubertConfig(**config_kwargs))
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        do_normalize=True, return_attention_mask=True
    ).save_pretrained(folder)
    num_params = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    return num_params


def corpus_durations(size):
    """Durations (s) of the IEMOCAP-like corpus of a benchmark size.

    Example
    -------
    >>> corpus_durations(SIZES["full"]).shape
    (5531,)
    """
    return iemocap_like_durations(
        size.corpus_utterances,
        size.mean_seconds,
        size.duration_sigma,
        size.max_seconds,
        seed=size.seed,
    )


def training_frames(size):
    """Frames of the IEMOCAP-like corpus as training sees them (cropped).

    Example
    -------
    >>> frames = training_frames(SIZES["tiny"])
    >>> len(frames), int(frames.max())
    (5531, 150)
    """
    frames = np.round(corpus_durations(size) * size.frame_rate).astype(np.int64)
    return np.minimum(frames, size.max_frames)


def _subset_manifest(csv_path, num_rows, out_path):
    """Writes the first ``num_rows`` rows of a manifest to ``out_path``."""
    rows = read_manifest(csv_path)[:num_rows]
    write_manifest(rows, out_path, columns=MANIFEST_COLUMNS)
    return out_path


class _Runner:
    """Runs tasks isolated (fresh processes) or in this process."""

    def __init__(self, work_dir, isolate):
        self.work_dir = Path(work_dir)
        self.isolate = isolate

    def __call__(self, name, spec):
        logger.info("Benchmark task %s (%s)", spec.get("tag", name), spec["device"])
        start = time.perf_counter()
        if self.isolate:
            result = run_in_subprocess(name, spec, self.work_dir / "tasks")
        else:
            result = run_task(name, spec)
        logger.info(
            "Benchmark task %s done in %.1f s",
            spec.get("tag", name),
            time.perf_counter() - start,
        )
        return result


def _missing_material(whisper_source, wav_folder):
    """Why the real-material measurements cannot run (None when they can).

    Example
    -------
    >>> _missing_material(None, "/x")
    'no Whisper model given (--whisper_source)'
    """
    if whisper_source is None:
        return "no Whisper model given (--whisper_source)"
    if wav_folder is None:
        return "no EmoDB wav folder given (--emodb_wav_folder)"
    for path in (whisper_source, wav_folder):
        if not Path(path).is_dir():
            return f"{path} is not a folder"
    return None


def _emodb_protocol(run, base, size, repo, whisper, wav_folder):
    """The real-data EmoDB protocol's raw figures (see :mod:`benchmarks.protocol`)."""
    config = repo / size.protocol_config
    settings = protocol_settings(config, config.parents[1])
    entry = {
        "config": size.protocol_config,
        "folds": settings["stage1"]["n_folds"],
        "epochs_per_stage": {
            stage: settings[stage]["number_of_epochs"] for stage in settings
        },
        "as_run": as_run_wall_time(repo / size.protocol_results, size.protocol_row),
        "epochs": None,
        "extraction_audio_s_per_s": None,
        "reason": None,
    }
    entry["as_run"]["file"] = size.protocol_results  # repository-relative
    if wav_folder is None or not Path(wav_folder).is_dir():
        entry["reason"] = "no EmoDB wav folder given (--emodb_wav_folder)"
        return entry
    durations = wav_durations(wav_folder)
    entry["corpus_utterances"] = len(durations)
    entry["corpus_audio_seconds"] = float(sum(durations))
    entry["epochs"] = run(
        "protocol_epochs",
        {
            **base,
            "settings": settings,
            "frames": fold_frames(durations, entry["folds"], size.frame_rate),
        },
    )
    if "reason" in whisper:
        entry["reason"] = "no Whisper extraction throughput: " + whisper["reason"]
    else:
        entry["extraction_audio_s_per_s"] = whisper["rows"]["native_fp32"][
            "audio_s_per_wall_s"
        ]
    return entry


def run_benchmark(
    size_name="full",
    device=None,
    work_dir=None,
    isolate=True,
    whisper_source=None,
    emodb_wav_folder=None,
):
    """Runs every measurement of the benchmark and returns the raw results.

    Arguments
    ---------
    size_name : str
        A key of :data:`benchmarks.config.SIZES`.
    device : str, optional
        ``cuda`` when a GPU is present, else ``cpu`` (default: detected).
    work_dir : str or os.PathLike, optional
        Scratch folder (a temporary one, deleted afterwards, by default).
    isolate : bool
        Run each configuration in a fresh process (its own peak memory).
    whisper_source : str, optional
        Folder of a Whisper model (whisper-base) for the ``pad30``/``native``
        extraction; without it (or ``emodb_wav_folder``) that entry holds only
        the reason.
    emodb_wav_folder : str, optional
        EmoDB's ``wav`` folder: the utterances of the Whisper extraction and the
        lengths of the real-data protocol's epochs.

    Returns
    -------
    dict
        ``size``, ``device``, ``precision``, ``machine``, ``padding``, ``tasks``
        (raw results by name; ``whisper_extraction`` holds ``reason`` when it did
        not run), ``emodb_protocol``, ``scaling`` (list), ``started``, ``seconds``.
    """
    if size_name not in SIZES:
        raise KeyError(f"Unknown benchmark size {size_name!r}; known: {sorted(SIZES)}")
    size = SIZES[size_name]
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = "bf16" if torch.device(device).type == "cuda" else "fp32"
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="ser_benchmark_") as tmp:
            return run_benchmark(
                size_name, device, tmp, isolate, whisper_source, emodb_wav_folder
            )
    work_dir = Path(work_dir)
    start = time.perf_counter()
    repo = Path(__file__).resolve().parents[1]
    results = {
        "size": size.as_dict(),
        "device": device,
        "precision": precision,
        "isolated": isolate,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device, repo_folder=repo),
    }
    results["padding"] = padding_comparison(
        training_frames(size),
        batch_utterances=size.batch_utterances,
        num_buckets=size.num_buckets,
        seed=size.seed,
    )
    run = _Runner(work_dir, isolate)
    base = {"size": size.as_dict(), "device": device, "precision": precision}

    encoder_dir = work_dir / "encoder"
    results["encoder_params"] = save_random_hubert(encoder_dir, size.encoder, size.seed)
    durations = corpus_durations(size)
    extraction_durations = np.minimum(
        durations[: size.extraction_utterances], size.extraction_max_seconds
    )
    corpus_dir = work_dir / "extraction_corpus"
    csv_path = write_noise_corpus(
        corpus_dir, extraction_durations, sample_rate=size.sample_rate, seed=size.seed
    )
    tasks = {}
    tasks["extraction"] = run(
        "extraction",
        {
            **base,
            "encoder_dir": str(encoder_dir),
            "csv": str(csv_path),
            "data_root": str(corpus_dir),
            "cache_dir": str(work_dir / "extraction_cache"),
        },
    )
    tasks["extraction_bf16"] = run(
        "extraction",
        {
            **base,
            "tag": "extraction_bf16",
            "extraction_precision": "bf16",
            "encoder_dir": str(encoder_dir),
            "csv": str(csv_path),
            "data_root": str(corpus_dir),
            "cache_dir": str(work_dir / "extraction_cache_bf16"),
        },
    )
    missing = _missing_material(whisper_source, emodb_wav_folder)
    if missing is None:
        tasks["whisper_extraction"] = run(
            "whisper_extraction",
            {
                **base,
                "whisper_source": str(whisper_source),
                "wav_folder": str(emodb_wav_folder),
                "work_dir": str(work_dir / "whisper_extraction"),
            },
        )
    else:
        tasks["whisper_extraction"] = {"reason": missing}
    model_spec = {
        **base,
        "encoder_dir": str(encoder_dir),
        "feature_dim": tasks["extraction"]["feature_dim"],
        "step_frames": tasks["extraction"]["step_frames"],
    }
    for name in (
        "stage1_cached",
        "stage1_cached_tuned",
        "stage2_cached",
        "stage1_encoder_loop",
        "full_finetune",
        "efficiency",
        "precision",
    ):
        tasks[name] = run(name, model_spec)
    results["tasks"] = tasks
    results["emodb_protocol"] = _emodb_protocol(
        run,
        base,
        size,
        repo,
        tasks["whisper_extraction"],
        emodb_wav_folder,
    )

    # The k-times corpus repeats the 1x durations k times (new utterances, same
    # lengths), so every size sees the same batch shapes and only the corpus grows.
    factors = list(size.scaling_factors)
    scaling_durations = np.tile(durations[: size.scaling_utterances], max(factors))
    scaling_dir = work_dir / "scaling"
    scaling_csv, _ = random_feature_cache(
        scaling_dir,
        scaling_durations,
        model_spec["feature_dim"],
        sample_rate=size.sample_rate,
        seed=size.seed,
    )
    results["scaling"] = []
    for factor in factors:
        csv_factor = _subset_manifest(
            scaling_csv,
            size.scaling_utterances * factor,
            scaling_dir / f"train_x{factor}.csv",
        )
        result = run(
            "scaling",
            {
                **base,
                "tag": f"scaling_x{factor}",
                "csv": str(csv_factor),
                "cache_dir": str(scaling_dir / "cache"),
                "work_dir": str(scaling_dir / f"run_x{factor}"),
                # Only in a fresh process: it stays in force for the process's life.
                "malloc_mmap_threshold": MALLOC_MMAP_THRESHOLD if isolate else None,
            },
        )
        result["factor"] = factor
        results["scaling"].append(result)
    results["machine_after"] = {"load_average": machine_info(device)["load_average"]}
    results["seconds"] = time.perf_counter() - start
    return results
