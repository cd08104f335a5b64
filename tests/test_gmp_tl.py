"""GMP-TL and the in-the-loop foundation (ser_lib.inloop, ser_lib.brains.inloop,
ser_lib.multistage): encoder wrapper, joint cropping, masking, k-means, AM-Softmax,
bad input, and one tiny fold of recipes/IEMOCAP/gmp_tl end to end (four steps as
subprocesses, then a resumed re-run).
"""

import json
import logging
import os
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import load_module, save_tiny_whisper
from fixtures_iemocap import make_iemocap_fixture

from ser_lib.data.manifest import read_manifest
from ser_lib.features import CacheMismatchError, FeatureCache
from ser_lib.fold_results import aggregate_folds
from ser_lib.inloop.data import inloop_dataio, label_encoders, waveform_dataset
from ser_lib.inloop.encoder import TrainableHFEncoder, TrainableWhisperEncoder
from ser_lib.inloop.heads import AMSoftmaxObjective, CosineClassifier
from ser_lib.inloop.pseudo_labels import (
    assign_labels,
    check_label_cache,
    fit_multiscale_kmeans,
)

RECIPE = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "recipes", "IEMOCAP", "gmp_tl")
)

# A tiny model and one epoch per stage: the plumbing is under test.
TINY = {
    "encoder_dim": 32,
    "lstm_hidden": 8,
    "proj_hidden": 8,
    "batch_size": 8,
    "num_buckets": 2,
    "precision": "fp32",
    "label_scales": [2, 3, 4],
}
STAGE_OVERRIDES = {
    "A": {"number_of_epochs": 1},
    "labels": {"kmeans": {"n_init": 1, "max_iter": 5, "batch_size": 256}},
    "B": {"number_of_epochs": 1},
    "C": {"number_of_epochs": 1},
}


def _hidden_input(encoder, wavs, lens, **kwargs):
    """Runs the encoder and returns what entered the transformer (per row)."""
    captured = []
    handle = encoder.model.encoder.register_forward_pre_hook(
        lambda module, args: captured.append(args[0].detach().clone())
    )
    try:
        encoder(wavs, lens, **kwargs)
    finally:
        handle.remove()
    return captured


# ------------------------------------------------------------ encoder wrapper


def test_encoder_freezes_cnn_and_exports_for_the_frozen_extractor(
    tiny_hubert_group_dir, tmp_path
):
    from ser_lib.encoders import HFEncoder

    enc = TrainableHFEncoder(tiny_hubert_group_dir, layers=[-3], hidden_dropout=0.0)
    assert not any(p.requires_grad for p in enc.model.feature_extractor.parameters())
    assert all(p.requires_grad for p in enc.model.encoder.parameters())
    enc.eval()
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        trained, _ = enc(wav, torch.ones(1))
    frozen = HFEncoder(enc.export(tmp_path / "export"), layers=[-3])
    feats, _ = frozen(wav, torch.ones(1))
    assert torch.allclose(trained, feats, atol=1e-5)


def test_padding_changes_no_valid_frame_and_normalises_over_valid_samples(
    tiny_hubert_group_dir,
):
    enc = TrainableHFEncoder(tiny_hubert_group_dir, do_normalize=True).eval()
    short = torch.randn(4000) * 3 + 1
    batch = torch.zeros(2, 8000)
    batch[0] = torch.randn(8000)
    batch[1, :4000] = short
    with torch.no_grad():
        padded, lens = enc(batch, torch.tensor([1.0, 0.5]))
        alone, _ = enc(short[None], torch.ones(1))
        # Scaling and shifting the waveform changes nothing after the standardisation.
        rescaled, _ = enc((short[None] - 1) / 3, torch.ones(1))
    frames = enc.num_frames(4000)
    assert torch.allclose(padded[1, :frames], alone[0], atol=1e-5)
    assert torch.all(padded[1, frames:] == 0)
    assert torch.allclose(alone, rescaled, atol=1e-4)
    assert lens.tolist() == pytest.approx([1.0, frames / padded.shape[1]])


def test_mask_time_indices_really_replace_frames(tiny_hubert_group_dir):
    """HF ignores mask_time_indices when apply_spec_augment is False; ours does not."""
    from transformers import HubertModel

    enc = TrainableHFEncoder(tiny_hubert_group_dir, mask_time_prob=0.0).eval()
    wav = torch.randn(1, 8000)
    frames = enc.num_frames(8000)
    mask = torch.zeros(1, frames, dtype=torch.bool)
    mask[0, 3:9] = True
    with torch.no_grad():
        plain = _hidden_input(enc, wav, torch.ones(1))[0]
        masked = _hidden_input(enc, wav, torch.ones(1), mask_time_indices=mask)[0]
    embed = enc.model.masked_spec_embed.detach()
    assert torch.allclose(masked[0, 3:9], embed.expand(6, -1))
    assert torch.allclose(masked[0, ~mask[0]], plain[0, ~mask[0]])
    assert not torch.allclose(masked[0, 3:9], plain[0, 3:9])

    # The pitfall the wrapper avoids: the same call on a model built with
    # apply_spec_augment=False leaves every frame as it was.
    model = HubertModel.from_pretrained(tiny_hubert_group_dir, apply_spec_augment=False)
    model.eval()
    with torch.no_grad():
        a = model(wav).last_hidden_state
        b = model(wav, mask_time_indices=mask).last_hidden_state
    assert torch.equal(a, b)


def test_training_specaugment_never_masks_padding_and_accepts_short_inputs(
    tiny_hubert_group_dir,
):
    enc = TrainableHFEncoder(
        tiny_hubert_group_dir, mask_time_prob=0.5, mask_time_length=10
    ).train()
    batch = torch.zeros(2, 4000)
    batch[0] = torch.randn(4000)
    batch[1, :720] = torch.randn(720)  # 2 frames: shorter than one 10-frame span
    captured = _hidden_input(enc, batch, torch.tensor([1.0, 0.18]))
    embed = enc.model.masked_spec_embed.detach()
    row0 = captured[0][0]
    n_masked = int(torch.isclose(row0, embed).all(dim=-1).sum())
    assert n_masked == round(0.5 * enc.num_frames(4000))


def test_whisper_stand_in_mask_replaces_the_input_frames(tmp_path):
    save_tiny_whisper(tmp_path / "w")
    enc = TrainableWhisperEncoder(tmp_path / "w").eval()
    with torch.no_grad():
        enc.mask_embedding.fill_(0.25)
    captured = []
    enc.model.conv1.register_forward_pre_hook(
        lambda module, args: captured.append(args[0].detach().clone())
    )
    wav = torch.randn(1, 16000)
    mask = torch.zeros(1, enc.num_frames(16000), dtype=torch.bool)
    mask[0, 5:8] = True
    with torch.no_grad():
        plain, _ = enc(wav, torch.ones(1))
        masked, _ = enc(wav, torch.ones(1), mask_time_indices=mask)
    mel_plain, mel_masked = captured
    assert torch.all(mel_masked[0, :, 10:16] == 0.25)
    assert torch.equal(mel_masked[0, :, :10], mel_plain[0, :, :10])
    assert torch.equal(mel_masked[0, :, 16:], mel_plain[0, :, 16:])
    assert not torch.allclose(plain, masked)
    # Trainable: the stand-in gets a gradient.
    enc.train()
    out, _ = enc(wav, torch.ones(1), mask_time_indices=mask)
    out.sum().backward()
    assert enc.mask_embedding.grad is not None
    assert enc.mask_embedding.grad.abs().sum() > 0
    exported = enc.export(tmp_path / "export")
    assert TrainableWhisperEncoder(exported).num_frames(16000) == 50


# ------------------------------------------------------------ data


def _write_corpus_manifest(tmp_path, durations, genders=None):
    """Wavs of the given durations (s) and a manifest with emo and gender."""
    rows = ["ID,duration,wav,emo,gender"]
    rng = np.random.default_rng(0)
    for index, duration in enumerate(durations):
        samples = int(round(duration * 16000))
        sf.write(tmp_path / f"u{index}.wav", rng.normal(0, 0.1, samples), 16000)
        gender = genders[index] if genders else "FM"[index % 2]
        rows.append(f"u{index},{duration},$data_root/u{index}.wav,neu,{gender}")
    path = tmp_path / "train.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _write_label_cache(folder, arrays, fingerprint=None):
    (folder / "feats").mkdir(parents=True)
    lines = ["ID,num_frames,feat_path"]
    for utt, array in arrays.items():
        np.save(folder / "feats" / f"{utt}.npy", array)
        lines.append(f"{utt},{array.shape[0]},feats/{utt}.npy")
    (folder / "index.csv").write_text("\n".join(lines) + "\n")
    (folder / "fingerprint.json").write_text(json.dumps(fingerprint or {}))
    return FeatureCache(folder)


def test_joint_crop_keeps_frame_labels_aligned(tiny_hubert_group_dir, tmp_path):
    enc = TrainableHFEncoder(tiny_hubert_group_dir)
    csv_path = _write_corpus_manifest(tmp_path, [2.0])
    full = np.asarray(sf.read(tmp_path / "u0.wav", dtype="float32")[0])
    n_frames = enc.num_frames(full.shape[0])
    labels = np.arange(n_frames, dtype=np.int16)[:, None].repeat(3, axis=1)
    cache = _write_label_cache(tmp_path / "labels", {"u0": labels})
    dataset = waveform_dataset(
        csv_path,
        tmp_path,
        {},
        max_seconds=0.5,
        random_crop=True,
        frame_labels=cache,
        samples_per_frame=enc.samples_per_frame,
        num_frames=enc.num_frames,
    )
    starts = set()
    for _ in range(8):
        item = dataset[0]
        sig, crop_labels = item["sig"].numpy(), item["frame_labels"]
        first = int(crop_labels[0, 0])
        start = first * enc.samples_per_frame
        assert np.allclose(sig, full[start : start + sig.shape[0]], atol=1e-4)
        assert crop_labels.shape[0] == enc.num_frames(sig.shape[0])
        assert crop_labels[:, 0].tolist() == list(
            range(first, first + len(crop_labels))
        )
        starts.add(first)
    assert len(starts) > 1  # the crop really moves


def test_too_short_utterances_are_padded_to_one_frame(tiny_hubert_group_dir, tmp_path):
    enc = TrainableHFEncoder(tiny_hubert_group_dir).eval()
    csv_path = _write_corpus_manifest(tmp_path, [0.005, 0.5])  # 80 samples
    dataset = waveform_dataset(
        csv_path,
        tmp_path,
        label_encoders({"emo": ["neu"]}),
        min_samples=enc.min_samples,
    )
    sig = dataset[0]["sig"]
    assert sig.shape[0] == enc.min_samples > 80
    assert enc.num_frames(sig.shape[0]) == 1
    assert enc.num_frames(enc.min_samples - 1) == 0
    with torch.no_grad():
        feats, _ = enc(sig[None], torch.ones(1))
    assert feats.shape[1] == 1
    with pytest.raises(ValueError, match="shorter than one frame"):
        enc(torch.randn(1, enc.min_samples - 1), torch.ones(1))


def test_masked_loss_of_a_batch_without_masked_frames_is_zero():
    from ser_lib.brains.inloop import PseudoLabelBrain

    brain = PseudoLabelBrain.__new__(PseudoLabelBrain)
    brain.hparams = type("H", (), {"label_scales": [2, 3]})()
    brain.correct, brain.masked = None, 0
    logits = torch.randn(2, 1, 5, requires_grad=True)
    predictions = {
        "logits": logits,
        "mask": torch.zeros(2, 1, dtype=torch.bool),
        "labels": torch.zeros(2, 1, 2, dtype=torch.long),
    }
    loss = brain.compute_objectives(predictions, None, None)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(logits.grad == 0)


def test_fold_without_one_gender_warns_and_trains_on_the_other(
    tiny_hubert_group_dir, tmp_path, caplog
):
    enc = TrainableHFEncoder(tiny_hubert_group_dir)
    csv_path = _write_corpus_manifest(tmp_path, [0.3, 0.4, 0.5], genders="FFF")
    empty = tmp_path / "empty.csv"
    empty.write_text("ID,duration,wav,emo,gender\n")
    hparams = {
        "encoder": enc,
        "label_classes": {"emo": ["neu", "sad"], "gender": ["F", "M"]},
        "frame_label_folder": None,
        "data_folder": tmp_path,
        "sample_rate": 16000,
        "train_csv": csv_path,
        "valid_csv": empty,
        "test_csv": csv_path,
        "train_max_seconds": 15.0,
        "batch_size": 2,
        "num_buckets": 1,
        "seed": 1,
    }
    with caplog.at_level(logging.WARNING):
        datasets = inloop_dataio(hparams)
    assert "gender ['M']" in caplog.text
    assert datasets["valid"] is None
    assert [int(datasets["train"][i]["gender_encoded"]) for i in range(3)] == [0, 0, 0]


# ------------------------------------------------------------ k-means, AM-Softmax


def test_kmeans_recovers_planted_clusters():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (5, 8))
    planted = rng.integers(0, 5, 600)
    frames = (centres[planted] + rng.normal(0, 0.3, (600, 8))).astype(np.float32)
    fitted = fit_multiscale_kmeans(frames, [5, 2], {"n_init": 3}, seed=0)
    labels = assign_labels(
        torch.from_numpy(frames), [torch.from_numpy(c) for c in fitted], chunk=64
    )
    assert labels.shape == (600, 2)
    assert adjusted_rand_score(planted, labels[:, 0].numpy()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="needs at least 700 frames"):
        fit_multiscale_kmeans(frames, [700], {}, seed=0)


def test_am_softmax_matches_the_hand_computation():
    torch.manual_seed(0)
    classifier = CosineClassifier(6, 4)
    x = torch.randn(5, 6)
    targets = torch.tensor([0, 3, 1, 1, 2])
    cos = classifier(x)
    objective = AMSoftmaxObjective(margin=0.2, scale=30.0)
    total = 0.0
    for i in range(5):
        w = classifier.weight.detach()
        cosines = [float(x[i] @ w[j] / (x[i].norm() * w[j].norm())) for j in range(4)]
        y = int(targets[i])
        target_term = np.exp(30.0 * (cosines[y] - 0.2))
        others = sum(np.exp(30.0 * cosines[j]) for j in range(4) if j != y)
        total += -np.log(target_term / (target_term + others))
    loss = float(objective.loss(cos, targets).detach())
    assert loss == pytest.approx(total / 5, rel=1e-4)
    # Predictions: margin-free scaled cosines.
    assert torch.allclose(objective.logits(cos), 30.0 * cos)
    # Unknown labels (-1) are ignored.
    with_unknown = torch.tensor([0, 3, 1, 1, -1])
    assert float(objective.loss(cos, with_unknown).detach()) == pytest.approx(
        float(objective.loss(cos[:4], targets[:4]).detach()), rel=1e-5
    )


# ------------------------------------------------------------ one fold end to end


@pytest.fixture(scope="module")
def fold1(tiny_hubert_group_dir, tmp_path_factory):
    """The four steps of fold 1 through the recipe's cross_validate.py."""
    root = tmp_path_factory.mktemp("gmp_tl")
    corpus = make_iemocap_fixture(root / "corpus", utterances_per_dialog=3)
    out = root / "out"
    # Loaded from its file under its own name: another recipe's cross_validate.py
    # may already sit in sys.modules as "cross_validate".
    sys.path.insert(0, RECIPE)
    try:
        cross_validate = load_module(
            os.path.join(RECIPE, "cross_validate.py"), "gmp_tl_cross_validate"
        )
    finally:
        sys.path.remove(RECIPE)
    argv = [
        "--data_folder",
        corpus["data_folder"],
        "--output_folder",
        str(out),
        "--folds",
        "1",
        "--no_report",
        "--overrides",
        json.dumps({**TINY, "encoder_source": tiny_hubert_group_dir}),
        "--stage_overrides",
        json.dumps(STAGE_OVERRIDES),
    ]
    results = cross_validate.main(argv)
    fold_dir = out / "hubert_base_all" / "fold1"
    return {
        "main": cross_validate.main,
        "argv": argv,
        "results": results,
        "out": out,
        "fold_dir": fold_dir,
        "corpus": corpus,
        "stage_a": fold_dir / "stageA_gmp",
        "labels": fold_dir / "stageA_gmp_labels_L-3",
        "stage_b": fold_dir / "stageB_pretrained_stageA_gmp_labels_L-3",
        "stage_c": fold_dir / "stageC_ams_stageB_pretrained_stageA_gmp_labels_L-3",
    }


def test_fold_writes_metrics_the_aggregation_accepts(fold1):
    metrics = json.loads((fold1["stage_c"] / "metrics.json").read_text())
    aggregated = aggregate_folds({1: metrics})
    assert aggregated["folds"][0]["n_test"] == metrics["n_test"] > 0
    assert fold1["results"]["folds"][0]["UA"] == pytest.approx(metrics["UA"])
    assert (fold1["out"] / "cv_results.json").is_file()
    info = json.loads((fold1["out"] / "run_info.json").read_text())
    # run_info.json as the results table reads it (ser_lib.results.collect_row).
    entry = info["folds"]["1"]
    assert set(entry["stage_s"]) == {"A", "labels", "B", "C"}
    assert all(seconds > 0 for seconds in entry["stage_s"].values())
    assert entry["folder"] == str(fold1["stage_c"])
    assert entry["stage_folders"]["A"] == str(fold1["stage_a"])
    assert info["schedule"]["A"]["number_of_epochs"] == 1
    assert info["schedule"]["labels"]["kmeans"]["max_iter"] == 5  # STAGE_OVERRIDES
    assert "lr" not in info["schedule"]["labels"]
    assert info["command"].startswith("python recipes/IEMOCAP/gmp_tl/cross_validate.py")
    assert info["wall_s"]["total"] == pytest.approx(sum(entry["stage_s"].values()))
    for stage in ("stage_a", "stage_b", "stage_c"):
        assert (fold1[stage] / "done.json").is_file()
        assert (fold1[stage] / "encoder" / "config.json").is_file()
    log_b = [json.loads(x) for x in (fold1["stage_b"] / "train_log.jsonl").open()]
    assert {"acc_K2", "acc_K3", "acc_K4"} <= set(log_b[-1]["train"])
    preds = (fold1["stage_c"] / "predictions.csv").read_text().splitlines()
    assert len(preds) == metrics["n_test"] + 1


def test_pseudo_labels_cover_every_training_frame(fold1, tiny_hubert_group_dir):
    cache = FeatureCache(fold1["labels"])
    train_csv = fold1["out"] / "prepared_all" / "fold1" / "train.csv"
    rows = read_manifest(train_csv, ["ID", "wav"])
    assert sorted(cache.ids) == sorted(row["ID"] for row in rows)
    enc = TrainableHFEncoder(tiny_hubert_group_dir)
    for row in rows:
        path = row["wav"].replace("$data_root", fold1["corpus"]["data_folder"])
        labels = cache.load(row["ID"])
        assert labels.dtype == np.int16 and labels.shape[1] == 3
        assert labels.shape[0] == enc.num_frames(
            max(sf.info(path).frames, enc.min_samples)
        )
        assert np.all(labels.max(axis=0) <= [1, 2, 3]) and labels.min() >= 0
    for k in (2, 3, 4):
        assert np.load(fold1["labels"] / f"centres_K{k}.npy").shape == (k, 32)
    stats = json.loads((fold1["labels"] / "kmeans_stats.json").read_text())
    assert set(stats["scales"]["4"]) >= {"usage_perplexity", "nmi_emo", "nmi_gender"}


def test_label_cache_of_another_stage_a_model_is_a_clear_error(
    fold1, tiny_hubert_group_dir
):
    cache = FeatureCache(fold1["labels"])
    train_csv = fold1["out"] / "prepared_all" / "fold1" / "train.csv"
    check_label_cache(cache, fold1["stage_a"] / "encoder", [2, 3, 4], train_csv)
    with pytest.raises(CacheMismatchError, match="another model"):
        check_label_cache(cache, tiny_hubert_group_dir, [2, 3, 4], train_csv)
    with pytest.raises(CacheMismatchError, match="label_scales"):
        check_label_cache(cache, fold1["stage_a"] / "encoder", [2, 3, 5], train_csv)


def test_killed_stage_resumes_with_the_same_command(fold1):
    """A stage that stopped before marking itself done resumes from its checkpoint."""
    stage_c = fold1["stage_c"]

    def epoch_records():
        with open(stage_c / "train_log.jsonl", encoding="utf-8") as f:
            return [r for r in map(json.loads, f) if "train" in r]

    epochs = epoch_records()
    done_a = (fold1["stage_a"] / "done.json").stat().st_mtime_ns
    # As if killed after its last checkpoint, before the evaluation and export.
    for name in ("metrics.json", "done.json"):
        (stage_c / name).unlink()
    results = fold1["main"](fold1["argv"])
    assert (stage_c / "metrics.json").is_file() and (stage_c / "done.json").is_file()
    assert epoch_records() == epochs  # resumed from the checkpoint: nothing re-trained
    assert (fold1["stage_a"] / "done.json").stat().st_mtime_ns == done_a
    assert results["folds"][0]["UA"] == pytest.approx(
        fold1["results"]["folds"][0]["UA"]
    )


# ------------------------------------------------------------ recipe configuration

EMODB_RECIPE = os.path.join(os.path.dirname(RECIPE), "..", "EmoDB", "gmp_tl")


@pytest.mark.parametrize("recipe", [RECIPE, EMODB_RECIPE])
def test_steps_chain_their_folders(recipe):
    from ser_lib.multistage import resolved_hparams

    overrides = {"data_folder": "/d", "output_root": "/o", "encoder_source": "/m"}
    values = {
        name: resolved_hparams(recipe, f"hparams/{name}.yaml", overrides)
        for name in ("stageA_mtl", "pseudo_labels", "stageB_gmp", "stageC_ams")
    }
    stage_a = values["stageA_mtl"]["output_folder"]
    assert values["pseudo_labels"]["encoder_folder"] == stage_a + "/encoder"
    assert (
        values["stageB_gmp"]["frame_label_folder"]
        == (values["pseudo_labels"]["output_folder"])
    )
    assert values["stageC_ams"]["stage_b_encoder"] == (
        values["stageB_gmp"]["output_folder"] + "/encoder"
    )
    assert values["stageA_mtl"]["gender_weight"] == pytest.approx(0.1)
    assert values["stageA_mtl"]["label_scales"] == [64, 512, 4096]
    assert values["pseudo_labels"]["kmeans_layer"] == -3


def test_emodb_recipe_builds_a_whisper_stage_a(tmp_path):
    from hyperpyyaml import load_hyperpyyaml

    from ser_lib.cross_validation import recipe_context

    save_tiny_whisper(tmp_path / "w")
    overrides = {
        "data_folder": str(tmp_path),
        "output_root": str(tmp_path / "out"),
        "encoder_source": str(tmp_path / "w"),
        "encoder_dim": 16,
    }
    sys.path.insert(0, os.path.dirname(os.path.abspath(EMODB_RECIPE)))
    try:
        with recipe_context(EMODB_RECIPE), open("hparams/stageA_mtl.yaml") as fin:
            hparams = load_hyperpyyaml(fin, overrides)
    finally:
        sys.path.pop(0)
    assert isinstance(hparams["encoder"], TrainableWhisperEncoder)
    assert hparams["head"].output.out_features == len(hparams["classes"]) + 2


def test_gradient_checkpointing_gives_the_same_gradients(tiny_hubert_group_dir):
    settings = dict(
        hidden_dropout=0.0,
        attention_dropout=0.0,
        mask_time_prob=0.0,
    )
    grads = []
    for checkpointing in (False, True):
        enc = TrainableHFEncoder(
            tiny_hubert_group_dir, gradient_checkpointing=checkpointing, **settings
        ).train()
        with warnings.catch_warnings():  # a deprecated name in transformers 5
            warnings.simplefilter("ignore", FutureWarning)
            assert enc.model.is_gradient_checkpointing == checkpointing
        torch.manual_seed(0)
        feats, _ = enc(torch.randn(2, 4000), torch.tensor([1.0, 0.7]))
        feats.pow(2).sum().backward()
        grads.append(
            torch.cat([p.grad.flatten() for p in enc.model.encoder.parameters()])
        )
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
