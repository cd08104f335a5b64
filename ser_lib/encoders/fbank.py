"""Log-Mel filterbank features stacked to the frame rate of the SSL encoders."""

import torch
from speechbrain.lobes.features import Fbank
from torch.nn.utils.rnn import pad_sequence

from ser_lib.encoders.base import FrozenEncoder


class FbankEncoder(FrozenEncoder):
    """Log-Mel filterbanks (SpeechBrain ``Fbank``) stacked to a lower frame rate.

    ``Fbank`` gives one frame every ``hop_length`` ms (100 Hz by default); ``stack``
    consecutive frames are concatenated into one output frame (50 Hz,
    ``n_mels * stack`` dims by default) and a last incomplete group is dropped.
    Optionally each utterance is normalised to zero mean and unit variance per
    dimension over its own frames. Each utterance is computed on its unpadded
    samples, so padding never changes the output (``Fbank``'s dynamic-range clamp
    and the normalisation both look at the whole input).

    Arguments
    ---------
    n_mels : int
        Number of Mel filters.
    stack : int
        Number of consecutive filterbank frames concatenated into one output frame.
    sample_rate : int
        Sample rate of the expected input, Hz.
    normalize : bool
        Whether to apply per-utterance mean and variance normalisation.
    n_fft : int
        FFT size of the STFT.
    win_length : float
        STFT window length, ms.
    hop_length : float
        STFT hop, ms.
    f_min : float
        Lowest filter frequency, Hz.
    f_max : float or None
        Highest filter frequency, Hz (``sample_rate / 2`` if None).
    norm_eps : float
        Added to the variance in the normalisation.

    Example
    -------
    >>> enc = FbankEncoder(n_mels=40, stack=2)
    >>> enc.output_dim, enc.frame_rate, enc.num_frames(16000)
    (80, 50.0, 50)
    >>> feats, feat_lens = enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, feat_lens
    (torch.Size([2, 50, 80]), tensor([1.0000, 0.5000]))
    >>> bool(feats[1, :25].mean().abs() < 1e-4), round(float(feats[1, :25].std()), 2)
    (True, 1.0)
    """

    def __init__(
        self,
        n_mels=80,
        stack=2,
        sample_rate=16000,
        normalize=True,
        n_fft=400,
        win_length=25,
        hop_length=10,
        f_min=0,
        f_max=None,
        norm_eps=1e-5,
    ):
        super().__init__()
        if stack < 1:
            raise ValueError(f"stack must be at least 1, got {stack}")
        self.n_mels = n_mels
        self.stack = stack
        self.sample_rate = sample_rate
        self.normalize = normalize
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.f_min = f_min
        self.f_max = f_max
        self.norm_eps = norm_eps
        self.fbank = Fbank(
            sample_rate=sample_rate,
            n_fft=n_fft,
            n_mels=n_mels,
            win_length=win_length,
            hop_length=hop_length,
            f_min=f_min,
            f_max=f_max,
        )
        # Same rounding as speechbrain.processing.features.STFT.
        self.hop_samples = int(round(sample_rate / 1000.0 * hop_length))
        self.output_dim = n_mels * stack
        self.frame_rate = 1000.0 / hop_length / stack
        self.freeze()

    def num_frames(self, num_samples):
        """Returns the number of output frames for an unpadded input.

        ``Fbank`` (centred STFT) gives ``n // hop + 1`` frames; stacking keeps the
        complete groups.

        Arguments
        ---------
        num_samples : int
            The input length in samples.

        Returns
        -------
        int
            The exact number of frames.
        """
        return (int(num_samples) // self.hop_samples + 1) // self.stack

    def fingerprint(self):
        """Returns the settings that determine the features (JSON-serialisable)."""
        return {
            "class": type(self).__name__,
            "source": "speechbrain.lobes.features.Fbank",
            "n_mels": self.n_mels,
            "stack": self.stack,
            "sample_rate": self.sample_rate,
            "normalize": self.normalize,
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "f_min": self.f_min,
            "f_max": self.f_max,
            "norm_eps": self.norm_eps,
            "output_dim": self.output_dim,
        }

    def _encode_one(self, wav):
        """Features of one unpadded waveform [samples] -> [frames, output_dim]."""
        fbanks = self.fbank(wav[None])[0]  # [fbank_frames, n_mels]
        frames = fbanks.shape[0] // self.stack
        feats = fbanks[: frames * self.stack].reshape(frames, self.output_dim)
        if self.normalize:
            mean = feats.mean(dim=0, keepdim=True)
            var = feats.var(dim=0, unbiased=False, keepdim=True)
            feats = (feats - mean) / torch.sqrt(var + self.norm_eps)
        return feats

    def encode(self, wavs, lens):
        """Computes stacked filterbanks of a padded batch, one utterance at a time.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms, [batch, samples].
        lens : torch.Tensor
            Absolute lengths in samples (long), [batch].

        Returns
        -------
        torch.Tensor
            Features, [batch, frames, output_dim].
        """
        feats = [
            self._encode_one(wav[:length])
            for wav, length in zip(wavs, lens.tolist(), strict=True)
        ]
        return pad_sequence(feats, batch_first=True)
