"""Trainable HuBERT, wav2vec 2.0 and WavLM encoders (``transformers`` ``AutoModel``)."""

from pathlib import Path

import torch
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.utils.logger import get_logger
from torch.nn.utils.rnn import pad_sequence

from ser_lib.inloop.encoder.common import (
    _check_layers,
    _enable_checkpointing,
    _frame_counts,
    _layers_for_call,
    _select_hidden,
)
from ser_lib.models.masking import random_frame_mask

logger = get_logger(__name__)


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
        from transformers import AutoConfig, AutoModel  # slow import, see encoders.hf

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
        layers = _layers_for_call(layers, self.layers, self.num_states, self.source)
        lens, counts, max_frames = _frame_counts(
            self.num_frames, wavs, wav_lens, self.min_samples
        )
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
