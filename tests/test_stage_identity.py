"""Ablations are never answered from an earlier run's files (ser_lib.stage_identity)."""

import json

import pytest
import torch
from conftest import iemocap_cross_validate
from fixtures_iemocap import make_iemocap_fixture
from test_recipe import ADAPTER, FINETUNE, TINY

from ser_lib.stage_identity import (
    StageSettingsError,
    check_stage_settings,
    stage_settings,
    write_stage_settings,
)


def cross_validate_main(argv):
    cross_validate = iemocap_cross_validate()
    return cross_validate.main(argv)


def test_run_paths_and_objects_are_not_settings(tmp_path):
    hparams = {
        "output_root": str(tmp_path),
        "data_folder": "/corpus",
        "train_csv": str(tmp_path / "prepared" / "train.csv"),
        "prepare_kwargs": {"data_folder": "/corpus", "subset": "all"},
        "num_prototypes": 64,
        "num_workers": 8,
        "student": torch.nn.Linear(2, 2),
    }
    settings = stage_settings(hparams)
    assert settings == {"num_prototypes": 64, "prepare_kwargs": {"subset": "all"}}
    write_stage_settings(tmp_path, settings)
    moved = {
        **hparams,
        "output_root": "/elsewhere",
        "train_csv": "/elsewhere/prepared/train.csv",
        "num_workers": 0,
    }
    assert check_stage_settings(tmp_path, stage_settings(moved)) == "same"
    with pytest.raises(StageSettingsError, match="num_prototypes"):
        check_stage_settings(
            tmp_path, stage_settings({**hparams, "num_prototypes": 32})
        )


def test_random_init_does_not_depend_on_a_stage1_run(tmp_path):
    """A random-init stage 2 run before and after the teacher's stage 1 of the
    same fold wrote its folder has one identity; a teacher-init one does not."""
    hparams = {
        "output_root": str(tmp_path),
        "output_folder": str(tmp_path / "fold1" / "finetune_random"),
        "adapter_folder": str(tmp_path / "fold1" / "adapter" / "model"),
        "backbone_init": "random",
        "lr": 0.1,
    }
    before = stage_settings(hparams)
    teacher_before = stage_settings({**hparams, "backbone_init": "teacher"})
    write_stage_settings(tmp_path / "fold1" / "adapter", {"num_prototypes": 64})
    assert stage_settings(hparams) == before
    assert before["adapter_settings"] is None
    assert stage_settings({**hparams, "backbone_init": "teacher"}) != teacher_before


def test_a_folder_with_results_but_no_settings_is_refused(tmp_path):
    with pytest.raises(StageSettingsError, match="cannot be checked"):
        check_stage_settings(tmp_path, {"K": 1}, results_exist=True)


def test_k_ablation_into_one_output_root_gives_fresh_results(tmp_path):
    corpus = make_iemocap_fixture(tmp_path / "corpus", utterances_per_dialog=8)
    out = tmp_path / "runs"
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps({"common": TINY, "adapter": ADAPTER, "finetune": FINETUNE})
    )
    argv = ["--data_folder", corpus["data_folder"], "--output_folder", str(out)]
    argv += ["--config", str(config), "--folds", "1", "--no_report"]
    fold = out / "fbank_all" / "fold1"

    cross_validate_main(argv + ["--adapter_overrides", "{num_prototypes: 64}"])
    metrics = fold / "finetune" / "metrics.json"
    first = metrics.read_text()
    saved = json.loads((fold / "adapter" / "stage_settings.json").read_text())
    assert saved["num_prototypes"] == 64

    # K = 32 into the same folders: refused, naming the key; nothing overwritten
    with pytest.raises(StageSettingsError, match="num_prototypes"):
        cross_validate_main(argv + ["--adapter_overrides", "{num_prototypes: 32}"])
    assert metrics.read_text() == first

    # K = 32 with its own stage folders: trained afresh
    ablation = [
        "--adapter_overrides",
        "{num_prototypes: 32}",
        "--overrides",
        "{adapter_name: adapter_K32}",
        "--finetune_overrides",
        "{finetune_name: finetune_K32}",
        "--results_folder",
        str(out / "K32"),
    ]
    cross_validate_main(argv + ablation)
    for name, k in (("adapter", 64), ("adapter_K32", 32)):
        prototypes = torch.load(fold / name / "model" / "local_attributes.ckpt")
        assert {tuple(v.shape) for v in prototypes.values() if v.dim() == 2} == {
            (k, TINY["d_model"])
        }
    stage2 = json.loads((fold / "finetune_K32" / "stage_settings.json").read_text())
    assert stage2["adapter_settings"]["num_prototypes"] == 32
    assert (fold / "finetune_K32" / "metrics.json").is_file()
    assert metrics.read_text() == first

    # the identical re-run skips both stages
    before = (fold / "finetune_K32" / "metrics.json").stat().st_mtime_ns
    teacher = (fold / "adapter_K32" / "model" / "teacher.ckpt").stat().st_mtime_ns
    cross_validate_main(argv + ablation)
    assert (fold / "finetune_K32" / "metrics.json").stat().st_mtime_ns == before
    assert (
        fold / "adapter_K32" / "model" / "teacher.ckpt"
    ).stat().st_mtime_ns == teacher
