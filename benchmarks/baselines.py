"""Baselines that the feature cache replaces (as Brains) and measuring aids.

* :class:`EncoderInLoopAdapterBrain`: stage 1 exactly as :class:`AdapterBrain`, but
  the frozen encoder turns the waveforms into features at every step (as
  SpeechBrain's IEMOCAP wav2vec2 recipe does with a frozen encoder).
* :class:`FullFinetuneBrain`: the encoder itself is fine-tuned (its convolutional
  feature extractor frozen, as in SpeechBrain's recipe) under the stage-2 head
  (WAP-Transformer, SAP, linear classifier) with cross-entropy.

Plus a measuring aid: :class:`StepTimedAdapterBrain` (per-step records). All are
for timing and memory measurements, not for training models.

Authors
 * ser_lib contributors
"""

import time

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.dataio.batch import PaddedData

from benchmarks.measure import current_rss_mib, synchronize
from ser_lib.brains import AdapterBrain
from ser_lib.encoders import absolute_lengths


class FeatureBatch:
    """A batch of padded features that the Brains read like a ``PaddedBatch``.

    Arguments
    ---------
    feats : torch.Tensor
        Features [B, T, D].
    lengths : torch.Tensor
        Relative lengths [B].

    Example
    -------
    >>> batch = FeatureBatch(torch.zeros(2, 3, 4), torch.tensor([1.0, 0.5]))
    >>> feats, lengths = batch.to("cpu").feats
    >>> feats.shape, lengths.tolist()
    (torch.Size([2, 3, 4]), [1.0, 0.5])
    """

    def __init__(self, feats, lengths):
        self.feats = PaddedData(feats, lengths)

    def to(self, device):
        """The batch on ``device``."""
        return FeatureBatch(self.feats.data.to(device), self.feats.lengths.to(device))


class EncoderInLoopAdapterBrain(AdapterBrain):
    """Stage 1 with the frozen encoder run on the waveforms at every step.

    Modules: those of :class:`AdapterBrain` plus ``encoder``
    (a :class:`ser_lib.encoders.FrozenEncoder`). Batches carry ``sig`` (waveforms
    and relative lengths). The wall time of every encoder call is appended to
    ``encoder_seconds``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoder_seconds = []

    def compute_forward(self, batch, stage):
        """Encoder (frozen, no gradient), then :meth:`AdapterBrain.compute_forward`."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig  # [B, S], [B]
        synchronize(self.device)
        start = time.perf_counter()
        feats, feat_lens = self.modules.encoder(wavs, wav_lens)  # [B, T, D], [B]
        synchronize(self.device)
        self.encoder_seconds.append(time.perf_counter() - start)
        return super().compute_forward(FeatureBatch(feats, feat_lens), stage)


class FullFinetuneBrain(sb.Brain):
    """Fine-tuning of the encoder under the stage-2 head.

    Modules: ``encoder`` (the Hugging Face model inside an
    :class:`ser_lib.encoders.HFEncoder`, made trainable by the caller), ``backbone``,
    ``sap``, ``classifier``. Hparams: ``hf_encoder`` (that ``HFEncoder``, whose
    ``encode`` and ``num_frames`` are used with gradients enabled).
    """

    def compute_forward(self, batch, stage):
        """Encoder (with gradients) → WAP-Transformer → SAP → classifier logits."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig  # [B, S], [B]
        hf_encoder = self.hparams.hf_encoder
        lens = absolute_lengths(wav_lens, wavs.shape[1])
        counts = torch.tensor([hf_encoder.num_frames(n) for n in lens.tolist()])
        max_frames = int(counts.max())
        feats = hf_encoder.encode(wavs, lens)[:, :max_frames]  # [B, T, D]
        feat_lens = (counts / max_frames).to(self.device)
        frames = self.modules.backbone(feats, feat_lens)
        return self.modules.classifier(self.modules.sap(frames, feat_lens))

    def compute_objectives(self, predictions, batch, stage):
        """Cross-entropy of the emotion logits."""
        targets = batch.emo_encoded.data.view(-1).to(self.device)  # [B]
        return F.cross_entropy(predictions, targets)


class StepTimedAdapterBrain(AdapterBrain):
    """:class:`AdapterBrain` that records every training step.

    ``step_records`` gets one dict per step: ``seconds`` (wall time of
    ``fit_batch``), ``padded_frames`` (batch size x padded length) and
    ``rss_mib`` (resident set size after the step; None without /proc).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_records = []

    def fit_batch(self, batch):
        """Times :meth:`AdapterBrain.fit_batch`."""
        synchronize(self.device)
        start = time.perf_counter()
        loss = super().fit_batch(batch)
        synchronize(self.device)
        feats = batch.feats.data  # [B, T, D]
        self.step_records.append(
            {
                "seconds": time.perf_counter() - start,
                "padded_frames": int(feats.shape[0] * feats.shape[1]),
                "rss_mib": current_rss_mib(),
            }
        )
        return loss
