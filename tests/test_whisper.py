"""Tests of the Whisper encoder (ser_lib.encoders.WhisperEncoder).

A tiny random Whisper (1-s windows) is saved with ``save_pretrained`` and loaded
through the real ``from_pretrained`` path; with ``../shared/models/whisper-base``
present, the real model is checked on EmoDB's ``03a01Fa.wav`` against a direct
``transformers`` computation (``pad30``) and an independent reference forward
(``native``).
"""

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from shared_material import EMODB_DIR, WHISPER_BASE_DIR, require
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from ser_lib.encoders import (
    WhisperEncoder,
    load_encoder,
    split_hidden_states,
)
from ser_lib.features import CacheMismatchError, extract_features

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY = dict(
    d_model=16,
    encoder_layers=2,
    encoder_attention_heads=2,
    encoder_ffn_dim=32,
    decoder_layers=1,
    decoder_attention_heads=2,
    decoder_ffn_dim=32,
    num_mel_bins=80,
    max_source_positions=50,  # 1-s windows: 100 log-Mel frames
    max_target_positions=8,
    vocab_size=16,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    decoder_start_token_id=3,
)
WINDOW = 16000  # samples per window of the tiny model
EMODB_WAVS = ("03a01Fa.wav", "03a01Nc.wav", "08a01Ab.wav")


@pytest.fixture(scope="module")
def tiny_whisper_dir(tmp_path_factory):
    """A random tiny Whisper and its feature extractor (1-s chunks), saved."""
    model_dir = tmp_path_factory.mktemp("tiny_whisper")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = WhisperModel(WhisperConfig(**TINY))
    model.save_pretrained(model_dir)
    WhisperFeatureExtractor(chunk_length=1).save_pretrained(model_dir)
    return model_dir


def _waves(lengths, seed=0):
    """Random waveforms (list of [samples] tensors)."""
    gen = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=gen) for n in lengths]


def _padded(waves):
    """A zero-padded batch [B, S] and relative lengths [B]."""
    max_len = max(len(w) for w in waves)
    batch = torch.stack([F.pad(w, (0, max_len - len(w))) for w in waves])
    lens = torch.tensor([len(w) / max_len for w in waves])
    return batch, lens


def _one_by_one(enc, waves):
    return [enc(w[None], torch.ones(1))[0][0] for w in waves]


def reference_states(model_dir, wav, window_samples):
    """An independent Whisper encoder forward on one unpadded waveform.

    Weights read straight from ``model.safetensors``; the log-Mel spectrogram of the
    waveform padded with one window of zeros (OpenAI's ``log_mel_spectrogram``),
    its first ``2 * ceil(n / 320)`` frames; plain-torch convolutions, attention and
    layer norms. Returns every hidden state ([frames, d_model] each), the last
    after the final layer norm.
    """
    raw = load_file(str(Path(model_dir) / "model.safetensors"))
    prefix = "model.encoder." if "model.encoder.conv1.weight" in raw else "encoder."
    w = {k[len(prefix) :]: v.float() for k, v in raw.items() if k.startswith(prefix)}
    extractor = WhisperFeatureExtractor.from_pretrained(model_dir)
    n_fft, hop = extractor.n_fft, extractor.hop_length
    frames = math.ceil(len(wav) / (2 * hop))
    audio = F.pad(wav.double(), (0, window_samples))
    stft = torch.stft(
        audio, n_fft, hop, window=torch.hann_window(n_fft).double(), return_complex=True
    )
    power = stft[..., :-1].abs() ** 2
    mel = torch.from_numpy(extractor.mel_filters).double().T @ power
    log = mel.clamp(min=1e-10).log10()
    log = (torch.maximum(log, log.max() - 8.0) + 4.0) / 4.0
    x = log[:, : 2 * frames].float()[None]
    x = F.gelu(F.conv1d(x, w["conv1.weight"], w["conv1.bias"], padding=1))
    x = F.gelu(F.conv1d(x, w["conv2.weight"], w["conv2.bias"], stride=2, padding=1))
    x = x[0].T + w["embed_positions.weight"][:frames]
    dim = x.shape[1]
    heads = (
        TINY["encoder_attention_heads"] if dim == TINY["d_model"] else dim // 64
    )  # whisper-base: 8 heads of 64

    def norm(h, name):
        return F.layer_norm(h, (dim,), w[f"{name}.weight"], w[f"{name}.bias"])

    def linear(h, name):
        out = h @ w[f"{name}.weight"].T
        bias = w.get(f"{name}.bias")
        return out if bias is None else out + bias

    states = [x]
    num_layers = 1 + max(int(k.split(".")[1]) for k in w if k.startswith("layers."))
    for i in range(num_layers):
        p = f"layers.{i}."
        h = norm(x, p + "self_attn_layer_norm")
        q, k, v = (
            linear(h, p + f"self_attn.{name}_proj").reshape(frames, heads, -1)
            for name in "qkv"
        )
        scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(dim // heads)
        att = torch.einsum("hts,shd->thd", scores.softmax(-1), v).reshape(frames, dim)
        x = x + linear(att, p + "self_attn.out_proj")
        h = norm(x, p + "final_layer_norm")
        x = x + linear(F.gelu(linear(h, p + "fc1")), p + "fc2")
        states.append(x)
    states[-1] = norm(x, "layer_norm")
    return states


# ---------------------------------------------------------------- tiny model


def test_loads_through_from_pretrained(tiny_whisper_dir):
    enc = WhisperEncoder(tiny_whisper_dir)
    assert enc.output_dim == TINY["d_model"]
    assert enc.num_states == TINY["encoder_layers"] + 1
    assert enc.layers == [TINY["encoder_layers"]]
    assert enc.window_samples == WINDOW
    assert enc.frame_rate == 50.0
    assert [enc.num_frames(n) for n in (1, 320, 321, 16000)] == [1, 1, 2, 50]
    assert not any(p.requires_grad for p in enc.parameters())
    assert not hasattr(enc, "decoder") and not hasattr(enc.encoder, "decoder")


def test_pad30_equals_transformers(tiny_whisper_dir):
    enc = WhisperEncoder(tiny_whisper_dir, layers=[1, 2], input_mode="pad30")
    wav = _waves([9000])[0]
    feats, _ = enc(wav[None], torch.ones(1))
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)
    model = WhisperModel.from_pretrained(tiny_whisper_dir).encoder.eval()
    mel = extractor(wav.numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        out = model(mel["input_features"], output_hidden_states=True)
    expected = (out.hidden_states[1] + out.last_hidden_state)[
        0, : math.ceil(9000 / 320)
    ]
    torch.testing.assert_close(feats[0], expected / 2)


@pytest.mark.parametrize("length", [320, 4321, 12345])
def test_native_equals_reference_forward(tiny_whisper_dir, length):
    enc = WhisperEncoder(tiny_whisper_dir, layers="all", input_mode="native")
    wav = _waves([length], seed=length)[0]
    feats, _ = enc(wav[None], torch.ones(1))
    states = split_hidden_states(feats[0], enc.num_states)
    reference = reference_states(tiny_whisper_dir, wav, WINDOW)
    assert states.shape[0] == math.ceil(length / 320)
    for index, expected in enumerate(reference):
        torch.testing.assert_close(states[:, index], expected, atol=2e-5, rtol=1e-4)


def test_native_log_mel_is_the_pad30_prefix(tiny_whisper_dir):
    enc = WhisperEncoder(tiny_whisper_dir, input_mode="native")
    waves = _waves([5000, 12345])
    full = enc.log_mel(waves, enc.extractor.nb_max_frames)
    short = enc.log_mel(waves, 2 * enc.num_frames(12345))
    torch.testing.assert_close(short, full[:, :, : short.shape[2]])


def test_native_on_a_full_window_equals_pad30(tiny_whisper_dir):
    wav = _waves([WINDOW])[0]
    feats = {
        mode: WhisperEncoder(tiny_whisper_dir, layers="all", input_mode=mode)(
            wav[None], torch.ones(1)
        )[0]
        for mode in ("pad30", "native")
    }
    torch.testing.assert_close(feats["native"], feats["pad30"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["pad30", "native"])
def test_batch_equals_one_at_a_time(tiny_whisper_dir, mode):
    enc = WhisperEncoder(tiny_whisper_dir, layers="all", input_mode=mode)
    waves = _waves([2500, 16000, 700, 40000, 16001])  # windows: 1, 1, 1, 3, 2
    feats, feat_lens = enc(*_padded(waves))
    counts = [enc.num_frames(len(w)) for w in waves]
    assert feats.shape == (5, max(counts), enc.output_dim)
    torch.testing.assert_close(feat_lens, torch.tensor(counts) / max(counts))
    for utt_feats, single, count in zip(
        feats, _one_by_one(enc, waves), counts, strict=True
    ):
        assert single.shape[0] == count
        torch.testing.assert_close(utt_feats[:count], single, atol=1e-5, rtol=1e-4)
        assert not utt_feats[count:].any()


@pytest.mark.parametrize("mode", ["pad30", "native"])
def test_long_utterances_are_consecutive_windows(tiny_whisper_dir, mode):
    enc = WhisperEncoder(tiny_whisper_dir, input_mode=mode)
    wav = _waves([2 * WINDOW + 3000])[0]
    feats = _one_by_one(enc, [wav])[0]
    pieces = _one_by_one(
        enc, [wav[:WINDOW], wav[WINDOW : 2 * WINDOW], wav[2 * WINDOW :]]
    )
    assert feats.shape[0] == 50 + 50 + math.ceil(3000 / 320)
    torch.testing.assert_close(feats, torch.cat(pieces), atol=1e-5, rtol=1e-4)


def test_all_layers_layout(tiny_whisper_dir):
    waves = _waves([7000, 3000])
    batch = _padded(waves)
    all_feats = WhisperEncoder(tiny_whisper_dir, layers="all", input_mode="native")(
        *batch
    )[0]
    assert all_feats.shape[-1] == (TINY["encoder_layers"] + 1) * TINY["d_model"]
    states = split_hidden_states(all_feats, TINY["encoder_layers"] + 1)
    for index in range(TINY["encoder_layers"] + 1):
        single = WhisperEncoder(tiny_whisper_dir, layers=index, input_mode="native")
        torch.testing.assert_close(states[:, :, index], single(*batch)[0])
    average = WhisperEncoder(tiny_whisper_dir, layers=[0, -1], input_mode="native")
    torch.testing.assert_close(
        average(*batch)[0], (states[:, :, 0] + states[:, :, -1]) / 2
    )


def test_fingerprint_names_every_feature_setting(tiny_whisper_dir, tmp_path):
    settings = [
        dict(layers=-1, input_mode="pad30"),
        dict(layers=-1, input_mode="native"),
        dict(layers=1, input_mode="pad30"),
        dict(layers=[1, 2], input_mode="pad30"),
        dict(layers="all", input_mode="pad30"),
    ]
    prints = [WhisperEncoder(tiny_whisper_dir, **s).fingerprint() for s in settings]
    assert len({repr(sorted(p.items())) for p in prints}) == len(settings)
    assert prints[0]["source"] == str(tiny_whisper_dir)
    assert prints[4]["num_states"] == 3 and prints[4]["state_dim"] == TINY["d_model"]

    sf.write(tmp_path / "a.wav", _waves([8000])[0].numpy(), 16000)
    (tmp_path / "all.csv").write_text("ID,duration,wav\na,0.5,$data_root/a.wav\n")
    kwargs = dict(data_root=tmp_path, progress=False)
    cache = extract_features(
        WhisperEncoder(tiny_whisper_dir, input_mode="native"),
        tmp_path / "all.csv",
        tmp_path / "cache",
        **kwargs,
    )
    assert cache.load("a").shape == (25, TINY["d_model"])
    with pytest.raises(CacheMismatchError, match="input_mode"):
        extract_features(
            WhisperEncoder(tiny_whisper_dir, input_mode="pad30"),
            tmp_path / "all.csv",
            tmp_path / "cache",
            **kwargs,
        )


def test_bad_settings_are_refused(tiny_whisper_dir, tmp_path):
    with pytest.raises(ValueError, match="input_mode"):
        WhisperEncoder(tiny_whisper_dir, input_mode="pad")
    with pytest.raises(ValueError, match="out of range"):
        WhisperEncoder(tiny_whisper_dir, layers=3)
    with pytest.raises(ValueError, match="'every'"):
        WhisperEncoder(tiny_whisper_dir, layers="every")
    WhisperModel.from_pretrained(tiny_whisper_dir).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="preprocessor_config.json"):
        WhisperEncoder(tmp_path)


def test_recipe_yaml_needs_a_source(tiny_whisper_dir):
    for recipe in ("IEMOCAP", "EmoDB"):
        path = RECIPES / recipe / "hparams/encoder/whisper_base.yaml"
        with pytest.raises(Exception, match="encoder_source"):
            load_encoder(path)
        enc = load_encoder(
            path, {"encoder_source": str(tiny_whisper_dir), "encoder_layers": 1}
        )
        assert isinstance(enc, WhisperEncoder) and enc.layers == [1]


# ---------------------------------------------------------------- whisper-base


@pytest.fixture(scope="module")
def whisper_base():
    require(WHISPER_BASE_DIR, EMODB_DIR)
    return {
        mode: WhisperEncoder(WHISPER_BASE_DIR, layers="all", input_mode=mode)
        for mode in ("pad30", "native")
    }


def _emodb_wav(name):
    wav, rate = sf.read(EMODB_DIR / "wav" / name, dtype="float32")
    assert rate == 16000
    return torch.from_numpy(wav)


def test_whisper_base_pad30_cache_equals_transformers(whisper_base, tmp_path):
    wav = _emodb_wav("03a01Fa.wav")
    (tmp_path / "all.csv").write_text(
        f"ID,duration,wav\n03a01Fa,{len(wav) / 16000},$data_root/wav/03a01Fa.wav\n"
    )
    encoder = WhisperEncoder(WHISPER_BASE_DIR, layers=-1, input_mode="pad30")
    cache = extract_features(
        encoder,
        tmp_path / "all.csv",
        tmp_path / "cache",
        data_root=EMODB_DIR,
        progress=False,
    )
    cached = torch.from_numpy(np.array(cache.load("03a01Fa"))).float()

    extractor = WhisperFeatureExtractor.from_pretrained(WHISPER_BASE_DIR)
    model = WhisperModel.from_pretrained(WHISPER_BASE_DIR, dtype=torch.float32)
    mel = extractor(wav.numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        direct = model.encoder(mel["input_features"]).last_hidden_state[0]
    frames = math.ceil(len(wav) / 320)
    assert cached.shape == (frames, 512)
    torch.testing.assert_close(cached, direct[:frames], atol=2e-3, rtol=2e-3)
    # ... and the "all" layout holds the same last state in its last block.
    all_states = split_hidden_states(
        whisper_base["pad30"](wav[None], torch.ones(1))[0], 7
    )
    torch.testing.assert_close(
        all_states[0, :, -1], direct[:frames], atol=1e-4, rtol=1e-4
    )


def test_whisper_base_native_equals_reference_forward(whisper_base):
    wav = _emodb_wav("03a01Fa.wav")
    feats, _ = whisper_base["native"](wav[None], torch.ones(1))
    states = split_hidden_states(feats[0], 7)
    reference = reference_states(WHISPER_BASE_DIR, wav, 480000)
    for index, expected in enumerate(reference):
        torch.testing.assert_close(states[:, index], expected, atol=1e-3, rtol=1e-3)
    # Other features than pad30, as the model card says (cosine ~0.92).
    pad30 = split_hidden_states(whisper_base["pad30"](wav[None], torch.ones(1))[0], 7)
    cosine = F.cosine_similarity(states[:, -1], pad30[0, :, -1], dim=-1).mean()
    assert 0.5 < float(cosine) < 0.99


@pytest.mark.parametrize("mode", ["pad30", "native"])
def test_whisper_base_batch_equals_one_at_a_time(whisper_base, mode):
    enc = whisper_base[mode]
    waves = [_emodb_wav(name) for name in EMODB_WAVS]
    feats, _ = enc(*_padded(waves))
    for utt_feats, single in zip(feats, _one_by_one(enc, waves), strict=True):
        torch.testing.assert_close(
            utt_feats[: single.shape[0]], single, atol=1e-3, rtol=1e-3
        )
