"""Stage 1: self-supervised adapter training with local attributes (paper Sec. II-B).

A student WAP-Transformer sees the cached encoder features with 40 % of the valid
frames replaced by the learned mask embedding; a teacher (same architecture, EMA of
the student, eqn 2) sees them unmasked. The student is trained with

    L = λ L_rec + (1 - λ) L_pce                                        (eqn 6)

where L_rec (eqn 1) regresses the teacher's frames at the masked positions and L_pce
(eqn 6) classifies each masked frame into the local attribute (prototype, eqns 3-5)
nearest to the teacher's frame, from cosine logits. After every optimiser step the
teacher takes an EMA step and the prototypes a mini-batch k-means step on the teacher's
frames.
"""

import math
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.logger import get_logger

from ser_lib.brains.base import ProgressBrain, optimizer_params, unwrap
from ser_lib.losses import combined_loss, pseudo_ce_loss, reconstruction_loss
from ser_lib.models.ema import copy_weights_, ema_update_
from ser_lib.models.masking import random_frame_mask, valid_mask

logger = get_logger(__name__)

EXPORT_FILES = {
    "teacher": "teacher.ckpt",
    "student": "student.ckpt",
    "local_attributes": "local_attributes.ckpt",
}


class AdapterBrain(ProgressBrain):
    """Teacher-student adapter training (stage 1).

    Modules: ``student`` and ``teacher`` (``WAPTransformer``), ``local_attributes``
    (``LocalAttributes``). Hparams: ``mask_ratio``, ``mask_span``, ``tau``,
    ``ema_alpha``, ``lambda_schedule`` (λ from progress), ``lr_schedule``,
    ``epoch_counter``, ``train_logger``.

    Logged per epoch: L, L_rec, L_pce, λ, L_VQ (k-means distortion, eqn 3), prototype
    perplexity, used and dead prototypes, re-seeded prototypes, teacher target
    variance (a collapse shows as the variance and perplexity falling), learning rate.

    Under DDP the student is wrapped, the teacher is not (it has no gradient): every
    rank applies the same EMA step from the synchronised student, and the k-means
    statistics of the local attributes are all-reduced, so the three modules stay
    identical on every rank (checked after every epoch, see ``check_replicas``).
    L_VQ, perplexity and prototype usage are over all ranks; the losses are rank
    0's (as SpeechBrain's training loss).
    """

    replicated_modules = ("student", "teacher", "local_attributes")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage_sums = {}
        self.train_stats = None

    def on_fit_start(self):
        """The teacher never gets gradients (so DDP leaves it unwrapped)."""
        self.modules.teacher.requires_grad_(False)
        super().on_fit_start()

    def init_optimizers(self):
        """The teacher starts as a copy of the student; only the student is optimised.

        ``sb.Brain.on_fit_start`` calls this after wrapping the student in DDP (which
        gives every rank rank 0's weights) and before the checkpointer recovers, so
        the teacher starts identical on every rank and a resumed run gets the saved
        teacher instead.
        """
        copy_weights_(self.modules.teacher, unwrap(self.modules.student))
        self.optimizer = self.opt_class(  # lr_scales e.g. {student.input_mix: 20.0}
            optimizer_params({"student": self.modules.student}, self.hparams.lr_scales)
        )
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def compute_forward(self, batch, stage):
        """Student on masked input, teacher on the full input (no gradient).

        Returns
        -------
        dict
            ``z_student`` (zero outside the masked frames), ``z_teacher``
            ``[B, T, 384]``, ``mask`` (masked frames) and
            ``valid`` (non-padded frames), both ``[B, T]`` bool.
        """
        batch = batch.to(self.device)
        feats, lengths = batch.feats  # [B, T, input_dim], [B] relative
        max_len = feats.shape[1]
        valid = valid_mask(lengths, max_len, device=self.device)
        mask = random_frame_mask(
            lengths, max_len, self.hparams.mask_ratio, span=self.hparams.mask_span
        ).to(self.device)
        # Both losses only read the student at masked frames: compute just those.
        z_student = self.modules.student(
            feats, lengths, frame_mask=mask, output_mask=mask
        )
        teacher = self.modules.teacher.eval()
        with torch.inference_mode():
            z_teacher = teacher(feats, lengths)
        return {
            "z_student": z_student,
            "z_teacher": z_teacher,
            "mask": mask,
            "valid": valid,
        }

    def compute_objectives(self, predictions, batch, stage):
        """L = λ L_rec + (1 - λ) L_pce (eqns 1 and 6)."""
        z_s, z_t = predictions["z_student"], predictions["z_teacher"]
        mask, valid = predictions["mask"], predictions["valid"]
        attributes = unwrap(self.modules.local_attributes)
        teacher_frames = z_t[valid].float()  # [N, 384]
        if not bool(attributes.initialized):
            attributes.initialize(teacher_frames)
        # Pseudo-labels: nearest local attribute of each teacher frame (eqn 4);
        # the k-means step (eqn 5) after the optimiser step reuses this assignment.
        assignment = attributes.assign(teacher_frames)
        predictions["assignment"] = assignment
        targets = torch.zeros(mask.shape, dtype=torch.long, device=self.device)
        targets[valid] = assignment[0]

        l_rec = reconstruction_loss(z_t, z_s, mask)
        l_pce = pseudo_ce_loss(
            z_s,
            attributes.prototypes,
            targets,
            mask,
            tau=self.hparams.tau,
            logits=self.hparams.pce_logits,
        )
        # validation: the λ of the end of the epoch, not of its batch counter
        lam = self.hparams.lambda_schedule(self.stage_progress(stage))
        loss = combined_loss(l_rec, l_pce, lam)

        self._accumulate(
            stage,
            L=loss.detach(),
            L_rec=l_rec.detach(),
            L_pce=l_pce.detach(),
            lambda_=lam,
            target_var=teacher_frames.var(dim=0).mean(),
        )
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """After an optimiser step: EMA teacher step (eqn 2), k-means step (eqn 5).

        The k-means step reuses the assignment of the teacher frames computed for
        the pseudo-labels (the prototypes have not moved since).
        """
        if not should_step:
            return
        ema_update_(
            self.modules.teacher, unwrap(self.modules.student), self.hparams.ema_alpha
        )
        teacher_frames = outputs["z_teacher"][outputs["valid"]].float()
        stats = unwrap(self.modules.local_attributes).update(
            teacher_frames, assignment=outputs["assignment"]
        )
        self._accumulate(
            sb.Stage.TRAIN,
            L_VQ=stats["distortion"],
            perplexity=stats["perplexity"],
            used=stats["used"],
            dead=stats["dead"],
            reseeded=stats["reseeded"],
        )

    def _accumulate(self, stage, **values):
        """Running sums for the epoch averages, on the device (no host sync).

        Tensors are summed where they are; :meth:`sync_epoch_state` reads them.
        """
        sums = self.stage_sums.setdefault(stage, {})
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().double()
            total, count = sums.get(key, (0.0, 0))
            sums[key] = (total + value, count + 1)

    def sync_epoch_state(self):
        """Reads the training sums into Python numbers; raises on a non-finite one."""
        self._read_sums(sb.Stage.TRAIN)

    def _read_sums(self, stage):
        """The stage's running sums as Python numbers (one host sync)."""
        sums = self.stage_sums.get(stage, {})
        on_device = [key for key, (total, _) in sums.items() if torch.is_tensor(total)]
        if on_device:
            totals = torch.stack([sums[key][0] for key in on_device]).tolist()
            for key, total in zip(on_device, totals, strict=True):
                sums[key] = (total, sums[key][1])
        for key, (total, _) in sums.items():
            if not math.isfinite(total):
                raise ValueError(f"Non-finite {key} by step {self.step}; stopping")
        return sums

    def _averages(self, stage):
        sums = self._read_sums(stage)
        return {
            key.rstrip("_"): total / max(count, 1)
            for key, (total, count) in sums.items()
        }

    def reset_epoch_state(self, stage):
        """Resets the stage's running sums."""
        self.stage_sums[stage] = {}

    def epoch_state(self):
        """The training epoch's running sums, ``{key: [total, count]}``."""
        sums = self.stage_sums.get(sb.Stage.TRAIN, {})
        return {key: [total, count] for key, (total, count) in sums.items()}

    def load_epoch_state(self, state):
        """Restores the training epoch's running sums (mid-epoch resume)."""
        self.stage_sums[sb.Stage.TRAIN] = {
            key: (float(total), int(count)) for key, (total, count) in state.items()
        }

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the epoch's averages and saves a checkpoint."""
        stage_loss = self.training_loss(stage, stage_loss)
        stats = {"loss": stage_loss, **self._averages(stage)}
        if stage == sb.Stage.TRAIN:
            self.check_replicas()
            self.train_stats = stats
            if self.has_valid_set:
                return  # logged with the validation stats
        if stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            return
        valid_stats = stats if stage == sb.Stage.VALID else None
        self.hparams.train_logger.log_stats(
            {"epoch": epoch, "lr": self.current_lr()},
            train_stats=self.train_stats,
            valid_stats=valid_stats,
        )
        self.checkpointer.save_and_keep_only(
            meta={"loss": stage_loss}, num_to_keep=self.hparams.checkpoints_to_keep
        )

    def export(self, folder):
        """Writes the teacher, student and local attributes as plain state dicts.

        Stage 2 initialises its backbone from ``folder/teacher.ckpt`` (or the student).
        """
        if not if_main_process():
            return
        os.makedirs(folder, exist_ok=True)
        # The teacher goes last: its file marks a complete export (the
        # cross-validation driver skips stage 1 of a fold that has it).
        for name in sorted(EXPORT_FILES, key=lambda name: name == "teacher"):
            filename = EXPORT_FILES[name]
            module = unwrap(self.modules[name])
            tmp = os.path.join(folder, filename + ".tmp")
            torch.save(module.state_dict(), tmp)
            os.replace(tmp, os.path.join(folder, filename))
        logger.info("Adapter exported to %s", folder)

    def conclude(self, datasets, loader_kwargs):
        """After ``fit``: exports the adapter for stage 2 (``hparams.adapter_folder``)."""
        del datasets, loader_kwargs  # stage 1 has no test evaluation
        self.export(self.hparams.adapter_folder)
