"""End to end: one tiny fold of the two-stage adapter recipe on the synthetic IEMOCAP.

Runs ``cross_validate.py`` as a user does (subprocesses, hparams files plus
overrides) with a tiny random wav2vec 2.0 (layer-norm, pre-LN: XLS-R-like): stage 1
(SER + CTC, the encoder fine-tuned) then stage 2 (frozen encoder with LoRA and
bottleneck adapters, emotion + gender + style, shared fusion, SCL_cos).
"""

import csv
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import save_tiny_ssl_model, save_tiny_whisper

from ser_lib.synth.mini_iemocap import make_mini_iemocap

RECIPE = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "recipes", "IEMOCAP", "two_stage")
)

TINY = {
    "encoder_dim": 32,
    "encoder_name": "tiny",
    "number_of_epochs": 1,
    "batch_size": 4,
    "num_buckets": 2,
    "precision": "fp32",
    "eval_batch_size": 4,
}
STAGE2 = {
    "lora_rank": 2,
    "lora_alpha": 2,
    "bottleneck_dim": 4,
    "task_adapter_dim": 4,
    "embedding_dim": 8,
    "fusion": "shared",
    "scl": "cos",
}


@pytest.fixture(scope="module")
def fold1(tmp_path_factory):
    """Both stages of fold 1 through the cross-validation driver."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    root = tmp_path_factory.mktemp("two_stage")
    summary = make_mini_iemocap(
        root / "corpus",
        seed=0,
        improvised_per_session=1,
        scripted_per_session=1,
        utterances_per_dialog=4,
    )
    model_dir = save_tiny_ssl_model(
        root / "tiny_w2v2", Wav2Vec2Config, Wav2Vec2Model, "layer", do_normalize=True
    )
    out = root / "results"
    overrides = json.dumps({**TINY, "encoder_source": model_dir})
    cmd = [
        sys.executable,
        "cross_validate.py",
        f"--data_folder={summary['path']}",
        f"--output_folder={out}",
        "--folds",
        "1",
        f"--overrides={overrides}",
        f"--stage_overrides={json.dumps({'stage2': STAGE2})}",
        "--no_report",
    ]
    result = subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(
            f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    fold = out / "tiny_all" / "fold1"
    return {
        "out": out,
        "fold": fold,
        "model_dir": model_dir,
        "cmd": cmd,
        "corpus": summary["path"],
    }


def test_stage1_reports_wer_and_exports_encoder(fold1):
    stage1 = fold1["fold"] / "stage1_ser_asr"
    metrics = json.loads((stage1 / "metrics.json").read_text())
    assert 0.0 <= metrics["WER"] and 0.0 <= metrics["UA"] <= 100.0
    assert {"UA_improvised", "UA_scripted"} & set(metrics)  # per-style emotion UA
    assert (stage1 / "encoder" / "config.json").is_file()
    assert (stage1 / "heads.ckpt").is_file() and (stage1 / "done.json").is_file()
    chars = (stage1 / "chars.txt").read_text()
    assert "'<blank>' => 0" in chars
    # The encoder was trained: its transformer weights moved, its CNN did not.
    tuned = torch.load(stage1 / "heads.ckpt", weights_only=True)
    assert "branches.emotion.projection.weight" in tuned


def test_stage1_logs_task_losses_and_writes_asr_hypotheses(fold1):
    stage1 = fold1["fold"] / "stage1_ser_asr"
    metrics = json.loads((stage1 / "metrics.json").read_text())
    # L_emotion and L_ASR (CTC) apart, per training epoch and on the test set.
    records = [
        json.loads(line)
        for line in (stage1 / "train_log.jsonl").read_text().splitlines()
    ]
    train = [r["train"] for r in records if "train" in r]
    assert len(train) == TINY["number_of_epochs"]
    for stats in train + [metrics]:
        assert stats["loss_emotion"] > 0.0 and stats["loss_asr"] > 0.0
        assert math.isfinite(stats["loss_asr"])
    assert "loss_asr" in (stage1 / "train_log.txt").read_text()
    # One greedy hypothesis per test utterance; the errors sum to the reported WER.
    with open(stage1 / "asr_hypotheses.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(stage1 / "predictions.csv", encoding="utf-8") as f:
        assert sorted(r["ID"] for r in rows) == sorted(
            r["ID"] for r in csv.DictReader(f)
        )
    assert all(r["reference"] for r in rows)
    for r in rows:
        assert int(r["reference_words"]) == len(r["reference"].split())
    errors = sum(int(r["errors"]) for r in rows)
    words = sum(int(r["reference_words"]) for r in rows)
    assert metrics["WER"] == pytest.approx(100.0 * errors / words)


def test_stage2_reports_auxiliary_tasks_and_keeps_the_encoder(fold1):
    stage2 = fold1["fold"] / "stage2_shared_scl-cos"
    metrics = json.loads((stage2 / "metrics.json").read_text())
    assert {"UA", "WA", "gender_UA", "style_UA"} <= set(metrics)
    assert "WER" not in metrics
    assert (stage2 / "done.json").is_file() and not (stage2 / "encoder").exists()
    results = json.loads((fold1["out"] / "cv_results.json").read_text())
    assert [row["fold"] for row in results["folds"]] == [1]
    assert results["mean"]["UA"] == pytest.approx(metrics["UA"])


def _run_stage2_only(fold1, stage2, results_name):
    """Runs ``--stages=stage2`` of fold 1 with these stage-2 overrides."""
    cmd = [a for a in fold1["cmd"] if not a.startswith("--stage_overrides")]
    cmd += ["--stages=stage2", f"--stage_overrides={json.dumps({'stage2': stage2})}"]
    cmd += [f"--results_folder={fold1['out'] / results_name}"]
    result = subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-6000:]


def _encoder_counts(log_file):
    """The encoder's trainable and frozen parameters logged at the start of a stage."""
    match = re.search(
        r"Module encoder: (\d+) trainable / (\d+) frozen", log_file.read_text()
    )
    return {"trainable": int(match.group(1)), "frozen": int(match.group(2))}


SINGLE_ADAPTERS_SER_ASR = {
    **STAGE2,
    "warm_start_heads": None,
    "asr": True,
    "aux_tasks": [],
    "fusion": "none",
    "scl": "none",
    "stage2_name": "single_adapters_ser_asr",
}


@pytest.fixture(scope="module")
def single_adapters(fold1):
    """Table 1 "Adapters, SER + ASR": stage 2's YAML on the pretrained encoder."""
    single = {**SINGLE_ADAPTERS_SER_ASR, "adapted_encoder": fold1["model_dir"]}
    _run_stage2_only(fold1, single, "single")
    return fold1["fold"] / "single_adapters_ser_asr"


def test_single_stage_adapters_with_asr(single_adapters):
    metrics = json.loads((single_adapters / "metrics.json").read_text())
    assert "WER" in metrics and "gender_UA" not in metrics
    assert (single_adapters / "chars.txt").is_file()
    # The trained adapters are saved (stage 1 of Table 2 setting 1), not the encoder.
    adapters = torch.load(single_adapters / "encoder_adapters.ckpt", weights_only=True)
    assert any("adapter_up_proj" in name for name in adapters)  # LoRA B
    assert any(name.endswith("adapter.up_proj.weight") for name in adapters)
    assert not (single_adapters / "encoder").exists()


def test_table2_setting1_adapters_then_adapters(fold1, single_adapters):
    """Stage 2 on the stage-1 adapters (merged LoRA, frozen bottlenecks), SER only."""
    from ser_lib.inloop.encoder import TrainableHFEncoder
    from ser_lib.models.encoder_adapters import (
        AdaptedOutputLinear,
        AdapterInsertion,
        DropoutLoRA,
        load_merged_adapters,
        with_adapters,
    )

    setting1 = {
        **STAGE2,
        "stage1_kind": "adapters",
        "stage1_name": "single_adapters_ser_asr",
        "aux_tasks": [],
        "fusion": "none",
        "scl": "none",
        "stage2_name": "stage2_setting1_ser",
    }
    _run_stage2_only(fold1, setting1, "setting1")
    folder = fold1["fold"] / "stage2_setting1_ser"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {"UA", "WA", "F1"} <= set(metrics) and "gender_UA" not in metrics
    # Same trainable encoder parameters as the Table 1 run (new adapters only); its
    # frozen ones add the stage-1 bottlenecks (the merged LoRA adds none): 2 layers
    # of LN (2 x 32) + down (32 x 4 + 4) + up (4 x 32 + 32).
    single, ours = (_encoder_counts(f / "log.txt") for f in (single_adapters, folder))
    assert ours["trainable"] == single["trainable"] > 0
    assert ours["frozen"] - single["frozen"] == 2 * (64 + 132 + 160)
    # The stage-2 model starts as the stage-1 adapter model: the rebuilt encoder
    # (pretrained + stage-1 adapters merged/frozen + new identity adapters) gives
    # the stage-1 features, and only the new adapters train.
    settings = dict(freeze_all=True, do_normalize=True, mask_time_prob=0.0)
    lora = AdapterInsertion(
        DropoutLoRA, ["*encoder.layers.*.attention.[qv]_proj"], rank=2, alpha=2
    )
    ffn = AdapterInsertion(
        AdaptedOutputLinear,
        ["*encoder.layers.*.feed_forward.output_dense"],
        bottleneck_size=4,
    )
    stage1 = with_adapters(
        TrainableHFEncoder(fold1["model_dir"], **settings), [lora, ffn]
    )
    stage1.load_state_dict(
        torch.load(single_adapters / "encoder_adapters.ckpt", weights_only=True),
        strict=False,
    )
    merged = load_merged_adapters(
        TrainableHFEncoder(fold1["model_dir"], **settings),
        [lora, ffn],
        single_adapters / "encoder_adapters.ckpt",
    )
    stage2 = with_adapters(merged, [lora, ffn])
    wavs, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.7])
    with torch.no_grad():
        expected, _ = stage1.eval()(wavs, lens)
        got, _ = stage2.eval()(wavs, lens)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    trainable = [n for n, p in stage2.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 2 * 2 + 2 * 6  # only the new LoRA and bottlenecks
    # The stage-1 bottlenecks sit inside the new ones' wrapper, frozen.
    assert not [n for n in trainable if "pretrained_module.adapter." in n]
    frozen = [n for n, p in stage2.named_parameters() if not p.requires_grad]
    assert [n for n in frozen if "pretrained_module.adapter.up_proj" in n]


def test_stage2_encoder_starts_as_the_stage1_encoder(fold1):
    from ser_lib.inloop.encoder import TrainableHFEncoder
    from ser_lib.models.encoder_adapters import (
        AdaptedOutputLinear,
        AdapterInsertion,
        DropoutLoRA,
        with_adapters,
    )

    source = fold1["fold"] / "stage1_ser_asr" / "encoder"
    settings = dict(freeze_all=True, do_normalize=True, mask_time_prob=0.0)
    stage1 = TrainableHFEncoder(source, **settings).eval()
    stage2 = with_adapters(
        TrainableHFEncoder(source, **settings),
        [
            AdapterInsertion(
                DropoutLoRA, ["*encoder.layers.*.attention.[qv]_proj"], rank=2, alpha=2
            ),
            AdapterInsertion(
                AdaptedOutputLinear,
                ["*encoder.layers.*.feed_forward.output_dense"],
                bottleneck_size=4,
            ),
        ],
    ).eval()
    wavs, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.7])
    with torch.no_grad():
        expected, _ = stage1(wavs, lens)
        got, _ = stage2(wavs, lens)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    trainable = [n for n, p in stage2.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 2 * 2 + 2 * 6  # LoRA A, B on q, v; LN + 2 linears


@pytest.fixture(scope="module")
def emodb_fold1(tmp_path_factory):
    """Both stages of EmoDB fold 1 with a tiny random Whisper and German texts."""
    from fixtures_corpora import make_emodb_fixture

    root = tmp_path_factory.mktemp("two_stage_emodb")
    corpus = make_emodb_fixture(root, texts=("a01", "a04"))
    with open(
        os.path.join(corpus["data_folder"], "texts.csv"), "w", encoding="utf-8"
    ) as f:
        f.write("code,text\na01,Der Lappen liegt auf dem Eisschrank.\n")
        f.write("a04,Heute abend könnte ich es ihm sagen.\n")
    model_dir = save_tiny_whisper(root / "tiny_whisper")
    out = root / "results"
    common = {**TINY, "encoder_dim": 16, "encoder_source": str(model_dir)}
    stage2 = {**STAGE2, "fusion": "concat", "scl": "norm"}
    cmd = [
        sys.executable,
        "cross_validate.py",
        f"--data_folder={corpus['data_folder']}",
        f"--output_folder={out}",
        "--folds",
        "1",
        f"--overrides={json.dumps(common)}",
        f"--stage_overrides={json.dumps({'stage2': stage2})}",
        "--no_report",
    ]
    recipe = os.path.join(os.path.dirname(RECIPE), "..", "EmoDB", "two_stage")
    result = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(
            f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return out / "tiny_4class" / "fold1"


def test_emodb_whisper_fold_end_to_end(emodb_fold1):
    stage1 = json.loads((emodb_fold1 / "stage1_ser_asr" / "metrics.json").read_text())
    assert stage1["WER"] >= 0.0 and stage1["n_test"] > 0
    chars = (emodb_fold1 / "stage1_ser_asr" / "chars.txt").read_text()
    assert "'Ö'" in chars  # KÖNNTE: the German vocabulary keeps umlauts
    stage2 = json.loads(
        (emodb_fold1 / "stage2_concat_scl-norm" / "metrics.json").read_text()
    )
    assert "gender_UA" in stage2 and "style_UA" not in stage2
