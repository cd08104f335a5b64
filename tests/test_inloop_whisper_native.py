"""The trainable Whisper encoder's native-length input mode
(ser_lib.inloop.encoder.TrainableWhisperEncoder, input_mode="native"): the same
features as the frozen extractor's native mode, gradients, batch independence,
and the pad30 mode unchanged.
"""

import pytest
import torch
from conftest import save_tiny_whisper

from ser_lib.encoders.whisper import WhisperEncoder
from ser_lib.inloop.encoder import TrainableWhisperEncoder

# Lengths in samples: whole frames, a partial frame, shorter than one frame's hop.
LENGTHS = [16000, 9001, 4321, 200]


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    """A random tiny Whisper written with save_pretrained (30-s windows)."""
    return save_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper_native"))


def _batch(lengths, seed=0):
    """A zero-padded batch of random waveforms and its relative lengths."""
    generator = torch.Generator().manual_seed(seed)
    wavs = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        wavs[row, :length] = torch.randn(length, generator=generator) * 0.1
    return wavs, torch.tensor(lengths, dtype=torch.float) / max(lengths)


@pytest.mark.parametrize("layers", [[-1], [0, 1]])
def test_native_equals_the_frozen_native_features(whisper_dir, layers):
    trainable = TrainableWhisperEncoder(
        whisper_dir, layers=layers, input_mode="native"
    ).eval()
    frozen = WhisperEncoder(whisper_dir, layers=layers, input_mode="native")
    wavs, lens = _batch(LENGTHS)
    with torch.no_grad():
        feats, feat_lens = trainable(wavs, lens)
    expected, expected_lens = frozen(wavs, lens)
    assert [trainable.num_frames(n) for n in LENGTHS] == [
        frozen.num_frames(n) for n in LENGTHS
    ]
    torch.testing.assert_close(feat_lens, expected_lens)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)


def test_native_batch_equals_one_at_a_time(whisper_dir):
    enc = TrainableWhisperEncoder(whisper_dir, input_mode="native").eval()
    wavs, lens = _batch(LENGTHS, seed=1)
    with torch.no_grad():
        batch, _ = enc(wavs, lens)
        for row, length in enumerate(LENGTHS):
            single, _ = enc(wavs[row : row + 1, :length], torch.ones(1))
            frames = enc.num_frames(length)
            assert single.shape[1] == frames
            torch.testing.assert_close(
                batch[row, :frames], single[0], rtol=1e-5, atol=1e-5
            )
            assert torch.all(batch[row, frames:] == 0)  # padding masked


def test_native_gradients_reach_the_transformer_not_the_frozen_cnn(whisper_dir):
    enc = TrainableWhisperEncoder(whisper_dir, input_mode="native").train()
    wavs, lens = _batch(LENGTHS[:3], seed=2)
    feats, _ = enc(wavs, lens)
    feats.pow(2).sum().backward()
    for name, param in enc.model.layers.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert enc.model.layer_norm.weight.grad.abs().sum() > 0
    assert enc.model.conv1.weight.grad is None  # freeze_cnn (default)
    assert enc.model.embed_positions.weight.grad is None


def test_native_mode_uses_the_real_length(whisper_dir):
    """The transformer sees the utterance's frames, not a 1500-frame window."""
    widths = []
    for mode in ("native", "pad30"):
        enc = TrainableWhisperEncoder(whisper_dir, input_mode=mode).eval()
        handle = enc.model.layers[0].register_forward_pre_hook(
            lambda module, args: widths.append(args[0].shape[1])
        )
        with torch.no_grad():
            enc(*_batch([9001, 4321]))
        handle.remove()
    assert widths == [enc.num_frames(9001), 1500]


def test_native_stand_in_mask_replaces_the_input_frames(whisper_dir):
    enc = TrainableWhisperEncoder(whisper_dir, input_mode="native").eval()
    with torch.no_grad():
        enc.mask_embedding.fill_(0.25)
    captured = []
    enc.model.conv1.register_forward_pre_hook(
        lambda module, args: captured.append(args[0].detach().clone())
    )
    wavs, lens = _batch([16000])
    mask = torch.zeros(1, enc.num_frames(16000), dtype=torch.bool)
    mask[0, 5:8] = True
    with torch.no_grad():
        plain, _ = enc(wavs, lens)
        masked, _ = enc(wavs, lens, mask_time_indices=mask)
    mel_plain, mel_masked = captured
    assert torch.all(mel_masked[0, :, 10:16] == 0.25)
    assert torch.equal(mel_masked[0, :, :10], mel_plain[0, :, :10])
    assert torch.equal(mel_masked[0, :, 16:], mel_plain[0, :, 16:])
    assert not torch.allclose(plain, masked)


def test_unknown_input_mode_is_an_error(whisper_dir):
    with pytest.raises(ValueError, match="input_mode"):
        TrainableWhisperEncoder(whisper_dir, input_mode="native30")
