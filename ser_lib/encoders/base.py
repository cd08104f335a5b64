"""The interface of the frozen encoders (:class:`FrozenEncoder`) and its loader."""

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataio import length_to_mask

from ser_lib.encoders.layers import absolute_lengths


class FrozenEncoder(torch.nn.Module):
    """Base class of the frozen encoders: shared length handling and eval-only mode.

    Subclasses set ``sample_rate`` (Hz of the expected input), ``output_dim`` and
    ``frame_rate`` (Hz of the output frames), implement :meth:`num_frames`,
    :meth:`fingerprint` and :meth:`encode`, and call :meth:`freeze` at the end of
    their constructor.

    Example
    -------
    >>> class Halver(FrozenEncoder):
    ...     sample_rate, output_dim, frame_rate = 2, 1, 1.0
    ...     def num_frames(self, num_samples):
    ...         return num_samples // 2
    ...     def fingerprint(self):
    ...         return {"class": "Halver"}
    ...     def encode(self, wavs, lens):
    ...         return wavs[:, ::2, None]
    >>> enc = Halver().freeze()
    >>> feats, feat_lens = enc(torch.ones(2, 8), torch.tensor([1.0, 0.5]))
    >>> feats.shape, feat_lens
    (torch.Size([2, 4, 1]), tensor([1.0000, 0.5000]))
    >>> feats[1, :, 0]  # padded frames are zeroed
    tensor([1., 1., 0., 0.])
    >>> enc.train().training
    False
    """

    sample_rate: int
    output_dim: int
    frame_rate: float

    def freeze(self):
        """Disables gradients and switches to eval mode; returns ``self``."""
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode=True):
        """Keeps the encoder in eval mode whatever ``mode`` is (it is frozen)."""
        return super().train(False)

    def num_frames(self, num_samples):
        """Returns the number of output frames for an unpadded input.

        Arguments
        ---------
        num_samples : int
            The input length in samples at ``sample_rate``.

        Returns
        -------
        int
            The exact number of frames (0 when the input is too short).
        """
        raise NotImplementedError

    def fingerprint(self):
        """Returns a JSON-serialisable dict of everything that determines the output."""
        raise NotImplementedError

    def encode(self, wavs, lens):
        """Computes features of a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms, [batch, samples], zero-padded.
        lens : torch.Tensor
            Absolute lengths in samples (long), [batch].

        Returns
        -------
        torch.Tensor
            Features [batch, frames, output_dim] where ``frames`` is at least the
            largest ``num_frames(lens[i])`` and frame ``t < num_frames(lens[i])`` of
            utterance ``i`` does not depend on the padding.
        """
        raise NotImplementedError

    def forward(self, wavs, wav_lens):
        """Encodes a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms at ``sample_rate``, [batch, samples].
        wav_lens : torch.Tensor
            Relative lengths, [batch].

        Returns
        -------
        feats : torch.Tensor
            Features [batch, frames, output_dim]; padded frames are zero.
        feat_lens : torch.Tensor
            Relative lengths of the features, [batch].
        """
        lens = absolute_lengths(wav_lens, wavs.shape[1])
        counts = torch.tensor([self.num_frames(n) for n in lens.tolist()])
        if counts.min() < 1:
            raise ValueError(
                f"{type(self).__name__} needs longer inputs: lengths "
                f"{lens.tolist()} samples give {counts.tolist()} frames"
            )
        max_frames = int(counts.max())
        with torch.no_grad():
            feats = self.encode(wavs, lens)[:, :max_frames]  # [B, T, D]
        mask = length_to_mask(counts, max_len=max_frames, device=feats.device)
        feats = feats * mask.unsqueeze(-1).to(feats.dtype)
        return feats, (counts / max_frames).to(wav_lens.device)


def load_encoder(hparams_file, overrides=None):
    """Builds the encoder of an encoder HyperPyYAML file (its ``encoder`` key).

    Arguments
    ---------
    hparams_file : str or os.PathLike
        A file such as ``recipes/IEMOCAP/hparams/encoder/fbank.yaml``.
    overrides : dict or str or None
        HyperPyYAML overrides of the file's top-level keys, as a dict or a YAML
        string (e.g. ``"{encoder_source: /models/hubert}"``).

    Returns
    -------
    FrozenEncoder
        The encoder.

    Example
    -------
    >>> path = getfixture("tmp_path") / "enc.yaml"
    >>> with open(path, "w") as f:
    ...     _ = f.write("n_mels: 40\\nencoder: !new:ser_lib.encoders.FbankEncoder\\n"
    ...                 "    n_mels: !ref <n_mels>\\n")
    >>> load_encoder(path, {"n_mels": 20}).output_dim
    40
    """
    with open(hparams_file, encoding="utf-8") as f:
        hparams = load_hyperpyyaml(f, overrides)
    if "encoder" not in hparams:
        raise KeyError(f"{hparams_file} defines no 'encoder' key")
    encoder = hparams["encoder"]
    if not isinstance(encoder, FrozenEncoder):
        raise TypeError(
            f"'encoder' in {hparams_file} is a {type(encoder).__name__}, not a "
            "ser_lib.encoders.FrozenEncoder"
        )
    return encoder
