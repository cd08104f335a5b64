"""Short real runs: EmoDB, whisper-base features, the EmoDB recipe's fold driver.

Needs ``../shared`` (EmoDB and whisper-base, see tests/shared_material.py); skipped
with the reason otherwise. To stay within a few minutes on 2 CPU cores it uses a
subset of EmoDB linked into a temporary corpus folder: speakers 13, 14, 15 and 16
(the speakers with at least three utterances of every emotion), the first three
utterances (sorted names) of each speaker and emotion: 84 utterances, the 7
emotions. Their Whisper-base ``native`` features of hidden state 4 (of 0..6) are
cached once for the module and shared by both tests.

- The frozen-encoder baseline (``hparams/baseline.yaml``) on two
  leave-one-speaker-out folds of the subset (test speakers 13 and 14, training on
  the three others, 63 utterances), fixed seed, through ``cross_validate.py``: it
  must score far above the 7-class chance level (14.3 % UA). Measured on a loaded
  2-core machine: UA 52.4 % (fold 1) and 66.7 % (fold 2), mean 59.5 %.
- The method itself (a tiny adapter, one stage-1 epoch, a few stage-2 epochs) on
  fold 1: it must finish with finite losses and a ``metrics.json``.
"""

import collections
import json
import math
import os

import pytest
from conftest import load_module
from shared_material import EMODB_DIR, PROJECT_ROOT, WHISPER_BASE_DIR, require

RECIPE_DIR = PROJECT_ROOT / "recipes" / "EmoDB"
CHANCE_UA = 100 / 7  # percent
SPEAKERS = ("13", "14", "15", "16")
PER_SPEAKER_EMOTION = 3
LAYER = 4
ENCODER_NAME = f"whisper_base_native_l{LAYER}"
COMMON = {
    "class_set": "full",
    "seed": 1986,
    "encoder_name": ENCODER_NAME,
    "encoder_hparams": "hparams/encoder/whisper_base.yaml",
}
BASELINE = {"layer_dim": 512, "number_of_epochs": 20, "batch_size": 8, "lr": 0.001}
METHOD_COMMON = {
    "input_dim": 512,
    "d_model": 32,
    "nhead": 2,
    "num_layers": 1,
    "batch_size": 16,
    "lr": 0.001,
}
ADAPTER = {"number_of_epochs": 1, "num_prototypes": 16, "reseed_after": 20}
FINETUNE = {"number_of_epochs": 4}


def load_cross_validate():
    """The EmoDB recipe's cross_validate.py as a module."""
    return load_module(RECIPE_DIR / "cross_validate.py", "emodb_cross_validate")


@pytest.fixture(scope="module")
def emodb_subset(tmp_path_factory):
    """The subset corpus and its feature cache, filled once for the module."""
    require(EMODB_DIR / "wav", WHISPER_BASE_DIR)
    root = tmp_path_factory.mktemp("real_emodb")
    corpus = root / "emodb"
    (corpus / "wav").mkdir(parents=True)
    taken = collections.Counter()
    for wav in sorted((EMODB_DIR / "wav").glob("*.wav")):
        speaker_emotion = (wav.name[:2], wav.name[5])
        if speaker_emotion[0] in SPEAKERS and taken[speaker_emotion] < (
            PER_SPEAKER_EMOTION
        ):
            taken[speaker_emotion] += 1
            (corpus / "wav" / wav.name).symlink_to(wav)
    assert sorted(taken.values()) == [PER_SPEAKER_EMOTION] * 7 * len(SPEAKERS)
    common = {
        **COMMON,
        "feature_folder": str(root / "features"),
        "encoder_overrides": {
            "encoder_source": str(WHISPER_BASE_DIR),
            "encoder_input_mode": "native",
            "encoder_layers": LAYER,
        },
    }
    # train.py runs as a subprocess: it must import the tree under test.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "PYTHONPATH",
            os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
        )
        yield corpus, common


def run_folds(corpus, out, config, folds, extra_args=()):
    """Runs the recipe's cross_validate.py main on ``folds``; returns its results."""
    config_path = out.parent / f"{out.name}_config.yaml"
    config_path.write_text(json.dumps(config))
    argv = ["--data_folder", str(corpus), "--output_folder", str(out)]
    argv += ["--folds", *map(str, folds), "--config", str(config_path)]
    argv += ["--no_report", *extra_args]
    return load_cross_validate().main(argv)


def test_baseline_two_loso_folds_far_above_chance(emodb_subset, tmp_path):
    corpus, common = emodb_subset
    out = tmp_path / "baseline"
    config = {"common": {**common, **BASELINE}}
    results = run_folds(
        corpus, out, config, [1, 2], ["--finetune_hparams", "hparams/baseline.yaml"]
    )

    assert [fold["fold"] for fold in results["folds"]] == [1, 2]
    assert "missing_folds" not in results
    fingerprint = json.loads(
        (corpus.parent / "features" / "fingerprint.json").read_text()
    )
    assert fingerprint["input_mode"] == "native"
    assert fingerprint["layers"] == [LAYER]
    for fold in (1, 2):
        folder = out / f"{ENCODER_NAME}_full" / f"fold{fold}" / "baseline"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert len(metrics["classes"]) == 7
        # Percentages: every fold over twice chance (measured 52.4 and 66.7) ...
        assert metrics["UA"] > 2 * CHANCE_UA, (fold, metrics["UA"])
    # ... and the mean over three times chance (measured 59.5).
    assert results["mean"]["UA"] > 3 * CHANCE_UA, results["mean"]


def test_method_one_fold_finishes(emodb_subset, tmp_path):
    corpus, common = emodb_subset
    out = tmp_path / "method"
    config = {
        "common": {**common, **METHOD_COMMON},
        "adapter": ADAPTER,
        "finetune": FINETUNE,
    }
    results = run_folds(corpus, out, config, [1])

    assert [fold["fold"] for fold in results["folds"]] == [1]
    fold_folder = out / f"{ENCODER_NAME}_full" / "fold1"
    assert (fold_folder / "adapter" / "model" / "teacher.ckpt").is_file()
    metrics = json.loads((fold_folder / "finetune" / "metrics.json").read_text())
    assert len(metrics["classes"]) == 7
    assert 0 <= metrics["UA"] <= 100
    for stage, epochs in (("adapter", 1), ("finetune", FINETUNE["number_of_epochs"])):
        lines = (fold_folder / stage / "train_log.jsonl").read_text().splitlines()
        train = [json.loads(line)["train"] for line in lines if '"train"' in line]
        assert len(train) == epochs, stage
        assert all(math.isfinite(stats["loss"]) for stats in train), (stage, train)
