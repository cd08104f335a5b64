"""The adapter on a mix of encoder layers: ``WAPTransformer(input_layers > 1)``.

The backbone owns the learnable layer mix (``input_mix``), so the EMA teacher, the
checkpoints, the stage-1 export and stage 2's initialisation carry it; dotted
``lr_scales`` names (``student.input_mix``) give it its own learning rate. The fold
runs both stages through ``cross_validate.py`` on a tiny IEMOCAP-format tree with
fbank features (80 log-Mel x 2 stacked frames, read as 2 "layers" of 80).
"""

import json

import pandas as pd
import pytest
import torch
from conftest import iemocap_cross_validate
from fixtures_iemocap import make_iemocap_fixture

from ser_lib.brains.base import module_param_groups
from ser_lib.inference import EmotionRecognizer
from ser_lib.models import LayerWeightedSum, WAPTransformer

SMALL = {"d_model": 8, "num_layers": 2, "nhead": 2, "max_frames": 20}


def test_one_layer_keeps_the_state_dict_of_before():
    """No input_mix without a mix: teachers exported before the option still load."""
    plain = WAPTransformer(input_dim=6, **SMALL)
    assert plain.input_mix is None
    assert not any(key.startswith("input_mix") for key in plain.state_dict())
    normed = WAPTransformer(input_dim=6, input_layer_norm=True, **SMALL)
    assert list(normed.input_mix.state_dict()) == ["layer_weights"]


def test_the_mix_feeds_the_patch_embedding():
    torch.manual_seed(0)
    mixed = WAPTransformer(input_dim=6, input_layers=3, input_layer_norm=True, **SMALL)
    with torch.no_grad():
        mixed.input_mix.layer_weights.copy_(torch.tensor([2.0, -1.0, 0.5]))
    plain = WAPTransformer(input_dim=6, **SMALL)
    state = {k: v for k, v in mixed.state_dict().items() if "input_mix" not in k}
    plain.load_state_dict(state)
    x, lengths = torch.randn(2, 5, 18) * 7.0, torch.tensor([1.0, 0.6])
    reference = LayerWeightedSum(num_layers=3, layer_dim=6, layer_norm=True)
    reference.load_state_dict(mixed.input_mix.state_dict())
    mixed.eval(), plain.eval()
    assert torch.allclose(mixed(x, lengths), plain(reference(x), lengths), atol=1e-6)
    # The mix weights get gradients through the backbone.
    mixed(x, lengths).sum().backward()
    assert mixed.input_mix.layer_weights.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\[B, T, 18\] \(3 layer\(s\) of 6\)"):
        mixed(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="input_layers must be >= 1"):
        WAPTransformer(input_dim=6, input_layers=0, **SMALL)


def test_dotted_lr_scales_split_a_submodule_into_its_own_group():
    student = WAPTransformer(input_dim=6, input_layers=3, **SMALL)
    groups = module_param_groups({"student": student}, {"student.input_mix": 20.0})
    assert [(g["name"], g["lr_scale"]) for g in groups] == [
        ("student", 1.0),
        ("student.input_mix", 20.0),
    ]
    assert groups[1]["params"] == [student.input_mix.layer_weights]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))  # disjoint ...
    assert set(ids) == {id(p) for p in student.parameters()}  # ... and complete
    plain = WAPTransformer(input_dim=6, **SMALL)
    with pytest.raises(ValueError, match="'student.input_mix'.*no submodule"):
        module_param_groups({"student": plain}, {"student.input_mix": 20.0})
    with pytest.raises(ValueError, match="unknown modules"):
        module_param_groups({"student": plain}, {"backbone.input_mix": 20.0})


def test_both_stages_on_a_layer_mix_through_the_driver(tmp_path):
    corpus = make_iemocap_fixture(tmp_path / "iemocap", utterances_per_dialog=6)
    cross_validate = iemocap_cross_validate()
    common = {
        "encoder_name": "fbank",
        "encoder_hparams": "hparams/encoder/fbank.yaml",
        "subset": "all",
        "input_dim": 80,
        "input_layers": 2,
        "input_layer_norm": True,
        "d_model": 16,
        "nhead": 2,
        "num_layers": 1,
        "number_of_epochs": 2,
        "batch_size": 8,
        "precision": "fp32",
    }
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "common": common,
                "adapter": {
                    "num_prototypes": 8,
                    "lr_scales": {"student.input_mix": 20.0},
                },
                "finetune": {"lr_scales": {"backbone.input_mix": 20.0}},
            }
        )
    )
    out = tmp_path / "cv"
    argv = ["--data_folder", corpus["data_folder"], "--output_folder", str(out)]
    argv += ["--config", str(config), "--folds", "1", "--no_report"]
    results = cross_validate.main(argv)
    assert results["folds"][0]["UA"] >= 0.0

    fold_dir = out / "fbank_all" / "fold1"
    teacher = torch.load(fold_dir / "adapter" / "model" / "teacher.ckpt")
    start = torch.zeros(2)
    # Stage 1 moved the student's mix; the EMA teacher followed it.
    assert not torch.equal(teacher["input_mix.layer_weights"], start)
    # Stage 2 started from the teacher (its mix included) and trained it further.
    (ckpt,) = (fold_dir / "finetune" / "save").glob("CKPT*")
    backbone = torch.load(ckpt / "backbone.ckpt")
    assert backbone["input_mix.layer_weights"].shape == (2,)
    assert not torch.equal(
        backbone["input_mix.layer_weights"], teacher["input_mix.layer_weights"]
    )
    # The stage-2 folder is a usable model: the recogniser rebuilds the mix and
    # predicts what the fold's evaluation wrote.
    recognizer = EmotionRecognizer.from_hparams(str(fold_dir / "finetune"))
    predictions = pd.read_csv(fold_dir / "finetune" / "predictions.csv")
    test_rows = pd.read_csv(out / "prepared_all" / "fold1" / "test.csv")
    wavs = {
        row.ID: row.wav.replace("$data_root", corpus["data_folder"])
        for row in test_rows.itertuples()
    }
    for _, row in predictions.head(4).iterrows():
        result = recognizer.classify_file(wavs[row["ID"]])
        assert result.label == row["predicted"], row["ID"]
        expected = [row[f"prob_{c}"] for c in recognizer.classes]
        got = [result.probabilities[c] for c in recognizer.classes]
        assert got == pytest.approx(expected, abs=1e-5)
