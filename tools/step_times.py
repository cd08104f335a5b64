#!/usr/bin/env python3
"""Step time of both training stages in float32 and under bf16 autocast.

Times the stage-1 and stage-2 Brains on one batch of random cached features at the
paper's size (d_model 384, K 1024, batch 96, ~225 frames, input 1024 as HuBERT-large
and 512 as Whisper-base) and at the offline demo's (d_model 128, K 64, batch 32,
80 x 2 fbank), each configuration a few steps in turns, the median counting; also
the matmul peak in both element types and the k-means update's share of the step.

Example::

    python tools/step_times.py                       # every configuration, CPU
    python tools/step_times.py --configs demo --steps 2 --output /tmp/steps.json
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.config import SIZES  # noqa: E402
from benchmarks.measure import machine_info  # noqa: E402
from benchmarks.precision import precision_steps, sized  # noqa: E402

PAPER_ADAPTER = dict(d_model=384, num_layers=3, nhead=6)
DEMO_ADAPTER = dict(
    d_model=128, num_layers=3, nhead=4
)  # recipes/IEMOCAP/hparams/demo.yaml

CONFIGS = {
    "paper_1024": dict(
        adapter=PAPER_ADAPTER, num_prototypes=1024, input_dim=1024, batch=96
    ),
    "paper_512": dict(
        adapter=PAPER_ADAPTER, num_prototypes=1024, input_dim=512, batch=96
    ),
    "demo": dict(adapter=DEMO_ADAPTER, num_prototypes=64, input_dim=160, batch=32),
    "tiny": dict(
        adapter=dict(d_model=32, num_layers=2, nhead=2),
        num_prototypes=16,
        input_dim=32,
        batch=4,
    ),
}
"""Configurations by name: adapter, K, feature dimension, utterances per batch."""

DEFAULT_CONFIGS = ("paper_1024", "paper_512", "demo")


def build_parser():
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", nargs="+", choices=sorted(CONFIGS), default=DEFAULT_CONFIGS
    )
    parser.add_argument("--frames", type=int, default=225, help="frames per utterance")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument(
        "--device", default=None, help="cpu or cuda (default: cuda when available)"
    )
    parser.add_argument("--output", default=None, help="JSON file of the results")
    return parser


def measure(name, frames, steps, warmup, device):
    """:func:`precision_steps` for one configuration of :data:`CONFIGS`."""
    config = CONFIGS[name]
    size = sized(
        SIZES["full"],
        adapter=config["adapter"],
        num_prototypes=config["num_prototypes"],
    )
    spec = {"size": size, "device": device}
    result = precision_steps(
        spec, config["input_dim"], config["batch"], frames, steps, warmup
    )
    result["config"] = name
    return result


def table(results):
    """Markdown table of the step times and ratios."""
    lines = [
        "| configuration | stage | fp32 step, s | bf16 step, s | fp32 / bf16 | "
        "bf16 share of bf16 peak | k-means share of bf16 step |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for stage in ("stage1", "stage2"):
            entry = result[stage]
            kmeans = (
                f"{100 * result['kmeans']['share_of_bf16_step']:.1f} %"
                if stage == "stage1"
                else ""
            )
            lines.append(
                f"| {result['config']} | {stage} | {entry['fp32']['median']:.3f} | "
                f"{entry['bf16']['median']:.3f} | {entry['bf16_speedup']:.2f}x | "
                f"{100 * result['peak_share'][stage]['bf16']:.1f} % | {kmeans} |"
            )
    return "\n".join(lines)


def main(argv=None):
    """Measures the configurations, prints the table, writes the JSON if asked."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("speechbrain", "ser_lib")):  # they log INFO per Brain
            logging.getLogger(name).setLevel(logging.WARNING)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    for name in args.configs:  # each printed as soon as measured
        result = measure(name, args.frames, args.steps, args.warmup, device)
        results.append(result)
        peaks = result["matmul_peak"]
        print(
            f"{name}: matmul peak fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
            f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; k-means update "
            f"{1e3 * result['kmeans']['update_reused']:.1f} ms reused vs "
            f"{1e3 * result['kmeans']['update_recomputed']:.1f} ms re-assigning",
            flush=True,
        )
        print(table([result]), flush=True)
    print(table(results))
    if args.output:
        document = {
            "command": "python tools/step_times.py " + " ".join(argv or sys.argv[1:]),
            "machine": machine_info(device),
            "results": results,
        }
        Path(args.output).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
