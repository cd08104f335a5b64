"""Trainable Hugging Face speech encoders for recipes that fine-tune in the loop.

The frozen extractor (:class:`ser_lib.encoders.HFEncoder`) fills a feature cache once;
the classes here are ``torch.nn.Module`` s whose weights are trained by a Brain:

* :class:`TrainableHFEncoder`: HuBERT, wav2vec 2.0 and WavLM (``transformers``
  ``AutoModel``), waveform input, standardised over the valid samples only (as the
  frozen extractor does), explicit dropout / LayerDrop / SpecAugment settings, the
  convolutional feature encoder frozen by default, non-reentrant gradient
  checkpointing, and ``mask_time_indices`` (frames replaced by the model's learned mask
  embedding) for masked prediction.
* :class:`TrainableWhisperEncoder`: the encoder of a Whisper checkpoint (log-Mel
  input padded to 30 s, as Whisper was trained). Whisper has no mask embedding: the
  stand-in is a learned log-Mel vector written into the input frames of every masked
  output frame (:attr:`TrainableWhisperEncoder.mask_embedding`).

Both export with ``save_pretrained`` (:meth:`export`), so a fine-tuned encoder can be
loaded again by these classes or by the frozen extractor.
"""

import warnings
from pathlib import Path

import torch
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.utils.logger import get_logger
from torch.nn.utils.rnn import pad_sequence

from ser_lib.models.masking import random_frame_mask

logger = get_logger(__name__)


def _select_hidden(outputs, layers):
    """Averages ``hidden_states[i]`` for ``i`` in ``layers``; entry -1 is the output."""
    hidden = list(outputs.hidden_states)
    hidden[-1] = outputs.last_hidden_state
    return torch.stack([hidden[i] for i in layers]).mean(dim=0)


def _check_layers(layers, num_states, source):
    """Normalises layer indices into ``[0, num_states)``; raises if out of range."""
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers:
        raise ValueError("A trainable encoder needs at least one layer index")
    for index in layers:
        if not -num_states <= index < num_states:
            raise ValueError(
                f"Layer index {index} is out of range for {source}, which has "
                f"{num_states} hidden states (indices {-num_states} to {num_states - 1})"
            )
    return [index % num_states for index in layers]


def _enable_checkpointing(model):
    """Non-reentrant gradient checkpointing of the transformer layers.

    ``gradient_checkpointing_enable`` exists in transformers 4 and 5 (deprecated
    alias in 5); ``use_reentrant`` is passed explicitly because 4.x defaults to the
    reentrant variant, which drops the gradients of frozen-input segments.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )


class TrainableHFEncoder(torch.nn.Module):
    """A HuBERT / wav2vec 2.0 / WavLM model fine-tuned inside the training loop.

    Arguments
    ---------
    source : str
        Local folder written by ``save_pretrained`` (or a hub id).
    layers : int or sequence of int
        Indices into ``hidden_states`` averaged into the output (-1 = final output).
    freeze_cnn : bool
        Freeze the convolutional feature encoder (the usual fine-tuning setting).
    freeze_all : bool
        Freeze every weight (a trainable wrapper used as a feature extractor).
    do_normalize : bool
        Standardise every waveform over its valid samples (HuBERT-base: False in its
        preprocessor config; wav2vec 2.0 large / WavLM: True). Explicit: the
        checkpoint's preprocessor config is not consulted.
    hidden_dropout, attention_dropout, activation_dropout, feat_proj_dropout : float
        Dropout settings written into the model config before loading.
    layerdrop : float
        Probability of skipping a transformer layer during training.
    mask_time_prob, mask_time_length : float, int
        SpecAugment over time during training (0 = off): about ``mask_time_prob``
        of the valid frames, in spans of ``mask_time_length``, replaced by the mask
        embedding. Drawn here with :func:`ser_lib.models.masking.random_frame_mask`
        rather than by ``transformers``, whose sampler raises on utterances shorter
        than one span and can mask padding. An explicit ``mask_time_indices`` given
        to :meth:`forward` replaces the random one.
    mask_feature_prob, mask_feature_length : float, int
        HF SpecAugment over channels during training (0 = off).
    gradient_checkpointing : bool
        Non-reentrant activation checkpointing of the transformer layers.
    batch_group_norm : bool
        Only for group-norm feature encoders (``feat_extract_norm == "group"``,
        e.g. HuBERT-base), whose first normalisation sees the padding of a batch.
        False (default): one utterance at a time on its unpadded samples, exactly
        as the frozen extractor computes features. True: the padded batch in one
        call, faster, but padding changes the valid frames slightly.
    norm_eps : float
        Added to the variance in the waveform standardisation.
    sample_rate : int
        Sample rate of the input, Hz.

    Example
    -------
    >>> from transformers import HubertConfig, HubertModel
    >>> config = HubertConfig(
    ...     hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
    ...     intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 8),
    ...     conv_stride=(5, 64), num_conv_pos_embeddings=8,
    ...     num_conv_pos_embedding_groups=2, feat_extract_norm="group")
    >>> model_dir = getfixture("tmp_path") / "hubert"
    >>> HubertModel(config).save_pretrained(model_dir)
    >>> enc = TrainableHFEncoder(model_dir, layers=-1, do_normalize=False)
    >>> feats, lens = enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, lens.tolist(), enc.num_frames(16000)
    (torch.Size([2, 50, 16]), [1.0, 0.5], 50)
    >>> any(p.requires_grad for p in enc.model.feature_extractor.parameters())
    False
    """

    def __init__(
        self,
        source,
        layers=(-1,),
        freeze_cnn=True,
        freeze_all=False,
        do_normalize=False,
        hidden_dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.05,
        mask_time_length=10,
        mask_feature_prob=0.0,
        mask_feature_length=10,
        gradient_checkpointing=False,
        batch_group_norm=False,
        norm_eps=1e-7,
        sample_rate=16000,
    ):
        from transformers import AutoConfig, AutoModel  # slow import, see encoders.py

        super().__init__()
        self.source = str(source)
        config = AutoConfig.from_pretrained(self.source)
        if getattr(config, "add_adapter", False):
            raise ValueError(f"{self.source}: add_adapter=True is not supported")
        settings = {
            "hidden_dropout": hidden_dropout,
            "attention_dropout": attention_dropout,
            "activation_dropout": activation_dropout,
            "feat_proj_dropout": feat_proj_dropout,
            "layerdrop": layerdrop,
            "mask_feature_prob": mask_feature_prob,
            "mask_feature_length": mask_feature_length,
            "mask_time_length": mask_time_length,
            # HF builds masked_spec_embed only when a mask probability is positive at
            # construction, and ignores mask_time_indices unless apply_spec_augment:
            # build with both, then set the requested random-mask probability.
            "mask_time_prob": max(mask_time_prob, 0.05),
            "apply_spec_augment": True,
        }
        for key, value in settings.items():
            setattr(config, key, value)
        self.model = AutoModel.from_pretrained(self.source, config=config)
        self.model.config.mask_time_prob = 0.0  # random masks are drawn in forward
        self.mask_time_prob = float(mask_time_prob)
        self.mask_time_length = int(mask_time_length)
        if not isinstance(getattr(self.model, "masked_spec_embed", None), torch.Tensor):
            raise ValueError(f"{self.source}: the model has no masked_spec_embed")
        self.conv_kernel = [int(k) for k in config.conv_kernel]
        self.conv_stride = [int(s) for s in config.conv_stride]
        self.samples_per_frame = 1
        for stride in self.conv_stride:
            self.samples_per_frame *= stride
        self.use_attention_mask = config.feat_extract_norm == "layer"
        self.batch_group_norm = batch_group_norm
        self.num_states = config.num_hidden_layers + 1
        self.layers = _check_layers(layers, self.num_states, self.source)
        self.output_dim = config.hidden_size
        self.do_normalize = bool(do_normalize)
        self.norm_eps = norm_eps
        self.sample_rate = sample_rate
        self.frame_rate = sample_rate / self.samples_per_frame
        if gradient_checkpointing:
            _enable_checkpointing(self.model)
        if freeze_cnn:
            self.model.feature_extractor.requires_grad_(False)
        if freeze_all:
            self.model.requires_grad_(False)
        logger.info(
            "Trainable %s from %s: layers %s, CNN frozen %s, all frozen %s, "
            "dropout %.2f/%.2f, LayerDrop %.2f, SpecAugment time %.2f x %d",
            config.model_type,
            self.source,
            self.layers,
            freeze_cnn,
            freeze_all,
            hidden_dropout,
            attention_dropout,
            layerdrop,
            mask_time_prob,
            mask_time_length,
        )

    @property
    def min_samples(self):
        """The shortest input that gives one frame (the receptive field)."""
        length = 1
        for kernel, stride in zip(
            reversed(self.conv_kernel), reversed(self.conv_stride), strict=True
        ):
            length = (length - 1) * stride + kernel
        return length

    def num_frames(self, num_samples):
        """Number of output frames of an unpadded input of ``num_samples`` samples."""
        length = int(num_samples)
        for kernel, stride in zip(self.conv_kernel, self.conv_stride, strict=True):
            if length < kernel:
                return 0
            length = (length - kernel) // stride + 1
        return length

    def _normalize(self, wavs, lens):
        """Standardises each waveform over its valid samples; padding stays zero."""
        mask = length_to_mask(lens, max_len=wavs.shape[1], device=wavs.device)
        mask = mask.to(wavs.dtype)
        count = mask.sum(dim=1, keepdim=True)
        mean = (wavs * mask).sum(dim=1, keepdim=True) / count
        var = (((wavs - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count
        return (wavs - mean) / torch.sqrt(var + self.norm_eps) * mask

    def forward(self, wavs, wav_lens, mask_time_indices=None, layers=None):
        """Encodes a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms [B, S].
        wav_lens : torch.Tensor
            Relative lengths [B].
        mask_time_indices : torch.Tensor, optional
            Bool [B, T] (T = frames of the longest input): frames replaced by the
            learned mask embedding before the transformer.
        layers : sequence of int, optional
            Hidden-state indices for this call instead of the constructor's.

        Returns
        -------
        feats : torch.Tensor
            [B, T, output_dim], zero on padded frames.
        frame_lens : torch.Tensor
            Relative lengths in frames [B].
        """
        layers = (
            self.layers
            if layers is None
            else _check_layers(layers, self.num_states, self.source)
        )
        lens = torch.round(wav_lens * wavs.shape[1]).long()
        counts = torch.tensor(
            [self.num_frames(n) for n in lens.tolist()], device=wavs.device
        )
        if int(counts.min()) < 1:
            raise ValueError(
                f"An input of {int(lens.min())} samples is shorter than one frame "
                f"({self.min_samples} samples); pad short utterances when loading"
            )
        max_frames = int(counts.max())
        if mask_time_indices is None and self.training and self.mask_time_prob > 0:
            mask_time_indices = random_frame_mask(
                counts.float() / max_frames,
                max_frames,
                self.mask_time_prob,
                span=self.mask_time_length,
            )
        if mask_time_indices is not None:
            mask_time_indices = mask_time_indices[:, :max_frames].to(wavs.device)
        if self.do_normalize:
            wavs = self._normalize(wavs, lens)
        if self.use_attention_mask or self.batch_group_norm:
            attention_mask = None
            if self.use_attention_mask:
                attention_mask = length_to_mask(
                    lens, max_len=wavs.shape[1], device=wavs.device
                ).long()
            outputs = self.model(
                wavs,
                attention_mask=attention_mask,
                mask_time_indices=mask_time_indices,
                output_hidden_states=True,
            )
            feats = _select_hidden(outputs, layers)[:, :max_frames]
        else:
            rows = []
            for row, (length, count) in enumerate(
                zip(lens.tolist(), counts.tolist(), strict=True)
            ):
                row_mask = None
                if mask_time_indices is not None:
                    row_mask = mask_time_indices[row : row + 1, :count]
                outputs = self.model(
                    wavs[row : row + 1, :length],
                    mask_time_indices=row_mask,
                    output_hidden_states=True,
                )
                rows.append(_select_hidden(outputs, layers)[0])
            feats = pad_sequence(rows, batch_first=True)
        valid = length_to_mask(counts, max_len=max_frames, device=feats.device)
        feats = feats * valid.unsqueeze(-1).to(feats.dtype)
        return feats, (counts / max_frames).to(wav_lens.device)

    def export(self, folder):
        """Writes the model with ``save_pretrained`` plus a preprocessor config.

        The exported folder loads in :class:`TrainableHFEncoder` and in the frozen
        :class:`ser_lib.encoders.HFEncoder` (which reads ``do_normalize`` from the
        preprocessor config written here).
        """
        from transformers import Wav2Vec2FeatureExtractor

        folder = Path(folder)
        self.model.save_pretrained(folder)
        Wav2Vec2FeatureExtractor(
            sampling_rate=self.sample_rate,
            do_normalize=self.do_normalize,
            return_attention_mask=self.use_attention_mask,
        ).save_pretrained(folder)
        return folder


class TrainableWhisperEncoder(torch.nn.Module):
    """The encoder of a Whisper checkpoint, fine-tuned inside the training loop.

    Inputs are converted to Whisper's log-Mel features (the checkpoint's
    ``preprocessor_config.json``) and padded to Whisper's 30 s window; the output is
    cropped to the valid frames (50 Hz; an utterance of ``n`` samples has
    ``ceil((n // hop) / 2)`` frames). Inputs longer than 30 s are rejected (crop
    them when loading).

    Whisper has no mask embedding. For masked prediction (``mask_time_indices``)
    the stand-in is :attr:`mask_embedding`, a learned log-Mel vector (zeros at
    start) written into the two input frames of every masked output frame.

    Arguments
    ---------
    source : str
        Folder of a Whisper checkpoint (``WhisperModel`` + preprocessor config).
    layers : int or sequence of int
        Indices into the encoder's ``hidden_states`` (-1 = final output).
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
    """

    def __init__(
        self,
        source,
        layers=(-1,),
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
        self.source = str(source)
        config = AutoConfig.from_pretrained(self.source)
        for key, value in {
            "dropout": dropout,
            "attention_dropout": attention_dropout,
            "activation_dropout": activation_dropout,
            "encoder_layerdrop": layerdrop,
        }.items():
            setattr(config, key, value)
        full = WhisperModel.from_pretrained(self.source, config=config)
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

    def num_frames(self, num_samples):
        """Number of valid output frames of ``num_samples`` samples (50 Hz)."""
        mel_frames = int(num_samples) // self.hop_length
        return (mel_frames + 1) // 2

    def _log_mel(self, wavs, lens):
        """Whisper's log-Mel features of every row, padded to 30 s: [B, mels, 3000]."""
        if int(lens.max()) > self.window_samples:
            raise ValueError(
                f"Whisper encodes at most {self.window_samples} samples; crop longer "
                "utterances when loading"
            )
        rows = [
            w[:n].float().cpu().numpy()
            for w, n in zip(wavs, lens.tolist(), strict=True)
        ]
        features = self.extractor(
            rows,
            sampling_rate=self.sample_rate,
            return_tensors="pt",
            device=str(wavs.device),
        ).input_features
        return features.to(device=wavs.device, dtype=wavs.dtype)

    def forward(self, wavs, wav_lens, mask_time_indices=None, layers=None):
        """Encodes a padded batch (see :meth:`TrainableHFEncoder.forward`)."""
        layers = (
            self.layers
            if layers is None
            else _check_layers(layers, self.num_states, self.source)
        )
        lens = torch.round(wav_lens * wavs.shape[1]).long()
        counts = torch.tensor(
            [self.num_frames(n) for n in lens.tolist()], device=wavs.device
        )
        if int(counts.min()) < 1:
            raise ValueError(
                f"An input of {int(lens.min())} samples is shorter than one frame "
                f"({self.samples_per_frame} samples); pad short utterances when loading"
            )
        max_frames = int(counts.max())
        features = self._log_mel(wavs, lens)
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
