"""Utterance classification on cached features: training, evaluation, output files.

The common ground of the stage-2 fine-tuning (:class:`ser_lib.brains.FinetuneBrain`)
and the frozen-encoder baseline (:class:`ser_lib.brains.BaselineBrain`): cross-entropy
on the utterance logits that a subclass's ``compute_forward`` returns, UA/WA/F1 per
stage, model selection, and the evaluation files of the test fold that the fold
driver, the report and the results table read.
"""

import csv
import json
import os

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.logger import get_logger

from ser_lib.brains.base import ProgressBrain, optimizer_params
from ser_lib.metrics import confusion_matrix, ser_scores

logger = get_logger(__name__)


class UtteranceClassifierBrain(ProgressBrain):
    """Trains and evaluates an utterance classifier (subclasses give the forward).

    ``compute_forward`` must return a dict with ``logits`` ``[B, C]``. Hparams:
    ``label_encoder``, ``lr_schedule``, ``epoch_counter``, ``train_logger``,
    ``checkpoints_to_keep``, ``output_folder``.

    Evaluation writes ``predictions.csv`` (one row per utterance with every class
    probability) and ``metrics.json`` (UA, WA, F1 in percent, confusion matrix, the
    training utterances per class and the classes absent from training).

    Under DDP the training scores in the log are over rank 0's share of the data;
    every rank evaluates the whole validation and test sets and only rank 0 writes.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_stats = None
        self.outputs = []
        self.train_class_counts = None
        self.skipped_audio = {}

    def optimizer_params(self):
        """What the optimizer gets: the trainable parameters, in one group, or one
        group per module (and scaled submodule) when ``lr_scales`` sets a scale
        (e.g. a larger learning rate for layer weights, see
        :func:`ser_lib.brains.base.module_param_groups`)."""
        return optimizer_params(self.modules, self.hparams.lr_scales)

    def init_optimizers(self):
        """Optimises :meth:`optimizer_params`."""
        self.optimizer = self.opt_class(self.optimizer_params())
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def compute_objectives(self, predictions, batch, stage):
        """Cross-entropy; the predictions are kept on the device (no host sync)."""
        logits = predictions["logits"]
        targets = batch.emo_encoded.data.view(-1)  # [B]
        loss = F.cross_entropy(logits.float(), targets)  # float32 under autocast
        self.outputs.append(
            (list(batch.id), targets, logits.detach().float().softmax(dim=-1))
        )
        return loss

    def reset_epoch_state(self, stage):
        """Clears the kept predictions."""
        self.outputs = []

    def epoch_state(self):
        """The training epoch's predictions so far: ids, true indices, probabilities."""
        if not self.outputs:
            return {}
        ids, targets, probs = self.gather_predictions()
        return {"ids": ids, "targets": targets.tolist(), "probs": probs.tolist()}

    def load_epoch_state(self, state):
        """Restores the training epoch's predictions (mid-epoch resume)."""
        self.outputs = []
        if state:
            self.outputs.append(
                (
                    list(state["ids"]),
                    torch.tensor(state["targets"], dtype=torch.long),
                    torch.tensor(state["probs"], dtype=torch.float32),
                )
            )

    def gather_predictions(self):
        """The stage's predictions: ids, true indices ``[N]``, probabilities ``[N, C]``."""
        ids = [i for batch_ids, _, _ in self.outputs for i in batch_ids]
        targets = torch.cat([t.cpu() for _, t, _ in self.outputs]).numpy()
        probs = torch.cat([p.cpu() for _, _, p in self.outputs]).numpy()
        return ids, targets, probs

    def stage_scores(self, stage_loss):
        """Loss and UA/WA/F1 (percent) of the stage's predictions."""
        _, targets, probs = self.gather_predictions()
        scores = ser_scores(targets, probs.argmax(axis=1), num_classes=probs.shape[1])
        return {"loss": stage_loss, **{k: 100.0 * v for k, v in scores.items()}}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, checkpoints, and writes the evaluation files."""
        stage_loss = self.training_loss(stage, stage_loss)
        stats = self.stage_scores(stage_loss)
        if stage == sb.Stage.TRAIN:
            self.check_replicas()
            self.train_stats = stats
            if self.has_valid_set:
                return
        if stage in (sb.Stage.TRAIN, sb.Stage.VALID):
            valid_stats = stats if stage == sb.Stage.VALID else None
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": self.current_lr()},
                train_stats=self.train_stats,
                valid_stats=valid_stats,
            )
            if valid_stats is not None:
                # Optional model selection on a held-out training speaker.
                self.checkpointer.save_and_keep_only(
                    meta={"UA": stats["UA"]}, max_keys=["UA"]
                )
            else:
                # Default: the last epoch is the model (the test session is never peeked at).
                self.checkpointer.save_and_keep_only(
                    meta={"loss": stage_loss},
                    num_to_keep=self.hparams.checkpoints_to_keep,
                )
            return
        self.hparams.train_logger.log_stats(
            {"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
        )
        if if_main_process():
            self.write_evaluation(stats)

    def write_evaluation(self, stats):
        """Writes ``predictions.csv`` and ``metrics.json`` into the output folder."""
        ids, targets, probs = self.gather_predictions()
        classes = [self.hparams.label_encoder.ind2lab[i] for i in range(probs.shape[1])]
        predicted = probs.argmax(axis=1)
        folder = self.hparams.output_folder
        rows_path = os.path.join(folder, "predictions.csv")
        with open(rows_path + ".tmp", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["ID", "true", "predicted", *[f"prob_{c}" for c in classes]]
            )
            for utt, true, pred, prob in zip(
                ids, targets, predicted, probs, strict=True
            ):
                writer.writerow(
                    [utt, classes[true], classes[pred], *[f"{p:.6f}" for p in prob]]
                )
        os.replace(rows_path + ".tmp", rows_path)
        metrics = {
            "UA": stats["UA"],
            "WA": stats["WA"],
            "F1": stats["F1"],
            "loss": float(stats["loss"]),
            "n_test": len(ids),
            "classes": classes,
            "confusion_matrix": confusion_matrix(
                targets, predicted, num_classes=len(classes)
            ).tolist(),
        }
        if self.train_class_counts is not None:
            metrics["train_class_counts"] = self.train_class_counts
            metrics["classes_absent_from_training"] = [
                label for label, count in self.train_class_counts.items() if count == 0
            ]
        metrics["unusable_audio_skipped"] = self.skipped_audio
        metrics_path = os.path.join(folder, "metrics.json")
        with open(metrics_path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
        os.replace(metrics_path + ".tmp", metrics_path)
        logger.info(
            "Test: UA %.2f WA %.2f F1 %.2f on %d utterances -> %s",
            metrics["UA"],
            metrics["WA"],
            metrics["F1"],
            len(ids),
            metrics_path,
        )

    def conclude(self, datasets, loader_kwargs):
        """After ``fit``: evaluates the chosen checkpoint on the test session.

        The model is the last epoch, or the best validation UA when a validation set
        (a held-out training speaker) exists. The label encoder is saved next to the
        results so the model can be used for inference.
        """
        self.train_class_counts = datasets["train_class_counts"]
        self.skipped_audio = datasets.get("skipped_audio", {})
        if if_main_process():
            self.hparams.label_encoder.save(
                os.path.join(self.hparams.output_folder, "label_encoder.txt")
            )
        self.evaluate(
            datasets["test"],
            max_key="UA" if self.has_valid_set else None,
            test_loader_kwargs=loader_kwargs,
        )
