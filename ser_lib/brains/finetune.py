"""Stage 2: fine-tuning for emotion classification with SAP (paper Sec. II-C).

The WAP-Transformer backbone (initialised from the stage-1 teacher, the student, or at
random for the paper's "w/o adapter training" ablation) feeds statistical attentive
pooling (eqn 7) and a linear classifier trained with cross-entropy. Minority-class
copies (``augment`` = 1) have a random fraction of their frames replaced by the learned
mask embedding, which stage 1 trained the model to fill in.
"""

import os

import speechbrain as sb
import torch
from speechbrain.utils.logger import get_logger

from ser_lib.brains.adapter import EXPORT_FILES
from ser_lib.brains.base import unwrap
from ser_lib.brains.classifier import UtteranceClassifierBrain
from ser_lib.models.augment import augmentation_mask

logger = get_logger(__name__)

BACKBONE_INITS = ("teacher", "student", "random")


class FinetuneBrain(UtteranceClassifierBrain):
    """SAP fine-tuning and evaluation (stage 2).

    Modules: ``backbone`` (``WAPTransformer``), ``sap``
    (``StatisticalAttentivePooling``), ``classifier`` (linear). Hparams:
    ``backbone_init`` (teacher | student | random), ``adapter_folder`` (stage-1 export),
    ``freeze_backbone``, ``augment_mask_fraction``, and those of
    :class:`ser_lib.brains.classifier.UtteranceClassifierBrain` (training, evaluation
    and its ``predictions.csv`` / ``metrics.json``).
    """

    replicated_modules = ("backbone", "sap", "classifier")

    def on_fit_start(self):
        """Initialises the backbone, then lets the checkpointer recover a run."""
        self.init_backbone()
        if self.hparams.freeze_backbone:
            self.modules.backbone.requires_grad_(False)
        super().on_fit_start()

    def init_backbone(self):
        """Loads the stage-1 weights named by ``backbone_init`` into the backbone."""
        init = self.hparams.backbone_init
        if init not in BACKBONE_INITS:
            raise ValueError(
                f"backbone_init must be one of {BACKBONE_INITS}, not {init!r}"
            )
        if init == "random":
            logger.info(
                "Backbone left at its random initialisation (no adapter training)"
            )
            return
        path = os.path.join(self.hparams.adapter_folder, EXPORT_FILES[init])
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Stage-1 {init} weights not found at {path}: run stage 1 "
                "(hparams/adapter.yaml) for this fold first, or set backbone_init: random"
            )
        state = torch.load(path, map_location="cpu")
        unwrap(self.modules.backbone).load_state_dict(state)
        logger.info("Backbone initialised from the stage-1 %s (%s)", init, path)

    def compute_forward(self, batch, stage):
        """Backbone → SAP → classifier.

        Returns
        -------
        dict
            ``logits`` ``[B, C]`` and ``embeddings`` (SAP output ``[B, 2·D·H]``).
        """
        batch = batch.to(self.device)
        feats, lengths = batch.feats  # [B, T, input_dim], [B] relative
        frame_mask = None
        if stage == sb.Stage.TRAIN and self.hparams.augment_mask_fraction > 0:
            # On the host: deciding whether to mask needs no device sync.
            is_copy = torch.as_tensor(batch.augment, dtype=torch.bool, device="cpu")
            if bool(is_copy.any()):
                frame_mask = augmentation_mask(
                    lengths, feats.shape[1], is_copy, self.hparams.augment_mask_fraction
                ).to(self.device)
        if self.hparams.freeze_backbone:
            self.modules.backbone.eval()
        frames = self.modules.backbone(feats, lengths, frame_mask=frame_mask)
        embeddings = self.modules.sap(frames, lengths)
        logits = self.modules.classifier(embeddings)
        return {"logits": logits, "embeddings": embeddings}
