#!/usr/bin/env python3
"""Whisper feature-extraction throughput: ``pad30`` vs ``native``, float32 vs bf16.

Runs the project's real extraction path (:func:`ser_lib.features.run_feature_extraction`:
audio read, batches sorted by length, float16 cache written; the code is
:func:`benchmarks.extraction.whisper_throughput`, which the benchmark runs too) with a
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
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.extraction import (  # noqa: E402
    PRECISIONS,
    WHISPER_MODES,
    whisper_throughput,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder_source", required=True, help="hub id or folder")
    parser.add_argument("--wav_folder", required=True, help="folder of .wav files")
    parser.add_argument("--num_utterances", type=int, default=60)
    parser.add_argument("--layers", default="-1", help='an index or "all"')
    parser.add_argument(
        "--modes", nargs="+", default=list(WHISPER_MODES), choices=WHISPER_MODES
    )
    parser.add_argument(
        "--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS
    )
    parser.add_argument("--batch_seconds", type=float, default=60.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", help="write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    results = {
        "encoder_source": str(args.encoder_source),
        "layers": args.layers,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": list(os.getloadavg()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        results.update(
            whisper_throughput(
                args.encoder_source,
                args.wav_folder,
                tmp,
                num_utterances=args.num_utterances,
                modes=args.modes,
                precisions=args.precisions,
                batch_seconds=args.batch_seconds,
                device=args.device,
                layers=args.layers if args.layers == "all" else int(args.layers),
                log=lambda name, row: print(f"{name}: {json.dumps(row)}", flush=True),
            )
        )
    results["load_average_after"] = list(os.getloadavg())
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
