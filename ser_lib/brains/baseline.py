"""The frozen-encoder baseline (SUPERB / EmoBox style), the bar the method must clear.

Cached encoder features (one layer, or a learnable softmax-weighted sum of the layers
the cache holds) → a linear projection of every frame → mean pooling over the valid
frames → a linear classifier. No adapter, no stage 1: the fold driver runs stage 2
only (``adapter_folder: null`` in ``hparams/baseline.yaml``). Training, evaluation and
the output files are those of stage 2 (:class:`UtteranceClassifierBrain`), so the fold
driver, the report and the results table read a baseline fold like any other.
"""

from ser_lib.brains.classifier import UtteranceClassifierBrain


class BaselineBrain(UtteranceClassifierBrain):
    """Layer mix → projection → masked pooling → classifier.

    Modules: ``layer_mix`` (:class:`ser_lib.models.baseline.LayerWeightedSum`),
    ``projection`` and ``classifier`` (linear). Hparams: ``pooling`` (a function
    ``(frames [B, T, D], relative lengths [B]) -> [B, D]`` that ignores the padding,
    e.g. :func:`ser_lib.models.mean_pool`), ``lr_scales`` (module name -> multiplier
    of the schedule's learning rate, e.g. ``{layer_mix: 20.0}`` for the layer
    weights; empty: one parameter group, as before the option existed), and those
    of :class:`ser_lib.brains.classifier.UtteranceClassifierBrain`.
    """

    replicated_modules = ("layer_mix", "projection", "classifier")

    def compute_forward(self, batch, stage):
        """Layer mix → projection → pooling → classifier.

        Returns
        -------
        dict
            ``logits`` ``[B, C]`` and ``embeddings`` (the pooled projection
            ``[B, proj_dim]``).
        """
        batch = batch.to(self.device)
        feats, lengths = batch.feats  # [B, T, L*D] (flat) or [B, L, T, D], [B]
        frames = self.modules.projection(self.modules.layer_mix(feats))  # [B, T, P]
        embeddings = self.hparams.pooling(frames, lengths)  # [B, P]
        logits = self.modules.classifier(embeddings)
        return {"logits": logits, "embeddings": embeddings}
