"""The paper's open readings as settings, and no hidden settings (issue 10, 4-5)."""

import glob
import math
import os
import re

import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from ser_lib.cross_validation import load_recipe_hparams, overrides_to_args
from ser_lib.losses import pseudo_ce_loss, reconstruction_loss
from ser_lib.models import StatisticalAttentivePooling
from ser_lib.models.local_attributes import LocalAttributes
from ser_lib.recipe import record_run_options

ROOT = os.path.join(os.path.dirname(__file__), "..")


def attributes(update, decay=0.9):
    la = LocalAttributes(
        num_prototypes=2, dim=1, reseed_after=100, update=update, decay=decay
    )
    la.prototypes.copy_(torch.tensor([[0.0], [10.0]]))
    la.initialized.fill_(True)
    return la


def test_kmeans_update_cumulative_by_hand():
    la = attributes("cumulative")
    la.update(torch.tensor([[1.0], [3.0], [9.0]]))
    # counts were 0: eta = n/N = 1, each prototype jumps to its frames' mean
    assert la.prototypes.flatten().tolist() == pytest.approx([2.0, 9.0])
    la.update(torch.tensor([[4.0]]))
    # p0: N = 3, eta = 1/3: 2 + (4 - 2) / 3
    assert la.prototypes.flatten().tolist() == pytest.approx([2.0 + 2.0 / 3.0, 9.0])


def test_kmeans_update_ema_by_hand():
    la = attributes("ema", decay=0.9)
    la.update(torch.tensor([[1.0], [3.0], [9.0]]))
    # eta = 1 - decay = 0.1: p0 = 0 + 0.1 (2 - 0), p1 = 10 + 0.1 (9 - 10)
    assert la.prototypes.flatten().tolist() == pytest.approx([0.2, 9.9])
    la.update(torch.tensor([[4.0]]))
    assert la.prototypes.flatten().tolist() == pytest.approx([0.2 + 0.1 * 3.8, 9.9])


def test_bad_kmeans_update_is_refused():
    with pytest.raises(ValueError, match="kmeans_update"):
        LocalAttributes(num_prototypes=2, dim=1, update="sculley")


def test_pce_logits_by_hand():
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    mask = torch.tensor([[True]])
    target = torch.tensor([[0]])
    # neg_sqdist: z = 0, logits = [-1, -4] / tau (tau = 1)
    z = torch.zeros(1, 1, 2)
    loss = pseudo_ce_loss(z, prototypes, target, mask, tau=1.0, logits="neg_sqdist")
    assert float(loss) == pytest.approx(math.log(1.0 + math.exp(-3.0)), abs=1e-6)
    # cosine: z = (1, 1) is equally close in angle to both: ln 2 whatever tau
    z = torch.ones(1, 1, 2)
    loss = pseudo_ce_loss(z, prototypes, target, mask, tau=0.1, logits="cosine")
    assert float(loss) == pytest.approx(math.log(2.0), abs=1e-6)
    # neg_sqdist at tau = 0.5: ||(1,1)-(1,0)||^2 = 1, ||(1,1)-(0,2)||^2 = 2
    loss = pseudo_ce_loss(z, prototypes, target, mask, tau=0.5, logits="neg_sqdist")
    assert float(loss) == pytest.approx(math.log(1.0 + math.exp(-2.0)), abs=1e-6)
    with pytest.raises(ValueError, match="pce_logits"):
        pseudo_ce_loss(z, prototypes, target, mask, logits="dot")


def test_sap_losses_and_kmeans_stay_float32_under_autocast():
    torch.manual_seed(0)
    sap = StatisticalAttentivePooling(input_dim=8, num_heads=2)
    x = torch.randn(3, 20, 8) * 4 + 30  # large mean: E[x^2] - mu^2 cancels
    lengths = torch.tensor([1.0, 0.7, 0.4])
    reference = sap(x, lengths)
    mask = torch.zeros(3, 20, dtype=torch.bool)
    mask[:, ::3] = True
    targets = torch.zeros(3, 20, dtype=torch.long)
    prototypes = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = sap(x.bfloat16(), lengths)
        l_rec = reconstruction_loss(
            x.bfloat16(), x.bfloat16() + 1, mask
        )  # teacher, student
        l_pce = pseudo_ce_loss(x.bfloat16(), prototypes, targets, mask, tau=0.1)
        la = LocalAttributes(num_prototypes=4, dim=8)
        la.update(x[:, :5].reshape(-1, 8).bfloat16())
    assert (
        pooled.dtype
        == l_rec.dtype
        == l_pce.dtype
        == la.prototypes.dtype
        == torch.float32
    )
    # the bf16 input is the only rounding: the statistics match float32 closely
    assert torch.allclose(pooled, sap(x.bfloat16().float(), lengths), atol=1e-5)
    assert torch.allclose(pooled, reference, atol=0.05)
    a = x.bfloat16()
    b = a + 1
    expected = ((a.float() - b.float()) ** 2).sum(-1)[mask].mean()
    assert float(l_rec) == pytest.approx(float(expected), rel=1e-6)


def yaml_files():
    return sorted(glob.glob(os.path.join(ROOT, "recipes", "*", "hparams", "*.yaml")))


@pytest.mark.parametrize(
    "stage", ["adapter.yaml", "finetune.yaml"], ids=["adapter", "finetune"]
)
def test_every_recipe_states_clipping_and_precision(stage):
    files = [f for f in yaml_files() if os.path.basename(f) == stage]
    assert len(files) >= 6
    for path in files:
        text = open(path, encoding="utf-8").read()
        assert re.search(r"^max_grad_norm: 5\.0\b", text, re.M), path
        # precision: auto, resolved per device (ser_lib/precision.py).
        assert re.search(r"^precision: auto\b", text, re.M), path
        assert re.search(r"^bf16_cpu_min_d_model: \d+\b", text, re.M), path
        if stage == "adapter.yaml":
            for key in ("pce_logits: cosine", "kmeans_update: cumulative"):
                assert re.search(rf"^{key}\b", text, re.M), (path, key)


def test_precision_override_reaches_the_brain_settings(tmp_path):
    """The driver's overrides load (no KeyError) and SpeechBrain reads the key."""
    recipe = os.path.join(ROOT, "recipes", "IEMOCAP")
    overrides = {"data_folder": str(tmp_path), "output_root": str(tmp_path)}
    for stage in ("hparams/adapter.yaml", "hparams/finetune.yaml"):
        hparams = load_recipe_hparams(
            recipe, stage, {**overrides, "precision": "bf16", "max_grad_norm": 1.0}
        )
        assert hparams["precision"] == "bf16" and hparams["max_grad_norm"] == 1.0


def test_run_options_from_the_driver_are_recorded(tmp_path):
    """--precision from the fold driver is a SpeechBrain run option: the stage's
    hparams (hence its saved settings) must hold the value in force, not the YAML's."""
    argv = ["x.yaml", *overrides_to_args({"precision": "bf16", "lr": 0.1})]
    _, run_opts, overrides = sb.parse_arguments(argv)
    hparams = load_hyperpyyaml("precision: fp32\nlr: 1.0\n", overrides)
    assert hparams["precision"] == "fp32"  # SpeechBrain kept it as a run option
    record_run_options(hparams, run_opts)
    assert hparams == {"precision": "bf16", "lr": 0.1}
