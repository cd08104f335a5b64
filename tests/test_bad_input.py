"""Bad input: every case gives a clear error naming the file or row, or is converted
or handled as documented in docs/RELIABILITY.md (one test, or a few, per row of its
table)."""

import json
import logging
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import write_wav
from fixtures_iemocap import make_iemocap_fixture
from test_recipe import RECIPE

from ser_lib.audio import AudioError
from ser_lib.brains import FinetuneBrain
from ser_lib.dataio import build_label_encoder, dataio_prep, feature_dataset
from ser_lib.encoders import FbankEncoder
from ser_lib.features import CacheMismatchError, FeatureCache, run_feature_extraction
from ser_lib.metrics import ser_scores
from ser_lib.models import WAPTransformer

sys.path.insert(0, RECIPE)
from iemocap_prepare import prepare_iemocap  # noqa: E402

sys.path.remove(RECIPE)

CLASSES = ["neu", "hap", "ang", "sad"]


def extract(csv_path, cache_dir, data_root=None, encoder=None):
    return run_feature_extraction(
        encoder or FbankEncoder(),
        csv_path,
        cache_dir,
        data_root=data_root,
        progress=False,
    )


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n")
    return path


def kept_wavs(corpus):
    """Absolute wav paths of the utterances the preparation keeps, sorted by ID."""
    kept = sorted((u for u in corpus["utterances"] if u["emo"]), key=lambda u: u["ID"])
    return [f"{corpus['data_folder']}/{u['wav']}" for u in kept]


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    """A prepared tiny IEMOCAP with its feature cache, and the stage hparams."""
    root = tmp_path_factory.mktemp("bad_input")
    corpus = make_iemocap_fixture(root / "corpus", utterances_per_dialog=6)
    prep = root / "prepared"
    prepare_iemocap(corpus["data_folder"], str(prep))
    cache_dir = root / "features"
    extract(prep / "all.csv", cache_dir, data_root=corpus["data_folder"])
    hparams = {
        "feature_folder": str(cache_dir),
        "classes": CLASSES,
        "train_csv": str(prep / "fold1" / "train.csv"),
        "valid_csv": str(prep / "fold1" / "valid.csv"),
        "test_csv": str(prep / "fold1" / "test.csv"),
        "input_dim": 160,
        "feature_dim": 160,
        "max_frames": 1500,
        "oversample_ratio": 0.0,
        "train_labelled": True,
        "batch_size": 8,
        "train_sampler": None,
        "seed": 0,
    }
    return {"corpus": corpus, "prep": prep, "cache_dir": cache_dir, "hparams": hparams}


def copy_cache(fold, tmp_path):
    cache_dir = tmp_path / "features"
    shutil.copytree(fold["cache_dir"], cache_dir)
    return cache_dir


# ------------------------------------------------------------- audio files


def test_preparation_lists_every_corrupt_empty_or_truncated_wav(tmp_path):
    corpus = make_iemocap_fixture(tmp_path / "corpus", utterances_per_dialog=4)
    corrupt, empty, truncated = kept_wavs(corpus)[:3]
    with open(corrupt, "wb") as f:
        f.write(b"RIFF....WAVEfmt not really a wav file")
    sf.write(empty, np.zeros((0, 1)), 16000)
    data = open(truncated, "rb").read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"^3 of \d+ audio files") as error:
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "prep"))
    message = str(error.value)
    assert f"Cannot read audio file {corrupt}" in message
    assert f"Audio file {empty} holds no samples" in message
    assert f"Audio file {truncated} is truncated" in message
    assert not (tmp_path / "prep" / "prep_options.json").exists()


def test_preparation_lists_missing_wavs(tmp_path):
    corpus = make_iemocap_fixture(tmp_path / "corpus", utterances_per_dialog=4)
    gone = kept_wavs(corpus)[-1]
    os.remove(gone)
    with pytest.raises(FileNotFoundError, match="^1 labelled") as error:
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "prep"))
    assert gone in str(error.value)


def test_missing_corrupt_and_broken_link_wavs_are_reported_in_one_pass(tmp_path):
    corpus = make_iemocap_fixture(tmp_path / "corpus", utterances_per_dialog=4)
    gone, corrupt, link = kept_wavs(corpus)[:3]
    os.remove(gone)
    with open(corrupt, "wb") as f:
        f.write(b"not audio at all" * 20)
    os.remove(link)
    os.symlink(tmp_path / "moved" / "away.wav", link)
    with pytest.raises(FileNotFoundError, match="^1 labelled") as error:
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "prep"))
    message = str(error.value)
    assert f"have no wav under {corpus['data_folder']}" in message
    assert gone in message
    assert "and 2 other wav(s) cannot be used:" in message
    assert f"Cannot read audio file {corrupt}" in message
    assert (
        f"Audio file {link} is a broken symbolic link: it points to "
        f"{tmp_path / 'moved' / 'away.wav'}, which does not exist" in message
    )
    # Without the missing one: an AudioError listing the other two.
    write_wav(gone, 16000, 0.2)
    with pytest.raises(AudioError, match=r"^2 of \d+ audio files cannot be used"):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "prep"))


def test_shared_preparation_reports_missing_and_corrupt_wavs_together(tmp_path):
    from ser_lib.data.preparation import manifest_rows

    write_wav(tmp_path / "ok.wav", 16000, 0.2)
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all" * 20)
    os.symlink(tmp_path / "nowhere.wav", tmp_path / "link.wav")
    utterances = [
        {"ID": name, "wav": f"{name}.wav", "emo": "neu"}
        for name in ("ok", "corrupt", "gone", "link")
    ]
    with pytest.raises(FileNotFoundError) as error:
        manifest_rows(utterances, str(tmp_path), "demo")
    message = str(error.value)
    assert message.startswith("demo: 1 labelled utterance(s) have no wav under")
    assert str(tmp_path / "gone.wav") in message
    assert f"Cannot read audio file {tmp_path / 'corrupt.wav'}" in message
    assert f"Audio file {tmp_path / 'link.wav'} is a broken symbolic link" in message


def test_extraction_lists_every_unusable_wav_before_encoding(tmp_path):
    write_wav(tmp_path / "ok.wav", 16000, 0.5)
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all" * 20)
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    write_wav(tmp_path / "cut.wav", 16000, 0.5)
    cut = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(cut[:-4000])
    names = ["ok", "corrupt", "empty", "cut", "gone"]
    csv_path = write_csv(
        tmp_path / "all.csv",
        ["ID", "duration", "wav"],
        [[name, "0.5", f"$data_root/{name}.wav"] for name in names],
    )
    with pytest.raises(AudioError, match="^4 of 5 audio files") as error:
        extract(csv_path, tmp_path / "cache", data_root=tmp_path)
    message = str(error.value)
    for name in ("corrupt", "empty", "cut", "gone"):
        assert str(tmp_path / f"{name}.wav") in message, name
    assert "gone.wav does not exist" in message
    assert not list((tmp_path / "cache" / "feats").glob("*.npy"))  # nothing done yet


def test_nan_samples_in_a_float_wav_name_the_file(tmp_path):
    samples = np.full(8000, 0.1, dtype=np.float32)
    samples[100] = np.nan
    sf.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    csv_path = write_csv(
        tmp_path / "all.csv",
        ["ID", "duration", "wav"],
        [["nan", "0.5", f"{tmp_path}/nan.wav"]],
    )
    with pytest.raises(AudioError, match=r"nan\.wav holds NaN or infinite samples"):
        extract(csv_path, tmp_path / "cache")


def test_rates_channels_and_sample_formats_are_converted(tmp_path):
    """16-bit 16 kHz mono is the reference; other formats give (nearly) its features."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    mono = 0.4 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(16000)
    variants = {
        "ref": (mono, 16000, "PCM_16"),
        "stereo": (np.stack([mono, mono], axis=1), 16000, "PCM_16"),
        "pcm24": (mono, 16000, "PCM_24"),
        "float": (mono, 16000, "FLOAT"),
        "pcm8": (mono, 16000, "PCM_U8"),
        "rate8k": (mono[::2], 8000, "PCM_16"),
        "rate44k": (np.interp(np.arange(44100) / 44100, t, mono), 44100, "PCM_16"),
    }
    for name, (data, rate, subtype) in variants.items():
        sf.write(tmp_path / f"{name}.wav", data, rate, subtype=subtype)
    csv_path = write_csv(
        tmp_path / "all.csv",
        ["ID", "duration", "wav"],
        [[name, "1.0", f"{tmp_path}/{name}.wav"] for name in variants],
    )
    # Log-Mel energies without normalisation, so that levels can be compared.
    extract(csv_path, tmp_path / "cache", encoder=FbankEncoder(normalize=False))
    cache = FeatureCache(tmp_path / "cache")
    feats = {name: np.asarray(cache.load(name), dtype=np.float32) for name in variants}
    ref = feats["ref"]
    for name, value in feats.items():
        assert value.shape == (50, 160), name  # 1 s at 50 Hz, whatever the format
        assert np.isfinite(value).all(), name
        # The 300 Hz tone dominates the same Mel band in every frame.
        assert np.array_equal(value[:, :80].argmax(1), ref[:, :80].argmax(1)), name
    assert np.array_equal(feats["stereo"], ref)  # identical channels, averaged
    for name, tolerance in (("pcm24", 0.01), ("float", 0.01), ("pcm8", 0.5)):
        assert np.abs(feats[name] - ref).mean() < tolerance, name


# ------------------------------------------------------------- long utterances


def test_long_utterances_are_cropped_in_training_and_whole_at_evaluation(fold):
    cache = FeatureCache(fold["cache_dir"])
    encoder = build_label_encoder(CLASSES)
    train_csv = fold["hparams"]["train_csv"]
    max_frames = 4
    cropped = feature_dataset(
        train_csv, cache, encoder, max_frames=max_frames, random_crop=True
    )
    whole = feature_dataset(train_csv, cache, encoder, max_frames=max_frames)
    longer = 0
    for index in range(len(whole)):
        item, full = cropped[index], whole[index]["feats"]
        assert full.shape[0] == cache.num_frames(item["id"])
        assert item["feats"].shape[0] == min(max_frames, full.shape[0])
        longer += full.shape[0] > max_frames
        # The crop is a window of consecutive frames of the utterance.
        windows = full.unfold(0, item["feats"].shape[0], 1).transpose(1, 2)
        assert any(torch.equal(w, item["feats"]) for w in windows)
    assert longer > 0

    model = WAPTransformer(
        input_dim=160, d_model=16, num_layers=1, nhead=2, max_frames=max_frames
    ).eval()
    feats = whole[0]["feats"].unsqueeze(0)  # [1, T > max_frames, 160]
    assert feats.shape[1] > max_frames
    with torch.no_grad():
        out = model(feats, torch.ones(1))  # position table interpolated to T
    assert out.shape == (1, feats.shape[1], 16) and torch.isfinite(out).all()


# ------------------------------------------------------------- manifests


def test_label_outside_the_class_set_names_file_row_and_label(fold, tmp_path):
    train = tmp_path / "train.csv"
    lines = open(fold["hparams"]["train_csv"]).read().splitlines()
    header, first = lines[0], lines[1].split(",")
    first[header.split(",").index("emo")] = "fru"
    train.write_text("\n".join([header, ",".join(first), *lines[2:]]) + "\n")
    with pytest.raises(ValueError) as error:
        dataio_prep({**fold["hparams"], "train_csv": str(train)})
    assert f"{train}: utterance {first[0]} has label 'fru'" in str(error.value)


def test_manifest_missing_a_column_names_file_and_column(fold, tmp_path):
    train = tmp_path / "train.csv"
    rows = [line.split(",") for line in open(fold["hparams"]["train_csv"])]
    drop = rows[0].index("emo")
    train.write_text("".join(",".join(r[:drop] + r[drop + 1 :]) for r in rows))
    with pytest.raises(ValueError, match=r"train\.csv lacks the columns \['emo'\]"):
        dataio_prep({**fold["hparams"], "train_csv": str(train)})
    no_wav = write_csv(tmp_path / "no_wav.csv", ["ID", "duration"], [["a", "1.0"]])
    with pytest.raises(ValueError, match=r"no_wav\.csv: row 'a' lacks .*'wav'"):
        extract(no_wav, tmp_path / "cache")


def test_duplicate_ids_name_file_and_lines(fold, tmp_path):
    lines = open(fold["hparams"]["train_csv"]).read().splitlines()
    train = tmp_path / "train.csv"
    train.write_text("\n".join([*lines, lines[1]]) + "\n")
    duplicate = lines[1].split(",")[0]
    with pytest.raises(
        ValueError, match=rf"train\.csv, line {len(lines) + 1}: duplicate ID"
    ) as error:
        dataio_prep({**fold["hparams"], "train_csv": str(train)})
    assert duplicate in str(error.value) and "first on line 2" in str(error.value)
    with pytest.raises(ValueError, match=rf"train\.csv: Duplicate id: {duplicate}"):
        extract(train, tmp_path / "cache", data_root=fold["corpus"]["data_folder"])


def test_bad_row_and_empty_training_manifest_name_the_file(fold, tmp_path):
    lines = open(fold["hparams"]["train_csv"]).read().splitlines()
    train = tmp_path / "train.csv"
    train.write_text("\n".join([*lines[:3], lines[3] + ",extra", *lines[4:]]) + "\n")
    with pytest.raises(ValueError, match=r"train\.csv, line 4: 10 fields, expected 9"):
        dataio_prep({**fold["hparams"], "train_csv": str(train)})
    train.write_text(lines[0] + "\n")
    with pytest.raises(ValueError, match=r"training manifest .*train\.csv is empty"):
        dataio_prep({**fold["hparams"], "train_csv": str(train)})


def test_utterance_missing_from_the_cache_names_csv_and_cache(fold, tmp_path):
    cache_dir = copy_cache(fold, tmp_path)
    index = (cache_dir / "index.csv").read_text().splitlines()
    (cache_dir / "index.csv").write_text("\n".join(index[:-1]) + "\n")
    with pytest.raises(KeyError, match="not in the feature cache") as error:
        dataio_prep({**fold["hparams"], "feature_folder": str(cache_dir)})
    assert str(cache_dir) in str(error.value)


# ------------------------------------------------------------- feature cache


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_cached_features_name_the_file_and_the_cure(
    fold, tmp_path, bad_value
):
    cache_dir = copy_cache(fold, tmp_path)
    datasets = dataio_prep({**fold["hparams"], "feature_folder": str(cache_dir)})
    train = datasets["train"]
    utt_id = train[0]["id"]
    path = cache_dir / "feats" / f"{utt_id}.npy"
    feats = np.load(path)
    feats[0, 0] = bad_value
    np.save(path, feats)
    with pytest.raises(ValueError) as error:
        train[0]
    assert f"Non-finite values in the cached features of {utt_id} ({path})" in str(
        error.value
    )
    assert "delete that file and re-run" in str(error.value)
    # The cure works: only that utterance is extracted again.
    path.unlink()
    summary = extract(
        fold["prep"] / "all.csv", cache_dir, data_root=fold["corpus"]["data_folder"]
    )
    assert summary.num_extracted == 1
    assert torch.isfinite(train[0]["feats"]).all()


def test_unreadable_cached_features_name_the_file(fold, tmp_path):
    cache_dir = copy_cache(fold, tmp_path)
    cache = FeatureCache(cache_dir)
    utt_id = cache.ids[0]
    path = cache.feature_path(utt_id)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="Cannot read the cached features") as error:
        cache.load(utt_id)
    assert str(path) in str(error.value)


def test_cache_of_another_encoder_is_refused(fold, tmp_path):
    cache_dir = copy_cache(fold, tmp_path)
    with pytest.raises(CacheMismatchError) as error:
        extract(
            fold["prep"] / "all.csv",
            cache_dir,
            data_root=fold["corpus"]["data_folder"],
            encoder=FbankEncoder(n_mels=40),
        )
    message = str(error.value)
    assert str(cache_dir) in message and "n_mels: cache=80, encoder=40" in message
    assert "feature_folder" in message
    # Training with a model sized for another encoder: named before any training.
    with pytest.raises(ValueError, match="have 160 channels but the model reads 1024"):
        dataio_prep({**fold["hparams"], "feature_dim": 1024})


# ------------------------------------------------------------- class coverage


def test_fold_whose_training_lacks_a_class_warns_and_reports_it(fold, tmp_path, caplog):
    train = tmp_path / "train.csv"
    lines = open(fold["hparams"]["train_csv"]).read().splitlines()
    emo = lines[0].split(",").index("emo")
    kept = [line for line in lines[1:] if line.split(",")[emo] != "sad"]
    train.write_text("\n".join([lines[0], *kept]) + "\n")
    with caplog.at_level(logging.WARNING, logger="ser_lib.dataio"):
        datasets = dataio_prep({**fold["hparams"], "train_csv": str(train)})
    assert datasets["absent_train_classes"] == ["sad"]
    assert datasets["train_class_counts"]["sad"] == 0
    assert sum(datasets["train_class_counts"].values()) == len(kept)
    assert "no utterance of the class(es) ['sad']" in caplog.text
    assert str(train) in caplog.text

    # The fold's metrics.json records it; UA averages over the test classes
    # (the never-predicted 'sad' test utterances count with recall 0).
    brain = FinetuneBrain(
        modules={"classifier": torch.nn.Linear(1, 4)},
        hparams={
            "label_encoder": build_label_encoder(CLASSES),
            "output_folder": str(tmp_path),
        },
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    brain.train_class_counts = datasets["train_class_counts"]
    targets = torch.tensor([0, 1, 3, 3])  # neu, hap, sad, sad; no ang in the test
    probs = torch.eye(4)[[0, 1, 0, 1]]  # sad is never predicted
    brain.outputs = [(["a", "b", "c", "d"], targets, probs)]
    brain.write_evaluation(brain.stage_scores(0.0))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["classes_absent_from_training"] == ["sad"]
    assert metrics["train_class_counts"] == datasets["train_class_counts"]
    expected = ser_scores(targets.numpy(), probs.argmax(dim=1).numpy())
    assert metrics["UA"] == pytest.approx(100 * expected["UA"])
    assert metrics["UA"] == pytest.approx(100 * (1 + 1 + 0) / 3)


# ------------------------------------------------------------- file modes


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_manifests_and_prep_options_respect_the_umask(tmp_path, umask):
    corpus = make_iemocap_fixture(tmp_path / "corpus", utterances_per_dialog=4)
    previous = os.umask(umask)
    try:
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "prep"))
    finally:
        os.umask(previous)
    written = [tmp_path / "prep" / "all.csv", tmp_path / "prep" / "prep_options.json"]
    written += sorted((tmp_path / "prep").glob("fold*/*.csv"))
    for path in written:
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask, path
