"""Length-bucketed batching on top of SpeechBrain's ``DynamicBatchSampler``.

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

import numpy as np
from speechbrain.dataio.sampler import DynamicBatchSampler


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
