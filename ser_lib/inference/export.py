"""Writing a self-contained model folder from a trained stage-2 folder."""

import json
import shutil
from pathlib import Path

from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.logger import get_logger

from ser_lib.dataio import build_label_encoder
from ser_lib.inference.hparams import inference_hparams_yaml
from ser_lib.inference.layout import (
    ENCODER_FILE,
    FINGERPRINT_FILE,
    HPARAMS_FILE,
    LABEL_ENCODER_FILE,
    MODEL_MODULES,
    ModelFolderError,
)
from ser_lib.inference.training_folder import read_trained_model

__all__ = ["checked_label_encoder", "export_model"]

logger = get_logger(__name__)


def export_model(source, target, encoder_hparams=None, recipe_dir=None):
    """Writes a self-contained model folder that :meth:`EmotionRecognizer.from_hparams` loads.

    Arguments
    ---------
    source : str or os.PathLike
        A trained stage-2 folder (see :func:`read_trained_model`).
    target : str or os.PathLike
        The new folder (must not exist or be empty).
    encoder_hparams : str or os.PathLike, optional
        The encoder hparams file (default: found by :func:`find_encoder_hparams`).
    recipe_dir : str or os.PathLike, optional
        The recipe folder of training (helps to find the encoder hparams file).

    Returns
    -------
    pathlib.Path
        ``target``.

    Example
    -------
    >>> import torch
    >>> from ser_lib.encoders import FbankEncoder
    >>> from ser_lib.inference import EmotionRecognizer
    >>> from ser_lib.models import StatisticalAttentivePooling, WAPTransformer
    >>> root = getfixture("tmp_path")
    >>> # A stage-2 folder as training leaves it (untrained weights, tiny sizes).
    >>> (root / "cache").mkdir()
    >>> _ = (root / "cache" / "fingerprint.json").write_text(
    ...     json.dumps(FbankEncoder(n_mels=4).fingerprint()))
    >>> _ = (root / "enc.yaml").write_text(
    ...     "encoder: !new:ser_lib.encoders.FbankEncoder {n_mels: 4}\\n")
    >>> checkpoint = root / "run" / "save" / "CKPT+x"
    >>> checkpoint.mkdir(parents=True)
    >>> _ = (checkpoint / "CKPT.yaml").write_text("unixtime: 1.0\\n")
    >>> modules = {
    ...     "backbone": WAPTransformer(input_dim=8, d_model=8, num_layers=1, nhead=2),
    ...     "sap": StatisticalAttentivePooling(8, num_heads=1),
    ...     "classifier": torch.nn.Linear(16, 2)}
    >>> for name, module in modules.items():
    ...     torch.save(module.state_dict(), checkpoint / f"{name}.ckpt")
    >>> _ = (root / "run" / "hyperparams.yaml").write_text(
    ...     f"classes: [neu, sad]\\nencoder_hparams: {root}/enc.yaml\\n"
    ...     f"feature_folder: {root}/cache\\n"
    ...     "backbone: !new:ser_lib.models.WAPTransformer\\n"
    ...     "  {input_dim: 8, d_model: 8, num_layers: 1, nhead: 2}\\n"
    ...     "sap: !new:ser_lib.models.StatisticalAttentivePooling\\n"
    ...     "  {input_dim: 8, num_heads: 1}\\n"
    ...     "classifier: !new:torch.nn.Linear [16, 2]\\n")
    >>> target = export_model(root / "run", root / "model")
    >>> sorted(path.name for path in target.iterdir())  # doctest: +NORMALIZE_WHITESPACE
    ['backbone.ckpt', 'classifier.ckpt', 'encoder.yaml', 'encoder_fingerprint.json',
     'hyperparams.yaml', 'label_encoder.txt', 'sap.ckpt']
    >>> recognizer = EmotionRecognizer.from_hparams(target)
    >>> recognizer.classes, recognizer.classify_batch(torch.randn(1, 8000))[0].shape
    (['neu', 'sad'], torch.Size([1, 2]))
    """
    model = read_trained_model(source, encoder_hparams, recipe_dir)
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise ModelFolderError(f"The export folder {target} exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    for name in MODEL_MODULES:
        checkpoint_file = model.checkpoint / f"{name}.ckpt"
        if not checkpoint_file.is_file():
            raise ModelFolderError(f"{checkpoint_file} is missing")
        shutil.copyfile(checkpoint_file, target / f"{name}.ckpt")
    shutil.copyfile(model.encoder_hparams, target / ENCODER_FILE)
    if model.encoder_fingerprint is None:
        raise ModelFolderError(
            f"The feature cache of {model.folder} is gone, so the encoder settings "
            "of training are unknown; an exported model must record them"
        )
    with open(target / FINGERPRINT_FILE, "w", encoding="utf-8") as f:
        json.dump(model.encoder_fingerprint, f, indent=2, sort_keys=True)
    checked_label_encoder(model.label_encoder_file, model.classes).save(
        target / LABEL_ENCODER_FILE
    )
    (target / HPARAMS_FILE).write_text(inference_hparams_yaml(model), encoding="utf-8")
    logger.info("Exported %s (%s) to %s", model.folder, model.checkpoint.name, target)
    return target


def checked_label_encoder(label_encoder_file, classes):
    """Loads ``label_encoder_file`` (or builds one from ``classes``) and checks it.

    Arguments
    ---------
    label_encoder_file : pathlib.Path or None
        A saved ``CategoricalEncoder``.
    classes : list of str
        The classes, in the order of the classifier outputs.

    Returns
    -------
    speechbrain.dataio.encoder.CategoricalEncoder

    Example
    -------
    >>> checked_label_encoder(None, ["neu", "sad"]).ind2lab
    {0: 'neu', 1: 'sad'}
    """
    if label_encoder_file is None:
        label_encoder = build_label_encoder(classes)
    else:
        label_encoder = CategoricalEncoder()
        label_encoder.load(label_encoder_file)
        labels = [label_encoder.ind2lab[i] for i in range(len(label_encoder))]
        if labels != list(classes):
            raise ModelFolderError(
                f"{label_encoder_file} lists {labels} but the model's classes are "
                f"{list(classes)}"
            )
    label_encoder.expect_len(len(classes))
    return label_encoder
