"""Tests of the frozen encoders (ser_lib.encoders)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_HUBERT_SETTINGS, save_tiny_ssl_model
from speechbrain.lobes.features import Fbank
from transformers import (
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from ser_lib.encoders import (
    FbankEncoder,
    HFEncoder,
    absolute_lengths,
    load_encoder,
    split_hidden_states,
)

RECIPE_ENCODERS = (
    Path(__file__).resolve().parents[1] / "recipes/IEMOCAP/hparams/encoder"
)
NUM_STATES = TINY_HUBERT_SETTINGS["num_hidden_layers"] + 1


def _wavs(lengths, seed=0):
    """A zero-padded batch of random waveforms [B, S] and relative lengths [B]."""
    gen = torch.Generator().manual_seed(seed)
    max_len = max(lengths)
    wavs = torch.zeros(len(lengths), max_len)
    for i, length in enumerate(lengths):
        wavs[i, :length] = 0.1 * torch.randn(length, generator=gen)
    return wavs, torch.tensor(lengths, dtype=torch.float) / max_len


# ---------------------------------------------------------------- HFEncoder


def test_hf_encoder_loads_through_from_pretrained(tiny_hubert_dir):
    enc = HFEncoder(tiny_hubert_dir)
    assert isinstance(enc.model, HubertModel)
    assert enc.output_dim == TINY_HUBERT_SETTINGS["hidden_size"]
    assert enc.sample_rate == 16000
    assert enc.frame_rate == 50.0
    assert enc.layers == [NUM_STATES - 1]
    assert enc.do_normalize is True  # read from preprocessor_config.json
    assert enc.use_attention_mask is True
    assert HFEncoder(tiny_hubert_dir, do_normalize=False).do_normalize is False


def test_hf_encoder_group_norm_reads_its_settings(tiny_hubert_group_dir):
    enc = HFEncoder(tiny_hubert_group_dir)
    assert enc.do_normalize is False
    assert enc.use_attention_mask is False


def test_hf_encoder_without_preprocessor_config(tiny_hubert_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_hubert_dir, model_dir)
    (model_dir / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match="preprocessor_config.json"):
        HFEncoder(model_dir)
    assert HFEncoder(model_dir, do_normalize=True).do_normalize is True


def test_hf_encoder_sample_rate_must_match_the_model(tiny_hubert_dir):
    with pytest.raises(ValueError, match="16000 Hz"):
        HFEncoder(tiny_hubert_dir, sample_rate=8000)


@pytest.mark.parametrize("bad", [NUM_STATES, -NUM_STATES - 1])
def test_hf_encoder_rejects_out_of_range_layers(tiny_hubert_dir, bad):
    with pytest.raises(ValueError, match=f"Layer index {bad}"):
        HFEncoder(tiny_hubert_dir, layers=[bad])


def test_hf_encoder_is_frozen(tiny_hubert_dir):
    enc = HFEncoder(tiny_hubert_dir)
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training and not enc.model.training
    feats, _ = enc(*_wavs([4000]))
    assert not feats.requires_grad


@pytest.mark.parametrize("length", [400, 719, 720, 1040, 4000, 16000, 16321])
def test_hf_num_frames_matches_the_model(tiny_hubert_dir, length):
    enc = HFEncoder(tiny_hubert_dir)
    feats, feat_lens = enc(*_wavs([length]))
    assert feats.shape == (1, enc.num_frames(length), enc.output_dim)
    assert feat_lens.tolist() == [1.0]
    expected = enc.model._get_feat_extract_output_lengths(torch.tensor(length))
    assert enc.num_frames(length) == int(expected)


def test_hf_num_frames_of_a_too_short_input(tiny_hubert_dir):
    enc = HFEncoder(tiny_hubert_dir)
    assert enc.num_frames(399) == 1  # exactly one frame: 10 -> 8 -> 4 kernel chain
    assert enc.num_frames(9) == 0
    with pytest.raises(ValueError, match="needs longer inputs"):
        enc(*_wavs([16000, 9]))


def test_hf_shapes_and_relative_lengths(tiny_hubert_dir):
    enc = HFEncoder(tiny_hubert_dir)
    lengths = [16000, 8000, 4000]
    feats, feat_lens = enc(*_wavs(lengths))
    counts = [enc.num_frames(n) for n in lengths]
    assert counts == [50, 25, 12]
    assert feats.shape == (3, 50, 32)
    assert torch.allclose(feat_lens, torch.tensor(counts) / 50)
    assert feats[2, 12:].abs().max() == 0  # padded frames are zero
    assert feats[2, :12].abs().max() > 0


@pytest.mark.parametrize("layers", [0, 1, -1, [0, 2], [-2, -1]])
def test_hf_layer_selection_equals_manual_hidden_states(tiny_hubert_dir, layers):
    enc = HFEncoder(tiny_hubert_dir, layers=layers, do_normalize=False)
    wavs, wav_lens = _wavs([6400])
    feats, _ = enc(wavs, wav_lens)
    model = HubertModel.from_pretrained(tiny_hubert_dir).eval()
    with torch.no_grad():
        outputs = model(wavs, output_hidden_states=True)
    states = list(outputs.hidden_states[:-1]) + [outputs.last_hidden_state]
    indices = [layers] if isinstance(layers, int) else layers
    expected = torch.stack([states[i] for i in indices]).mean(dim=0)
    assert torch.allclose(feats, expected, atol=1e-6)


def test_hf_last_layer_includes_the_final_layer_norm(tiny_hubert_dir):
    # Pre-LN models: layer -1 must be last_hidden_state (after the final layer norm).
    enc = HFEncoder(tiny_hubert_dir, do_normalize=False)
    wavs, wav_lens = _wavs([6400])
    feats, _ = enc(wavs, wav_lens)
    with torch.no_grad():
        expected = enc.model(wavs).last_hidden_state
    assert torch.allclose(feats, expected, atol=1e-6)


def test_hf_layer_averaging_differs_from_single_layers(tiny_hubert_dir):
    wavs, wav_lens = _wavs([6400])
    first, _ = HFEncoder(tiny_hubert_dir, layers=1)(wavs, wav_lens)
    last, _ = HFEncoder(tiny_hubert_dir, layers=2)(wavs, wav_lens)
    both, _ = HFEncoder(tiny_hubert_dir, layers=[1, 2])(wavs, wav_lens)
    assert torch.allclose(both, (first + last) / 2, atol=1e-6)
    assert not torch.allclose(first, last, atol=1e-3)


@pytest.mark.parametrize("fixture", ["tiny_hubert_dir", "tiny_hubert_group_dir"])
def test_hf_batched_equals_one_by_one(fixture, request):
    enc = HFEncoder(request.getfixturevalue(fixture), layers=[1, 2])
    lengths = [16000, 9000, 5000, 3200]
    wavs, _ = _wavs(lengths, seed=1)
    # Extra padding beyond the longest utterance must not matter either.
    padded = torch.nn.functional.pad(wavs, (0, 2000))
    feats, feat_lens = enc(padded, torch.tensor(lengths) / padded.shape[1])
    assert feats.shape[1] == enc.num_frames(16000)
    for i, length in enumerate(lengths):
        alone, _ = enc(wavs[i : i + 1, :length], torch.ones(1))
        count = enc.num_frames(length)
        assert alone.shape[1] == count
        assert torch.allclose(feats[i, :count], alone[0], atol=1e-5), fixture
        if count < feats.shape[1]:
            assert feats[i, count:].abs().max() == 0


@pytest.mark.parametrize(
    "config_class, model_class, extra",
    [
        (Wav2Vec2Config, Wav2Vec2Model, {}),
        (WavLMConfig, WavLMModel, {"num_buckets": 16, "max_bucket_distance": 100}),
    ],
)
@pytest.mark.parametrize("norm", ["layer", "group"])
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
def test_hf_other_model_families(tmp_path, config_class, model_class, extra, norm):
    model_dir = save_tiny_ssl_model(
        tmp_path, config_class, model_class, norm, do_normalize=True, **extra
    )
    enc = HFEncoder(model_dir, layers=[1, -1])
    assert isinstance(enc.model, model_class)
    assert enc.use_attention_mask == (norm == "layer")
    lengths = [12000, 5000]
    wavs, wav_lens = _wavs(lengths, seed=2)
    feats, _ = enc(wavs, wav_lens)
    assert feats.shape == (2, enc.num_frames(12000), 32)
    alone, _ = enc(wavs[1:, :5000], torch.ones(1))
    assert torch.allclose(feats[1, : enc.num_frames(5000)], alone[0], atol=1e-5)


def test_hf_input_normalisation_uses_valid_samples_only(tiny_hubert_dir):
    enc = HFEncoder(tiny_hubert_dir)  # do_normalize=True
    raw = HFEncoder(tiny_hubert_dir, do_normalize=False)
    wavs, wav_lens = _wavs([8000, 4800])
    shifted = wavs * 3.0 + 0.2 * (wavs != 0)  # scale and offset the valid samples
    feats, _ = enc(wavs, wav_lens)
    feats_shifted, _ = enc(shifted, wav_lens)
    assert torch.allclose(feats, feats_shifted, atol=1e-4)
    raw_feats, _ = raw(wavs, wav_lens)
    raw_shifted, _ = raw(shifted, wav_lens)
    assert not torch.allclose(raw_feats, raw_shifted, atol=1e-2)


def test_hf_fingerprint(tiny_hubert_dir):
    fingerprint = HFEncoder(tiny_hubert_dir, layers=[-2, -1]).fingerprint()
    json.dumps(fingerprint)  # serialisable
    assert fingerprint["class"] == "HFEncoder"
    assert fingerprint["source"] == str(tiny_hubert_dir)
    assert fingerprint["layers"] == [1, 2]
    assert fingerprint["model_type"] == "hubert"
    assert fingerprint["hidden_size"] == 32
    assert fingerprint["sample_rate"] == 16000
    assert fingerprint["do_normalize"] is True
    other = HFEncoder(tiny_hubert_dir, layers=[1]).fingerprint()
    assert other != fingerprint


# ---------------------------------------------------------------- FbankEncoder


def test_fbank_shapes_and_frame_rate():
    enc = FbankEncoder(n_mels=80, stack=2)
    assert enc.output_dim == 160
    assert enc.frame_rate == 50.0
    assert enc.num_frames(3 * 16000) == 150
    lengths = [16000, 12345, 4000]
    feats, feat_lens = enc(*_wavs(lengths))
    counts = [enc.num_frames(n) for n in lengths]
    assert counts == [50, 39, 13]
    assert feats.shape == (3, 50, 160)
    assert torch.allclose(feat_lens, torch.tensor(counts) / 50)
    assert feats[2, 13:].abs().max() == 0


@pytest.mark.parametrize("length", [160, 1000, 12345, 16000, 16160])
def test_fbank_num_frames_matches_output(length):
    enc = FbankEncoder(n_mels=40, stack=2, normalize=False)
    feats, _ = enc(*_wavs([length]))
    assert feats.shape[1] == enc.num_frames(length)
    assert enc.num_frames(length) == (length // 160 + 1) // 2


def test_fbank_stacking_of_raw_filterbanks():
    enc = FbankEncoder(n_mels=40, stack=3, normalize=False)
    wavs, wav_lens = _wavs([8000])
    feats, _ = enc(wavs, wav_lens)
    fbanks = Fbank(n_mels=40)(wavs)[0]  # [51, 40]
    assert feats.shape == (1, 17, 120)
    assert torch.allclose(feats[0, 1, :40], fbanks[3])
    assert torch.allclose(feats[0, 1, 80:], fbanks[5])


@pytest.mark.parametrize("normalize", [True, False])
def test_fbank_padding_invariance(normalize):
    enc = FbankEncoder(normalize=normalize)
    lengths = [16000, 7000, 2500]
    wavs, _ = _wavs(lengths, seed=3)
    padded = torch.nn.functional.pad(wavs, (0, 1600))
    feats, _ = enc(padded, torch.tensor(lengths) / padded.shape[1])
    for i, length in enumerate(lengths):
        alone, _ = enc(wavs[i : i + 1, :length], torch.ones(1))
        count = enc.num_frames(length)
        assert torch.allclose(feats[i, :count], alone[0], atol=1e-5)


def test_fbank_normalisation_over_valid_frames():
    enc = FbankEncoder(n_mels=20)
    feats, _ = enc(*_wavs([16000, 6400]))
    short = feats[1, : enc.num_frames(6400)]
    assert torch.allclose(short.mean(dim=0), torch.zeros(40), atol=1e-4)
    assert torch.allclose(short.std(dim=0, unbiased=False), torch.ones(40), atol=1e-3)


def test_fbank_is_frozen_and_fingerprinted():
    enc = FbankEncoder(n_mels=40)
    enc.train()
    assert not enc.training
    assert all(not p.requires_grad for p in enc.parameters())
    fingerprint = enc.fingerprint()
    assert fingerprint["class"] == "FbankEncoder"
    assert fingerprint["n_mels"] == 40 and fingerprint["stack"] == 2
    assert FbankEncoder(n_mels=40, normalize=False).fingerprint() != fingerprint


# ---------------------------------------------------------------- helpers


def test_absolute_lengths_round_trip():
    lengths = torch.tensor([480000, 479999, 1234, 1])
    rel = lengths.float() / 480000
    assert absolute_lengths(rel, 480000).tolist() == lengths.tolist()


def test_load_encoder_from_recipe_files(tiny_hubert_dir):
    fbank = load_encoder(RECIPE_ENCODERS / "fbank.yaml")
    assert isinstance(fbank, FbankEncoder)
    assert fbank.output_dim == 160 and fbank.frame_rate == 50.0
    hubert = load_encoder(
        RECIPE_ENCODERS / "hubert_large.yaml",
        {"encoder_source": tiny_hubert_dir},
    )
    assert isinstance(hubert, HFEncoder)
    assert hubert.layers == [NUM_STATES - 1]
    assert hubert.do_normalize is True
    averaged = load_encoder(
        RECIPE_ENCODERS / "hubert_large.yaml",
        f"{{encoder_source: {tiny_hubert_dir}, encoder_layers: [0, -1]}}",
    )
    assert averaged.layers == [0, NUM_STATES - 1]


def test_load_encoder_requires_an_encoder_key(tmp_path):
    path = tmp_path / "no_encoder.yaml"
    path.write_text("n_mels: 40\n")
    with pytest.raises(KeyError, match="no 'encoder' key"):
        load_encoder(path)


def test_hf_encoder_all_layers_layout(tiny_hubert_dir):
    wavs, lens = _wavs([16000, 9000])
    enc = HFEncoder(tiny_hubert_dir, layers="all")
    hidden = TINY_HUBERT_SETTINGS["hidden_size"]
    assert enc.output_dim == NUM_STATES * hidden
    fingerprint = enc.fingerprint()
    assert fingerprint["layers"] == "all"
    assert (fingerprint["num_states"], fingerprint["state_dim"]) == (NUM_STATES, hidden)
    states = split_hidden_states(enc(wavs, lens)[0], NUM_STATES)
    for index in range(NUM_STATES):
        single = HFEncoder(tiny_hubert_dir, layers=index)(wavs, lens)[0]
        torch.testing.assert_close(states[:, :, index], single)
