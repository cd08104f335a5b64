"""Speed levers that must not change what training computes.

* LocalAttributes reuses the step's eqn-4 assignment (tests/test_models.py).
* The Brains read their running loss and statistics from the device once every
  ``sync_interval`` steps: the logged values equal the per-step computation, and a
  non-finite loss still stops training.
* Under bf16 autocast the SAP statistics, the losses, the EMA teacher and the
  k-means stay in float32.

No timing assertions: the figures depend on the machine and its load.
"""

import math

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer
from torch.utils.data import DataLoader

from benchmarks.config import SIZES
from benchmarks.tasks import adapter_brain, feature_batch, finetune_brain
from ser_lib.brains import AdapterBrain
from ser_lib.losses import pseudo_ce_loss, reconstruction_loss
from ser_lib.models import StatisticalAttentivePooling
from ser_lib.train_logger import JsonlTrainLogger

SPEC = {"size": SIZES["tiny"].as_dict(), "device": "cpu", "precision": "fp32"}
FEATURE_DIM = 8


class RecordingAdapterBrain(AdapterBrain):
    """Records every accumulated value and every step's loss as Python numbers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_step = {}

    def _accumulate(self, stage, **values):
        for key, value in values.items():
            self.per_step.setdefault(key.rstrip("_"), []).append(float(value))
        super()._accumulate(stage, **values)

    def fit_batch(self, batch):
        loss = super().fit_batch(batch)
        self.per_step.setdefault("loss", []).append(float(loss))
        return loss


def _batches(num, nan_at=None):
    """``num`` small feature batches of different lengths; NaN features at ``nan_at``."""
    batches = []
    for i in range(num):
        batch = feature_batch(3, 6 + i, FEATURE_DIM, seed=i)
        if i == nan_at:
            batch.feats.data[:] = float("nan")
        batches.append(batch)
    return DataLoader(batches, batch_size=None)


def _logged(brain):
    """The Brain's epoch statistics as it logs them."""
    return dict(brain.train_stats)


def _stage1_brain(tmp_path, sync_interval, brain_class=AdapterBrain, precision="fp32"):
    """A tiny stage-1 Brain for one epoch, checkpointing into tmp_path."""
    return adapter_brain(
        {**SPEC, "precision": precision},
        FEATURE_DIM,
        brain_class=brain_class,
        epochs=1,
        sync_interval=sync_interval,
        checkpointer=Checkpointer(tmp_path / "save"),
        checkpoints_to_keep=1,
        train_logger=JsonlTrainLogger(
            str(tmp_path / "log.txt"), str(tmp_path / "log.jsonl")
        ),
    )


def _fit(brain, loader):
    brain.fit(brain.hparams.epoch_counter, loader, progressbar=False)


def test_logged_stage1_values_equal_the_per_step_computation(tmp_path):
    brain = _stage1_brain(tmp_path, sync_interval=3, brain_class=RecordingAdapterBrain)
    _fit(brain, _batches(7))  # two full intervals and a partial one
    logged = _logged(brain)
    assert set(brain.per_step) <= set(logged)
    for key, values in brain.per_step.items():
        assert logged[key] == pytest.approx(sum(values) / len(values), rel=1e-9), key
    assert brain._pending is None  # everything was read at the end of the epoch


def test_stage1_nonfinite_loss_stops_at_the_next_sync(tmp_path):
    brain = _stage1_brain(tmp_path, sync_interval=4)
    # The first batch initialises the prototypes; the NaN batch is step 2.
    with pytest.raises(ValueError, match="finite"):
        _fit(brain, _batches(8, nan_at=1))
    assert brain.step == 4  # read at the first sync after the NaN, not later


def test_stage2_nonfinite_loss_stops_and_averages_match():
    brain = finetune_brain(SPEC, FEATURE_DIM)
    brain.hparams.sync_interval = 2
    brain.hparams.epoch_counter.limit = 1
    brain.checkpointer = None
    losses = []
    real_fit_batch = brain.fit_batch

    def recording_fit_batch(batch):
        loss = real_fit_batch(batch)
        losses.append(float(loss))
        return loss

    brain.fit_batch = recording_fit_batch
    loader = _batches(5)
    brain.on_stage_end = lambda stage, stage_loss, epoch=None: losses.append(
        ("end", brain.training_loss(stage, stage_loss))
    )
    brain.fit(brain.hparams.epoch_counter, loader, progressbar=False)
    steps, (_, logged) = losses[:-1], losses[-1]
    assert logged == pytest.approx(sum(steps) / len(steps), rel=1e-9)

    nan_brain = finetune_brain(SPEC, FEATURE_DIM)
    nan_brain.hparams.sync_interval = 3
    nan_brain.nonfinite_patience = 0  # as the recipes
    with pytest.raises(ValueError, match="Loss is not finite"):
        nan_brain.fit(
            nan_brain.hparams.epoch_counter, _batches(6, nan_at=0), progressbar=False
        )
    assert nan_brain.step == 3 and math.isfinite(nan_brain.avg_train_loss)


# ------------------------------------------------------------ bf16 autocast

BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


def _bf16_rounded(*shape, seed=0, mean=0.0, std=1.0):
    """Random float32 values exactly representable in bf16."""
    g = torch.Generator().manual_seed(seed)
    return (mean + std * torch.randn(*shape, generator=g)).bfloat16().float()


def test_sap_statistics_stay_float32_under_autocast():
    sap = StatisticalAttentivePooling(input_dim=16, num_heads=2)
    x = _bf16_rounded(3, 7, 16, mean=10.0, std=4.0)  # a bf16 variance would cancel
    lengths = torch.tensor([1.0, 0.6, 0.3])
    expected = sap(x, lengths)
    with torch.autocast(**BF16):
        got = sap(x.bfloat16(), lengths)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_losses_stay_float32_under_autocast():
    zt, zs = _bf16_rounded(2, 5, 8, seed=1), _bf16_rounded(2, 5, 8, seed=2)
    protos = torch.randn(6, 8)
    mask = torch.tensor(
        [[True, False, True, True, False], [False, True, True, False, True]]
    )
    targets = torch.randint(6, (2, 5), generator=torch.Generator().manual_seed(3))
    expected = (
        reconstruction_loss(zt, zs, mask),
        pseudo_ce_loss(zs, protos, targets, mask, tau=0.1),
    )
    with torch.autocast(**BF16):
        got = (
            reconstruction_loss(zt.bfloat16(), zs.bfloat16(), mask),
            pseudo_ce_loss(zs.bfloat16(), protos, targets, mask, tau=0.1),
        )
    for value, reference in zip(got, expected, strict=True):
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, reference, rtol=1e-6, atol=1e-6)


def test_bf16_stage1_keeps_teacher_ema_and_kmeans_in_float32(tmp_path):
    brain = _stage1_brain(tmp_path, sync_interval=2, precision="bf16")
    assert brain.precision == "bf16"
    teacher = brain.modules.teacher
    before = [p.detach().clone() for p in teacher.parameters()]
    _fit(brain, _batches(3))
    attributes = brain.modules.local_attributes
    assert attributes.prototypes.dtype == torch.float32
    assert attributes.counts.dtype == torch.float64
    assert torch.isfinite(attributes.prototypes).all()
    assert all(p.dtype == torch.float32 for p in teacher.parameters())
    # The EMA moves the teacher by (1 - alpha) of the student's lead: steps far
    # below bf16's resolution, which a float32 teacher keeps.
    moved = max(
        float((p.detach() - b).abs().max())
        for b, p in zip(before, teacher.parameters(), strict=True)
    )
    assert 0 < moved < 1e-3
    assert all(math.isfinite(v) for v in brain.train_stats.values())
