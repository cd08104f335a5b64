"""Frozen speech encoders that turn waveforms into frame-level features.

Both encoders share one interface (:class:`FrozenEncoder`): ``forward(wavs, wav_lens)``
maps a padded batch of waveforms ``[batch, samples]`` with SpeechBrain relative
lengths to padded features ``[batch, frames, output_dim]`` with relative lengths, and
``num_frames(num_samples)`` gives the exact frame count of an unpadded input, which the
feature cache uses to trim each utterance. The encoders never train: their parameters
do not require gradients and ``train()`` keeps them in eval mode.

* :class:`HFEncoder` wraps a Hugging Face speech SSL model (HuBERT, wav2vec 2.0,
  WavLM) and returns one hidden layer, the average of several, or all of them.
* :class:`WhisperEncoder` wraps the encoder of a Hugging Face ``WhisperModel``
  (log-Mel input, 30-s windows; ``pad30`` or ``native`` input mode), with the same
  layer choice.
* :class:`FbankEncoder` computes SpeechBrain log-Mel filterbanks and stacks
  consecutive frames to the 50 Hz rate of the SSL models; it needs no weights.

Layer choice (``layers`` of :class:`HFEncoder` and :class:`WhisperEncoder`): an int
index into the model's hidden states (``num_states = num_layers + 1`` entries: entry 0
is the input of the first transformer layer, entry ``-1`` the model's final output
``last_hidden_state``), a list of indices whose states are averaged, or the string
``"all"`` (:data:`ALL_LAYERS`).

**"All layers" feature layout.** With ``layers="all"`` every hidden state is kept for
a later learnable weighted sum: output frame ``t`` is the concatenation
``[h_0(t), h_1(t), ..., h_{S-1}(t)]`` of the ``S = num_states`` states, so
``output_dim = S * D`` (``D`` = the model's hidden size) and state ``s`` occupies
columns ``s * D`` to ``(s + 1) * D - 1``, in state order (0 = input of the first
layer, ``S - 1`` = ``last_hidden_state``). A feature cache built this way stores
``[frames, S * D]`` float16 arrays like any other and its ``fingerprint.json`` says
``"layers": "all"``, ``"num_states": S`` and ``"state_dim": D``;
:func:`split_hidden_states` turns ``[..., S * D]`` back into ``[..., S, D]`` (a view).
"""

import math

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.lobes.features import Fbank
from speechbrain.utils.logger import get_logger
from torch.nn.utils.rnn import pad_sequence

__all__ = [
    "ALL_LAYERS",
    "FbankEncoder",
    "FrozenEncoder",
    "HFEncoder",
    "WhisperEncoder",
    "absolute_lengths",
    "load_encoder",
    "resolve_layers",
    "select_hidden_states",
    "split_hidden_states",
]

ALL_LAYERS = "all"
WHISPER_INPUT_MODES = ("pad30", "native")

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


def resolve_layers(layers, num_states, source):
    """Validates a layer choice and makes its indices non-negative.

    Arguments
    ---------
    layers : int or sequence of int or str
        An index into the ``num_states`` hidden states (negative counts from the
        end), a list of indices to average, or ``"all"`` (:data:`ALL_LAYERS`).
    num_states : int
        The number of hidden states (transformer layers + 1).
    source : str
        The model, for the error message.

    Returns
    -------
    list of int or str
        Sorted-as-given non-negative indices, or ``"all"``.

    Example
    -------
    >>> resolve_layers(-1, 7, "m"), resolve_layers([2, -2], 7, "m")
    ([6], [2, 5])
    >>> resolve_layers("all", 7, "m")
    'all'
    """
    if isinstance(layers, str):
        if layers != ALL_LAYERS:
            raise ValueError(
                f"Layer choice {layers!r} for {source}: use an int, a list of ints "
                f"or {ALL_LAYERS!r}"
            )
        return ALL_LAYERS
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers:
        raise ValueError(f"{source}: the layer list is empty")
    for index in layers:
        if not -num_states <= index < num_states:
            raise ValueError(
                f"Layer index {index} is out of range for {source}, which "
                f"has {num_states} hidden states (indices {-num_states} to "
                f"{num_states - 1})"
            )
    return [index % num_states for index in layers]


def select_hidden_states(hidden_states, layers):
    """The features of a layer choice from the list of hidden states.

    Arguments
    ---------
    hidden_states : sequence of torch.Tensor
        Every hidden state, each [batch, frames, dim].
    layers : list of int or str
        Output of :func:`resolve_layers`.

    Returns
    -------
    torch.Tensor
        The average of the chosen states [batch, frames, dim], or with ``"all"``
        their concatenation [batch, frames, num_states * dim] (state-major).

    Example
    -------
    >>> states = [torch.full((1, 2, 3), float(i)) for i in range(3)]
    >>> select_hidden_states(states, [0, 2])[0, 0]
    tensor([1., 1., 1.])
    >>> select_hidden_states(states, "all")[0, 0]
    tensor([0., 0., 0., 1., 1., 1., 2., 2., 2.])
    """
    if layers == ALL_LAYERS:
        return torch.cat(list(hidden_states), dim=-1)
    return torch.stack([hidden_states[i] for i in layers]).mean(dim=0)


def split_hidden_states(feats, num_states):
    """Views "all layers" features [..., S * D] as [..., S, D] (see the module doc).

    Arguments
    ---------
    feats : torch.Tensor or numpy.ndarray
        Features whose last dimension is ``num_states * D``.
    num_states : int
        ``S``, the ``num_states`` entry of the cache fingerprint.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        The same data, [..., num_states, D].

    Example
    -------
    >>> states = [torch.full((1, 2, 3), float(i)) for i in range(3)]
    >>> split_hidden_states(select_hidden_states(states, "all"), 3)[0, 0, :, 0]
    tensor([0., 1., 2.])
    """
    dim = feats.shape[-1]
    if dim % num_states:
        raise ValueError(
            f"Feature dimension {dim} is not a multiple of num_states={num_states}"
        )
    return feats.reshape(*feats.shape[:-1], num_states, dim // num_states)


def _layer_fingerprint(layers, num_states, state_dim):
    """The fingerprint entries of a layer choice."""
    if layers == ALL_LAYERS:
        return {"layers": ALL_LAYERS, "num_states": num_states, "state_dim": state_dim}
    return {"layers": list(layers)}


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
            **_layer_fingerprint(self.layers, self.num_states, config.hidden_size),
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


class WhisperEncoder(FrozenEncoder):
    """The frozen encoder of a Hugging Face Whisper model (``WhisperModel.encoder``).

    Each waveform becomes Whisper's log-Mel spectrogram (``WhisperFeatureExtractor``
    of the model folder, 100 Hz) and goes through the encoder (two convolutions,
    the second with stride 2, so 50 Hz output frames: one per 320 samples at 16 kHz).
    An utterance of ``n`` samples gives ``ceil(n / 320)`` frames in both input modes:

    * ``pad30``: every window is padded with zeros to the extractor's chunk (30 s,
      3000 log-Mel frames) and run through ``transformers``' own encoder forward,
      exactly as the model was trained; the first ``ceil(n / 320)`` output frames
      are kept (EmoBox does this). The cost is that of 30 s whatever ``n`` is.
    * ``native``: the encoder runs on the real length, with the position table
      sliced to it. The log-Mel frames are the first ``2 * ceil(n / 320)`` frames
      of the same zero-padded spectrogram as in ``pad30``; the transformer layers
      attend only to the utterance's own frames. ``transformers`` refuses inputs
      that are not 3000 frames long, so this mode runs the encoder's modules
      (``conv1``, ``conv2``, ``embed_positions``, ``layers``, ``layer_norm``) with
      its own forward: in a batch, the log-Mel frames beyond an utterance and the
      first convolution's outputs beyond it are zeroed (as the convolutions' own
      zero padding would give) and the attention masks the padded frames, so each
      utterance's features do not depend on the batch.

    Utterances longer than one window (30 s) are cut into consecutive windows, each
    encoded on its own (in the chosen mode); their frames are concatenated. The
    hidden states follow :class:`HFEncoder`: entry 0 is the input of the first
    transformer layer (convolutions + positions), entry ``-1`` the encoder output
    after its final layer norm (``last_hidden_state``).

    Arguments
    ---------
    source : str
        A hub id (e.g. ``openai/whisper-base``) or a local folder written by
        ``save_pretrained``, holding the model and its
        ``preprocessor_config.json``; both are loaded with ``from_pretrained``.
    layers : int or sequence of int or str
        Hidden-state index, list of indices to average, or ``"all"`` (every state
        concatenated; layout in the module docstring).
    input_mode : str
        ``pad30`` or ``native`` (see above).
    sample_rate : int
        Sample rate of the expected input, Hz; must be the extractor's.
    cache_dir : str or None
        Where ``from_pretrained`` stores downloaded files (its default if None).

    Example
    -------
    >>> from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
    >>> config = WhisperConfig(
    ...     d_model=16, encoder_layers=2, encoder_attention_heads=2,
    ...     encoder_ffn_dim=32, decoder_layers=1, decoder_attention_heads=2,
    ...     decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=50,
    ...     max_target_positions=8, vocab_size=16, pad_token_id=0, bos_token_id=1,
    ...     eos_token_id=2, decoder_start_token_id=3)
    >>> model_dir = getfixture("tmp_path")
    >>> WhisperModel(config).save_pretrained(model_dir)
    >>> _ = WhisperFeatureExtractor(chunk_length=1).save_pretrained(model_dir)  # 1-s windows
    >>> enc = WhisperEncoder(model_dir, layers="all", input_mode="native")
    >>> enc.output_dim, enc.frame_rate, enc.num_frames(16000), enc.num_frames(16001)
    (48, 50.0, 50, 51)
    >>> feats, feat_lens = enc(torch.randn(2, 24000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, feat_lens
    (torch.Size([2, 75, 48]), tensor([1.0000, 0.5067]))
    >>> fp = enc.fingerprint()
    >>> fp["input_mode"], fp["layers"], fp["num_states"], fp["state_dim"]
    ('native', 'all', 3, 16)
    """

    def __init__(
        self,
        source,
        layers=(-1,),
        input_mode="pad30",
        sample_rate=16000,
        cache_dir=None,
    ):
        # Imported here, as in HFEncoder: transformers is slow to import.
        from transformers import WhisperFeatureExtractor, WhisperModel

        super().__init__()
        if input_mode not in WHISPER_INPUT_MODES:
            raise ValueError(
                f"input_mode must be one of {WHISPER_INPUT_MODES}, got {input_mode!r}"
            )
        self.source = str(source)
        self.input_mode = input_mode
        try:
            self.extractor = WhisperFeatureExtractor.from_pretrained(
                self.source, cache_dir=cache_dir
            )
        except OSError as err:
            raise ValueError(
                f"{self.source} has no preprocessor_config.json (the Whisper "
                "feature extractor settings); save it with "
                "WhisperFeatureExtractor.save_pretrained"
            ) from err
        if self.extractor.sampling_rate != sample_rate:
            raise ValueError(
                f"{self.source} expects {self.extractor.sampling_rate} Hz audio but "
                f"sample_rate is {sample_rate}"
            )
        if self.extractor.dither != 0.0:
            raise ValueError(
                f"{self.source}: the feature extractor adds random dither "
                f"({self.extractor.dither}), so cached features would not be "
                "reproducible; set dither to 0.0 in preprocessor_config.json"
            )
        # The SDPA attention takes the boolean padding mask of the native mode.
        model = WhisperModel.from_pretrained(
            self.source,
            cache_dir=cache_dir,
            dtype=torch.float32,
            attn_implementation="sdpa",
        )
        self.encoder = model.get_encoder()  # the decoder is dropped
        config = model.config
        strides = self.encoder.conv1.stride[0] * self.encoder.conv2.stride[0]
        if self.extractor.nb_max_frames != config.max_source_positions * strides:
            raise ValueError(
                f"{self.source}: the feature extractor gives "
                f"{self.extractor.nb_max_frames} log-Mel frames per window but the "
                f"encoder takes {config.max_source_positions * strides}"
            )
        self.config = config
        self.num_states = config.encoder_layers + 1
        self.layers = resolve_layers(layers, self.num_states, self.source)
        self.sample_rate = sample_rate
        self.window_samples = int(self.extractor.n_samples)
        self.samples_per_frame = int(self.extractor.hop_length) * strides
        self.mel_per_frame = strides
        self.frame_rate = sample_rate / self.samples_per_frame
        self.output_dim = config.d_model * (
            self.num_states if self.layers == ALL_LAYERS else 1
        )
        logger.info(
            "Loaded the Whisper encoder of %s (layers %s, input mode %s)",
            self.source,
            self.layers,
            self.input_mode,
        )
        self.freeze()

    def num_frames(self, num_samples):
        """Returns ``ceil(num_samples / 320)`` (at 16 kHz), the frames of an input.

        Arguments
        ---------
        num_samples : int
            The input length in samples.

        Returns
        -------
        int
            The number of output frames (0 for an empty input).
        """
        return math.ceil(int(num_samples) / self.samples_per_frame)

    def fingerprint(self):
        """Returns the settings that determine the features (JSON-serialisable)."""
        config, extractor = self.config, self.extractor
        return {
            "class": type(self).__name__,
            "source": self.source,
            "model_type": config.model_type,
            "d_model": config.d_model,
            "encoder_layers": config.encoder_layers,
            **_layer_fingerprint(self.layers, self.num_states, config.d_model),
            "input_mode": self.input_mode,
            "window_samples": self.window_samples,
            "sample_rate": self.sample_rate,
            "num_mel_bins": extractor.feature_size,
            "n_fft": extractor.n_fft,
            "hop_length": extractor.hop_length,
            "output_dim": self.output_dim,
        }

    def log_mel(self, segments, num_mel_frames):
        """Whisper log-Mel spectrograms of waveforms padded with zeros.

        Arguments
        ---------
        segments : list of torch.Tensor
            Unpadded waveforms [samples], at most one window each.
        num_mel_frames : int
            The number of log-Mel frames to return (3000 for a 30-s window).

        Returns
        -------
        torch.Tensor
            [batch, num_mel_bins, num_mel_frames], on the device of ``segments``.
        """
        hop, n_fft = self.extractor.hop_length, self.extractor.n_fft
        if num_mel_frames >= self.extractor.nb_max_frames:  # a whole window
            padded_samples = self.window_samples
        else:
            # Zeros beyond the last returned frame's window, so that every returned
            # frame and the per-utterance maximum are those of the 30-s padding.
            padded_samples = num_mel_frames * hop + n_fft
        device = segments[0].device
        # Always float32: under a bf16 autocast the Mel projection would be bf16.
        with torch.autocast(device_type=device.type, enabled=False):
            mel = self._extract(segments, padded_samples, device)
        return mel[:, :, :num_mel_frames].to(device)

    def _extract(self, segments, padded_samples, device):
        """The feature extractor on zero-padded segments: [B, n_mels, frames]."""
        return self.extractor(
            [seg.detach().float().cpu().numpy() for seg in segments],
            sampling_rate=self.sample_rate,
            padding="max_length",
            max_length=padded_samples,
            truncation=False,
            return_tensors="pt",
            device=device.type,
        )["input_features"]

    def _pad30_states(self, segments):
        """Hidden states of windows padded to the full chunk (transformers forward)."""
        mel = self.log_mel(segments, self.extractor.nb_max_frames)
        outputs = self.encoder(mel, output_hidden_states=True)
        hidden = list(outputs.hidden_states)
        hidden[-1] = outputs.last_hidden_state
        return hidden

    def _native_states(self, segments):
        """Hidden states of windows at their own length (sliced position table).

        Returns the states 0 to the deepest selected one (all with ``"all"``).
        """
        counts = [self.num_frames(len(seg)) for seg in segments]
        mel_counts = torch.tensor(counts) * self.mel_per_frame
        max_frames = max(counts)
        mel = self.log_mel(segments, max_frames * self.mel_per_frame)
        device = mel.device
        mel_mask = length_to_mask(
            mel_counts, max_len=mel.shape[2], device=device
        ).unsqueeze(1)  # [B, 1, M]
        enc = self.encoder
        hidden = torch.nn.functional.gelu(enc.conv1(mel * mel_mask.to(mel.dtype)))
        hidden = hidden * mel_mask.to(hidden.dtype)
        hidden = torch.nn.functional.gelu(enc.conv2(hidden)).permute(0, 2, 1)
        hidden = hidden + enc.embed_positions.weight[: hidden.shape[1]]
        frame_counts = torch.tensor(counts, device=device)
        if min(counts) == max_frames:
            attention_mask = None
        else:  # [B, 1, 1, T]: True where a key frame is valid
            attention_mask = length_to_mask(
                frame_counts, max_len=max_frames, device=device
            ).bool()[:, None, None, :]
        # Only the layers up to the deepest selected state are run.
        deepest = self.num_states - 1
        if self.layers != ALL_LAYERS:
            deepest = max(self.layers)
        states = [hidden]
        for layer in enc.layers[:deepest]:
            hidden = layer(hidden, attention_mask)
            states.append(hidden)
        if deepest == self.num_states - 1:
            states[-1] = enc.layer_norm(hidden)
        return states

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
        owners, segments = [], []
        for index, length in enumerate(lens.tolist()):
            for start in range(0, length, self.window_samples):
                owners.append(index)
                segments.append(
                    wavs[index, start : min(length, start + self.window_samples)]
                )
        if self.input_mode == "pad30":
            states = self._pad30_states(segments)
        else:
            states = self._native_states(segments)
        feats = select_hidden_states(states, self.layers)  # [windows, T, D]
        per_utterance = [[] for _ in range(wavs.shape[0])]
        for owner, segment, window_feats in zip(owners, segments, feats, strict=True):
            per_utterance[owner].append(window_feats[: self.num_frames(len(segment))])
        return pad_sequence(
            [torch.cat(parts) for parts in per_utterance], batch_first=True
        )


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
