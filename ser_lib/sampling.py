"""Training batches: pool-sorted fixed-size batches (the default) or length buckets.

The paper trains both stages with batches of 96 utterances.
:class:`PoolSortedBatchSampler` (the recipes' default ``train_sampler``) keeps that
size and still avoids most padding: every epoch it shuffles the utterances, cuts them
into pools of ``pool_batches`` x ``batch_size``, sorts each pool by length, cuts it
into batches of ``batch_size`` and shuffles the batches. Batch composition changes
from epoch to epoch, and the number of steps per epoch is the paper's.

The length-bucketed sampler below stays available (``train_sampler:
!name:ser_lib.sampling.bucketed_sampler``): its batches have a frame budget instead
of a size, so they hold 2 to ~70 utterances, and when each bucket fits in one or two
batches most utterances meet the same batch-mates every epoch
(``tools/batch_statistics.py`` measures both).

Random batches of IEMOCAP-like utterances (log-normal durations, a long tail up to
~35 s) are mostly padding: every batch is as long as its longest utterance. Grouping
utterances of similar length into the same batch removes most of it. SpeechBrain's
:class:`speechbrain.dataio.sampler.DynamicBatchSampler` does the grouping; two
details make it fit this project:

* its ``num_buckets`` mode places the bucket boundaries on a log-normal grid that
  ends at ``max_batch_length`` (the frame budget of a whole batch), so with a budget
  of ~96 utterances almost every utterance falls into the first one or two buckets.
  :func:`quantile_bucket_boundaries` instead puts the boundaries at quantiles of the
  actual lengths, ending at the longest one (an utterance longer than the last
  boundary would get a batch of its own);
* the sampler only reshuffles for a new epoch when ``set_epoch`` is called, which
  ``sb.Brain`` does for ``brain.train_sampler`` only (see :func:`bucketed_batch_sampler`).

:func:`padding_waste` measures the result (padded frames over all frames).

Authors
 * ser_lib contributors
"""

import math

import numpy as np
import torch
from speechbrain.dataio.sampler import DynamicBatchSampler


class PoolSortedBatchSampler(torch.utils.data.Sampler):
    """Fixed-size batches of similar-length utterances, new batch-mates every epoch.

    For epoch ``e``, with a generator seeded by ``(seed, e)``: shuffle all example
    indices, cut them into pools of ``pool_batches * batch_size``, sort each pool by
    length (stable), cut each pool into batches of ``batch_size``, then shuffle the
    order of the full batches. Only the last pool can end in a short batch; it is
    yielded last, so every batch but the last has exactly ``batch_size`` examples.
    The batches of an epoch depend on ``(seed, epoch)`` only: iterating twice gives
    the same batches, and a run resumed at epoch ``e`` sees the batches of an
    uninterrupted run. ``sb.Brain`` calls :meth:`set_epoch` before every epoch when
    the sampler is its ``train_sampler``.

    DDP: SpeechBrain wraps a batch sampler in ``DistributedSamplerWrapper``, which
    hands out *whole batches* to the ranks (each rank a disjoint share of the
    epoch's batches, padded by repeating a few when they do not divide evenly), so
    ``batch_size`` is per process: 4 processes with ``batch_size=24`` take 96
    utterances a step, in four length-sorted groups of 24.

    With ``shuffle=False`` the batches are the examples sorted by length (shortest
    first) cut into batches of ``batch_size`` (e.g. for evaluation).

    Arguments
    ---------
    lengths : sequence of int or float
        Length of every example (e.g. feature frames after any training crop).
    batch_size : int
        Examples per batch (the paper: 96).
    pool_batches : int
        Batches per sorted pool; 1 sorts within each batch only (little padding
        saved), ``len(lengths) / batch_size`` sorts the whole epoch (the same
        batches every epoch).
    shuffle : bool
        Shuffle (training) or sort the whole set (evaluation).
    seed : int
        Seed of the shuffles.
    epoch : int
        Epoch to start at.

    Example
    -------
    >>> lengths = [5, 50, 6, 51, 7, 52, 8, 53, 9]
    >>> sampler = PoolSortedBatchSampler(lengths, batch_size=2, pool_batches=2, seed=3)
    >>> len(sampler)
    5
    >>> batches = list(sampler)
    >>> [len(batch) for batch in batches]
    [2, 2, 2, 2, 1]
    >>> sorted(i for batch in batches for i in batch) == list(range(9))
    True
    >>> batches == list(sampler)  # deterministic for (seed, epoch)
    True
    >>> sampler.set_epoch(1)
    >>> batches != list(sampler)
    True
    >>> list(PoolSortedBatchSampler(lengths, batch_size=4, shuffle=False))
    [[0, 2, 4, 6], [8, 1, 3, 5], [7]]
    """

    def __init__(
        self, lengths, batch_size, pool_batches=20, shuffle=True, seed=0, epoch=0
    ):
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(
                "PoolSortedBatchSampler: batch_size and pool_batches must be >= 1, "
                f"got {batch_size} and {pool_batches}"
            )
        self.lengths = np.asarray(lengths, dtype=np.float64)
        if self.lengths.size == 0:
            raise ValueError("PoolSortedBatchSampler: no lengths given")
        self.batch_size = int(batch_size)
        self.pool_batches = int(pool_batches)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = int(epoch)

    def set_epoch(self, epoch):
        """Chooses the epoch whose batches the next iteration yields."""
        self.epoch = int(epoch)

    def batches(self, epoch):
        """The batches of ``epoch`` (list of lists of example indices)."""
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return self._cut(order)
        rng = np.random.default_rng([self.seed, int(epoch)])
        order = rng.permutation(self.lengths.size)
        pool_size = self.pool_batches * self.batch_size
        full, short = [], []
        for start in range(0, order.size, pool_size):
            pool = order[start : start + pool_size]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            for batch in self._cut(pool):
                (full if len(batch) == self.batch_size else short).append(batch)
        full = [full[i] for i in rng.permutation(len(full))]
        return full + short

    def _cut(self, order):
        """Consecutive batches of ``batch_size`` indices of ``order``."""
        return [
            [int(i) for i in order[start : start + self.batch_size]]
            for start in range(0, order.size, self.batch_size)
        ]

    def __iter__(self):
        return iter(self.batches(self.epoch))

    def __len__(self):
        return math.ceil(self.lengths.size / self.batch_size)


def quantile_bucket_boundaries(lengths, num_buckets):
    """Bucket upper boundaries that split the examples into equally sized groups.

    The sorted lengths are cut into ``num_buckets`` groups of (nearly) equal size;
    the boundary of a group is its longest length, so every boundary is a real
    length and none of a batch's frame budget is spent on a boundary no example
    reaches.

    Arguments
    ---------
    lengths : sequence of int or float
        Length of every example (e.g. frames).
    num_buckets : int
        Number of buckets (>= 1); fewer are returned when boundaries coincide or
        there are fewer examples than buckets.

    Returns
    -------
    list of float
        Strictly increasing boundaries; the last one is ``max(lengths)``, so every
        example fits in a bucket.

    Example
    -------
    >>> quantile_bucket_boundaries([10, 11, 12, 50, 52, 55, 100, 101], 3)
    [12.0, 55.0, 101.0]
    >>> quantile_bucket_boundaries([5, 5, 5], 3)
    [5.0]
    """
    if num_buckets < 1:
        raise ValueError(
            f"quantile_bucket_boundaries: num_buckets must be >= 1, got {num_buckets}"
        )
    lengths = np.sort(np.asarray(lengths, dtype=np.float64))
    if lengths.size == 0:
        raise ValueError("quantile_bucket_boundaries: no lengths given")
    groups = np.array_split(lengths, min(num_buckets, lengths.size))
    return [float(b) for b in np.unique([group[-1] for group in groups])]


def bucketed_batch_sampler(
    dataset, lengths, batch_length, num_buckets=20, shuffle=True, seed=0, epoch=0
):
    """A ``DynamicBatchSampler`` with quantile buckets and a frame budget per batch.

    Every batch holds examples of one bucket, at most ``batch_length`` frames once
    padded to the bucket's upper boundary. Batches are shuffled (examples within
    buckets and the order of batches) with ``seed + epoch``.

    To reshuffle every epoch in a Brain, give the sampler to the loader and register
    it with the Brain, which then calls its ``set_epoch``::

        sampler = bucketed_batch_sampler(train_set, lengths, batch_length)
        brain.train_sampler = sampler
        brain.fit(counter, train_set, train_loader_kwargs={"batch_sampler": sampler})

    Arguments
    ---------
    dataset : sized
        The dataset (only its length is used).
    lengths : sequence of int
        Length of every example of ``dataset`` (same order), e.g. the number of
        feature frames after any cropping.
    batch_length : int
        Frame budget of one batch (e.g. 96 times the mean length for batches
        equivalent to 96 utterances).
    num_buckets : int
        Number of quantile buckets.
    shuffle : bool
        Shuffle examples and batches (training); otherwise batches come sorted by
        length, shortest first.
    seed : int
        Seed of the shuffling.
    epoch : int
        Epoch to start at.

    Returns
    -------
    speechbrain.dataio.sampler.DynamicBatchSampler

    Example
    -------
    >>> lengths = [10, 11, 12, 50, 52, 55, 100, 101]
    >>> sampler = bucketed_batch_sampler(range(8), lengths, batch_length=220,
    ...                                  num_buckets=3)
    >>> sorted(sorted(batch) for batch in sampler)
    [[0, 1, 2], [3, 4, 5], [6, 7]]
    >>> round(padding_waste(list(sampler), lengths), 3)
    0.03
    """
    if len(dataset) != len(lengths):
        raise ValueError(
            f"bucketed_batch_sampler: {len(lengths)} lengths for a dataset of "
            f"{len(dataset)} examples"
        )
    boundaries = quantile_bucket_boundaries(lengths, num_buckets)
    if batch_length < boundaries[-1]:
        raise ValueError(
            f"bucketed_batch_sampler: batch_length={batch_length} is shorter than the "
            f"longest example ({boundaries[-1]:.0f})"
        )
    return DynamicBatchSampler(
        dataset,
        max_batch_length=batch_length,
        bucket_boundaries=boundaries,
        lengths_list=[int(length) for length in lengths],
        shuffle=shuffle,
        batch_ordering="random" if shuffle else "ascending",
        seed=seed,
        epoch=epoch,
    )


def bucketed_sampler(lengths, batch_size, num_buckets=40, seed=0):
    """:func:`bucketed_batch_sampler` with a budget of ``batch_size`` mean lengths.

    The optional ``train_sampler`` of the recipes (``!name:`` with ``batch_size``,
    ``num_buckets``, ``seed``): batches hold ``batch_size`` utterances on average
    only, and fewer when long, more when short.

    Arguments
    ---------
    lengths : sequence of int
        Length of every example.
    batch_size : int
        Mean utterances per batch (the frame budget is this many mean lengths, at
        least the longest example).
    num_buckets : int
        Number of quantile buckets.
    seed : int
        Seed of the shuffling.

    Returns
    -------
    speechbrain.dataio.sampler.DynamicBatchSampler

    Example
    -------
    >>> sampler = bucketed_sampler([10, 11, 12, 50, 52, 55, 100, 101], 3, 3)
    >>> sorted(sorted(batch) for batch in sampler)  # budget 3 x 49 frames
    [[0, 1, 2], [3, 4], [5], [6], [7]]
    """
    lengths = [int(length) for length in lengths]
    batch_length = max(int(round(batch_size * float(np.mean(lengths)))), max(lengths))
    return bucketed_batch_sampler(
        range(len(lengths)), lengths, batch_length, num_buckets=num_buckets, seed=seed
    )


def padding_waste(batches, lengths):
    """Fraction of padded frames over all frames of padded batches.

    ``sum_b (|b| * max_len(b) - sum len(b)) / sum_b |b| * max_len(b)``.

    Arguments
    ---------
    batches : iterable of sequence of int
        Example indices of every batch.
    lengths : sequence of int
        Length of every example.

    Returns
    -------
    float
        In [0, 1).

    Example
    -------
    >>> padding_waste([[0, 1], [2, 3]], [4, 2, 1, 1])
    0.2
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    padded = valid = 0.0
    for batch in batches:
        batch_lengths = lengths[np.asarray(batch, dtype=np.int64)]
        if batch_lengths.size == 0:
            continue
        padded += batch_lengths.size * batch_lengths.max()
        valid += batch_lengths.sum()
    if padded == 0:
        raise ValueError("padding_waste: no frames in the batches")
    return float((padded - valid) / padded)


def batch_mate_overlap(first, second):
    """How much the batch-mates of the examples change between two epochs.

    Arguments
    ---------
    first, second : iterable of sequence of int
        The batches of two epochs over the same examples.

    Returns
    -------
    same : float
        Share of examples whose batch-mates are exactly the same in both epochs
        (of examples that have batch-mates in the first).
    kept : float
        Mean share of an example's first-epoch batch-mates that are again in its
        batch in the second.

    Example
    -------
    >>> batch_mate_overlap([[0, 1], [2, 3]], [[0, 1], [2], [3]])
    (0.5, 0.5)
    >>> batch_mate_overlap([[0, 1, 2, 3]], [[0, 1], [2, 3]])
    (0.0, 0.3333333333333333)
    """
    mates = [
        {int(i): set(map(int, batch)) - {int(i)} for batch in epoch for i in batch}
        for epoch in (first, second)
    ]
    shared = [i for i in mates[0] if mates[0][i]]
    if not shared:
        raise ValueError("batch_mate_overlap: no example has batch-mates")
    same = float(np.mean([mates[0][i] == mates[1].get(i) for i in shared]))
    kept = float(
        np.mean(
            [
                len(mates[0][i] & mates[1].get(i, set())) / len(mates[0][i])
                for i in shared
            ]
        )
    )
    return same, kept
