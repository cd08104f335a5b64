"""Using a trained model: :class:`EmotionRecognizer` and :func:`export_model`.

:class:`EmotionRecognizer` follows SpeechBrain's ``Pretrained`` interfaces (e.g.
``speechbrain.inference.classifiers.EncoderClassifier``): ``from_hparams(source=...)``
builds it, ``classify_file`` and ``classify_batch`` use it. It runs the whole chain on
raw audio: frozen encoder → WAP-Transformer → SAP → linear classifier → softmax.

``source`` is either

* a trained stage-2 folder (``<output_root>/<experiment>/fold<k>/finetune``, with the
  training ``hyperparams.yaml``, ``label_encoder.txt`` and ``save/CKPT+*``). The
  checkpoint is the one the evaluation used: the best validation UA when the
  checkpoints record one, otherwise the latest. The encoder hparams file of training
  (``encoder_hparams``, relative to the recipe folder) is looked up as explained in
  :func:`find_encoder_hparams`;
* or a self-contained folder written by :func:`export_model`::

      hyperparams.yaml           inference hparams (see ``hparams.INFERENCE_HPARAMS``)
      encoder.yaml               the encoder hparams file of training, copied verbatim
      encoder_fingerprint.json   the fingerprint of the encoder the model was trained on
      backbone.ckpt sap.ckpt classifier.ckpt   the weights (state dicts)
      label_encoder.txt          class index <-> label

  ``hyperparams.yaml`` builds ``backbone``, ``sap`` and ``classifier`` with ``!new:``
  (the classes and arguments of training) and names the encoder factory
  (``!name:ser_lib.encoders.load_encoder`` on ``encoder.yaml`` with the training's
  ``encoder_overrides``). The weights of a Hugging Face encoder are *not* copied: the
  encoder is rebuilt from its ``encoder_source`` (a hub id, or a local directory that
  must exist where the model is used; override it with
  ``encoder_overrides={"encoder_source": ...}``).

The features the model sees are those of training: the feature cache stores the
encoder outputs in float16, so the on-the-fly features are rounded to float16 too
(``float16_features``), and the rebuilt encoder must have the fingerprint of the one
that filled the cache (checked at loading; only ``source`` may differ). Every module
is padding-aware, so a batch gives the predictions of its files one at a time.

The package by job: :mod:`~ser_lib.inference.layout` (file names, the error),
:mod:`~ser_lib.inference.hparams` (reading the training hparams, writing the
inference ones), :mod:`~ser_lib.inference.training_folder` (checkpoint and encoder
files of a trained folder), :mod:`~ser_lib.inference.export` (the export folder),
:mod:`~ser_lib.inference.fingerprint` (the encoder check),
:mod:`~ser_lib.inference.recognizer` (:class:`EmotionRecognizer`).
"""

from ser_lib.inference.export import checked_label_encoder, export_model
from ser_lib.inference.fingerprint import (
    SOURCE_INDEPENDENT_KEYS,
    check_encoder_fingerprint,
)
from ser_lib.inference.hparams import (
    inference_hparams_yaml,
    node_tag,
    read_saved_hparams,
    resolve_saved_value,
)
from ser_lib.inference.layout import (
    ENCODER_FILE,
    FINGERPRINT_FILE,
    HPARAMS_FILE,
    LABEL_ENCODER_FILE,
    MODEL_MODULES,
    SAVE_FOLDER,
    ModelFolderError,
)
from ser_lib.inference.recognizer import EmotionPrediction, EmotionRecognizer
from ser_lib.inference.training_folder import (
    TrainedModel,
    find_checkpoint,
    find_encoder_hparams,
    is_trained_folder,
    read_trained_model,
)

__all__ = [
    "ENCODER_FILE",
    "FINGERPRINT_FILE",
    "HPARAMS_FILE",
    "LABEL_ENCODER_FILE",
    "MODEL_MODULES",
    "SAVE_FOLDER",
    "SOURCE_INDEPENDENT_KEYS",
    "EmotionPrediction",
    "EmotionRecognizer",
    "ModelFolderError",
    "TrainedModel",
    "check_encoder_fingerprint",
    "checked_label_encoder",
    "export_model",
    "find_checkpoint",
    "find_encoder_hparams",
    "inference_hparams_yaml",
    "is_trained_folder",
    "node_tag",
    "read_saved_hparams",
    "read_trained_model",
    "resolve_saved_value",
]
