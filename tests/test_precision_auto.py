"""``precision: auto``: resolved per device when a stage starts (ser_lib/precision.py)."""

import glob
import os

import pytest
import torch

from ser_lib import precision as precision_module
from ser_lib.precision import (
    cpu_flags,
    resolve_hparams_precision,
    resolve_precision,
)
from ser_lib.recipe_hparams import load_recipe_hparams
from ser_lib.stage_identity import stage_settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "cpu_bf16, d_model, expected",
    [
        (True, 384, "bf16"),
        (True, 256, "bf16"),
        (True, 128, "fp32"),
        (False, 384, "fp32"),
    ],
)
def test_cpu_rule(cpu_bf16, d_model, expected):
    assert resolve_precision("auto", "cpu", d_model, 256, cpu_bf16=cpu_bf16) == expected


@pytest.mark.parametrize("explicit", ["fp32", "bf16", "fp16"])
def test_explicit_precision_is_kept(explicit):
    for device in ("cpu", "cuda"):
        assert resolve_precision(explicit, device, 128, 256, cpu_bf16=True) == explicit


def test_cuda_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", "cuda:0", 64, 256, cpu_bf16=False) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", "cuda", 384, 256, cpu_bf16=True) == "fp32"


def test_cpu_flags_read_from_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert "avx512_bf16" not in cpu_flags(cpuinfo)
    precision_module.cpu_has_bf16.cache_clear()
    try:
        monkeypatch.setattr(
            precision_module, "cpu_flags", lambda: cpu_flags(str(cpuinfo))
        )
        assert not precision_module.cpu_has_bf16()
        assert resolve_precision("auto", "cpu", 384, 256) == "fp32"
    finally:
        precision_module.cpu_has_bf16.cache_clear()


def test_auto_needs_the_width_keys():
    with pytest.raises(KeyError, match="bf16_cpu_min_d_model"):
        resolve_hparams_precision({"precision": "auto", "d_model": 384}, "cpu")
    hparams = {"precision": "fp32"}
    assert resolve_hparams_precision(hparams, "cpu") == "fp32"


def test_stage_settings_record_the_resolved_precision_not_the_rule():
    hparams = {"precision": "auto", "d_model": 384, "bf16_cpu_min_d_model": 256}
    resolve_hparams_precision(hparams, "cpu", cpu_bf16=True)
    settings = stage_settings(hparams)
    assert settings == {"precision": "bf16", "d_model": 384}


def test_load_recipe_hparams_resolves_auto(tmp_path):
    (tmp_path / "stage.yaml").write_text(
        "precision: auto\nd_model: 384\nbf16_cpu_min_d_model: 256\n"
    )
    hparams = load_recipe_hparams(str(tmp_path), "stage.yaml")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert hparams["precision"] == resolve_precision("auto", device, 384, 256)
    assert hparams["precision"] in ("fp32", "bf16")


DEFAULT_YAMLS = sorted(
    glob.glob(os.path.join(ROOT, "recipes", "*", "hparams", "adapter.yaml"))
    + glob.glob(os.path.join(ROOT, "recipes", "*", "hparams", "finetune.yaml"))
)


@pytest.mark.parametrize("path", DEFAULT_YAMLS, ids=os.path.relpath)
def test_default_yamls_pick_precision_per_device(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    values = {
        key: value.split("#")[0].strip()
        for key, _, value in (line.partition(":") for line in lines)
        if key in ("precision", "bf16_cpu_min_d_model", "d_model")
    }
    values = {**values, "bf16_cpu_min_d_model": int(values["bf16_cpu_min_d_model"])}
    values["d_model"] = int(values["d_model"])
    assert values["precision"] == "auto"
    assert values["bf16_cpu_min_d_model"] > 128  # the demo's width stays fp32
    assert values["d_model"] >= values["bf16_cpu_min_d_model"]  # the paper's: bf16


def test_experiment_config_keeps_its_explicit_precision():
    path = os.path.join(ROOT, "recipes", "EmoDB", "hparams", "whisper_base_cpu.yaml")
    with open(path, encoding="utf-8") as f:
        assert "  precision: bf16" in f.read()
