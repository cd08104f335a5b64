"""Frozen Hugging Face speech SSL encoders (HuBERT, wav2vec 2.0, WavLM)."""

import torch
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.utils.logger import get_logger
from torch.nn.utils.rnn import pad_sequence

from ser_lib.encoders.base import FrozenEncoder
from ser_lib.encoders.layers import (
    ALL_LAYERS,
    layer_fingerprint_entries,
    resolve_layers,
    select_hidden_states,
)

logger = get_logger(__name__)


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
    layers : int or sequence of int or str
        Indices into ``hidden_states`` (``num_hidden_layers + 1`` entries; negative
        indices count from the end); several are averaged; ``"all"`` keeps every
        state (layout in the module docstring).
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
        self.layers = resolve_layers(layers, num_states, self.source)
        self.num_states = num_states

        if do_normalize is None:
            do_normalize = self._read_do_normalize(sample_rate, cache_dir)
        self.do_normalize = bool(do_normalize)
        self.norm_eps = norm_eps
        self.sample_rate = sample_rate
        self.output_dim = config.hidden_size * (
            num_states if self.layers == ALL_LAYERS else 1
        )
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
            **layer_fingerprint_entries(
                self.layers, self.num_states, config.hidden_size
            ),
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
        """The selected hidden states (averaged, or all concatenated); [B, T, D]."""
        hidden = list(outputs.hidden_states)
        hidden[-1] = outputs.last_hidden_state
        return select_hidden_states(hidden, self.layers)

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
