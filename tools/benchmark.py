#!/usr/bin/env python3
"""Measures the efficiency claim and writes docs/BENCHMARKS.md and docs/benchmarks.json.

Stage-1/stage-2 training on cached features against the frozen encoder in the loop
and full fine-tuning (same batches, side by side), feature-extraction throughput,
trainable parameters, padding waste, FLOP/s against the matmul peak, and scaling with
corpus size. Uses the GPU when one is present (bf16 autocast), else the CPU.

Example::

    python tools/benchmark.py --size full --output docs/ \
        --whisper_source /path/to/whisper-base --emodb_wav_folder /path/to/EmoDB/wav
    python tools/benchmark.py --size tiny --output /tmp/bench   # seconds, for tests
"""

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.config import SIZES  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from benchmarks.suite import run_benchmark  # noqa: E402


def build_parser():
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument(
        "--output", default="docs", help="folder of BENCHMARKS.md and benchmarks.json"
    )
    parser.add_argument(
        "--device", default=None, help="cpu or cuda (default: cuda when available)"
    )
    parser.add_argument(
        "--work_dir", default=None, help="scratch folder (default: a temporary one)"
    )
    parser.add_argument(
        "--in_process",
        action="store_true",
        help="run every configuration in this process (faster; peak memory is then "
        "not isolated per configuration)",
    )
    parser.add_argument(
        "--notes", default=None, help="markdown file appended to the report"
    )
    parser.add_argument(
        "--whisper_source",
        default=None,
        help="folder of whisper-base: Whisper pad30 vs native extraction (without "
        "it that figure is null, with the reason)",
    )
    parser.add_argument(
        "--emodb_wav_folder",
        default=None,
        help="EmoDB's wav folder: the Whisper extraction's utterances and the "
        "lengths of the real-data EmoDB protocol's epochs",
    )
    return parser


def main(argv=None):
    """Runs the benchmark and writes the report."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("speechbrain"):  # SpeechBrain sets INFO on its loggers
            logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("benchmarks").setLevel(logging.INFO)
    command = "python tools/benchmark.py --size " + args.size
    if args.in_process:
        command += " --in_process"
    # The real material's own paths stay out of the report: placeholders name them.
    if args.whisper_source:
        command += " --whisper_source WHISPER_BASE_DIR"
    if args.emodb_wav_folder:
        command += " --emodb_wav_folder EMODB_WAV_DIR"
    command += " --output " + shlex.quote(args.output)
    start = time.perf_counter()
    results = run_benchmark(
        args.size,
        device=args.device,
        work_dir=args.work_dir,
        isolate=not args.in_process,
        whisper_source=args.whisper_source,
        emodb_wav_folder=args.emodb_wav_folder,
    )
    notes = Path(args.notes).read_text(encoding="utf-8") if args.notes else ""
    md_path, json_path = write_report(results, args.output, command, notes=notes)
    print(f"Wrote {md_path} and {json_path} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
