"""Frozen speech encoders that turn waveforms into frame-level features.

Both encoders share one interface (:class:`FrozenEncoder`): ``forward(wavs, wav_lens)``
maps a padded batch of waveforms ``[batch, samples]`` with SpeechBrain relative
lengths to padded features ``[batch, frames, output_dim]`` with relative lengths, and
``num_frames(num_samples)`` gives the exact frame count of an unpadded input, which the
feature cache uses to trim each utterance. The encoders never train: their parameters
do not require gradients and ``train()`` keeps them in eval mode.

* :class:`HFEncoder` wraps a Hugging Face speech SSL model (HuBERT, wav2vec 2.0,
  WavLM) and returns one hidden layer or the average of several.
* :class:`FbankEncoder` computes SpeechBrain log-Mel filterbanks and stacks
  consecutive frames to the 50 Hz rate of the SSL models; it needs no weights.
"""

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.lobes.features import Fbank
from speechbrain.utils.logger import get_logger
from torch.nn.utils.rnn import pad_sequence

__all__ = [
    "FbankEncoder",
    "FrozenEncoder",
    "HFEncoder",
    "absolute_lengths",
    "load_encoder",
]

logger = get_logger(__name__)


def absolute_lengths(rel_lens, max_len):
    """Converts SpeechBrain relative lengths to integer lengths.

    Arguments
    ---------
    rel_lens : torch.Tensor
        Relative lengths in [0, 1], shape [batch].
    max_len : int
        The padded length that a relative length of 1.0 stands for.

    Returns
    -------
    torch.Tensor
        Integer lengths (long), shape [batch], in [0, max_len].

    Example
    -------
    >>> absolute_lengths(torch.tensor([1.0, 0.5, 0.333]), 300)
    tensor([300, 150, 100])
    """
    return torch.round(rel_lens * max_len).long().clamp(0, max_len)


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


class HFEncoder(FrozenEncoder):
    """A frozen Hugging Face speech SSL model (HuBERT, wav2vec 2.0, WavLM).

    The model is loaded with ``transformers.AutoModel.from_pretrained(source)`` and
    the output is one entry of its ``hidden_states`` or the average of several.
    Entry 0 is the input of the first transformer layer and entry ``-1`` (the
    default) is the model's final output, ``last_hidden_state`` (for pre-LN models
    such as HuBERT-large this includes the final layer norm, whatever the
    ``transformers`` version).

    Padding never changes the valid frames. Models whose convolutional feature
    extractor uses layer norm (``config.feat_extract_norm == "layer"``, e.g.
    HuBERT-large) run the whole batch with an attention mask. Models with a
    group-norm feature extractor (``"group"``, e.g. HuBERT-base) normalise the first
    convolution over the whole padded length, so the padding would leak into every
    frame; they run one utterance at a time on its unpadded samples.

    Arguments
    ---------
    source : str
        A local directory written by ``save_pretrained`` or a hub id.
    layers : int or sequence of int
        Indices into ``hidden_states`` (``num_hidden_layers + 1`` entries; negative
        indices count from the end); several are averaged.
    sample_rate : int
        Sample rate of the expected input, Hz; must match the model's feature
        extractor config when there is one.
    do_normalize : bool or None
        Whether to standardise each waveform to zero mean and unit variance over its
        valid samples, as the model was trained. ``None`` reads ``do_normalize`` from
        the model's ``preprocessor_config.json`` (then that file is required).
    norm_eps : float
        Added to the variance in that standardisation (as in ``transformers``).
    cache_dir : str or None
        Where ``from_pretrained`` stores downloaded files (its default if None).

    Example
    -------
    >>> from transformers import HubertConfig, HubertModel
    >>> config = HubertConfig(
    ...     hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
    ...     intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 8),
    ...     conv_stride=(5, 64), num_conv_pos_embeddings=8,
    ...     num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
    ...     do_stable_layer_norm=True)
    >>> model_dir = getfixture("tmp_path")
    >>> HubertModel(config).save_pretrained(model_dir)
    >>> enc = HFEncoder(model_dir, layers=[1, 2], do_normalize=True)
    >>> enc.output_dim, enc.frame_rate, enc.num_frames(16000)
    (16, 50.0, 50)
    >>> feats, feat_lens = enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, feat_lens
    (torch.Size([2, 50, 16]), tensor([1.0000, 0.5000]))
    >>> enc.fingerprint()["layers"]
    [1, 2]
    """

    def __init__(
        self,
        source,
        layers=(-1,),
        sample_rate=16000,
        do_normalize=None,
        norm_eps=1e-7,
        cache_dir=None,
    ):
        # Imported here: transformers takes seconds to import and only this
        # encoder needs it (training from the feature cache never does).
        from transformers import AutoModel

        super().__init__()
        self.source = str(source)
        self.model = AutoModel.from_pretrained(self.source, cache_dir=cache_dir)
        config = self.model.config
        if getattr(config, "add_adapter", False):
            raise ValueError(
                f"{self.source}: models with an output adapter (add_adapter=True) "
                "are not supported"
            )
        self.conv_kernel = [int(k) for k in config.conv_kernel]
        self.conv_stride = [int(s) for s in config.conv_stride]
        self.use_attention_mask = config.feat_extract_norm == "layer"

        num_states = config.num_hidden_layers + 1
        layers = [layers] if isinstance(layers, int) else list(layers)
        if not layers:
            raise ValueError("HFEncoder needs at least one layer index")
        for index in layers:
            if not -num_states <= index < num_states:
                raise ValueError(
                    f"Layer index {index} is out of range for {self.source}, which "
                    f"has {num_states} hidden states (indices {-num_states} to "
                    f"{num_states - 1})"
                )
        self.layers = [index % num_states for index in layers]
        self.num_states = num_states

        if do_normalize is None:
            do_normalize = self._read_do_normalize(sample_rate, cache_dir)
        self.do_normalize = bool(do_normalize)
        self.norm_eps = norm_eps
        self.sample_rate = sample_rate
        self.output_dim = config.hidden_size
        total_stride = 1
        for stride in self.conv_stride:
            total_stride *= stride
        self.frame_rate = sample_rate / total_stride
        logger.info(
            "Loaded %s (%s, layers %s, batched with attention mask: %s)",
            self.source,
            config.model_type,
            self.layers,
            self.use_attention_mask,
        )
        self.freeze()

    def _read_do_normalize(self, sample_rate, cache_dir):
        """Reads ``do_normalize`` from the model's feature extractor config."""
        from transformers import AutoFeatureExtractor  # see __init__

        try:
            extractor = AutoFeatureExtractor.from_pretrained(
                self.source, cache_dir=cache_dir
            )
        except OSError as err:
            raise ValueError(
                f"{self.source} has no preprocessor_config.json; pass do_normalize "
                "(True or False) to HFEncoder"
            ) from err
        if extractor.sampling_rate != sample_rate:
            raise ValueError(
                f"{self.source} expects {extractor.sampling_rate} Hz audio but "
                f"sample_rate is {sample_rate}"
            )
        return extractor.do_normalize

    def num_frames(self, num_samples):
        """Returns the number of output frames for an unpadded input.

        The convolutional feature extractor (no padding) gives
        ``floor((n - kernel) / stride) + 1`` frames per layer.

        Arguments
        ---------
        num_samples : int
            The input length in samples.

        Returns
        -------
        int
            The exact number of frames (0 when the input is shorter than the
            receptive field of one frame).
        """
        length = int(num_samples)
        for kernel, stride in zip(self.conv_kernel, self.conv_stride, strict=True):
            if length < kernel:
                return 0
            length = (length - kernel) // stride + 1
        return length

    def fingerprint(self):
        """Returns the settings that determine the features (JSON-serialisable)."""
        config = self.model.config
        return {
            "class": type(self).__name__,
            "source": self.source,
            "model_type": config.model_type,
            "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "layers": list(self.layers),
            "sample_rate": self.sample_rate,
            "do_normalize": self.do_normalize,
            "norm_eps": self.norm_eps,
            "output_dim": self.output_dim,
        }

    def _normalize(self, wavs, lens):
        """Standardises each waveform over its valid samples; padding stays zero."""
        mask = length_to_mask(lens, max_len=wavs.shape[1], device=wavs.device)
        mask = mask.to(wavs.dtype)  # [B, S]
        count = mask.sum(dim=1, keepdim=True)
        mean = (wavs * mask).sum(dim=1, keepdim=True) / count
        var = (((wavs - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count
        return (wavs - mean) / torch.sqrt(var + self.norm_eps) * mask

    def _select_layers(self, outputs):
        """Averages the selected hidden states; [B, T, D]."""
        hidden = list(outputs.hidden_states)
        hidden[-1] = outputs.last_hidden_state
        return torch.stack([hidden[i] for i in self.layers]).mean(dim=0)

    def encode(self, wavs, lens):
        """Computes the selected hidden states of a padded batch.

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
        if self.do_normalize:
            wavs = self._normalize(wavs, lens)
        if self.use_attention_mask:
            attention_mask = length_to_mask(
                lens, max_len=wavs.shape[1], device=wavs.device
            ).long()
            outputs = self.model(
                wavs, attention_mask=attention_mask, output_hidden_states=True
            )
            return self._select_layers(outputs)
        # Group-norm feature extractor: one unpadded utterance at a time.
        feats = [
            self._select_layers(
                self.model(wav[None, :length], output_hidden_states=True)
            )[0]
            for wav, length in zip(wavs, lens.tolist(), strict=True)
        ]
        return pad_sequence(feats, batch_first=True)


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
