"""Using a trained model: EmotionRecognizer, export, and the ``ser-predict`` command.

A tiny model (fbank encoder, 2 epochs per stage, fold 1 only) is trained once per test
session with the recipe's ``train.py`` (the pattern of ``test_recipe.py``);
``test_report.py`` reuses it through :func:`trained_fold`.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from fixtures_iemocap import make_iemocap_fixture
from speechbrain.nnet.linear import Linear
from test_recipe import ADAPTER, FINETUNE, RECIPE, TINY, run_train

from ser_lib.audio import AudioError
from ser_lib.encoders import load_encoder
from ser_lib.features import FeatureCache
from ser_lib.inference import (
    EmotionRecognizer,
    ModelFolderError,
    export_model,
    find_checkpoint,
)
from ser_lib.models import StatisticalAttentivePooling, WAPTransformer
from ser_lib.predict_cli import main as predict_main

# Predictions are rebuilt from the wavs with features rounded to float16 exactly as
# the feature cache stores them, so the model sees the inputs of the evaluation; what
# remains is float32 noise from a different batch composition (padding is masked)
# and the 6 decimals of predictions.csv (5e-7).
PROB_TOLERANCE = 1e-5


def trained_fold(base):
    """Trains stages 1 and 2 of fold 1 into ``base`` once; later calls reuse it.

    Returns a dict: ``out`` (output_root), ``finetune`` (stage-2 folder),
    ``common`` (the train.py overrides), ``test_rows`` (test manifest rows with
    absolute wav paths).
    """
    base = Path(base)
    out = base / "out"
    finetune = out / "fbank_all" / "fold1" / "finetune"
    corpus_root = base / "corpus"
    data_folder = corpus_root / "IEMOCAP_full_release"
    common = {
        **TINY,
        "data_folder": data_folder,
        "output_root": out,
        "test_session": 1,
    }
    if not (finetune / "metrics.json").is_file():
        if not data_folder.is_dir():
            make_iemocap_fixture(corpus_root, utterances_per_dialog=8)
        run_train("hparams/adapter.yaml", {**common, **ADAPTER})
        run_train("hparams/finetune.yaml", {**common, **FINETUNE})
    with open(out / "prepared_all" / "fold1" / "test.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["wav"] = row["wav"].replace("$data_root", str(data_folder))
    return {"out": out, "finetune": finetune, "common": common, "test_rows": rows}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_fold(tmp_path_factory.getbasetemp() / "trained_fold1")


@pytest.fixture(scope="module")
def recognizer(trained):
    return EmotionRecognizer.from_hparams(trained["finetune"])


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    target = tmp_path_factory.mktemp("export") / "model"
    export_model(trained["finetune"], target)
    return target


def write_noise(path, seconds, sample_rate=16000, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    samples = 0.1 * rng.standard_normal((round(seconds * sample_rate), channels))
    sf.write(path, samples, sample_rate)
    return path


def test_exported_model_reproduces_the_evaluation(trained, exported, tmp_path):
    # Self-contained: the folder still works after being moved.
    moved = tmp_path / "moved"
    shutil.copytree(exported, moved)
    assert sorted(p.name for p in moved.iterdir()) == sorted(
        [
            "hyperparams.yaml",
            "encoder.yaml",
            "encoder_fingerprint.json",
            "backbone.ckpt",
            "sap.ckpt",
            "classifier.ckpt",
            "label_encoder.txt",
        ]
    )
    model = EmotionRecognizer.from_hparams(moved)
    predictions = pd.read_csv(trained["finetune"] / "predictions.csv")
    wavs = {row["ID"]: row["wav"] for row in trained["test_rows"]}
    assert len(predictions) == len(wavs) > 0
    for _, row in predictions.iterrows():
        result = model.classify_file(wavs[row["ID"]])
        assert result.label == row["predicted"], row["ID"]
        expected = [row[f"prob_{c}"] for c in model.classes]
        got = [result.probabilities[c] for c in model.classes]
        np.testing.assert_allclose(got, expected, atol=PROB_TOLERANCE, rtol=0)
        assert result.probability == max(got)


def test_trained_folder_and_export_agree(recognizer, exported, trained):
    model = EmotionRecognizer.from_hparams(exported)
    assert model.classes == recognizer.classes == ["neu", "hap", "ang", "sad"]
    wav = trained["test_rows"][0]["wav"]
    assert model.classify_file(wav) == recognizer.classify_file(wav)
    # The checkpoint is the one evaluation used (the last epoch: no validation).
    checkpoint = find_checkpoint(trained["finetune"] / "save")
    assert "UA" not in checkpoint.meta
    assert str(checkpoint.path.name) in (exported / "hyperparams.yaml").read_text()


def test_features_equal_the_cached_features(recognizer, trained):
    cache = FeatureCache(trained["out"] / "features_fbank")
    for row in trained["test_rows"][:4]:
        wav = recognizer.load_audio(row["wav"])
        feats, _ = recognizer.encode_features(wav)
        cached = torch.from_numpy(np.array(cache.load(row["ID"]), dtype=np.float32))
        assert feats.shape[1:] == cached.shape
        torch.testing.assert_close(feats[0], cached, atol=0, rtol=0)


def test_batch_equals_one_file_at_a_time(recognizer, tmp_path):
    """Very different lengths, rates and channel counts: padding changes nothing."""
    files = [
        write_noise(tmp_path / "short.wav", 0.05, seed=1),
        write_noise(tmp_path / "long.wav", 6.0, seed=2),
        write_noise(tmp_path / "stereo8k.wav", 0.7, 8000, channels=2, seed=3),
        write_noise(tmp_path / "mid44k.wav", 1.3, 44100, seed=4),
    ]
    wavs = [recognizer.load_audio(path) for path in files]
    lengths = torch.tensor([len(w) for w in wavs], dtype=torch.float32)
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    probs, score, index, labels = recognizer.classify_batch(
        batch, lengths / lengths.max()
    )
    embeddings = recognizer.encode_batch(batch, lengths / lengths.max())
    for i, path in enumerate(files):
        alone = recognizer.classify_file(path)
        assert alone.label == labels[i]
        np.testing.assert_allclose(
            list(alone.probabilities.values()), probs[i].numpy(), atol=1e-6, rtol=0
        )
        torch.testing.assert_close(
            recognizer.encode_batch(wavs[i]), embeddings[i : i + 1], atol=1e-6, rtol=0
        )
    assert torch.equal(score, probs.max(dim=1).values)


def test_bad_audio_is_refused_with_the_file_name(recognizer, tmp_path):
    short = write_noise(tmp_path / "tiny.wav", 0.002)
    with pytest.raises(AudioError, match="tiny.wav is too short"):
        recognizer.classify_file(short)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    with pytest.raises(AudioError, match="corrupt.wav"):
        recognizer.classify_file(corrupt)


def test_a_different_encoder_is_refused(exported, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(exported, changed)
    encoder_yaml = changed / "encoder.yaml"
    encoder_yaml.write_text(
        encoder_yaml.read_text().replace("encoder_n_mels: 80", "encoder_n_mels: 40")
    )
    with pytest.raises(ModelFolderError, match="n_mels: training=80, now=40"):
        EmotionRecognizer.from_hparams(changed)
    # Without the encoder, the model still works on (cached) features.
    model = EmotionRecognizer.from_hparams(changed, with_encoder=False)
    assert model.classify_features(torch.randn(1, 20, 160)).shape == (1, 4)


def test_not_a_model_folder_is_a_clear_error(trained, tmp_path):
    with pytest.raises(ModelFolderError, match="did you mean .*fold1/finetune"):
        EmotionRecognizer.from_hparams(trained["finetune"].parent)
    with pytest.raises(ModelFolderError, match="exists and is not empty"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("x")
        export_model(trained["finetune"], tmp_path / "full")


def test_ser_predict_good_and_bad_files(trained, tmp_path, capsys):
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    write_noise(folder / "good.wav", 1.0)
    write_noise(folder / "sub" / "stereo.flac", 0.5, 22050, channels=2)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    sf.write(folder / "empty.wav", np.zeros(0), 16000)
    write_noise(folder / "short.wav", 0.003)
    (folder / "._good.wav").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble: skipped
    out_csv, out_json = tmp_path / "out.csv", tmp_path / "out.json"
    argv = [str(trained["finetune"]), str(folder), str(tmp_path / "missing.wav")]
    status = predict_main(argv + ["--csv", str(out_csv), "--json", str(out_json)])
    assert status == 0
    table = capsys.readouterr().out
    records = {Path(r["file"]).name: r for r in json.loads(out_json.read_text())}
    assert sorted(records) == [
        "corrupt.wav",
        "empty.wav",
        "good.wav",
        "missing.wav",
        "short.wav",
        "stereo.flac",
    ]
    for name in ("good.wav", "stereo.flac"):
        assert records[name]["error"] is None
        assert records[name]["label"] in ("neu", "hap", "ang", "sad")
        assert sum(records[name]["probabilities"].values()) == pytest.approx(1.0)
        line = next(line for line in table.splitlines() if name in line)
        assert line.split()[1] == records[name]["label"]
    assert "too short" in records["short.wav"]["error"]
    assert "holds no samples" in records["empty.wav"]["error"]
    assert "corrupt.wav" in records["corrupt.wav"]["error"]
    assert "No such file" in records["missing.wav"]["error"]
    assert table.count("ERROR:") == 4
    rows = pd.read_csv(out_csv)
    assert list(rows.columns[:3]) == ["file", "label", "probability"]
    assert rows["error"].notna().sum() == 4


def test_ser_predict_exit_codes(trained, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    assert predict_main([str(trained["finetune"]), str(bad)]) == 1
    assert "1 of 1 file(s) failed" in capsys.readouterr().err
    assert predict_main([str(tmp_path), str(bad)]) == 2
    assert "is neither a trained stage-2 folder" in capsys.readouterr().err


def test_ser_predict_console_script(exported, tmp_path):
    """The installed command, with a progress bar over several files."""
    for i in range(3):
        write_noise(tmp_path / f"f{i}.wav", 0.5 + i, seed=i)
    script = Path(sys.executable).with_name("ser-predict")
    command = (
        [str(script)]
        if script.is_file()
        else [sys.executable, "-m", "ser_lib.predict_cli"]
    )
    result = subprocess.run(
        [*command, str(exported), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0].split() == [
        "file",
        "label",
        "prob",
        "neu",
        "hap",
        "ang",
        "sad",
    ]
    assert len(result.stdout.splitlines()) == 4
    assert "Classifying" in result.stderr  # the progress bar


def fake_trained_folder(root, encoder_hparams, encoder_overrides):
    """A stage-2 folder as training leaves it, built without training (random weights).

    Its hyperparams.yaml starts like SpeechBrain's saved copy, naming the recipe's
    finetune.yaml, so that the encoder hparams file is found from it.
    """
    encoder = load_encoder(encoder_hparams, encoder_overrides)
    cache = root / "features"
    cache.mkdir(parents=True)
    (cache / "fingerprint.json").write_text(json.dumps(encoder.fingerprint()))
    folder = root / "fold1" / "finetune"
    checkpoint = folder / "save" / "CKPT+2024-01-01+00-00-00+00"
    checkpoint.mkdir(parents=True)
    (checkpoint / "CKPT.yaml").write_text("end-of-epoch: true\nunixtime: 1.0\n")
    dim = encoder.output_dim
    modules = {
        "backbone": WAPTransformer(
            input_dim=dim, d_model=16, num_layers=1, nhead=2, max_frames=100
        ),
        "sap": StatisticalAttentivePooling(16, num_heads=2),
        "classifier": Linear(input_size=64, n_neurons=4),
    }
    for name, module in modules.items():
        torch.save(module.state_dict(), checkpoint / f"{name}.ckpt")
    relative = Path(encoder_hparams).relative_to(RECIPE)
    (folder / "hyperparams.yaml").write_text(
        f"# Generated 2024-01-01 from:\n# {RECIPE}/hparams/finetune.yaml\n"
        "# yamllint disable\n"
        "classes: [neu, hap, ang, sad]\n"
        f"encoder_hparams: {relative}\n"
        f"encoder_overrides: {json.dumps(encoder_overrides)}\n"
        f"feature_folder: {cache}\n"
        "backbone: !new:ser_lib.models.WAPTransformer\n"
        f"  input_dim: {dim}\n  d_model: 16\n  num_layers: 1\n  nhead: 2\n"
        "  max_frames: 100\n"
        "sap: !new:ser_lib.models.StatisticalAttentivePooling\n"
        "  input_dim: 16\n  num_heads: 2\n"
        "classifier: !new:speechbrain.nnet.linear.Linear\n"
        "  input_size: 64\n  n_neurons: 4\n"
    )
    return folder


def test_hugging_face_encoder_is_referenced_not_copied(tiny_hubert_dir, tmp_path):
    encoder_yaml = Path(RECIPE) / "hparams" / "encoder" / "hubert_large.yaml"
    hubert = shutil.copytree(tiny_hubert_dir, tmp_path / "hubert")
    folder = fake_trained_folder(
        tmp_path, encoder_yaml, {"encoder_source": str(hubert)}
    )
    wav = write_noise(tmp_path / "a.wav", 1.2, 22050, channels=2)
    reference = EmotionRecognizer.from_hparams(folder).classify_file(wav)

    exported = export_model(folder, tmp_path / "export")
    assert sorted(p.suffix for p in exported.iterdir()) == sorted(
        [".ckpt"] * 3 + [".json", ".txt", ".yaml", ".yaml"]
    )
    assert f"encoder_source: {hubert}" in (exported / "hyperparams.yaml").read_text()
    # The encoder weights moved: the model works once told where they are now.
    moved = shutil.move(hubert, tmp_path / "elsewhere")
    model = EmotionRecognizer.from_hparams(
        exported, encoder_overrides={"encoder_source": str(moved)}
    )
    result = model.classify_file(wav)
    assert result.label == reference.label
    np.testing.assert_allclose(
        list(result.probabilities.values()),
        list(reference.probabilities.values()),
        atol=1e-6,
    )
    # Another layer is another encoder: refused.
    with pytest.raises(ModelFolderError, match="layers: training=\\[2\\], now=\\[1\\]"):
        EmotionRecognizer.from_hparams(
            exported, encoder_overrides={"encoder_source": moved, "encoder_layers": [1]}
        )


def test_ser_predict_refuses_silent_and_short_takes_mp3_names_skipped_files(
    trained, tmp_path, capsys
):
    folder = tmp_path / "inputs"
    folder.mkdir()
    write_noise(folder / "good.wav", 1.0)
    sf.write(folder / "song.mp3", 0.1 * np.random.randn(16000), 16000, format="MP3")
    sf.write(folder / "silent.wav", np.zeros(16000), 16000)
    write_noise(folder / "short.wav", 0.05)
    (folder / "notes.txt").write_text("not audio")
    out_json = tmp_path / "out.json"
    status = predict_main(
        [str(trained["finetune"]), str(folder), "--json", str(out_json)]
    )
    assert status == 0
    err = capsys.readouterr().err
    assert "skipped 1 file(s) that are not wav/flac/ogg" in err
    assert str(folder / "notes.txt") in err
    records = {Path(r["file"]).name: r for r in json.loads(out_json.read_text())}
    assert sorted(records) == ["good.wav", "short.wav", "silent.wav", "song.mp3"]
    assert records["song.mp3"]["label"] in ("neu", "hap", "ang", "sad")
    assert records["silent.wav"]["label"] is None
    assert records["silent.wav"]["error"] == (
        "silent: RMS -inf dBFS, below min_rms_dbfs -60.0 dBFS: not classified"
    )
    assert records["short.wav"]["error"].startswith("too short: 0.050 s")


def test_ser_predict_model_folder_that_does_not_exist(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    write_noise(wav, 0.5)
    assert predict_main([str(tmp_path / "no_such_model"), str(wav)]) == 2
    err = capsys.readouterr().err
    assert f"The model folder {tmp_path / 'no_such_model'} does not exist" in err
