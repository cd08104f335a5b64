"""Reading the hparams of a training run, and writing the inference hparams.

A training run's ``hyperparams.yaml`` (saved by SpeechBrain with every ``!ref``
resolved) is read as YAML without building anything: ruamel.yaml's round-trip loader
(the YAML library under HyperPyYAML) keeps the tagged nodes (``!new:``...) as data.
The inference ``hyperparams.yaml`` is a fixed text in which the three trained module
definitions of training are written back, tags and arguments as they were.
"""

import io
import json
import os

import yaml
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAML

from ser_lib.inference.layout import (
    ENCODER_FILE,
    FINGERPRINT_FILE,
    LABEL_ENCODER_FILE,
    MODEL_MODULES,
    ModelFolderError,
)

__all__ = [
    "as_mapping",
    "inference_hparams_yaml",
    "node_tag",
    "read_saved_hparams",
    "resolve_saved_value",
]


def read_saved_hparams(path):
    """Reads a HyperPyYAML file without building anything.

    Tagged nodes stay data that keeps its tag (:func:`node_tag`); nothing is imported
    or called (loading a training file for real would seed the RNGs, import the
    recipe's prepare script and create loggers). Meant for the ``hyperparams.yaml``
    that SpeechBrain saves in an experiment folder, where every ``!ref`` is resolved.

    Arguments
    ---------
    path : str or os.PathLike
        The YAML file.

    Returns
    -------
    dict
        The top-level mapping (ruamel.yaml round-trip types: dict and list
        subclasses).

    Example
    -------
    >>> path = getfixture("tmp_path") / "hyperparams.yaml"
    >>> _ = path.write_text("d_model: 8\\nsap: !new:ser_lib.models.StatisticalAttentivePooling\\n"
    ...                     "  input_dim: 8\\n__set_seed: !apply:torch.manual_seed [3]\\n")
    >>> hparams = read_saved_hparams(path)
    >>> hparams["d_model"], node_tag(hparams["sap"]), dict(hparams["sap"])
    (8, '!new:ser_lib.models.StatisticalAttentivePooling', {'input_dim': 8})
    """
    with open(path, encoding="utf-8") as f:
        loaded = YAML(typ="rt").load(f)
    if not isinstance(loaded, dict):
        raise ModelFolderError(f"{path} is not a YAML mapping")
    return loaded


def node_tag(node):
    """The YAML tag of a node read by :func:`read_saved_hparams` (None: untagged).

    Arguments
    ---------
    node : object
        A value of the mapping.

    Returns
    -------
    str or None

    Example
    -------
    >>> import io
    >>> data = YAML(typ="rt").load(io.StringIO("a: !new:torch.nn.Linear [2, 3]\\nb: 1\\n"))
    >>> node_tag(data["a"]), node_tag(data["b"])
    ('!new:torch.nn.Linear', None)
    """
    return getattr(getattr(node, "tag", None), "value", None)


def resolve_saved_value(value):
    """Builds one value of :func:`read_saved_hparams` through HyperPyYAML.

    A saved ``hyperparams.yaml`` may define a value by a tag, e.g. EmoDB's
    ``classes: !apply:ser_lib.data.class_map.class_names [*class_map]``. Only that
    value is written back as YAML (with the anchored nodes it refers to, which
    ruamel.yaml inlines) and loaded with HyperPyYAML, so its tags are applied the
    way training applied them, while nothing else of the file is built. A value
    without tags comes back as plain Python data.

    Arguments
    ---------
    value : object
        A value of the mapping that :func:`read_saved_hparams` returned.

    Returns
    -------
    object
        The value as training saw it.

    Example
    -------
    >>> path = getfixture("tmp_path") / "hyperparams.yaml"
    >>> _ = path.write_text(
    ...     "class_maps: &maps\\n  full: {neutral: neu, sad: sad}\\n"
    ...     "class_map: &map !apply:ser_lib.data.class_map.select_class_map [*maps, full]\\n"
    ...     "classes: !apply:ser_lib.data.class_map.class_names [*map]\\n")
    >>> resolve_saved_value(read_saved_hparams(path)["classes"])
    ['neu', 'sad']
    """
    text = io.StringIO()
    YAML(typ="rt").dump({"value": value}, text)
    return load_hyperpyyaml(text.getvalue())["value"]


def as_mapping(overrides, origin):
    """Encoder overrides given as a dict, a YAML string or None, as a plain dict.

    Arguments
    ---------
    overrides : dict or str or None
        The overrides.
    origin : str
        Where they come from, named in the error.

    Returns
    -------
    dict
        With paths as strings (HyperPyYAML overrides are YAML).

    Example
    -------
    >>> from pathlib import Path
    >>> as_mapping("{encoder_source: a}", "x"), as_mapping({"p": Path("/m")}, "x")
    ({'encoder_source': 'a'}, {'p': '/m'})
    """
    if overrides is None:
        return {}
    if isinstance(overrides, str):
        overrides = yaml.safe_load(overrides) or {}
    if not isinstance(overrides, dict):
        raise ModelFolderError(f"{origin}: encoder overrides must be a mapping")
    return {
        key: os.fspath(value) if isinstance(value, os.PathLike) else value
        for key, value in overrides.items()
    }


INFERENCE_HPARAMS = """\
# Emotion recognizer exported by ser_lib.inference.export_model
#   trained in: {folder}
#   checkpoint: {checkpoint}
# Use: EmotionRecognizer.from_hparams(source=<this folder>) or
#      ser-predict <this folder> file.wav
# encoder.yaml is the encoder hparams file of training; a Hugging Face
# encoder's weights are not copied: its encoder_source must be reachable
# (override with encoder_overrides: {{encoder_source: /local/copy}}).

model_folder: !PLACEHOLDER  # set by EmotionRecognizer.from_hparams
classes: {classes}
float16_features: {float16_features}
min_frames: {min_frames}
encoder_hparams: !ref <model_folder>/{encoder_file}
{encoder_overrides}
encoder_fingerprint_file: !ref <model_folder>/{fingerprint_file}
weights_folder: !ref <model_folder>
label_encoder_file: !ref <model_folder>/{label_encoder_file}
encoder: !name:ser_lib.encoders.load_encoder
  hparams_file: !ref <encoder_hparams>
  overrides: !ref <encoder_overrides>
{modules}
modules:
  backbone: !ref <backbone>
  sap: !ref <sap>
  classifier: !ref <classifier>
"""
"""The inference ``hyperparams.yaml``; ``{modules}`` are the definitions of training."""


def inference_hparams_yaml(model, float16_features=True, min_frames=1):
    """The inference ``hyperparams.yaml`` of an exported model folder.

    Paths are ``!ref <model_folder>/...``; ``model_folder`` is a placeholder that
    :meth:`EmotionRecognizer.from_hparams` sets to the folder.

    Arguments
    ---------
    model : ser_lib.inference.TrainedModel
        The model (only ``modules``, ``classes``, ``encoder_overrides``, ``folder``
        and ``checkpoint`` are used).
    float16_features : bool
        Round the encoder features to float16, as the feature cache of training did.
    min_frames : int
        The fewest encoder frames a file may give (shorter files are refused).

    Returns
    -------
    str
        The YAML text.

    Example
    -------
    >>> from pathlib import Path
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from ser_lib.inference import TrainedModel
    >>> saved = getfixture("tmp_path") / "hyperparams.yaml"
    >>> _ = saved.write_text("backbone: !new:torch.nn.Identity {}\\n"
    ...     "sap: !new:torch.nn.Identity {}\\nclassifier: !new:torch.nn.Linear [4, 2]\\n")
    >>> model = TrainedModel(
    ...     folder=Path("/runs/fold1/finetune"), classes=["neu", "sad"],
    ...     modules=dict(read_saved_hparams(saved)),
    ...     encoder_hparams=None, encoder_overrides={}, encoder_fingerprint=None,
    ...     checkpoint=Path("/runs/fold1/finetune/save/CKPT+x"), label_encoder_file=None)
    >>> text = inference_hparams_yaml(model)
    >>> hparams = load_hyperpyyaml(text, {"model_folder": "/models/m"})
    >>> hparams["classifier"], hparams["label_encoder_file"]
    (Linear(in_features=4, out_features=2, bias=True), '/models/m/label_encoder.txt')
    """
    return INFERENCE_HPARAMS.format(
        folder=model.folder,
        checkpoint=model.checkpoint.name,
        classes=yaml.safe_dump(
            [str(label) for label in model.classes], default_flow_style=True
        ).strip(),
        float16_features=json.dumps(bool(float16_features)),
        min_frames=int(min_frames),
        encoder_overrides=_block_yaml(
            {"encoder_overrides": as_mapping(model.encoder_overrides, model.folder)}
        ),
        encoder_file=ENCODER_FILE,
        fingerprint_file=FINGERPRINT_FILE,
        label_encoder_file=LABEL_ENCODER_FILE,
        modules=_block_yaml({name: model.modules[name] for name in MODEL_MODULES}),
    )


def _block_yaml(mapping):
    """``mapping`` as block YAML, tagged nodes with their tags, without the blank lines
    and comments that came along from the training file."""
    text = io.StringIO()
    writer = YAML(typ="rt")
    writer.width = 1 << 16  # long values (paths) stay on their key's line
    writer.dump(mapping, text)
    return "\n".join(
        line
        for line in text.getvalue().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
