"""The trainable encoder of a Whisper checkpoint."""

from pathlib import Path

import torch
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.utils.logger import get_logger

from ser_lib.encoders.layers import select_hidden_states
from ser_lib.encoders.whisper import (
    WHISPER_INPUT_MODES,
    whisper_log_mel,
    whisper_native_states,
    whisper_num_frames,
)
from ser_lib.inloop.encoder.common import (
    _check_layers,
    _enable_checkpointing,
    _frame_counts,
    _layers_for_call,
    _select_hidden,
)

logger = get_logger(__name__)


class TrainableWhisperEncoder(torch.nn.Module):
    """The encoder of a Whisper checkpoint, fine-tuned inside the training loop.

    Inputs are converted to Whisper's log-Mel features (the checkpoint's
    ``preprocessor_config.json``); an utterance of ``n`` samples has
    ``ceil(n / 320)`` output frames (50 Hz), as with the frozen
    :class:`ser_lib.encoders.WhisperEncoder`, in both input modes:

    * ``pad30``: every input is padded to Whisper's 30 s window and goes through
      ``transformers``' encoder forward, as Whisper was trained; the output is
      cropped to the valid frames. The cost is that of 30 s whatever ``n`` is.
    * ``native``: the encoder runs on the real length with the position table
      sliced to it, exactly as the frozen encoder's ``native`` mode (the same
      functions, :func:`ser_lib.encoders.whisper.whisper_log_mel` and
      :func:`ser_lib.encoders.whisper.whisper_native_states`): in a batch the
      padded log-Mel and first-convolution frames are zeroed and the attention
      masks the padded frames, so an utterance's output does not depend on the
      batch. Much cheaper for short utterances (EmoDB: about 2.8 s).

    Inputs longer than 30 s are rejected (crop them when loading).

    Whisper has no mask embedding. For masked prediction (``mask_time_indices``)
    the stand-in is :attr:`mask_embedding`, a learned log-Mel vector (zeros at
    start) written into the two input frames of every masked output frame.

    Arguments
    ---------
    source : str
        Folder of a Whisper checkpoint (``WhisperModel`` + preprocessor config).
    layers : int or sequence of int
        Indices into the encoder's ``hidden_states`` (-1 = final output).
    input_mode : str
        ``pad30`` or ``native`` (see above).
    freeze_cnn : bool
        Freeze the two input convolutions and the position table.
    freeze_all : bool
        Freeze every weight.
    dropout, attention_dropout, activation_dropout, layerdrop : float
        Written into the config before loading.
    gradient_checkpointing : bool
        Non-reentrant activation checkpointing.
    sample_rate : int
        Sample rate of the input (must match the checkpoint's).

    Example
    -------
    >>> from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
    >>> config = WhisperConfig(d_model=16, encoder_layers=2, decoder_layers=1,
    ...     encoder_attention_heads=2, decoder_attention_heads=2,
    ...     encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
    ...     max_source_positions=1500, vocab_size=100, pad_token_id=0,
    ...     bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    >>> model_dir = getfixture("tmp_path") / "whisper"
    >>> WhisperModel(config).save_pretrained(model_dir)
    >>> _ = WhisperFeatureExtractor(feature_size=80).save_pretrained(model_dir)
    >>> enc = TrainableWhisperEncoder(model_dir)
    >>> feats, lens = enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, lens.tolist(), enc.num_frames(16000)
    (torch.Size([2, 50, 16]), [1.0, 0.5], 50)
    >>> native = TrainableWhisperEncoder(model_dir, input_mode="native")
    >>> native_feats, _ = native(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> native_feats.shape
    torch.Size([2, 50, 16])
    """

    def __init__(
        self,
        source,
        layers=(-1,),
        input_mode="pad30",
        freeze_cnn=True,
        freeze_all=False,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        layerdrop=0.0,
        gradient_checkpointing=False,
        sample_rate=16000,
    ):
        from transformers import AutoConfig, WhisperFeatureExtractor, WhisperModel

        super().__init__()
        if input_mode not in WHISPER_INPUT_MODES:
            raise ValueError(
                f"input_mode must be one of {WHISPER_INPUT_MODES}, got {input_mode!r}"
            )
        self.source = str(source)
        self.input_mode = input_mode
        config = AutoConfig.from_pretrained(self.source)
        for key, value in {
            "dropout": dropout,
            "attention_dropout": attention_dropout,
            "activation_dropout": activation_dropout,
            "encoder_layerdrop": layerdrop,
        }.items():
            setattr(config, key, value)
        # SDPA attention takes the boolean padding mask of the native mode.
        full = WhisperModel.from_pretrained(
            self.source, config=config, attn_implementation="sdpa"
        )
        self.model = full.get_encoder()
        del full
        self.extractor = WhisperFeatureExtractor.from_pretrained(self.source)
        if self.extractor.sampling_rate != sample_rate:
            raise ValueError(
                f"{self.source} expects {self.extractor.sampling_rate} Hz audio but "
                f"sample_rate is {sample_rate}"
            )
        self.hop_length = int(self.extractor.hop_length)
        self.window_samples = int(self.extractor.n_samples)
        self.samples_per_frame = 2 * self.hop_length
        self.min_samples = self.hop_length
        self.num_states = config.encoder_layers + 1
        self.layers = _check_layers(layers, self.num_states, self.source)
        self.output_dim = config.d_model
        self.sample_rate = sample_rate
        self.frame_rate = sample_rate / self.samples_per_frame
        self.mask_embedding = torch.nn.Parameter(torch.zeros(config.num_mel_bins))
        if gradient_checkpointing:
            _enable_checkpointing(self.model)
        if freeze_cnn:
            for module in (self.model.conv1, self.model.conv2):
                module.requires_grad_(False)
            self.model.embed_positions.requires_grad_(False)
        if freeze_all:
            self.requires_grad_(False)
        logger.info(
            "Trainable Whisper encoder from %s: layers %s, input mode %s, CNN frozen "
            "%s, all frozen %s",
            self.source,
            self.layers,
            self.input_mode,
            freeze_cnn,
            freeze_all,
        )

    def num_frames(self, num_samples):
        """Number of valid output frames of ``num_samples`` samples (50 Hz)."""
        return whisper_num_frames(num_samples, self.samples_per_frame)

    def _log_mel(self, wavs, lens, num_mel_frames):
        """Log-Mel features of every row (zero padding): [B, mels, num_mel_frames]."""
        if int(lens.max()) > self.window_samples:
            raise ValueError(
                f"Whisper encodes at most {self.window_samples} samples; crop longer "
                "utterances when loading"
            )
        segments = [w[:n] for w, n in zip(wavs, lens.tolist(), strict=True)]
        return whisper_log_mel(self.extractor, segments, num_mel_frames)

    def forward(self, wavs, wav_lens, mask_time_indices=None, layers=None):
        """Encodes a padded batch (see :meth:`TrainableHFEncoder.forward`)."""
        layers = _layers_for_call(layers, self.layers, self.num_states, self.source)
        lens, counts, max_frames = _frame_counts(
            self.num_frames, wavs, wav_lens, self.samples_per_frame
        )
        if self.input_mode == "native":
            num_mel_frames = 2 * max_frames  # two log-Mel frames per output frame
        else:
            num_mel_frames = self.extractor.nb_max_frames
        features = self._log_mel(wavs, lens, num_mel_frames)
        if mask_time_indices is not None:
            mask = mask_time_indices[:, :max_frames].to(features.device)
            mel_mask = mask.repeat_interleave(2, dim=1)  # two Mel frames per frame
            full = torch.zeros(
                features.shape[0],
                features.shape[2],
                dtype=torch.bool,
                device=features.device,
            )
            full[:, : mel_mask.shape[1]] = mel_mask
            stand_in = self.mask_embedding.to(features.dtype)[None, :, None]
            features = torch.where(full[:, None, :], stand_in, features)
        if self.input_mode == "native":
            # Only the layers up to the deepest requested state are run.
            states = whisper_native_states(
                self.model, features, counts.tolist(), max(layers)
            )
            feats = select_hidden_states(states, layers)
        else:
            outputs = self.model(features, output_hidden_states=True)
            feats = _select_hidden(outputs, layers)[:, :max_frames]
        valid = length_to_mask(counts, max_len=max_frames, device=feats.device)
        feats = feats * valid.unsqueeze(-1).to(feats.dtype)
        return feats, (counts / max_frames).to(wav_lens.device)

    def export(self, folder):
        """Writes a full ``WhisperModel`` (source decoder, trained encoder) + configs."""
        from transformers import WhisperModel

        folder = Path(folder)
        full = WhisperModel.from_pretrained(self.source)
        full.get_encoder().load_state_dict(self.model.state_dict())
        full.save_pretrained(folder)
        self.extractor.save_pretrained(folder)
        return folder
