"""Padding waste of random against length-bucketed batches.

Authors
 * ser_lib contributors
"""

import numpy as np
from speechbrain.dataio.sampler import DynamicBatchSampler

from ser_lib.sampling import (
    PoolSortedBatchSampler,
    bucketed_batch_sampler,
    padding_waste,
)


def _row(batching, num_buckets, batches, lengths):
    """One line of the comparison."""
    sizes = [len(batch) for batch in batches]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return {
        "batching": batching,
        "num_buckets": num_buckets,
        "batches": len(batches),
        "mean_batch_utterances": float(np.mean(sizes)),
        "max_batch_utterances": int(max(sizes)),
        "padded_frames": int(padded),
        "padding_waste": padding_waste(batches, lengths),
    }


def padding_comparison(
    lengths, batch_utterances=96, num_buckets=(40,), pool_batches=20, seed=0
):
    """Padding waste of one epoch under several batchings of the same examples.

    * ``random``: shuffled batches of ``batch_utterances`` examples (what a plain
      ``shuffle: True`` loader does);
    * ``pool_sorted``: :class:`ser_lib.sampling.PoolSortedBatchSampler`, the
      recipes' default (batches of exactly ``batch_utterances``, sorted by length
      within pools of ``pool_batches`` batches);
    * ``bucketed``: :func:`ser_lib.sampling.bucketed_batch_sampler` with a frame
      budget of ``batch_utterances`` examples of mean length, for every count in
      ``num_buckets``;
    * ``speechbrain_warped``: SpeechBrain's ``DynamicBatchSampler`` with the same
      budget and its own ``num_buckets`` boundaries (log-normal grid up to the
      budget), for the first count.

    Arguments
    ---------
    lengths : sequence of int
        Frames of every example (after any training crop).
    batch_utterances : int
        Examples per random batch; the bucketed budget is this many mean lengths.
    num_buckets : sequence of int
        Bucket counts to compare.
    pool_batches : int
        Batches per sorted pool of ``pool_sorted``.
    seed : int
        Seed of the shuffles.

    Returns
    -------
    list of dict
        One row per batching: ``batching``, ``num_buckets``, ``batches``,
        ``mean_batch_utterances``, ``max_batch_utterances``, ``padded_frames``,
        ``padding_waste``.

    Example
    -------
    >>> lengths = list(range(10, 210))
    >>> rows = padding_comparison(lengths, batch_utterances=20, num_buckets=(10,))
    >>> [row["batching"] for row in rows]
    ['random', 'pool_sorted', 'bucketed', 'speechbrain_warped']
    >>> rows[1]["padding_waste"] < rows[0]["padding_waste"]
    True
    >>> rows[2]["padding_waste"] < rows[0]["padding_waste"]
    True
    """
    lengths = [int(length) for length in lengths]
    order = np.random.default_rng(seed).permutation(len(lengths))
    random_batches = [
        order[i : i + batch_utterances].tolist()
        for i in range(0, len(order), batch_utterances)
    ]
    rows = [_row("random", None, random_batches, lengths)]
    pool_sorted = PoolSortedBatchSampler(
        lengths, batch_utterances, pool_batches=pool_batches, seed=seed
    )
    rows.append(_row("pool_sorted", None, list(pool_sorted), lengths))
    budget = max(int(round(batch_utterances * np.mean(lengths))), max(lengths))
    for count in num_buckets:
        sampler = bucketed_batch_sampler(
            range(len(lengths)), lengths, budget, num_buckets=count, seed=seed
        )
        rows.append(_row("bucketed", count, list(sampler), lengths))
    warped = DynamicBatchSampler(
        range(len(lengths)),
        max_batch_length=budget,
        num_buckets=num_buckets[0],
        lengths_list=lengths,
        shuffle=True,
        seed=seed,
    )
    rows.append(_row("speechbrain_warped", num_buckets[0], list(warped), lengths))
    return rows
