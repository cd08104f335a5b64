"""The training batch samplers of ser_lib.sampling: size, coverage, churn."""

import numpy as np
import pytest

from ser_lib.sampling import (
    PoolSortedBatchSampler,
    batch_mate_overlap,
    bucketed_sampler,
    padding_waste,
)


def lognormal_lengths(n, seed=0):
    """IEMOCAP-like frame counts (50 Hz, mean ~4.5 s, long tail, cropped at 30 s)."""
    rng = np.random.default_rng(seed)
    return np.minimum(rng.lognormal(np.log(200), 0.6, n), 1500).astype(int).tolist()


def test_every_batch_but_the_last_is_full_and_an_epoch_covers_everything():
    lengths = lognormal_lengths(1000)
    sampler = PoolSortedBatchSampler(lengths, batch_size=96, pool_batches=5, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 11
        assert [len(b) for b in batches[:-1]] == [96] * 10
        assert len(batches[-1]) == 1000 - 960
        assert sorted(i for b in batches for i in b) == list(range(1000))


def test_batches_depend_on_seed_and_epoch_only():
    lengths = lognormal_lengths(500)
    a = PoolSortedBatchSampler(lengths, batch_size=32, seed=7)
    b = PoolSortedBatchSampler(lengths, batch_size=32, seed=7, epoch=3)
    a.set_epoch(3)
    assert list(a) == list(b) == list(a)
    a.set_epoch(4)
    assert list(a) != list(b)
    assert list(
        PoolSortedBatchSampler(lengths, batch_size=32, seed=8, epoch=3)
    ) != list(b)


def test_consecutive_epochs_change_batch_mates_unlike_the_bucketed_sampler():
    """Measured: share of utterances meeting exactly the same batch-mates again."""
    lengths = lognormal_lengths(4424)
    pool = PoolSortedBatchSampler(lengths, batch_size=96, pool_batches=20, seed=0)
    first = list(pool)
    pool.set_epoch(1)
    pool_same, pool_kept = batch_mate_overlap(first, list(pool))
    bucketed = bucketed_sampler(lengths, batch_size=96, num_buckets=40, seed=0)
    first = [list(b) for b in bucketed]
    bucketed.set_epoch(1)
    bucket_same, bucket_kept = batch_mate_overlap(first, [list(b) for b in bucketed])
    assert pool_same < 0.01 and pool_kept < 0.4
    assert bucket_same > 0.5 and bucket_kept > 0.5
    # and the padding of fixed-size batches stays small
    random_batches = [list(range(i, min(i + 96, 4424))) for i in range(0, 4424, 96)]
    assert padding_waste(list(pool), lengths) < 0.25
    assert (
        padding_waste(list(pool), lengths) < padding_waste(random_batches, lengths) / 3
    )


def test_sorting_within_pools_cuts_padding():
    lengths = lognormal_lengths(2000)
    one = PoolSortedBatchSampler(lengths, batch_size=64, pool_batches=1, seed=0)
    twenty = PoolSortedBatchSampler(lengths, batch_size=64, pool_batches=20, seed=0)
    assert padding_waste(list(twenty), lengths) < padding_waste(list(one), lengths) / 3


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        PoolSortedBatchSampler([1, 2], batch_size=0)
    with pytest.raises(ValueError, match="no lengths"):
        PoolSortedBatchSampler([], batch_size=2)
