"""The files of a model folder, and the error raised when one cannot be used.

A trained stage-2 folder (``<output_root>/<experiment>/fold<k>/finetune``) holds the
training ``hyperparams.yaml``, ``label_encoder.txt`` and ``save/CKPT+*``; an exported
folder (:func:`ser_lib.inference.export_model`) holds the files named here.
"""

__all__ = [
    "DEFAULT_STAGE2_NAME",
    "ENCODER_FILE",
    "FINGERPRINT_FILE",
    "HPARAMS_FILE",
    "LABEL_ENCODER_FILE",
    "MODEL_MODULES",
    "SAVE_FOLDER",
    "ModelFolderError",
]

HPARAMS_FILE = "hyperparams.yaml"
ENCODER_FILE = "encoder.yaml"
FINGERPRINT_FILE = "encoder_fingerprint.json"
LABEL_ENCODER_FILE = "label_encoder.txt"
SAVE_FOLDER = "save"
DEFAULT_STAGE2_NAME = "finetune"
"""The recipes' stage-2 folder name (``finetune_name``), for error hints."""
MODEL_MODULES = ("backbone", "sap", "classifier")
"""The trained modules, saved as ``<name>.ckpt`` by the stage-2 checkpointer."""


class ModelFolderError(ValueError):
    """A model folder that cannot be used; the message names the folder and the fix.

    Example
    -------
    >>> raise ModelFolderError("runs/x is not a model folder")
    Traceback (most recent call last):
    ...
    ser_lib.inference.layout.ModelFolderError: runs/x is not a model folder
    """
