"""Readiness check of a lent GPU (run by ``tools/device_check.sh``).

On CUDA, at the paper's size: the training steps of both stages in fp32 and bf16
with the matmul peaks (:func:`benchmarks.precision.precision_steps`), the feature
extraction throughput of a HuBERT-large-sized encoder (random weights from
``HubertConfig``) in fp32 and bf16, and one stage-1 and one stage-2 epoch (bf16) on
an IEMOCAP-sized cache of random features, each with its peak GPU memory; writes
``BENCHMARKS_GPU.md``. On a CPU the same code runs at the ``tiny`` size (seconds),
so the test suite exercises it.

Authors
 * ser_lib contributors
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.utils.checkpoints import Checkpointer

from benchmarks.config import SIZES
from benchmarks.figures import peak_mib
from benchmarks.markdown import fmt, percent, render_section
from benchmarks.measure import machine_info
from benchmarks.precision import PRECISIONS, precision_steps
from benchmarks.sections_training import precision_rows
from benchmarks.suite import corpus_durations, save_random_hubert
from benchmarks.synthetic import random_feature_cache, write_noise_corpus
from benchmarks.tasks import (
    CLASSES,
    adapter_brain,
    bucketed_training_set,
    finetune_brain,
    task_extraction,
)
from benchmarks.worker import run_measured
from ser_lib.dataio import build_label_encoder
from ser_lib.features import FeatureCache
from ser_lib.sampling import padding_waste
from ser_lib.train_logger import JsonlTrainLogger

logger = logging.getLogger(__name__)

MD_FILE = "BENCHMARKS_GPU.md"

ENCODER_NAMES = {"full": "HuBERT-large-sized encoder", "tiny": "toy HuBERT"}
"""The extraction encoder of each size, for the report."""

CHECKS = {
    "full": dict(steps=3, extraction_utterances=64, corpus_utterances=None),
    "tiny": dict(steps=1, extraction_utterances=3, corpus_utterances=12),
}
"""Per size: timed steps of the step table, utterances of the extraction corpus,
utterances of the random cache (None: the size's IEMOCAP-sized corpus)."""


def _extraction(spec):
    """:func:`benchmarks.tasks.task_extraction` in the spec's precision."""
    return task_extraction({**spec, "extraction_precision": spec["precision"]})


def _epoch(spec):
    """One training epoch of a stage (spec ``stage``) on the cached corpus."""
    size = SIZES[spec["size"]["name"]]
    cache = FeatureCache(spec["cache_dir"])
    dataset, lengths, sampler = bucketed_training_set(
        spec["csv"], cache, size, size.batch_utterances, size.num_buckets[0]
    )
    work_dir = Path(spec["work_dir"])
    common = dict(
        epochs=1,
        checkpointer=Checkpointer(work_dir / "save"),
        checkpoints_to_keep=1,
        train_logger=JsonlTrainLogger(
            str(work_dir / "train_log.txt"), str(work_dir / "train_log.jsonl")
        ),
    )
    if spec["stage"] == "stage1":
        brain = adapter_brain(spec, cache.feature_dim, tuned=True, **common)
    else:
        brain = finetune_brain(
            spec,
            cache.feature_dim,
            label_encoder=build_label_encoder(CLASSES),
            output_folder=str(work_dir),
            **common,
        )
    brain.train_sampler = sampler
    loader = make_dataloader(dataset, batch_sampler=sampler)
    begin = time.perf_counter()
    brain.fit(brain.hparams.epoch_counter, loader, progressbar=False)
    return {
        "utterances": len(dataset),
        "steps": len(loader),
        "padding_waste": padding_waste(list(sampler), lengths),
        "epoch_seconds": time.perf_counter() - begin,
        "train_loss": float(brain.train_stats["loss"]),
    }


def run_device_check(size_name, device, work_dir):
    """Every measurement of the check.

    Returns
    -------
    dict
        ``size``, ``device``, ``machine``, ``steps`` (the fp32/bf16 step table),
        ``extraction`` (per precision), ``epochs`` (per stage), ``seconds``.
    """
    begin = time.perf_counter()
    size, check = SIZES[size_name], CHECKS[size_name]
    work_dir = Path(work_dir)
    base = {"size": size.as_dict(), "device": device}
    repo = Path(__file__).resolve().parents[1]
    results = {
        "size": size_name,
        "device": device,
        "machine": machine_info(device, repo_folder=repo),
    }
    input_dim = size.encoder["hidden_size"]
    frames = min(int(round(size.mean_seconds * size.frame_rate)), size.max_frames)
    logger.info("Step table: %d x %d frames", size.paper_batch, frames)
    results["steps"] = run_measured(
        lambda spec: precision_steps(
            spec, input_dim, size.paper_batch, frames, check["steps"]
        ),
        base,
    )

    encoder_dir = work_dir / "encoder"
    results["encoder_params"] = save_random_hubert(encoder_dir, size.encoder, size.seed)
    durations = corpus_durations(size)
    extraction_durations = np.minimum(
        durations[: check["extraction_utterances"]], size.extraction_max_seconds
    )
    corpus_dir = work_dir / "extraction_corpus"
    csv_path = write_noise_corpus(
        corpus_dir, extraction_durations, sample_rate=size.sample_rate, seed=size.seed
    )
    results["extraction"] = {}
    for precision in PRECISIONS:
        logger.info("Extraction, %s", precision)
        results["extraction"][precision] = run_measured(
            _extraction,
            {
                **base,
                "precision": precision,
                "encoder_dir": str(encoder_dir),
                "csv": str(csv_path),
                "data_root": str(corpus_dir),
                "cache_dir": str(work_dir / f"extraction_cache_{precision}"),
            },
        )

    corpus = durations[: check["corpus_utterances"] or size.corpus_utterances]
    logger.info("Random cache of %d utterances", len(corpus))
    cache_csv, _ = random_feature_cache(
        work_dir / "corpus",
        corpus,
        input_dim,
        sample_rate=size.sample_rate,
        seed=size.seed,
    )
    results["epochs"] = {}
    for stage in ("stage1", "stage2"):
        logger.info("One %s epoch", stage)
        results["epochs"][stage] = run_measured(
            _epoch,
            {
                **base,
                "precision": "bf16",
                "stage": stage,
                "csv": str(cache_csv),
                "cache_dir": str(work_dir / "corpus" / "cache"),
                "work_dir": str(work_dir / stage),
            },
        )
    results["seconds"] = time.perf_counter() - begin
    return results


def _peak(entry):
    """Peak memory of a measured part: CUDA peak, else the RSS growth (MiB)."""
    where = "GPU" if entry["peak_cuda_mib"] is not None else "RSS growth"
    return f"{fmt(peak_mib(entry))} MiB ({where})"


def len_corpus(results):
    """Utterances of the random cache the epochs ran on."""
    return results["epochs"]["stage1"]["utterances"]


def render_markdown(results, command):
    """The text of ``BENCHMARKS_GPU.md``."""
    machine = results["machine"]
    gpu = machine["gpu"]
    hardware = (
        f"{gpu['name']}, {fmt(gpu['memory_gib'])} GiB, CUDA {gpu['cuda']}"
        if gpu
        else f"{machine['cpu']}, {machine['torch_threads']} threads"
    )
    steps = results["steps"]
    shape = steps["shape"]
    out = [
        "# Device check",
        "",
        f"Generated by `{command}` in {fmt(results['seconds'])} s on "
        f"`{results['device']}` ({hardware}), size `{results['size']}`, torch "
        f"{machine['versions']['torch']}, commit {machine['commit']}.",
        "",
    ]
    rows = [
        [
            "matmul peak (GFLOP/s)",
            fmt(steps["matmul_peak"]["fp32"] / 1e9),
            fmt(steps["matmul_peak"]["bf16"] / 1e9),
            "",
            "",
        ]
    ]
    rows += precision_rows(
        steps, [(stage, f"{stage} step (s)") for stage in ("stage1", "stage2")]
    )
    out += render_section(
        "Training steps, fp32 and bf16",
        (["", "fp32", "bf16", "fp32 / bf16", "share of fp32 / bf16 peak"], rows),
        f"Batch {shape['batch_utterances']} x {shape['frames']} frames of "
        f"{shape['input_dim']}-d features, d_model {shape['d_model']}, K "
        f"{shape['num_prototypes']}; medians. K-means update with the step's "
        f"assignment reused: {fmt(1e3 * steps['kmeans']['update_reused'])} ms "
        f"({percent(steps['kmeans']['share_of_bf16_step'])} of the bf16 stage-1 "
        f"step). Peak memory of the table: {_peak(steps)}.",
    )
    rows = [
        [
            precision,
            fmt(entry["audio_seconds"]),
            fmt(entry["audio_seconds_per_second"]),
            _peak(entry),
        ]
        for precision, entry in results["extraction"].items()
    ]
    out += render_section(
        f"Feature extraction, {ENCODER_NAMES[results['size']]} (random weights)",
        (["Precision", "Audio (s)", "Audio s / s", "Peak memory"], rows),
        f"{fmt(results['encoder_params'])} parameters; length-sorted batches.",
    )
    rows = [
        [
            stage,
            entry["utterances"],
            entry["steps"],
            percent(entry["padding_waste"]),
            fmt(entry["epoch_seconds"]),
            _peak(entry),
        ]
        for stage, entry in results["epochs"].items()
    ]
    out += render_section(
        f"One epoch of each stage (bf16) on a cache of {len_corpus(results)} "
        "random-feature utterances",
        (
            ["Stage", "Utterances", "Steps", "Padding", "Epoch (s)", "Peak memory"],
            rows,
        ),
    )
    return "\n".join(out)


def build_parser():
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size",
        choices=sorted(CHECKS),
        default=None,
        help="default: full on CUDA, tiny on a CPU",
    )
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument("--work_dir", required=True, help="scratch folder")
    parser.add_argument("--output", default="docs", help="folder of BENCHMARKS_GPU.md")
    return parser


def main(argv=None):
    """Runs the check and writes ``BENCHMARKS_GPU.md`` and its JSON."""
    args = build_parser().parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    size = args.size or ("full" if device == "cuda" else "tiny")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("speechbrain", "ser_lib")):
            logging.getLogger(name).setLevel(logging.WARNING)
    results = run_device_check(size, device, args.work_dir)
    command = f"tools/device_check.sh --size {size} --device {device}"
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / MD_FILE).write_text(render_markdown(results, command) + "\n")
    (output / "benchmarks_gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    logger.info("Wrote %s", output / MD_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
