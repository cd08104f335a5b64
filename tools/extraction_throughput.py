#!/usr/bin/env python3
"""Whisper feature-extraction throughput: ``pad30`` vs ``native``, float32 vs bf16.

Runs the project's real extraction path (:func:`ser_lib.features.run_feature_extraction`:
audio read, batches sorted by length, float16 cache written) with a
:class:`ser_lib.encoders.WhisperEncoder` on an evenly spaced subset of a corpus's wavs,
once per input mode and precision (bf16 = ``torch.autocast`` on the extraction device),
each into a fresh temporary cache after one untimed warm-up batch. Reports audio
seconds per wall-clock second and per CPU second of the process (the latter is less
disturbed by other processes on a shared machine; the load average is recorded), the
``native``/``pad30`` ratio per precision, and how close the bf16 features are to the
float32 ones (mean cosine per frame).

    python tools/extraction_throughput.py --encoder_source /models/whisper-base \\
        --wav_folder /data/EmoDB/wav --num_utterances 60 --output throughput.json
"""

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_lib.encoders import WhisperEncoder  # noqa: E402
from ser_lib.features import FeatureCache, run_feature_extraction  # noqa: E402

MODES = ("pad30", "native")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
WARMUP_UTTERANCES = 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder_source", required=True, help="hub id or folder")
    parser.add_argument("--wav_folder", required=True, help="folder of .wav files")
    parser.add_argument("--num_utterances", type=int, default=60)
    parser.add_argument("--layers", default="-1", help='an index or "all"')
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS)
    )
    parser.add_argument("--batch_seconds", type=float, default=60.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", help="write the figures to this JSON file")
    return parser.parse_args(argv)


def write_subset_manifest(wav_folder, num_utterances, path):
    """A manifest of ``num_utterances`` wavs evenly spaced in name order."""
    wavs = sorted(
        p for p in Path(wav_folder).glob("*.wav") if not p.name.startswith(".")
    )
    if not wavs:
        raise FileNotFoundError(f"No .wav file in {wav_folder}")
    step = max(1, len(wavs) // num_utterances)
    chosen = wavs[::step][:num_utterances]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration", "wav"])
        for wav in chosen:
            writer.writerow([wav.stem, sf.info(wav).duration, str(wav)])
    return [wav.stem for wav in chosen], sum(sf.info(w).duration for w in chosen)


def measure(encoder, manifest, cache_dir, dtype, device, batch_seconds):
    """Times one extraction of the manifest (after an untimed warm-up)."""
    context = (
        torch.autocast(device_type=torch.device(device).type, dtype=dtype)
        if dtype is not None
        else nullcontext()
    )
    with open(manifest, encoding="utf-8") as f:
        head = "".join(f.readlines()[: 1 + WARMUP_UTTERANCES])
    warmup = Path(cache_dir).with_name(Path(cache_dir).name + "_warmup.csv")
    warmup.write_text(head)
    with context:
        run_feature_extraction(
            encoder, warmup, str(cache_dir) + "_warmup", device=device, progress=False
        )
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        run_feature_extraction(
            encoder,
            manifest,
            cache_dir,
            batch_seconds=batch_seconds,
            device=device,
            progress=False,
        )
        wall = time.perf_counter() - wall_start
        cpu = time.process_time() - cpu_start
    return wall, cpu


def mean_cosine(cache_a, cache_b, ids):
    """Mean per-frame cosine similarity of two caches over ``ids``."""
    values = []
    for utt_id in ids:
        a = np.asarray(cache_a.load(utt_id), dtype=np.float32)
        b = np.asarray(cache_b.load(utt_id), dtype=np.float32)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        values.append(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12))
    return float(np.concatenate(values).mean())


def main(argv=None):
    args = parse_args(argv)
    layers = args.layers if args.layers == "all" else int(args.layers)
    results = {
        "encoder_source": str(args.encoder_source),
        "layers": args.layers,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": list(os.getloadavg()),
        "rows": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "subset.csv"
        ids, audio_seconds = write_subset_manifest(
            args.wav_folder, args.num_utterances, manifest
        )
        results["num_utterances"] = len(ids)
        results["audio_seconds"] = audio_seconds
        caches = {}
        for mode in args.modes:
            encoder = WhisperEncoder(
                args.encoder_source, layers=layers, input_mode=mode
            )
            for precision in args.precisions:
                name = f"{mode}_{precision}"
                cache_dir = Path(tmp) / name
                wall, cpu = measure(
                    encoder,
                    manifest,
                    cache_dir,
                    PRECISIONS[precision],
                    args.device,
                    args.batch_seconds,
                )
                caches[name] = FeatureCache(cache_dir)
                results["rows"][name] = {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "audio_s_per_wall_s": audio_seconds / wall,
                    "audio_s_per_cpu_s": audio_seconds / cpu,
                }
                print(f"{name}: {json.dumps(results['rows'][name])}", flush=True)
        rows = results["rows"]
        for precision in args.precisions:
            pad30, native = (
                rows.get(f"pad30_{precision}"),
                rows.get(f"native_{precision}"),
            )
            if pad30 and native:
                results[f"native_vs_pad30_{precision}"] = {
                    "wall": pad30["wall_s"] / native["wall_s"],
                    "cpu": pad30["cpu_s"] / native["cpu_s"],
                }
        for mode in args.modes:
            fp32, bf16 = f"{mode}_fp32", f"{mode}_bf16"
            if fp32 in rows and bf16 in rows:
                results[f"bf16_speedup_{mode}"] = {
                    "wall": rows[fp32]["wall_s"] / rows[bf16]["wall_s"],
                    "cpu": rows[fp32]["cpu_s"] / rows[bf16]["cpu_s"],
                }
                results[f"bf16_vs_fp32_cosine_{mode}"] = mean_cosine(
                    caches[fp32], caches[bf16], ids
                )
    results["load_average_after"] = list(os.getloadavg())
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
