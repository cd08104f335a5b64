"""End to end: both stages of the IEMOCAP recipe and the cross-validation driver.

Runs ``train.py`` and ``cross_validate.py`` as a user does (subprocesses, hparams files
plus overrides) on a tiny IEMOCAP-format tree with the fbank encoder and a tiny model.
"""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import iemocap_cross_validate
from fixtures_iemocap import make_iemocap_fixture

RECIPE = os.path.join(os.path.dirname(__file__), "..", "recipes", "IEMOCAP")
RECIPE = os.path.abspath(RECIPE)

# A tiny model and short schedules: only the plumbing is under test here.
TINY = {
    "encoder_name": "fbank",
    "encoder_hparams": "hparams/encoder/fbank.yaml",
    "input_dim": 160,
    "d_model": 32,
    "nhead": 2,
    "num_layers": 2,
    "subset": "all",
    "batch_size": 8,
    "lr": 0.001,
}
ADAPTER = {"number_of_epochs": 2, "num_prototypes": 8, "reseed_after": 3}
FINETUNE = {"number_of_epochs": 2}


def run_train(hparams, overrides, check=True):
    """``python train.py hparams --key=value ...`` in the recipe folder."""
    args = [f"--{k}={v}" for k, v in overrides.items()]
    cmd = [sys.executable, "train.py", hparams, *args]
    result = subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("iemocap")
    return make_iemocap_fixture(root, utterances_per_dialog=8)


@pytest.fixture(scope="module")
def fold1(corpus, tmp_path_factory):
    """Stage 1 then stage 2 on fold 1; returns the common overrides and folders."""
    out = tmp_path_factory.mktemp("results")
    common = {
        **TINY,
        "data_folder": corpus["data_folder"],
        "output_root": out,
        "test_session": 1,
    }
    run_train("hparams/adapter.yaml", {**common, **ADAPTER})
    run_train("hparams/finetune.yaml", {**common, **FINETUNE})
    fold_dir = out / "fbank_all" / "fold1"
    return {"common": common, "out": out, "fold_dir": fold_dir}


def test_stage1_logs_every_quantity_and_exports(fold1):
    adapter_dir = fold1["fold_dir"] / "adapter"
    records = read_jsonl(adapter_dir / "train_log.jsonl")
    assert [r["meta"]["epoch"] for r in records] == [1, 2]
    for key in (
        "L",
        "L_rec",
        "L_pce",
        "lambda",
        "L_VQ",
        "perplexity",
        "dead",
        "used",
        "target_var",
    ):
        assert key in records[-1]["train"], key
    # λ ramps down from 1.0 towards 0.5 over training.
    assert 0.5 <= records[1]["train"]["lambda"] < records[0]["train"]["lambda"] <= 1.0
    # The codebook is used (8 prototypes, dozens of frames per batch).
    assert records[-1]["train"]["perplexity"] > 1.0
    for name in ("teacher.ckpt", "student.ckpt", "local_attributes.ckpt"):
        assert (adapter_dir / "model" / name).is_file()


def test_stage2_writes_predictions_and_metrics(fold1, corpus):
    finetune_dir = fold1["fold_dir"] / "finetune"
    metrics = json.loads((finetune_dir / "metrics.json").read_text())
    test_ids = [u["ID"] for u in corpus["utterances"] if u["emo"] and u["session"] == 1]
    assert metrics["n_test"] == len(test_ids)
    for key in ("UA", "WA", "F1"):
        assert 0.0 <= metrics[key] <= 100.0
    predictions = pd.read_csv(finetune_dir / "predictions.csv")
    assert sorted(predictions["ID"]) == sorted(test_ids)
    probs = predictions[[f"prob_{c}" for c in metrics["classes"]]].to_numpy()
    assert abs(probs.sum(axis=1) - 1.0).max() < 1e-4
    # WA recomputed from the predictions file agrees with metrics.json.
    wa = 100.0 * (predictions["true"] == predictions["predicted"]).mean()
    assert abs(wa - metrics["WA"]) < 1e-6
    log = read_jsonl(finetune_dir / "train_log.jsonl")
    assert "UA" in log[-1]["test"]
    assert (finetune_dir / "label_encoder.txt").is_file()


def test_stage2_missing_adapter_is_a_clear_error(fold1):
    result = run_train(
        "hparams/finetune.yaml",
        {**fold1["common"], **FINETUNE, "test_session": 2},
        check=False,
    )
    assert result.returncode != 0
    assert "Stage-1 teacher weights not found" in result.stdout + result.stderr


def test_stage1_resumes_from_its_checkpoint(fold1):
    """Extending a finished run continues at epoch 3; nothing is redone."""
    run_train(
        "hparams/adapter.yaml", {**fold1["common"], **ADAPTER, "number_of_epochs": 3}
    )
    records = read_jsonl(fold1["fold_dir"] / "adapter" / "train_log.jsonl")
    assert [r["meta"]["epoch"] for r in records] == [1, 2, 3]
    # Epoch 3 starts at its first step: its mean λ lies strictly inside the ramp
    # (a run resumed with a stale step counter would sit at the clamped end, 0.5).
    assert 0.5 + 1e-4 < records[2]["train"]["lambda"] < records[1]["train"]["lambda"]


def test_cross_validation_runs_resumes_and_aggregates(corpus, tmp_path):
    cross_validate = iemocap_cross_validate()
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps({"common": TINY, "adapter": ADAPTER, "finetune": FINETUNE})
    )
    out = tmp_path / "cv"
    argv = ["--data_folder", corpus["data_folder"], "--output_folder", str(out)]
    argv += ["--config", str(config), "--folds", "1", "2"]
    results = cross_validate.main(argv)
    assert [f["fold"] for f in results["folds"]] == [1, 2]
    saved = json.loads((out / "cv_results.json").read_text())
    assert saved["mean"]["UA"] == pytest.approx(
        (saved["folds"][0]["UA"] + saved["folds"][1]["UA"]) / 2
    )
    assert "mean ± std" in (out / "cv_results.md").read_text()
    # A re-run finds both folds finished and trains nothing.
    metrics = out / "fbank_all" / "fold1" / "finetune" / "metrics.json"
    before = metrics.stat().st_mtime_ns
    again = cross_validate.main(argv + ["--aggregate_only"])
    assert again == results
    cross_validate.main(argv)
    assert metrics.stat().st_mtime_ns == before


def test_training_batch_samplers_cover_the_fold_with_less_padding(fold1):
    """Pool-sorted and bucketed batches: every training utterance once, less padding."""
    from functools import partial

    from ser_lib.dataio import dataio_prep
    from ser_lib.features import FeatureCache
    from ser_lib.sampling import PoolSortedBatchSampler, bucketed_sampler, padding_waste

    out = fold1["out"]
    prep = out / "prepared_all" / "fold1"
    hparams = {
        "feature_folder": str(out / "features_fbank"),
        "classes": ["neu", "hap", "ang", "sad"],
        "train_csv": str(prep / "train.csv"),
        "valid_csv": str(prep / "valid.csv"),
        "test_csv": str(prep / "test.csv"),
        "input_dim": 160,
        "feature_dim": 160,
        "max_frames": 1500,
        "oversample_ratio": 1.0,
        "train_labelled": True,
        "train_sampler": partial(PoolSortedBatchSampler, batch_size=4, pool_batches=8),
        "seed": 0,
    }
    bucketed = partial(bucketed_sampler, batch_size=4, num_buckets=3)
    for builder in (hparams["train_sampler"], bucketed):
        datasets = dataio_prep({**hparams, "train_sampler": builder})
        sampler = datasets["train_batch_sampler"]
        train = datasets["train"]
        batches = [list(batch) for batch in sampler]
        assert sorted(i for batch in batches for i in batch) == list(range(len(train)))
        cache = FeatureCache(hparams["feature_folder"])
        lengths = [cache.num_frames(train.data[i]["source_id"]) for i in train.data_ids]
        random_batches = [list(range(i, i + 4)) for i in range(0, len(train), 4)]
        assert padding_waste(batches, lengths) < padding_waste(random_batches, lengths)
    assert all(
        len(batch) == 4
        for batch in list(hparams["train_sampler"](lengths=lengths))[:-1]
    )
    assert (
        dataio_prep({**hparams, "train_sampler": None})["train_batch_sampler"] is None
    )
