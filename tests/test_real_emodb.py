"""A short real run: EmoDB, whisper-base features, the EmoDB recipe, two folds.

Needs ``../shared`` (EmoDB and whisper-base, see tests/shared_material.py); skipped
with the reason otherwise. To stay within a few minutes on 2 CPU cores it uses five of
the ten speakers (03, 08, 09, 10, 11: 243 utterances, linked into a temporary corpus
folder) and runs two of their leave-one-speaker-out folds (test speakers 03 and 08,
training on the four others), the 7 emotions, Whisper-base ``native`` features of
layer 4 cached in a temporary folder, a narrow adapter and short schedules of both
stages, fixed seed. The 7-class chance level is 14 % UA; the run must score far
above it.
"""

import importlib.util
import json

from shared_material import EMODB_DIR, PROJECT_ROOT, WHISPER_BASE_DIR, require

RECIPE_DIR = PROJECT_ROOT / "recipes" / "EmoDB"
CHANCE_UA = 1 / 7
MIN_UA = 0.30  # over twice chance, on the mean of the two folds (fold 1 gave 35.4 %)
SPEAKERS = ("03", "08", "09", "10", "11")
COMMON = {
    "class_set": "full",
    "seed": 1986,
    "encoder_name": "whisper_base_native_l4",
    "encoder_hparams": "hparams/encoder/whisper_base.yaml",
    "input_dim": 512,
    "d_model": 128,
    "nhead": 4,
    "num_layers": 2,
    "batch_size": 32,
    "lr": 0.001,
}
ADAPTER = {"number_of_epochs": 2, "num_prototypes": 64, "reseed_after": 20}
FINETUNE = {"number_of_epochs": 10}


def load_cross_validate():
    """The EmoDB recipe's cross_validate.py as a module."""
    spec = importlib.util.spec_from_file_location(
        "emodb_cross_validate", RECIPE_DIR / "cross_validate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_emodb_whisper_base_two_folds_far_above_chance(tmp_path):
    require(EMODB_DIR / "wav", WHISPER_BASE_DIR)
    corpus = tmp_path / "emodb"
    (corpus / "wav").mkdir(parents=True)
    for wav in sorted((EMODB_DIR / "wav").glob("*.wav")):
        if wav.name[:2] in SPEAKERS:
            (corpus / "wav" / wav.name).symlink_to(wav)
    common = {
        **COMMON,
        "encoder_overrides": {
            "encoder_source": str(WHISPER_BASE_DIR),
            "encoder_input_mode": "native",
            "encoder_layers": 4,
        },
    }
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps({"common": common, "adapter": ADAPTER, "finetune": FINETUNE})
    )
    out = tmp_path / "results"
    argv = ["--data_folder", str(corpus), "--output_folder", str(out)]
    argv += ["--folds", "1", "2", "--config", str(config), "--no_report"]
    results = load_cross_validate().main(argv)

    assert [fold["fold"] for fold in results["folds"]] == [1, 2]
    assert "missing_folds" not in results
    fingerprint = json.loads(
        (out / "features_whisper_base_native_l4" / "fingerprint.json").read_text()
    )
    assert fingerprint["input_mode"] == "native" and fingerprint["layers"] == [4]
    for fold in results["folds"]:
        metrics_path = (
            out / "whisper_base_native_l4_full" / f"fold{fold['fold']}" / "finetune"
        )
        metrics = json.loads((metrics_path / "metrics.json").read_text())
        assert len(metrics["classes"]) == 7
        # Percentages: every fold at least twice chance ...
        assert metrics["UA"] > 200 * CHANCE_UA, (fold["fold"], metrics["UA"])
    # ... and the mean over twice chance.
    assert results["mean"]["UA"] >= 100 * MIN_UA, results["mean"]
