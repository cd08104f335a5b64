"""Brains that fine-tune a speech encoder inside the training loop.

* :class:`InLoopBrain`: the base. Parameter groups with their own learning-rate
  scale (``lr_scales``: module name -> multiplier of the schedule, e.g. encoder 0.1,
  heads 1.0), gradient clipping over *every* group (``max_grad_norm``; SpeechBrain's
  own clipping only sees the first group), bf16 through SpeechBrain's ``precision``,
  the non-finite-loss guard (``nonfinite_patience``), a trainable/frozen parameter
  report, and :meth:`InLoopBrain.export_encoder` + a ``done.json`` marker that the
  multi-stage fold driver (:mod:`ser_lib.multistage`) reads.
* :class:`UtteranceSERBrain`: encoder -> BiLSTM -> masked mean -> LinearP ->
  emotion (+ optional gender) outputs; CE or AM-Softmax (GMP-TL stages A and C);
  evaluates the test set like the cached-feature Brains
  (:class:`ser_lib.brains.classifier.UtteranceClassifierBrain`: ``predictions.csv``,
  ``metrics.json``).
* :class:`PseudoLabelBrain`: masked-frame cross-entropy on frame-level pseudo-labels
  of several scales (GMP-TL stage B; HuBERT-style masking).
"""

import json
import math
import os
import shutil
import time

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from ser_lib.brains.base import ProgressBrain, module_param_groups, unwrap
from ser_lib.brains.classifier import UtteranceClassifierBrain
from ser_lib.inloop.heads import IGNORE_INDEX
from ser_lib.models.masking import random_frame_mask

logger = get_logger(__name__)

DONE_FILE = "done.json"
"""Written last by a finished in-loop stage (the fold driver's completion marker)."""

ENCODER_EXPORT = "encoder"
"""Sub-folder of a stage's output folder holding the exported encoder."""


def write_done(folder, info):
    """Writes ``folder/done.json`` atomically (the stage-completion marker).

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> path = write_done(folder, {"stage": "A"})
    >>> json.loads(open(path).read())["stage"]
    'A'
    """
    path = os.path.join(folder, DONE_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    os.replace(path + ".tmp", path)
    return path


class InLoopBrain(ProgressBrain):
    """Base of the Brains that train an encoder inside the loop.

    Hparams: ``lr_schedule`` (progress -> learning rate), ``lr_scales`` (module name
    -> multiplier; modules not listed use 1.0), ``max_grad_norm``, ``precision``,
    ``nonfinite_patience`` (SpeechBrain run options read from the YAML),
    ``epoch_counter``, ``output_folder``.

    The encoder module is ``modules.encoder`` (:mod:`ser_lib.inloop.encoder`).
    """

    _fit_wall_start = None

    def init_optimizers(self):
        """One parameter group per module with trainable weights, with its LR scale."""
        groups = module_param_groups(self.modules, self.hparams.lr_scales)
        self.optimizer = self.opt_class(groups)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def on_fit_start(self):
        """Reports trainable and frozen parameters per module, then as ``sb.Brain``."""
        for name, module in self.modules.items():
            trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
            total = sum(p.numel() for p in module.parameters())
            logger.info(
                "Module %s: %d trainable / %d frozen parameters",
                name,
                trainable,
                total - trainable,
            )
        if self.precision == "fp16":
            raise ValueError(
                "In-loop Brains support precision fp32 or bf16 (fp16 needs loss "
                "scaling before the clipping of every parameter group)"
            )
        super().on_fit_start()

    def current_lr(self):
        """The schedule's learning rate (scale 1.0)."""
        return self.hparams.lr_schedule(self.training_progress())

    def optimizers_step(self):
        """Clips the gradients of every parameter group, then steps."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        max_grad_norm = self.max_grad_norm
        self.max_grad_norm = math.inf  # already clipped over all groups
        try:
            super().optimizers_step()
        finally:
            self.max_grad_norm = max_grad_norm

    def frame_counts(self, wavs, wav_lens):
        """Encoder frames of every row and the padded frame count."""
        lens = torch.round(wav_lens * wavs.shape[1]).long().tolist()
        encoder = unwrap(self.modules.encoder)
        counts = torch.tensor([encoder.num_frames(n) for n in lens])
        return counts, int(counts.max())

    def export_encoder(self):
        """Exports the encoder (``save_pretrained``) to ``output_folder/encoder``."""
        folder = os.path.join(self.hparams.output_folder, ENCODER_EXPORT)
        staging = folder + ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        unwrap(self.modules.encoder).export(staging)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
        logger.info("Encoder exported to %s", folder)
        return folder

    def finish(self, info):
        """Exports the encoder, then writes ``done.json`` (main process only)."""
        if self._fit_wall_start is not None:
            info = {**info, "wall_seconds_this_run": time.time() - self._fit_wall_start}
        run_on_main(self.export_encoder)
        if if_main_process():
            write_done(self.hparams.output_folder, info)

    def fit(self, *args, **kwargs):
        """As :meth:`ProgressBrain.fit`; remembers when it started."""
        self._fit_wall_start = time.time()
        return super().fit(*args, **kwargs)


class UtteranceSERBrain(InLoopBrain, UtteranceClassifierBrain):
    """Utterance-level emotion (+ gender) classification with a trainable encoder.

    Modules: ``encoder``, ``pool`` (:class:`ser_lib.inloop.heads.BiLSTMMeanPool`),
    ``head`` (:class:`ser_lib.inloop.heads.LinearP` whose output has ``n_classes``
    emotion units, followed by ``n_genders`` gender units when ``gender_weight`` >
    0). Hparams: ``emotion_objective`` (``CrossEntropyObjective`` or
    ``AMSoftmaxObjective``), ``gender_weight`` (1 - alpha_e; 0 = no gender task),
    ``n_classes``, ``label_encoder`` and those of :class:`InLoopBrain` and
    :class:`ser_lib.brains.classifier.UtteranceClassifierBrain` (whose evaluation,
    ``predictions.csv`` and ``metrics.json``, it inherits; the parameter groups and
    clipping are :class:`InLoopBrain`'s).

    The loss is ``(1 - gender_weight) L_emo + gender_weight L_gender`` (GMP-TL eq. 1
    with alpha_e = 1 - gender_weight); gender CE ignores unknown genders.
    """

    replicated_modules = ("encoder", "pool", "head")

    def compute_forward(self, batch, stage):
        """Encoder -> BiLSTM + mean -> LinearP; returns the head's outputs."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        feats, frame_lens = self.modules.encoder(wavs, wav_lens)
        pooled = self.modules.pool(feats, frame_lens)
        outputs, embeddings = self.modules.head(pooled)
        return {"outputs": outputs, "embeddings": embeddings}

    def compute_objectives(self, predictions, batch, stage):
        """Weighted emotion + gender loss; keeps the emotion predictions."""
        n_classes = self.hparams.n_classes
        outputs = predictions["outputs"]
        emo_out = outputs[:, :n_classes]
        targets = batch.emo_encoded.data.view(-1)
        objective = self.hparams.emotion_objective
        loss = objective.loss(emo_out, targets)
        gender_weight = self.hparams.gender_weight
        if gender_weight > 0:
            genders = batch.gender_encoded.data.view(-1)
            gender_out = outputs[:, n_classes:].float()
            if bool((genders != IGNORE_INDEX).any()):
                gender_loss = F.cross_entropy(
                    gender_out, genders, ignore_index=IGNORE_INDEX
                )
            else:
                gender_loss = gender_out.sum() * 0.0
            loss = (1.0 - gender_weight) * loss + gender_weight * gender_loss
        probs = objective.logits(emo_out.detach().float()).softmax(dim=-1)
        self.outputs.append((list(batch.id), targets.cpu(), probs.cpu()))
        return loss

    def conclude(self, datasets, loader_kwargs):
        """Evaluates the test set (metrics.json), exports the encoder, marks done."""
        super().conclude(datasets, loader_kwargs)
        self.finish({"brain": type(self).__name__})


class PseudoLabelBrain(InLoopBrain):
    """Masked-frame cross-entropy on multi-scale frame pseudo-labels (GMP-TL stage B).

    Modules: ``encoder`` (its ``forward`` takes ``mask_time_indices``) and ``head``
    (:class:`ser_lib.inloop.heads.LinearP` with ``sum(label_scales)`` outputs).
    Hparams: ``label_scales`` (cluster counts, one per column of the frame labels),
    ``mask_ratio`` and ``mask_span`` (exactly ``round(ratio x valid frames)`` frames
    per utterance in spans, :func:`ser_lib.models.masking.random_frame_mask`).

    The loss is the mean over scales of the CE over masked frames only. A batch
    without any masked frame (utterances of one or two frames) contributes zero.
    Logs the masked-frame accuracy of every scale.
    """

    replicated_modules = ("encoder", "head")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.correct = None
        self.masked = 0

    def compute_forward(self, batch, stage):
        """Masks frames, encodes, projects; returns logits, mask and frame labels."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        counts, max_frames = self.frame_counts(wavs, wav_lens)
        mask = random_frame_mask(
            counts.float() / max_frames,
            max_frames,
            self.hparams.mask_ratio,
            span=self.hparams.mask_span,
        ).to(self.device)
        feats, _ = self.modules.encoder(wavs, wav_lens, mask_time_indices=mask)
        logits, _ = self.modules.head(feats)
        labels = batch.frame_labels.data
        if labels.shape[1] != max_frames:
            raise ValueError(
                f"Frame labels have {labels.shape[1]} frames but the encoder gives "
                f"{max_frames}: the label cache does not match this encoder"
            )
        return {"logits": logits, "mask": mask, "labels": labels}

    def compute_objectives(self, predictions, batch, stage):
        """Mean over scales of the masked-frame CE."""
        mask = predictions["mask"]
        logits = predictions["logits"].float()
        labels = predictions["labels"]
        n_masked = int(mask.sum())
        if self.correct is None:
            self.correct = [0] * len(self.hparams.label_scales)
        if n_masked == 0:
            return logits.sum() * 0.0
        losses = []
        start = 0
        for scale, k in enumerate(self.hparams.label_scales):
            scale_logits = logits[..., start : start + k][mask]  # [M, k]
            targets = labels[..., scale][mask]
            losses.append(F.cross_entropy(scale_logits, targets))
            self.correct[scale] += int((scale_logits.argmax(-1) == targets).sum())
            start += k
        self.masked += n_masked
        return torch.stack(losses).mean()

    def reset_epoch_state(self, stage):
        """Clears the masked-frame accuracy counts."""
        self.correct = None
        self.masked = 0

    def epoch_state(self):
        """Masked-frame counts so far (mid-epoch resume)."""
        return {"correct": self.correct, "masked": self.masked}

    def load_epoch_state(self, state):
        """Restores :meth:`epoch_state`."""
        self.correct = state.get("correct")
        self.masked = state.get("masked", 0)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs loss and masked accuracy per scale; checkpoints (last epoch kept)."""
        stats = {"loss": stage_loss}
        for scale, k in enumerate(self.hparams.label_scales):
            correct = self.correct[scale] if self.correct else 0
            stats[f"acc_K{k}"] = 100.0 * correct / max(self.masked, 1)
        if stage != sb.Stage.TRAIN:
            return
        self.check_replicas()
        self.hparams.train_logger.log_stats(
            {"epoch": epoch, "lr": self.current_lr()}, train_stats=stats
        )
        self.checkpointer.save_and_keep_only(
            meta={"loss": stage_loss}, num_to_keep=self.hparams.checkpoints_to_keep
        )

    def conclude(self, datasets, loader_kwargs):
        """Exports the encoder and marks the stage done (no test evaluation)."""
        del datasets, loader_kwargs
        self.finish({"brain": type(self).__name__})
