#!/usr/bin/env python3
"""Batch statistics of the training samplers on an IEMOCAP-sized fold.

Simulates one leave-one-session-out fold of IEMOCAP's 4-class set (4424 training
utterances, log-normal durations like IEMOCAP's, 50 frames/s, cropped at 1500
frames; stage 2 adds masked minority-class copies toward the majority count) and
prints, for the pool-sorted fixed batches (the recipes' default) and the
length-bucketed sampler: steps per epoch, batch sizes, padding waste, batch-mate
churn between consecutive epochs, and the share of stage 2's masked copies that sit
in the same batch as their own original.

Example::

    python tools/batch_statistics.py
    python tools/batch_statistics.py --pool_batches 10 20 40 --num_buckets 40
"""

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic import iemocap_like_durations  # noqa: E402
from ser_lib.models.augment import oversample_minority  # noqa: E402
from ser_lib.sampling import (  # noqa: E402
    PoolSortedBatchSampler,
    batch_mate_overlap,
    bucketed_sampler,
    padding_waste,
)

# IEMOCAP full release, 4 classes (hap + exc merged): utterances per class.
CLASS_COUNTS = {"neu": 1708, "hap": 1636, "ang": 1103, "sad": 1084}


def simulated_fold(train_utterances, frame_rate, max_frames, seed):
    """Frames and labels of a simulated training fold (class shares of IEMOCAP)."""
    seconds = iemocap_like_durations(num_utterances=train_utterances, seed=seed)
    frames = np.minimum(np.round(seconds * frame_rate), max_frames).astype(int)
    shares = np.array(list(CLASS_COUNTS.values()), dtype=np.float64)
    rng = np.random.default_rng(seed)
    labels = rng.choice(
        list(CLASS_COUNTS), size=train_utterances, p=shares / shares.sum()
    )
    return frames.tolist(), labels.tolist()


def epoch_batches(sampler, epoch):
    """The batches of one epoch as lists of ints."""
    sampler.set_epoch(epoch)
    return [[int(i) for i in batch] for batch in sampler]


def statistics(builder, lengths, sources=None, epochs=3):
    """Steps, batch sizes, padding, churn (and copy-with-original share) of a sampler."""
    sampler = builder(lengths=lengths)
    per_epoch = [epoch_batches(sampler, epoch) for epoch in range(epochs)]
    sizes = [len(batch) for batch in per_epoch[0]]
    overlaps = [
        batch_mate_overlap(a, b) for a, b in zip(per_epoch, per_epoch[1:], strict=False)
    ]
    row = {
        "steps": len(per_epoch[0]),
        "batch_min": min(sizes),
        "batch_mean": float(np.mean(sizes)),
        "batch_max": max(sizes),
        "padding": float(np.mean([padding_waste(b, lengths) for b in per_epoch])),
        "same_mates": float(np.mean([same for same, _ in overlaps])),
        "kept_mates": float(np.mean([kept for _, kept in overlaps])),
    }
    if sources is not None:
        shares = []
        for batches in per_epoch:
            copies = together = 0
            for batch in batches:
                members = set(batch)
                for i in batch:
                    if sources[i] != i:
                        copies += 1
                        together += sources[i] in members
            shares.append(together / copies)
        row["copy_with_original"] = float(np.mean(shares))
    return row


def build_parser():
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_utterances", type=int, default=4424)
    parser.add_argument("--batch_size", type=int, default=96)
    parser.add_argument("--pool_batches", type=int, nargs="+", default=[20])
    parser.add_argument("--num_buckets", type=int, nargs="+", default=[40])
    parser.add_argument("--oversample_ratio", type=float, default=1.0)
    parser.add_argument("--frame_rate", type=float, default=50.0)
    parser.add_argument("--max_frames", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    """Prints the table; returns its rows."""
    args = build_parser().parse_args(argv)
    lengths, labels = simulated_fold(
        args.train_utterances, args.frame_rate, args.max_frames, args.seed
    )
    items = oversample_minority(labels, ratio=args.oversample_ratio, seed=args.seed)
    stage2_sources = [index for index, _ in items]
    # a copy's source is its original's position; originals point to themselves
    stage2_lengths = [lengths[index] for index in stage2_sources]
    samplers = [
        (
            f"pool_sorted(pool_batches={count})",
            partial(
                PoolSortedBatchSampler,
                batch_size=args.batch_size,
                pool_batches=count,
                seed=args.seed,
            ),
        )
        for count in args.pool_batches
    ] + [
        (
            f"bucketed(num_buckets={count})",
            partial(
                bucketed_sampler,
                batch_size=args.batch_size,
                num_buckets=count,
                seed=args.seed,
            ),
        )
        for count in args.num_buckets
    ]
    header = (
        "| sampler | stage | steps/epoch | batch min/mean/max | padding waste | "
        "same batch-mates next epoch | batch-mates kept | copies with original |"
    )
    print(
        f"Simulated fold: {len(lengths)} training utterances (stage 2: "
        f"{len(stage2_lengths)} with masked copies), batch_size {args.batch_size}, "
        f"mean over {args.epochs} epochs"
    )
    print(header)
    print("|---" * 8 + "|")
    rows = []
    for name, builder in samplers:
        for stage, stage_lengths, sources in (
            ("1", lengths, None),
            ("2", stage2_lengths, stage2_sources),
        ):
            row = statistics(builder, stage_lengths, sources, epochs=args.epochs)
            row.update(sampler=name, stage=stage)
            rows.append(row)
            copies = (
                f"{100 * row['copy_with_original']:.1f} %"
                if sources is not None
                else "–"
            )
            print(
                f"| {name} | {stage} | {row['steps']} | {row['batch_min']}/"
                f"{row['batch_mean']:.1f}/{row['batch_max']} | "
                f"{100 * row['padding']:.1f} % | {100 * row['same_mates']:.1f} % | "
                f"{100 * row['kept_mates']:.1f} % | {copies} |"
            )
    return rows


if __name__ == "__main__":
    main()
