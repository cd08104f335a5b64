"""Tests of audio reading, the feature cache and the extraction CLI."""

import csv
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_tiny_corpus, write_wav

from ser_lib import features
from ser_lib.audio import AudioError, read_audio
from ser_lib.encoders import FbankEncoder, HFEncoder
from ser_lib.features import (
    CacheMismatchError,
    FeatureCache,
    extract_features,
    prepare_features,
    run_feature_extraction,
)
from ser_lib.features_cli import main

RECIPE_ENCODERS = (
    Path(__file__).resolve().parents[1] / "recipes/IEMOCAP/hparams/encoder"
)


def _extract(encoder, corpus, cache_dir, **kwargs):
    return run_feature_extraction(
        encoder,
        corpus.csv_path,
        cache_dir,
        data_root=corpus.data_root,
        progress=False,
        **kwargs,
    )


def _mtimes(cache_dir):
    return {p.name: p.stat().st_mtime_ns for p in (Path(cache_dir) / "feats").iterdir()}


def _temp_files(cache_dir):
    return [p for p in Path(cache_dir).rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- read_audio


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "FLOAT"])
def test_read_audio_pcm_and_float(tmp_path, subtype):
    path = tmp_path / "x.wav"
    data = write_wav(path, 16000, 0.25, subtype=subtype)[:, 0]
    wav = read_audio(path)
    assert wav.dtype == torch.float32 and wav.shape == (4000,)
    tolerance = {"PCM_U8": 1e-2, "PCM_16": 1e-4, "PCM_24": 1e-6, "FLOAT": 1e-7}
    assert np.abs(wav.numpy() - data).max() < tolerance[subtype]


def test_read_audio_mixes_stereo_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = np.full(1600, 0.5), np.full(1600, -0.1)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wav = read_audio(path)
    assert wav.shape == (1600,)
    assert torch.allclose(wav, torch.full((1600,), 0.2))


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_read_audio_resamples(tmp_path, rate):
    path = tmp_path / "x.wav"
    write_wav(path, rate, 0.5)
    wav = read_audio(path, sample_rate=16000)
    assert wav.shape == (8000,)
    # A 220 Hz tone stays a 220 Hz tone.
    spectrum = torch.fft.rfft(wav).abs()
    assert int(spectrum.argmax()) == pytest.approx(220 * 0.5, abs=1)
    assert read_audio(path, sample_rate=rate).shape == (round(0.5 * rate),)


def test_read_audio_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match="missing.wav"):
        read_audio(missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="garbage.wav"):
        read_audio(garbage)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1)), 16000)
    with pytest.raises(AudioError, match="empty.wav.*no samples"):
        read_audio(empty)
    assert issubclass(AudioError, ValueError)


# ---------------------------------------------------------------- extraction


@pytest.mark.parametrize("kind", ["fbank", "hubert"])
def test_extract_features_end_to_end(kind, tiny_corpus, tiny_hubert_dir, tmp_path):
    encoder = FbankEncoder() if kind == "fbank" else HFEncoder(tiny_hubert_dir)
    cache_dir = tmp_path / "cache"
    cache = extract_features(
        encoder,
        tiny_corpus.csv_path,
        cache_dir,
        data_root=tiny_corpus.data_root,
        batch_seconds=1.6,  # several batches
        progress=False,
    )
    assert isinstance(cache, FeatureCache)
    assert sorted(cache.ids) == sorted(tiny_corpus.durations)
    assert cache.feature_dim == encoder.output_dim
    assert cache.fingerprint == json.loads(json.dumps(encoder.fingerprint()))
    stored = json.loads((cache_dir / "fingerprint.json").read_text())
    assert stored == cache.fingerprint
    for utt_id in tiny_corpus.durations:
        wav = read_audio(tiny_corpus.data_root / "wavs" / f"{utt_id}.wav")
        feats = cache.load(utt_id)
        assert isinstance(feats, np.memmap) and feats.dtype == np.float16
        assert feats.shape == (encoder.num_frames(len(wav)), encoder.output_dim)
        assert cache.num_frames(utt_id) == feats.shape[0]
        expected, _ = encoder(wav[None], torch.ones(1))
        assert np.allclose(feats, expected[0].numpy(), atol=2e-2, rtol=1e-2)
    with open(cache_dir / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {row["ID"]: row["feat_path"] for row in rows} == {
        utt_id: f"feats/{utt_id}.npy" for utt_id in tiny_corpus.durations
    }
    assert _temp_files(cache_dir) == []


def test_resampled_inputs_give_the_frames_of_their_duration(tiny_corpus, tmp_path):
    encoder = FbankEncoder()
    cache = extract_features(
        encoder,
        tiny_corpus.csv_path,
        tmp_path / "cache",
        data_root=tiny_corpus.data_root,
        progress=False,
    )
    # spk1_utt2 is 0.75 s at 8 kHz, spk2_utt1 0.5 s at 44.1 kHz.
    for utt_id in ("spk1_utt2", "spk2_utt1"):
        expected = encoder.num_frames(tiny_corpus.samples_at(utt_id))
        assert cache.num_frames(utt_id) == expected
    assert cache.num_frames("spk1_utt2") == 38
    assert cache.num_frames("spk2_utt1") == 25


def test_cache_reuse_extracts_nothing(tiny_corpus, tmp_path):
    cache_dir = tmp_path / "cache"
    first = _extract(FbankEncoder(), tiny_corpus, cache_dir)
    assert (first.num_extracted, first.num_skipped) == (4, 0)
    before = _mtimes(cache_dir)
    second = _extract(FbankEncoder(), tiny_corpus, cache_dir)
    assert (second.num_extracted, second.num_skipped) == (0, 4)
    assert _mtimes(cache_dir) == before


def test_resume_after_a_partial_cache(tiny_corpus, tmp_path):
    cache_dir = tmp_path / "cache"
    _extract(FbankEncoder(), tiny_corpus, cache_dir)
    kept = _mtimes(cache_dir)
    for utt_id in ("spk1_utt1", "spk2_utt2"):
        (cache_dir / "feats" / f"{utt_id}.npy").unlink()
        del kept[f"{utt_id}.npy"]
    (cache_dir / "index.csv").unlink()
    summary = _extract(FbankEncoder(), tiny_corpus, cache_dir)
    assert (summary.num_extracted, summary.num_skipped) == (2, 2)
    after = _mtimes(cache_dir)
    assert {name: after[name] for name in kept} == kept
    assert len(FeatureCache(cache_dir)) == 4


def test_a_killed_run_leaves_complete_files_and_resumes(
    tiny_corpus, tmp_path, monkeypatch
):
    cache_dir = tmp_path / "cache"
    real_save = np.save
    calls = []

    def dying_save(file, arr, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            file.write(b"partial")
            raise KeyboardInterrupt  # killed in the middle of the third file
        real_save(file, arr, **kwargs)

    monkeypatch.setattr(np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _extract(FbankEncoder(), tiny_corpus, cache_dir, batch_seconds=0.1)
    monkeypatch.setattr(np, "save", real_save)
    assert _temp_files(cache_dir) == []
    written = sorted((cache_dir / "feats").glob("*.npy"))
    assert len(written) == 2
    for path in written:
        assert np.load(path).dtype == np.float16  # complete arrays only
    assert not (cache_dir / "index.csv").exists()
    summary = _extract(FbankEncoder(), tiny_corpus, cache_dir)
    assert (summary.num_extracted, summary.num_skipped) == (2, 2)


def test_cache_files_follow_the_umask(tiny_corpus, tmp_path):
    previous = os.umask(0o022)
    try:
        _extract(FbankEncoder(), tiny_corpus, tmp_path / "cache")
    finally:
        os.umask(previous)
    for path in (tmp_path / "cache").rglob("*.*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_stale_temp_files_are_removed(tiny_corpus, tmp_path):
    cache_dir = tmp_path / "cache"
    _extract(FbankEncoder(), tiny_corpus, cache_dir)
    stale = cache_dir / "feats" / ".spk1_utt1.npy.123.abc.tmp"
    stale.write_bytes(b"half")
    stale_index = cache_dir / ".index.csv.123.abc.tmp"
    stale_index.write_text("ID,num")
    _extract(FbankEncoder(), tiny_corpus, cache_dir)
    assert not stale.exists() and not stale_index.exists()
    assert len(FeatureCache(cache_dir)) == 4


def test_other_layers_are_a_cache_mismatch(tiny_corpus, tiny_hubert_dir, tmp_path):
    cache_dir = tmp_path / "cache"
    _extract(HFEncoder(tiny_hubert_dir, layers=[-1]), tiny_corpus, cache_dir)
    with pytest.raises(CacheMismatchError, match=r"layers: cache=\[2\], encoder=\[1\]"):
        _extract(HFEncoder(tiny_hubert_dir, layers=[1]), tiny_corpus, cache_dir)
    # The same layer spelled differently is the same cache.
    summary = _extract(HFEncoder(tiny_hubert_dir, layers=2), tiny_corpus, cache_dir)
    assert summary.num_extracted == 0


def test_other_settings_are_a_cache_mismatch_until_overwrite(tiny_corpus, tmp_path):
    cache_dir = tmp_path / "cache"
    _extract(FbankEncoder(n_mels=80), tiny_corpus, cache_dir)
    with pytest.raises(CacheMismatchError) as error:
        _extract(FbankEncoder(n_mels=40), tiny_corpus, cache_dir)
    message = str(error.value)
    assert "n_mels: cache=80, encoder=40" in message
    assert "output_dim: cache=160, encoder=80" in message
    assert str(cache_dir) in message
    assert FeatureCache(cache_dir).feature_dim == 160  # untouched

    summary = _extract(FbankEncoder(n_mels=40), tiny_corpus, cache_dir, overwrite=True)
    assert summary.num_extracted == 4
    cache = FeatureCache(cache_dir)
    assert cache.feature_dim == 80
    assert cache.fingerprint["n_mels"] == 40


def test_features_without_fingerprint_are_refused(tiny_corpus, tmp_path):
    cache_dir = tmp_path / "cache"
    _extract(FbankEncoder(), tiny_corpus, cache_dir)
    (cache_dir / "fingerprint.json").unlink()
    with pytest.raises(CacheMismatchError, match="no fingerprint.json"):
        _extract(FbankEncoder(), tiny_corpus, cache_dir)


def test_ids_are_deduplicated_across_csvs(tiny_corpus, tmp_path):
    rows = tiny_corpus.csv_path.read_text().splitlines()
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("\n".join(rows[:4]) + "\n")  # header + 3 rows
    test.write_text("\n".join([rows[0]] + rows[3:]) + "\n")  # header + 2 rows
    summary = run_feature_extraction(
        FbankEncoder(),
        [train, test, tiny_corpus.csv_path],
        tmp_path / "cache",
        data_root=tiny_corpus.data_root,
        progress=False,
    )
    assert (summary.num_extracted, summary.num_skipped) == (4, 0)

    clash = tmp_path / "clash.csv"
    clash.write_text(f"{rows[0]}\nspk1_utt1,1.0,$data_root/wavs/spk2_utt1.wav,neu\n")
    with pytest.raises(ValueError, match="spk1_utt1.*clash.csv"):
        run_feature_extraction(
            FbankEncoder(),
            [tiny_corpus.csv_path, clash],
            tmp_path / "cache",
            data_root=tiny_corpus.data_root,
            progress=False,
        )


def test_manifest_errors_name_the_csv(tiny_corpus, tmp_path):
    no_wav = tmp_path / "no_wav.csv"
    no_wav.write_text("ID,duration\nu1,1.0\n")
    with pytest.raises(ValueError, match="no_wav.csv.*'wav'"):
        run_feature_extraction(FbankEncoder(), no_wav, tmp_path / "c1", progress=False)
    bad_id = tmp_path / "bad_id.csv"
    bad_id.write_text("ID,duration,wav\na/b,1.0,x.wav\n")
    with pytest.raises(ValueError, match="bad_id.csv.*'a/b'"):
        run_feature_extraction(FbankEncoder(), bad_id, tmp_path / "c2", progress=False)


def test_unreadable_and_too_short_audio_name_the_file(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", {"ok": (16000, 0.5, 1, "PCM_16")})
    with open(corpus.csv_path, "a") as f:
        f.write("gone,0.4,$data_root/wavs/gone.wav,neu\n")
    with pytest.raises(AudioError, match="gone.wav"):
        _extract(FbankEncoder(), corpus, tmp_path / "cache")

    short = make_tiny_corpus(tmp_path / "short", {"tiny": (16000, 0.005, 1, "PCM_16")})
    with pytest.raises(AudioError, match="tiny.*tiny.wav.*too short"):
        _extract(FbankEncoder(stack=4), short, tmp_path / "cache2")


def test_non_finite_features_are_refused(tiny_corpus, tmp_path):
    class Loud(FbankEncoder):
        def encode(self, wavs, lens):
            return super().encode(wavs, lens) * 1e5  # beyond the float16 range

    with pytest.raises(ValueError, match="spk1_utt1.*not finite"):
        _extract(Loud(normalize=False), tiny_corpus, tmp_path / "cache")


def test_feature_cache_errors(tiny_corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="index.csv|fingerprint.json"):
        FeatureCache(tmp_path / "nothing")
    cache = extract_features(
        FbankEncoder(),
        tiny_corpus.csv_path,
        tmp_path / "cache",
        data_root=tiny_corpus.data_root,
        progress=False,
    )
    with pytest.raises(KeyError, match="'unknown_utt' is not in the feature cache"):
        cache.load("unknown_utt")
    with pytest.raises(KeyError, match="unknown_utt"):
        cache.num_frames("unknown_utt")
    assert "spk1_utt1" in cache and "unknown_utt" not in cache


def test_batches_are_length_sorted_and_bounded():
    durations = [1.0, 5.0, 2.0, 2.5, 0.5, 9.0]
    batches = features._duration_batches(durations, batch_seconds=6.0)
    assert batches == [[5], [1], [3, 2], [0, 4]]
    for batch in batches:
        longest = max(durations[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 6.0
    assert sorted(i for batch in batches for i in batch) == list(range(6))


# ---------------------------------------------------------------- recipe entry


def test_prepare_features_as_the_recipe_calls_it(
    tiny_corpus, tiny_hubert_dir, tmp_path
):
    cache = prepare_features(
        encoder_hparams=str(RECIPE_ENCODERS / "hubert_large.yaml"),
        encoder_overrides={"encoder_source": tiny_hubert_dir},
        csv_files=[str(tiny_corpus.csv_path)],
        data_root=str(tiny_corpus.data_root),
        cache_dir=str(tmp_path / "features_hubert_large"),
        batch_seconds=120,
        device="cpu",
        progress=False,
    )
    assert sorted(cache.ids) == sorted(tiny_corpus.durations)
    assert cache.feature_dim == 32
    assert cache.fingerprint["layers"] == [2]


# ---------------------------------------------------------------- CLI


def test_cli_fbank(tiny_corpus, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    args = [
        "--encoder_hparams",
        str(RECIPE_ENCODERS / "fbank.yaml"),
        "--csv",
        str(tiny_corpus.csv_path),
        "--data_root",
        str(tiny_corpus.data_root),
        "--cache_dir",
        str(cache_dir),
        "--no_progress",
    ]
    assert main(args) == 0
    assert "Extracted 4 utterance(s), skipped 0" in capsys.readouterr().out
    assert main(args) == 0
    assert "Extracted 0 utterance(s), skipped 4" in capsys.readouterr().out
    assert FeatureCache(cache_dir).feature_dim == 160
    with pytest.raises(CacheMismatchError):
        main(args + ["--overrides", "{encoder_n_mels: 40}"])
    assert main(args + ["--overrides", "{encoder_n_mels: 40}", "--overwrite"]) == 0
    assert FeatureCache(cache_dir).feature_dim == 80


def test_cli_hubert_with_source_override(
    tiny_corpus, tiny_hubert_dir, tmp_path, capsys
):
    cache_dir = tmp_path / "cache"
    main(
        [
            "--encoder_hparams",
            str(RECIPE_ENCODERS / "hubert_large.yaml"),
            "--csv",
            str(tiny_corpus.csv_path),
            "--data_root",
            str(tiny_corpus.data_root),
            "--cache_dir",
            str(cache_dir),
            "--overrides",
            f"{{encoder_source: {tiny_hubert_dir}}}",
            "--device",
            "cpu",
            "--batch_seconds",
            "2",
            "--no_progress",
        ]
    )
    assert "Extracted 4 utterance(s)" in capsys.readouterr().out
    cache = FeatureCache(cache_dir)
    assert cache.feature_dim == 32
    assert cache.fingerprint["source"] == tiny_hubert_dir
    assert os.path.isfile(cache_dir / "index.csv")
