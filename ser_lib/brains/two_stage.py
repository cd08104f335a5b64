"""The Brain of two-stage adapter fine-tuning (Gao et al., ICASSP 2024).

:class:`MultiTaskSSLBrain` trains a speech encoder (fully, or frozen with adapters
inside, see :mod:`ser_lib.models.encoder_adapters`) with utterance-level heads for
emotion and auxiliary tasks (:class:`ser_lib.models.task_heads.MultiTaskHead`) and an
optional character CTC head on the frames. One class covers the paper's settings:

* stage 1 (eqn 4): emotion + ASR, the encoder fully fine-tuned (CNN frozen);
* stage 2 (eqn 5, + SCL): the stage-1 encoder frozen with LoRA and bottleneck
  adapters, emotion + gender + style with per-task adapters, a fusion setting and
  optionally a self-contrastive loss;
* the single-stage rows of Table 1 (eqn 3): any subset of ASR, gender and style.

The loss is ``(1 - k w) L_emotion + w sum_k L_k`` over the k auxiliary tasks present
(:func:`ser_lib.multitask_losses.auxiliary_weighted_loss`), plus ``scl_weight * SCL``.
Evaluation adds to ``metrics.json``: ``<task>_UA`` of every auxiliary task, the
corpus-level ``WER`` of greedy CTC decoding and, with ``score_by`` (e.g. ``style``),
the emotion UA of each value of that column (``UA_improvised``, ``UA_scripted``: a
lexical-leakage check, scripted dialogs repeat their lines in every session).
Every stage also logs the mean unweighted loss of each task (``loss_emotion``,
``loss_asr``, ``loss_<task>``) in ``train_log`` and ``metrics.json``, and a test with
ASR writes ``asr_hypotheses.csv`` (per-utterance greedy hypotheses and word errors,
:func:`ser_lib.text.ctc.write_word_errors`) next to ``predictions.csv``.
"""

import json
import os

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger
from speechbrain.utils.metric_stats import ErrorRateStats

from ser_lib.brains.base import unwrap
from ser_lib.brains.classifier import UtteranceClassifierBrain
from ser_lib.brains.inloop import InLoopBrain, write_done
from ser_lib.inloop.heads import IGNORE_INDEX
from ser_lib.metrics import ser_scores
from ser_lib.models.trainable_params import trainable_state_dict
from ser_lib.multitask_losses import (
    auxiliary_weighted_loss,
    fused_cross_entropy,
    fused_probabilities,
)
from ser_lib.text.ctc import (
    append_word_errors,
    ctc_loss_fp32,
    greedy_transcripts,
    write_word_errors,
)

logger = get_logger(__name__)

ASR_HYPOTHESES_FILE = "asr_hypotheses.csv"
"""Per-utterance greedy CTC hypotheses and word errors of the test set."""
HEADS_FILE = "heads.ckpt"
"""State of the ``head`` module written by a finished stage (warm start of the next)."""
ADAPTERS_FILE = "encoder_adapters.ckpt"
"""The trainable encoder parameters (the adapters) of a finished stage that does not
export its encoder: the stage 1 of Table 2 setting 1
(:func:`ser_lib.models.encoder_adapters.load_merged_adapters`)."""


def masked_cross_entropy(logits, labels):
    """Cross-entropy over the labels that are not ``IGNORE_INDEX`` (0 if none).

    Example
    -------
    >>> logits = torch.zeros(2, 2)
    >>> round(float(masked_cross_entropy(logits, torch.tensor([1, -1]))), 4)
    0.6931
    >>> float(masked_cross_entropy(logits, torch.tensor([-1, -1])))
    0.0
    """
    if not bool((labels != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def load_matching_state(module, path, prefixes=("",)):
    """Loads the entries of a saved state dict whose names and shapes match.

    Arguments
    ---------
    module : torch.nn.Module
        Target.
    path : str
        A ``torch.save`` d state dict.
    prefixes : sequence of str
        Only names starting with one of these are loaded.

    Returns
    -------
    list of str
        Names loaded.

    Example
    -------
    >>> path = getfixture("tmp_path") / "s.ckpt"
    >>> torch.save(torch.nn.Linear(2, 3).state_dict(), path)
    >>> load_matching_state(torch.nn.Linear(2, 3), path)
    ['weight', 'bias']
    >>> load_matching_state(torch.nn.Linear(4, 3), path)
    ['bias']
    >>> load_matching_state(torch.nn.Linear(2, 3), path, prefixes=["w"])
    ['weight']
    """
    saved = torch.load(path, map_location="cpu", weights_only=True)
    own = module.state_dict()
    loaded = {
        k: v
        for k, v in saved.items()
        if k in own and own[k].shape == v.shape and k.startswith(tuple(prefixes))
    }
    module.load_state_dict(loaded, strict=False)
    return list(loaded)


class MultiTaskSSLBrain(InLoopBrain, UtteranceClassifierBrain):
    """Emotion with auxiliary tasks (ASR by CTC, gender, style) on a trainable encoder.

    Modules: ``encoder`` (:mod:`ser_lib.inloop.encoder`, possibly with adapters),
    ``head`` (:class:`ser_lib.models.task_heads.MultiTaskHead`) and, with ``asr``,
    ``ctc_head`` (frames -> ``ctc_outputs`` logits).

    Hparams: ``asr`` (bool), ``aux_tasks`` (auxiliary tasks, each a manifest column
    with ``<column>_encoded`` labels and a head classifier, e.g. ``[gender, style]``),
    ``aux_weight`` (alpha / lambda / beta), ``scl_loss`` (None or a callable on a
    list of embeddings, e.g. :func:`ser_lib.multitask_losses.scl_cos`),
    ``scl_tasks``, ``scl_weight``, ``warm_start_heads`` (None or a stage's
    :data:`HEADS_FILE`: the entries whose names start with one of
    ``warm_start_prefixes`` and whose shapes match are loaded before checkpoint
    recovery),
    ``export_encoder`` (export the encoder when done: stage 1), ``score_by`` (None
    or a column of ``label_classes``), ``char_encoder``
    (set by :func:`ser_lib.inloop.transcribed.transcribed_dataio`), and those of
    :class:`ser_lib.brains.inloop.InLoopBrain` (parameter groups, clipping) and
    :class:`ser_lib.brains.classifier.UtteranceClassifierBrain` (evaluation files).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.replicated_modules = tuple(self.modules.keys())
        if self.hparams.asr and "ctc_head" not in self.modules:
            raise ValueError("asr: True needs a ctc_head module")
        self.current_stage = None
        self.aux_outputs = {}
        self.wer_stats = None
        self.groups = []
        self.task_loss_sums = {}
        self.task_loss_batches = 0

    def reset_epoch_state(self, stage):
        """Clears the kept predictions and per-task loss sums of every task."""
        super().reset_epoch_state(stage)
        self.current_stage = stage
        self.aux_outputs = {task: [] for task in self.hparams.aux_tasks}
        self.wer_stats = ErrorRateStats()
        self.groups = []
        self.task_loss_sums = {}
        self.task_loss_batches = 0

    def epoch_state(self):
        """As the base class, plus the per-task loss sums (mid-epoch resume)."""
        state = super().epoch_state()
        state["task_loss_sums"] = {k: float(v) for k, v in self.task_loss_sums.items()}
        state["task_loss_batches"] = self.task_loss_batches
        return state

    def load_epoch_state(self, state):
        """Restores :meth:`epoch_state`."""
        super().load_epoch_state(state)
        self.task_loss_sums = {
            k: torch.tensor(v, dtype=torch.float64, device=self.device)
            for k, v in state.get("task_loss_sums", {}).items()
        }
        self.task_loss_batches = state.get("task_loss_batches", 0)

    def _add_task_losses(self, losses):
        """Sums each task's unweighted batch loss on the device (no host sync);
        non-finite values count as zero, as the running total loss."""
        for task, value in losses.items():
            value = value.detach().double()
            value = torch.where(torch.isfinite(value), value, 0.0)
            kept = self.task_loss_sums.get(task)
            self.task_loss_sums[task] = value if kept is None else kept + value
        self.task_loss_batches += 1

    def task_losses(self):
        """The stage's mean unweighted loss of each task: ``{"loss_<task>": value}``
        (``loss_emotion``, ``loss_asr`` for CTC, ``loss_gender`` ...)."""
        batches = max(self.task_loss_batches, 1)
        return {f"loss_{k}": float(v) / batches for k, v in self.task_loss_sums.items()}

    def compute_forward(self, batch, stage):
        """Encoder, task heads and (with ASR) the CTC head."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        feats, frame_lens = self.modules.encoder(wavs, wav_lens)
        outputs = self.modules.head(feats, frame_lens)
        ctc_logits = self.modules.ctc_head(feats) if self.hparams.asr else None
        return {"outputs": outputs, "ctc_logits": ctc_logits, "frame_lens": frame_lens}

    def compute_objectives(self, predictions, batch, stage):
        """Weighted multi-task loss (+ SCL); keeps predictions for the scores."""
        outputs = predictions["outputs"]
        targets = batch.emo_encoded.data.view(-1)
        emotion_loss = fused_cross_entropy(outputs.emotion_logits, targets)
        evaluating = stage != sb.Stage.TRAIN
        aux = {}
        for task in self.hparams.aux_tasks:
            labels = getattr(batch, f"{task}_encoded").data.view(-1)
            logits = outputs.logits[task]
            aux[task] = masked_cross_entropy(logits, labels)
            if evaluating:
                self.aux_outputs[task].append((labels.cpu(), logits.argmax(-1).cpu()))
        if self.hparams.asr:
            tokens, token_lens = batch.tokens
            logits, frame_lens = predictions["ctc_logits"], predictions["frame_lens"]
            aux["asr"] = ctc_loss_fp32(logits, tokens, frame_lens, token_lens)
            if evaluating:
                hyps = greedy_transcripts(logits, frame_lens, self.hparams.char_encoder)
                append_word_errors(
                    self.wer_stats, list(batch.id), hyps, list(batch.wrd)
                )
        self._add_task_losses({"emotion": emotion_loss, **aux})
        loss = auxiliary_weighted_loss(emotion_loss, aux, self.hparams.aux_weight)
        if self.hparams.scl_loss is not None:
            embeddings = [outputs.embeddings[task] for task in self.hparams.scl_tasks]
            loss = loss + self.hparams.scl_weight * self.hparams.scl_loss(embeddings)
        probs = fused_probabilities(outputs.emotion_logits.detach())
        self.outputs.append((list(batch.id), targets.cpu(), probs.cpu()))
        if evaluating and self.hparams.score_by is not None:
            column = self.hparams.score_by
            self.groups.append(getattr(batch, f"{column}_encoded").data.view(-1).cpu())
        return loss

    def stage_scores(self, stage_loss):
        """Emotion scores and per-task losses, plus auxiliary UA and WER outside
        training."""
        stats = super().stage_scores(stage_loss)
        stats.update(self.task_losses())
        if self.current_stage == sb.Stage.TRAIN:
            return stats
        for task, kept in self.aux_outputs.items():
            if not kept:
                continue
            labels = torch.cat([k[0] for k in kept]).numpy()
            predicted = torch.cat([k[1] for k in kept]).numpy()
            known = labels != IGNORE_INDEX
            if known.any():
                scores = ser_scores(labels[known], predicted[known])
                stats[f"{task}_UA"] = 100.0 * scores["UA"]
        if self.hparams.asr and self.wer_stats.ids:
            stats["WER"] = float(self.wer_stats.summarize("WER"))
        if self.groups:
            stats.update(self._scores_by_group())
        return stats

    def _scores_by_group(self):
        """Emotion UA of each value of the ``score_by`` column."""
        _, targets, probs = self.gather_predictions()
        groups = torch.cat(self.groups).numpy()
        values = self.hparams.label_classes[self.hparams.score_by]
        scores = {}
        for index, value in enumerate(values):
            keep = groups == index
            if keep.any():
                ua = ser_scores(targets[keep], probs[keep].argmax(axis=1))["UA"]
                scores[f"UA_{value}"] = 100.0 * ua
        return scores

    def write_evaluation(self, stats):
        """As the base class, with the auxiliary UAs, WER and per-task losses added
        to ``metrics.json``; with ASR also writes :data:`ASR_HYPOTHESES_FILE`."""
        super().write_evaluation(stats)
        extra = {
            k: v
            for k, v in stats.items()
            if k.endswith("_UA") or k.startswith(("UA_", "loss_")) or k == "WER"
        }
        path = os.path.join(self.hparams.output_folder, "metrics.json")
        with open(path, encoding="utf-8") as f:
            metrics = json.load(f)
        metrics.update(extra)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
        os.replace(path + ".tmp", path)
        if self.hparams.asr and self.wer_stats.ids:
            hypotheses = os.path.join(self.hparams.output_folder, ASR_HYPOTHESES_FILE)
            write_word_errors(hypotheses, self.wer_stats)
            empty = sum(score["hyp_empty"] for score in self.wer_stats.scores)
            logger.info(
                "Test ASR: %d of %d greedy hypotheses empty (all blank) -> %s",
                empty,
                len(self.wer_stats.scores),
                hypotheses,
            )
        if extra:
            logger.info("Test, auxiliary tasks: %s", extra)

    def on_fit_start(self):
        """Warm-starts the heads (before checkpoint recovery), then as the base."""
        source = self.hparams.warm_start_heads
        if source is not None:
            loaded = load_matching_state(
                unwrap(self.modules.head), source, self.hparams.warm_start_prefixes
            )
            logger.info("Heads warm-started from %s: %s", source, loaded)
        super().on_fit_start()

    def conclude(self, datasets, loader_kwargs):
        """Evaluates the test set, saves the heads, exports the encoder if asked
        (else saves its trainable parameters, the adapters), and marks the stage
        done."""
        super().conclude(datasets, loader_kwargs)
        info = {"brain": type(self).__name__}
        if self.hparams.export_encoder:
            run_on_main(self._save_heads)
            self.finish(info)
        elif if_main_process():
            self._save_heads()
            self._save_state(
                ADAPTERS_FILE, trainable_state_dict(unwrap(self.modules.encoder))
            )
            write_done(self.hparams.output_folder, info)

    def _save_heads(self):
        self._save_state(HEADS_FILE, unwrap(self.modules.head).state_dict())

    def _save_state(self, name, state):
        path = os.path.join(self.hparams.output_folder, name)
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)
