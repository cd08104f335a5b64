"""Synthetic corpora for the benchmark: IEMOCAP-like durations, noise wavs, random
features written by the real feature-cache writer.

Authors
 * ser_lib contributors
"""

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.special import ndtri

from ser_lib.data.manifest import MANIFEST_COLUMNS, write_manifest
from ser_lib.encoders import FrozenEncoder
from ser_lib.features import extract_features


def iemocap_like_durations(
    num_utterances=5531, mean_seconds=4.5, sigma=0.6, max_seconds=35.0, seed=0
):
    """Log-normal utterance durations like IEMOCAP's, in random order.

    The durations are the log-normal quantiles at ``(i + 0.5) / n`` (so the sample
    has the requested mean and its tail reaches ``max_seconds`` whatever the seed),
    clipped to ``max_seconds`` and shuffled with ``seed``.

    Arguments
    ---------
    num_utterances : int
        Number of durations (5531 in IEMOCAP's 4-class set).
    mean_seconds : float
        Mean of the log-normal distribution.
    sigma : float
        Standard deviation of the log durations.
    max_seconds : float
        Upper clip.
    seed : int
        Seed of the order.

    Returns
    -------
    numpy.ndarray
        Float64 [num_utterances], seconds.

    Example
    -------
    >>> d = iemocap_like_durations()
    >>> d.shape, round(float(d.mean()), 1), round(float(d.max()), 1)
    ((5531,), 4.5, 35.0)
    """
    if num_utterances < 1 or mean_seconds <= 0 or sigma < 0:
        raise ValueError(
            "iemocap_like_durations: need num_utterances >= 1, mean_seconds > 0 and "
            f"sigma >= 0, got {num_utterances}, {mean_seconds}, {sigma}"
        )
    mu = math.log(mean_seconds) - sigma**2 / 2
    quantiles = (np.arange(num_utterances) + 0.5) / num_utterances
    durations = np.minimum(np.exp(mu + sigma * ndtri(quantiles)), max_seconds)
    return np.random.default_rng(seed).permutation(durations)


class RandomFeatureEncoder(FrozenEncoder):
    """An encoder without weights that outputs random features at a fixed frame rate.

    Fills a feature cache of the right size and dimension through the real
    extraction code in little time (for scaling measurements).

    Arguments
    ---------
    output_dim : int
        Feature dimension.
    sample_rate : int
        Input sample rate.
    frame_rate : float
        Output frames per second; ``sample_rate / frame_rate`` must be an integer.
    seed : int
        Seed of the features.

    Example
    -------
    >>> enc = RandomFeatureEncoder(output_dim=8).freeze()
    >>> feats, lens = enc(torch.zeros(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, enc.num_frames(16000), lens.tolist()
    (torch.Size([2, 50, 8]), 50, [1.0, 0.5])
    """

    def __init__(self, output_dim=1024, sample_rate=16000, frame_rate=50.0, seed=0):
        super().__init__()
        hop = sample_rate / frame_rate
        if hop != int(hop):
            raise ValueError(
                f"RandomFeatureEncoder: sample_rate / frame_rate = {hop} is not an "
                "integer"
            )
        self.output_dim = output_dim
        self.sample_rate = sample_rate
        self.frame_rate = frame_rate
        self.hop = int(hop)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def num_frames(self, num_samples):
        """Returns ``num_samples // hop``."""
        return int(num_samples) // self.hop

    def fingerprint(self):
        """The settings (JSON-serialisable)."""
        return {
            "class": type(self).__name__,
            "output_dim": self.output_dim,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "seed": self.seed,
        }

    def encode(self, wavs, lens):
        """Random features [batch, frames, output_dim] (standard normal)."""
        frames = wavs.shape[1] // self.hop
        feats = torch.randn(
            wavs.shape[0], frames, self.output_dim, generator=self.generator
        )
        return feats.to(wavs.device)


def write_noise_corpus(
    folder, durations, classes=("neu", "hap", "ang", "sad"), sample_rate=16000, seed=0
):
    """Writes white-noise wavs and their SpeechBrain manifest.

    Arguments
    ---------
    folder : str or os.PathLike
        Created if needed; receives ``wav/<ID>.wav`` and ``all.csv``.
    durations : sequence of float
        Seconds of every utterance (IDs ``utt00000``, ...).
    classes : sequence of str
        Emotion labels, assigned in turn.
    sample_rate : int
        Sample rate of the wavs.
    seed : int
        Seed of the noise.

    Returns
    -------
    pathlib.Path
        The manifest (columns ``MANIFEST_COLUMNS``, wav paths under ``$data_root``
        = ``folder``).

    Example
    -------
    >>> from ser_lib.data.manifest import read_manifest
    >>> csv_path = write_noise_corpus(getfixture("tmp_path"), [0.5, 1.0])
    >>> [(row["ID"], row["emo"]) for row in read_manifest(csv_path)]
    [('utt00000', 'neu'), ('utt00001', 'hap')]
    """
    folder = Path(folder)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index, seconds in enumerate(durations):
        utt_id = f"utt{index:05d}"
        samples = int(round(seconds * sample_rate))
        noise = np.clip(0.1 * rng.standard_normal(samples), -1.0, 1.0)
        sf.write(folder / "wav" / f"{utt_id}.wav", noise, sample_rate)
        rows.append(
            {
                "ID": utt_id,
                "duration": samples / sample_rate,
                "wav": f"$data_root/wav/{utt_id}.wav",
                "emo": classes[index % len(classes)],
                "spk_id": "Ses01M",
                "gender": "M",
                "session": 1,
                "style": "impro",
                "dialog": "Ses01M_impro01",
            }
        )
    csv_path = folder / "all.csv"
    write_manifest(rows, csv_path, columns=MANIFEST_COLUMNS)
    return csv_path


def random_feature_cache(
    folder, durations, feature_dim, sample_rate=16000, batch_seconds=60.0, seed=0
):
    """A feature cache of random features, written by :func:`extract_features`.

    Arguments
    ---------
    folder : str or os.PathLike
        Receives the noise corpus (``corpus/``) and the cache (``cache/``).
    durations : sequence of float
        Seconds of every utterance.
    feature_dim : int
        Feature dimension.
    sample_rate : int
        Sample rate of the corpus.
    batch_seconds : float
        Padded audio per extraction batch.
    seed : int
        Seed of the noise and the features.

    Returns
    -------
    tuple
        (manifest path, :class:`ser_lib.features.FeatureCache`).

    Example
    -------
    >>> csv_path, cache = random_feature_cache(getfixture("tmp_path"), [1.0], 4)
    >>> cache.load("utt00000").shape
    (50, 4)
    """
    folder = Path(folder)
    csv_path = write_noise_corpus(
        folder / "corpus", durations, sample_rate=sample_rate, seed=seed
    )
    encoder = RandomFeatureEncoder(
        output_dim=feature_dim, sample_rate=sample_rate, seed=seed
    ).freeze()
    cache = extract_features(
        encoder,
        csv_path,
        folder / "cache",
        data_root=folder / "corpus",
        batch_seconds=batch_seconds,
        progress=False,
    )
    return csv_path, cache
