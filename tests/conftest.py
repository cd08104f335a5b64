"""Shared pytest fixtures.

* ``tiny_hubert_dir``: a tiny random HuBERT (layer-norm feature extractor, pre-LN
  transformer, like HuBERT-large) saved with ``save_pretrained`` together with a
  ``preprocessor_config.json`` (``do_normalize=True``), so that tests load it through
  the same ``from_pretrained`` path as a real checkpoint.
* ``tiny_hubert_group_dir``: the same with a group-norm feature extractor and
  post-LN transformer (like HuBERT-base), ``do_normalize=False``.
* ``tiny_corpus``: a few short wavs in several formats and rates plus a SpeechBrain
  CSV manifest whose wav paths use ``$data_root``.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TINY_HUBERT_SETTINGS = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    # Three small convolutions with a total stride of 320 samples: 50 Hz at 16 kHz.
    conv_dim=(8, 8, 8),
    conv_kernel=(10, 8, 4),
    conv_stride=(5, 8, 8),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
"""Settings of the tiny HuBERT test models (frame rate 50 Hz, 32-d, 3 hidden states)."""


def save_tiny_ssl_model(
    model_dir, config_class, model_class, feat_extract_norm, do_normalize, **extra
):
    """Saves a random tiny SSL model and its feature-extractor config to ``model_dir``.

    ``config_class``/``model_class`` are e.g. ``HubertConfig``/``HubertModel``; a
    layer-norm feature extractor comes with a pre-LN transformer (as in the large
    models), a group-norm one with a post-LN transformer (as in the base models).
    """
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    with_mask = feat_extract_norm == "layer"
    config = config_class(
        feat_extract_norm=feat_extract_norm,
        do_stable_layer_norm=with_mask,
        **TINY_HUBERT_SETTINGS,
        **extra,
    )
    with torch.random.fork_rng():  # seeds the test model's weights only
        torch.manual_seed(0)
        model = model_class(config)
    model.save_pretrained(model_dir)
    Wav2Vec2FeatureExtractor(
        do_normalize=do_normalize, return_attention_mask=with_mask
    ).save_pretrained(model_dir)
    return str(model_dir)


def iemocap_cross_validate():
    """The IEMOCAP recipe's ``cross_validate.py``, imported as ``cross_validate`` (the
    name its own imports give it; imported once per test session)."""
    import sys

    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "IEMOCAP")
    sys.path.insert(0, recipe)
    try:
        import cross_validate
    finally:
        sys.path.remove(recipe)
    return cross_validate


def load_module(path, name):
    """Imports the Python file ``path`` as a module called ``name`` (a recipe or tool
    script that is not a package module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_tiny_whisper(model_dir):
    """Saves a random tiny Whisper (16-d, 2 encoder layers, 80 Mel bins, 30-s
    windows) and its feature extractor to ``model_dir``; returns ``model_dir``."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    config = WhisperConfig(
        d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        num_mel_bins=80, max_source_positions=1500, vocab_size=100, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )  # fmt: skip
    with torch.random.fork_rng():  # seeds the test model's weights only
        torch.manual_seed(0)
        WhisperModel(config).save_pretrained(model_dir)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def tiny_hubert_dir(tmp_path_factory):
    """A saved tiny HuBERT with a layer-norm feature extractor (batched with a mask)."""
    from transformers import HubertConfig, HubertModel

    return save_tiny_ssl_model(
        tmp_path_factory.mktemp("tiny_hubert"),
        HubertConfig,
        HubertModel,
        feat_extract_norm="layer",
        do_normalize=True,
    )


@pytest.fixture(scope="session")
def tiny_hubert_group_dir(tmp_path_factory):
    """A saved tiny HuBERT with a group-norm feature extractor (one by one)."""
    from transformers import HubertConfig, HubertModel

    return save_tiny_ssl_model(
        tmp_path_factory.mktemp("tiny_hubert_group"),
        HubertConfig,
        HubertModel,
        feat_extract_norm="group",
        do_normalize=False,
    )


@dataclass
class TinyCorpus:
    """A tiny corpus on disk.

    Attributes
    ----------
    data_root : Path
        Folder holding the wavs (the value of ``$data_root``).
    csv_path : Path
        SpeechBrain CSV with columns ID, duration, wav, emo.
    durations : dict
        ID -> duration in seconds (exact).
    """

    data_root: Path
    csv_path: Path
    durations: dict

    def samples_at(self, utt_id, sample_rate=16000):
        """Number of samples of ``utt_id`` at ``sample_rate`` (exact for the fixture)."""
        return round(self.durations[utt_id] * sample_rate)


# ID -> (sample rate, duration s, channels, soundfile subtype)
TINY_CORPUS_FILES = {
    "spk1_utt1": (16000, 1.0, 1, "PCM_16"),
    "spk1_utt2": (8000, 0.75, 2, "PCM_24"),
    "spk2_utt1": (44100, 0.5, 1, "FLOAT"),
    "spk2_utt2": (16000, 0.3, 1, "PCM_16"),
}


def write_wav(path, sample_rate, duration, channels=1, subtype="PCM_16", seed=0):
    """Writes a noisy tone of ``duration`` s; returns the samples [frames, channels]."""
    rng = np.random.default_rng(seed)
    num = round(duration * sample_rate)
    t = np.arange(num) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(num)
    data = np.stack([tone * (c + 1) / channels for c in range(channels)], axis=1)
    sf.write(path, data, sample_rate, subtype=subtype)
    return data


def make_tiny_corpus(root, files=None):
    """Writes the wavs of ``files`` (default TINY_CORPUS_FILES) and ``all.csv``."""
    files = TINY_CORPUS_FILES if files is None else files
    root = Path(root)
    wav_dir = root / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    csv_path = root / "all.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration", "wav", "emo"])
        for seed, (utt_id, (rate, duration, channels, subtype)) in enumerate(
            files.items()
        ):
            write_wav(
                wav_dir / f"{utt_id}.wav", rate, duration, channels, subtype, seed
            )
            writer.writerow([utt_id, duration, f"$data_root/wavs/{utt_id}.wav", "neu"])
    durations = {utt_id: spec[1] for utt_id, spec in files.items()}
    return TinyCorpus(root, csv_path, durations)


@pytest.fixture
def tiny_corpus(tmp_path):
    """Four short wavs (16 kHz, 8 kHz stereo 24-bit, 44.1 kHz float) and all.csv."""
    return make_tiny_corpus(tmp_path / "corpus")
