"""The frozen encoder of a Hugging Face Whisper model."""

import math

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

WHISPER_INPUT_MODES = ("pad30", "native")

logger = get_logger(__name__)


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
        return whisper_num_frames(num_samples, self.samples_per_frame)

    def fingerprint(self):
        """Returns the settings that determine the features (JSON-serialisable)."""
        config, extractor = self.config, self.extractor
        return {
            "class": type(self).__name__,
            "source": self.source,
            "model_type": config.model_type,
            "d_model": config.d_model,
            "encoder_layers": config.encoder_layers,
            **layer_fingerprint_entries(self.layers, self.num_states, config.d_model),
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
        return whisper_log_mel(self.extractor, segments, num_mel_frames)

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
        mel = self.log_mel(segments, max(counts) * self.mel_per_frame)
        deepest = self.num_states - 1
        if self.layers != ALL_LAYERS:
            deepest = max(self.layers)
        return whisper_native_states(self.encoder, mel, counts, deepest)

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


def whisper_num_frames(num_samples, samples_per_frame):
    """The output frames of ``num_samples`` samples: ``ceil(num_samples / samples_per_frame)``.

    Shared by the frozen :class:`WhisperEncoder` and the trainable
    :class:`ser_lib.inloop.encoder.TrainableWhisperEncoder`.

    Example
    -------
    >>> whisper_num_frames(16000, 320), whisper_num_frames(16001, 320), whisper_num_frames(0, 320)
    (50, 51, 0)
    """
    return math.ceil(int(num_samples) / samples_per_frame)


def whisper_log_mel(extractor, segments, num_mel_frames):
    """Whisper log-Mel spectrograms of waveforms padded with zeros.

    The spectrogram of each segment is that of the segment zero-padded to a whole
    window (30 s), cut to its first ``num_mel_frames`` frames: only the zeros up
    to the last returned frame's analysis window are computed, so a short
    ``num_mel_frames`` (the native mode) costs little.

    Arguments
    ---------
    extractor : transformers.WhisperFeatureExtractor
        The checkpoint's feature extractor (no dither).
    segments : list of torch.Tensor
        Unpadded waveforms [samples], at most one window each.
    num_mel_frames : int
        The number of log-Mel frames to return (3000 for a 30-s window).

    Returns
    -------
    torch.Tensor
        [batch, num_mel_bins, num_mel_frames] float32, on the device of ``segments``.

    Example
    -------
    >>> from transformers import WhisperFeatureExtractor
    >>> extractor = WhisperFeatureExtractor(feature_size=80, chunk_length=1)
    >>> whisper_log_mel(extractor, [torch.randn(1000), torch.randn(500)], 8).shape
    torch.Size([2, 80, 8])
    """
    hop, n_fft = extractor.hop_length, extractor.n_fft
    if num_mel_frames >= extractor.nb_max_frames:  # a whole window
        padded_samples = int(extractor.n_samples)
    else:
        # Zeros beyond the last returned frame's window, so that every returned
        # frame and the per-utterance maximum are those of the 30-s padding.
        padded_samples = num_mel_frames * hop + n_fft
    device = segments[0].device
    # Always float32: under a bf16 autocast the Mel projection would be bf16.
    with torch.autocast(device_type=device.type, enabled=False):
        mel = extractor(
            [seg.detach().float().cpu().numpy() for seg in segments],
            sampling_rate=extractor.sampling_rate,
            padding="max_length",
            max_length=padded_samples,
            truncation=False,
            return_tensors="pt",
            device=device.type,
        )["input_features"]
    return mel[:, :, :num_mel_frames].to(device)


def whisper_native_states(encoder, mel, frame_counts, num_layers=None):
    """Runs a Whisper encoder on log-Mel frames of their real length.

    The modules of ``transformers``' ``WhisperEncoder`` (``conv1``, ``conv2``,
    ``embed_positions``, ``layers``, ``layer_norm``) with the position table sliced
    to the input length (``transformers``' own forward refuses anything but the 30-s
    window). In a batch, the log-Mel frames beyond an utterance and the first
    convolution's outputs beyond it are zeroed (as the convolutions' own zero
    padding would give) and the attention masks the padded frames, so each
    utterance's states do not depend on the batch. Dropout after the positions and
    LayerDrop follow ``transformers``' forward (active only in training mode).

    Arguments
    ---------
    encoder : transformers.models.whisper.modeling_whisper.WhisperEncoder
        Loaded with ``attn_implementation="sdpa"`` (boolean padding mask).
    mel : torch.Tensor
        [batch, num_mel_bins, mel_frames]: at least ``2 * max(frame_counts)`` frames
        (two per output frame); the frames beyond are ignored.
    frame_counts : sequence of int
        Output frames of each utterance (its log-Mel frames are twice as many).
    num_layers : int or None
        Transformer layers to run (all if None). The final layer norm is applied
        to the last state only when every layer is run.

    Returns
    -------
    list of torch.Tensor
        ``num_layers + 1`` states [batch, max(frame_counts), d_model]: the input of
        the first layer, then each layer's output (the last after the layer norm
        when every layer is run). Frames beyond an utterance are not zeroed.

    Example
    -------
    >>> from transformers import WhisperConfig
    >>> from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisper
    >>> config = WhisperConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2,
    ...     encoder_ffn_dim=32, num_mel_bins=80, max_source_positions=50)
    >>> config._attn_implementation = "sdpa"
    >>> hf_encoder = HFWhisper(config).eval()
    >>> states = whisper_native_states(hf_encoder, torch.randn(2, 80, 20), [10, 7])
    >>> len(states), states[-1].shape
    (3, torch.Size([2, 10, 16]))
    """
    strides = encoder.conv1.stride[0] * encoder.conv2.stride[0]
    counts = torch.as_tensor(list(frame_counts), device=mel.device)
    max_frames = int(counts.max())
    mel = mel[:, :, : max_frames * strides]
    mel_mask = length_to_mask(
        counts * strides, max_len=mel.shape[2], device=mel.device
    ).unsqueeze(1)  # [B, 1, M]
    hidden = torch.nn.functional.gelu(encoder.conv1(mel * mel_mask.to(mel.dtype)))
    hidden = hidden * mel_mask.to(hidden.dtype)
    hidden = torch.nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
    hidden = torch.nn.functional.dropout(
        hidden, p=encoder.dropout, training=encoder.training
    )
    if int(counts.min()) == max_frames:
        attention_mask = None
    else:  # [B, 1, 1, T]: True where a key frame is valid
        attention_mask = length_to_mask(
            counts, max_len=max_frames, device=mel.device
        ).bool()[:, None, None, :]
    all_layers = len(encoder.layers)
    num_layers = all_layers if num_layers is None else num_layers
    states = [hidden]
    for layer in encoder.layers[:num_layers]:
        # LayerDrop as in transformers' forward: the state repeats the previous one.
        skip = encoder.training and encoder.layerdrop > 0.0
        if not skip or float(torch.rand([])) >= encoder.layerdrop:
            hidden = layer(hidden, attention_mask)
        states.append(hidden)
    if num_layers == all_layers:
        states[-1] = encoder.layer_norm(hidden)
    return states
