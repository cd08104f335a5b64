"""The frozen-encoder baseline: layer mixing, padding, and a fold through the driver.

The fold runs ``cross_validate.py --finetune_hparams=hparams/baseline.yaml`` on a tiny
IEMOCAP-format tree with fbank features (80 log-Mel x 2 stacked frames, read here as
2 "layers" of 80 so the weighted sum is exercised end to end).
"""

import json

import pandas as pd
import pytest
import torch
from conftest import iemocap_cross_validate
from fixtures_iemocap import make_iemocap_fixture
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.nnet.linear import Linear

from ser_lib.brains import BaselineBrain
from ser_lib.models import LayerWeightedSum, mean_pool
from ser_lib.results import collect_row, row_figures


def test_layer_weights_are_a_softmax_and_learn():
    mix = LayerWeightedSum(num_layers=3, layer_dim=4)
    with torch.no_grad():
        mix.layer_weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    weights = mix.weights()
    assert weights.sum().item() == pytest.approx(1.0)
    assert (weights > 0).all()
    x = torch.randn(2, 5, 12)
    expected = sum(weights[i] * x[..., 4 * i : 4 * (i + 1)] for i in range(3))
    assert torch.allclose(mix(x), expected, atol=1e-6)
    mix(x).pow(2).sum().backward()
    assert mix.layer_weights.grad is not None
    assert mix.layer_weights.grad.abs().sum() > 0


def test_layer_choice_and_layouts_agree():
    x_flat = torch.randn(2, 5, 3 * 4)  # layer-major channels
    x_stacked = x_flat.view(2, 5, 3, 4).permute(0, 2, 1, 3)  # [B, L, T, D]
    for layers in (None, -1, [0, 2]):
        flat = LayerWeightedSum(3, 4, layers=layers, layout="flat")
        stacked = LayerWeightedSum(3, 4, layers=layers, layout="stacked")
        assert torch.allclose(flat(x_flat), stacked(x_stacked))
    assert torch.equal(LayerWeightedSum(3, 4, layers=-1)(x_flat), x_flat[..., 8:])
    with pytest.raises(ValueError, match="does not exist"):
        LayerWeightedSum(3, 4, layers=3)
    with pytest.raises(ValueError, match=r"expected \[B, T, 12\]"):
        LayerWeightedSum(3, 4)(torch.randn(2, 5, 8))


def test_layer_norm_mixes_normalised_layers():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3 * 4)
    mix = LayerWeightedSum(num_layers=3, layer_dim=4, layer_norm=True)
    with torch.no_grad():
        mix.layer_weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    weights = mix.weights()
    normed = [
        torch.nn.functional.layer_norm(x[..., 4 * i : 4 * (i + 1)], (4,))
        for i in range(3)
    ]
    expected = sum(weights[i] * normed[i] for i in range(3))
    assert torch.allclose(mix(x), expected, atol=1e-6)
    # A layer of 1000x the scale no longer swamps the mix (it does without the norm).
    scaled = x.clone()
    scaled[..., 4:8] *= 1000.0
    assert torch.allclose(mix(scaled), mix(x), atol=1e-4)
    raw = LayerWeightedSum(num_layers=3, layer_dim=4)
    assert not torch.allclose(raw(scaled), raw(x), atol=1.0)
    # No learnable parameters besides the layer weights: the checkpoint is as before.
    assert list(mix.state_dict()) == ["layer_weights"]


def test_lr_scales_give_the_layer_weights_their_own_learning_rate():
    torch.manual_seed(0)

    def baseline_brain(lr_scales):
        modules = {
            "layer_mix": LayerWeightedSum(num_layers=3, layer_dim=4),
            "projection": Linear(input_size=4, n_neurons=5),
            "classifier": Linear(input_size=5, n_neurons=2),
        }
        hparams = {
            "pooling": mean_pool,
            "lr_scales": lr_scales,
            "lr_schedule": lambda progress: 5e-4,
        }
        brain = BaselineBrain(
            modules=modules, hparams=hparams, opt_class=torch.optim.Adam
        )
        brain.init_optimizers()
        brain.training_progress = lambda: 0.0
        brain.on_fit_batch_start(None, True)
        return brain

    default = baseline_brain({})  # the YAMLs' default: one group, as before
    assert len(default.optimizer.param_groups) == 1
    assert default.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)

    brain = baseline_brain({"layer_mix": 20.0})
    groups = {g["name"]: g for g in brain.optimizer.param_groups}
    assert set(groups) == {"layer_mix", "projection", "classifier"}
    assert groups["layer_mix"]["lr"] == pytest.approx(1e-2)
    assert groups["projection"]["lr"] == groups["classifier"]["lr"] == 5e-4
    assert brain.current_lr() == pytest.approx(5e-4)  # the schedule's, for the log
    # One Adam step moves each weight by about its group's learning rate.
    batch = PaddedBatch([{"id": "a", "feats": torch.randn(6, 12)}])
    brain.compute_forward(batch, None)["logits"].sum().backward()
    weights = brain.modules.layer_mix.layer_weights.detach().clone()
    bias = brain.modules.classifier.w.bias.detach().clone()
    brain.optimizer.step()
    moved = (brain.modules.layer_mix.layer_weights - weights).abs()
    assert torch.allclose(moved, torch.full_like(moved, 1e-2), rtol=1e-2)
    assert (brain.modules.classifier.w.bias - bias).abs().max() < 1e-3
    with pytest.raises(ValueError, match="unknown modules"):
        baseline_brain({"layer_mixx": 20.0})


def test_padding_does_not_change_the_prediction():
    torch.manual_seed(0)
    modules = {
        "layer_mix": LayerWeightedSum(num_layers=2, layer_dim=3, layer_norm=True),
        "projection": Linear(input_size=3, n_neurons=5),
        "classifier": Linear(input_size=5, n_neurons=4),
    }
    brain = BaselineBrain(modules=modules, hparams={"pooling": mean_pool})
    short = torch.randn(3, 6)
    batch = PaddedBatch(
        [{"id": "a", "feats": torch.randn(7, 6)}, {"id": "b", "feats": short}]
    )
    logits = brain.compute_forward(batch, None)["logits"]
    batch.feats.data[1, 3:] = 1e3 * torch.randn(4, 6)  # garbage in the padding
    assert torch.allclose(brain.compute_forward(batch, None)["logits"], logits)
    alone = PaddedBatch([{"id": "b", "feats": short}])
    assert torch.allclose(
        brain.compute_forward(alone, None)["logits"][0], logits[1], atol=1e-6
    )


def test_baseline_fold_through_the_driver(tmp_path):
    corpus = make_iemocap_fixture(tmp_path / "iemocap", utterances_per_dialog=8)
    cross_validate = iemocap_cross_validate()
    common = {
        "encoder_name": "fbank",
        "encoder_hparams": "hparams/encoder/fbank.yaml",
        "subset": "all",
        "cached_layers": 2,
        "layer_dim": 80,
        "proj_dim": 16,
        "number_of_epochs": 2,
        "batch_size": 8,
        # The per-layer norm and the layer weights' own learning rate, end to end.
        "layer_norm": True,
        "lr_scales": {"layer_mix": 20.0},
    }
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"common": common}))
    out = tmp_path / "cv"
    argv = ["--data_folder", corpus["data_folder"], "--output_folder", str(out)]
    argv += ["--config", str(config), "--folds", "1"]
    argv += ["--finetune_hparams", "hparams/baseline.yaml"]
    results = cross_validate.main(argv)

    fold_dir = out / "fbank_all" / "fold1"
    assert not (fold_dir / "adapter").exists()  # no stage 1 ran
    assert (out / "report" / "README.md").is_file()
    metrics = json.loads((fold_dir / "baseline" / "metrics.json").read_text())
    assert results["folds"][0]["UA"] == pytest.approx(metrics["UA"])
    test_ids = [u["ID"] for u in corpus["utterances"] if u["emo"] and u["session"] == 1]
    predictions = pd.read_csv(fold_dir / "baseline" / "predictions.csv")
    assert sorted(predictions["ID"]) == sorted(test_ids)
    assert metrics["n_test"] == len(test_ids)
    wa = 100.0 * (predictions["true"] == predictions["predicted"]).mean()
    assert wa == pytest.approx(metrics["WA"])
    # run_info.json: the command, the schedule (no stage 1), the fold's stage times;
    # the row's small files can be collected for the results table.
    info = json.loads((out / "run_info.json").read_text())
    assert info["command"].startswith("python recipes/IEMOCAP/cross_validate.py ")
    assert "hparams/baseline.yaml" in info["command"]
    assert info["schedule"]["stage1"] is None
    assert info["schedule"]["stage2"]["number_of_epochs"] == 2
    assert info["folds"]["1"]["folder"] == str(fold_dir / "baseline")
    assert info["folds"]["1"]["stage1_s"] is None
    assert isinstance(info["folds"]["1"]["stage2_s"], float)
    assert info["folds"]["1"]["git"] == info["git"]
    assert set(info["git"]) == {"commit", "dirty"}
    assert collect_row(str(out), str(tmp_path / "row")) == [1]
    assert row_figures(str(tmp_path / "row"))["UA"]["per_fold"] == [metrics["UA"]]
    # The learned layer weights are in the checkpoint and moved from their start.
    (ckpt,) = (fold_dir / "baseline" / "save").glob("CKPT*")
    weights = torch.load(ckpt / "layer_mix.ckpt")["layer_weights"]
    assert weights.shape == (2,)
    assert weights.abs().sum() > 0
