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

      hyperparams.yaml           inference hparams (this module's format, see below)
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
"""

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.logger import get_logger

from ser_lib.audio import AudioError, read_audio
from ser_lib.dataio import build_label_encoder

__all__ = [
    "EmotionPrediction",
    "EmotionRecognizer",
    "ModelFolderError",
    "TaggedNode",
    "TrainedModel",
    "check_encoder_fingerprint",
    "export_model",
    "find_checkpoint",
    "find_encoder_hparams",
    "inference_hparams_yaml",
    "is_trained_folder",
    "read_saved_hparams",
    "read_trained_model",
]

logger = get_logger(__name__)

HPARAMS_FILE = "hyperparams.yaml"
ENCODER_FILE = "encoder.yaml"
FINGERPRINT_FILE = "encoder_fingerprint.json"
LABEL_ENCODER_FILE = "label_encoder.txt"
SAVE_FOLDER = "save"
DEFAULT_STAGE2_NAME = "finetune"
"""The recipes' stage-2 folder name (``finetune_name``), for error hints."""
MODEL_MODULES = ("backbone", "sap", "classifier")
"""The trained modules, saved as ``<name>.ckpt`` by the stage-2 checkpointer."""
SOURCE_INDEPENDENT_KEYS = ("source",)
"""Fingerprint keys that may differ between training and inference (where the
encoder weights are found, e.g. a hub id then a local copy)."""


class ModelFolderError(ValueError):
    """A model folder that cannot be used; the message names the folder and the fix."""


class TaggedNode:
    """A HyperPyYAML tagged node (``!new:``, ``!name:``, ``!ref`` ...) kept as data.

    :func:`read_saved_hparams` returns tagged nodes as ``TaggedNode`` objects instead
    of instantiating them, and :func:`inference_hparams_yaml` writes them back.

    Arguments
    ---------
    tag : str
        The tag, e.g. ``"!new:ser_lib.models.WAPTransformer"``.
    value : dict or list or str or None
        The node's content: keyword arguments, positional arguments or a scalar.

    Example
    -------
    >>> node = TaggedNode("!new:torch.nn.Linear", {"in_features": 2, "out_features": 3})
    >>> node.tag, node.value["out_features"]
    ('!new:torch.nn.Linear', 3)
    >>> node
    TaggedNode('!new:torch.nn.Linear', {'in_features': 2, 'out_features': 3})
    """

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __repr__(self):
        return f"TaggedNode({self.tag!r}, {self.value!r})"

    def __eq__(self, other):
        return (
            isinstance(other, TaggedNode)
            and self.tag == other.tag
            and self.value == other.value
        )


class _TagKeepingLoader(yaml.SafeLoader):
    """A safe YAML loader that turns every ``!tag`` node into a :class:`TaggedNode`."""


def _construct_tagged(loader, tag_suffix, node):
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return TaggedNode(node.tag, value)


_TagKeepingLoader.add_multi_constructor("!", _construct_tagged)


class _TagKeepingDumper(yaml.SafeDumper):
    """A safe YAML dumper that writes :class:`TaggedNode` objects with their tag."""


def _represent_tagged(dumper, node):
    if isinstance(node.value, dict):
        return dumper.represent_mapping(node.tag, node.value)
    if isinstance(node.value, (list, tuple)):
        return dumper.represent_sequence(node.tag, node.value)
    return dumper.represent_scalar(node.tag, "" if node.value is None else node.value)


def _represent_list(dumper, values):
    """Lists of scalars on one line (``classes: [neu, hap]``), others as blocks."""
    flat = all(not isinstance(v, (dict, list, tuple, TaggedNode)) for v in values)
    return dumper.represent_sequence(
        "tag:yaml.org,2002:seq", values, flow_style=flat or None
    )


_TagKeepingDumper.add_representer(TaggedNode, _represent_tagged)
_TagKeepingDumper.add_representer(list, _represent_list)


def read_saved_hparams(path):
    """Reads a HyperPyYAML file without building anything.

    Tagged nodes become :class:`TaggedNode` objects; nothing is imported or called
    (loading a training file for real would seed the RNGs, import the recipe's
    prepare script and create loggers). Meant for the ``hyperparams.yaml`` that
    SpeechBrain saves in an experiment folder, where every ``!ref`` is resolved.

    Arguments
    ---------
    path : str or os.PathLike
        The YAML file.

    Returns
    -------
    dict
        The top-level mapping.

    Example
    -------
    >>> path = getfixture("tmp_path") / "hyperparams.yaml"
    >>> _ = path.write_text("d_model: 8\\nsap: !new:ser_lib.models.StatisticalAttentivePooling\\n"
    ...                     "  input_dim: 8\\n__set_seed: !apply:torch.manual_seed [3]\\n")
    >>> hparams = read_saved_hparams(path)
    >>> hparams["d_model"], hparams["sap"].tag, hparams["sap"].value
    (8, '!new:ser_lib.models.StatisticalAttentivePooling', {'input_dim': 8})
    """
    with open(path, encoding="utf-8") as f:
        loaded = yaml.load(f, Loader=_TagKeepingLoader)  # noqa: S506 (safe loader)
    if not isinstance(loaded, dict):
        raise ModelFolderError(f"{path} is not a YAML mapping")
    return loaded


def is_trained_folder(folder):
    """Whether ``folder`` is a trained stage-2 folder (it has ``save/CKPT+*``).

    Arguments
    ---------
    folder : str or os.PathLike
        A folder.

    Returns
    -------
    bool

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> is_trained_folder(folder)
    False
    >>> (folder / "save" / "CKPT+2024-01-01+00-00-00+00").mkdir(parents=True)
    >>> is_trained_folder(folder)
    True
    """
    save = Path(folder) / SAVE_FOLDER
    return save.is_dir() and any(save.glob("CKPT+*"))


def find_checkpoint(save_folder):
    """The checkpoint the evaluation of a stage-2 run used.

    ``FinetuneBrain.conclude`` evaluates the checkpoint with the best ``UA`` when
    the checkpoints record one (model selection on a validation speaker), otherwise
    the most recent one (the last epoch): this function makes the same choice with
    the same SpeechBrain ``Checkpointer`` calls.

    Arguments
    ---------
    save_folder : str or os.PathLike
        The checkpointer's folder (``<output_folder>/save``).

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
        ``path`` (the ``CKPT+*`` folder), ``meta``, ``paramfiles``.

    Example
    -------
    >>> save = getfixture("tmp_path") / "save"
    >>> linear = torch.nn.Linear(2, 2)
    >>> ckpter = Checkpointer(save, recoverables={"classifier": linear})
    >>> _ = ckpter.save_checkpoint(meta={"UA": 60.0}, name="a")
    >>> _ = ckpter.save_checkpoint(meta={"UA": 50.0}, name="b")
    >>> find_checkpoint(save).path.name  # best UA, not the latest
    'CKPT+a'
    """
    save_folder = Path(save_folder)
    if not save_folder.is_dir():
        raise ModelFolderError(f"No checkpoint folder {save_folder}")
    checkpointer = Checkpointer(save_folder)
    checkpoints = checkpointer.list_checkpoints()
    if not checkpoints:
        raise ModelFolderError(
            f"No checkpoint in {save_folder}: the run has not finished an epoch"
        )
    max_key = "UA" if any("UA" in ckpt.meta for ckpt in checkpoints) else None
    return checkpointer.find_checkpoint(max_key=max_key)


_GENERATED_FROM = re.compile(r"^# Generated .* from:\s*\n# (.+?)\s*$", re.MULTILINE)


def find_encoder_hparams(encoder_hparams, hparams_file, recipe_dir=None):
    """Finds the encoder hparams file that a training run used.

    Training resolves ``encoder_hparams`` (e.g. ``hparams/encoder/fbank.yaml``)
    against the recipe folder, which the saved hyperparams do not record. The
    candidates, in order: the path itself when absolute; ``recipe_dir/path`` when
    ``recipe_dir`` is given; otherwise ``path`` relative to the current directory,
    then to every parent folder of the hparams file the run was generated from
    (SpeechBrain's saved ``hyperparams.yaml`` starts with ``# Generated <date>
    from:`` and that path, e.g. ``.../recipes/IEMOCAP/hparams/finetune.yaml``).

    Arguments
    ---------
    encoder_hparams : str
        The ``encoder_hparams`` value of the training hparams.
    hparams_file : str or os.PathLike
        The saved training ``hyperparams.yaml``.
    recipe_dir : str or os.PathLike, optional
        The recipe folder of the run.

    Returns
    -------
    pathlib.Path
        The encoder hparams file.

    Raises
    ------
    ModelFolderError
        If no candidate exists (the message lists them).

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> (root / "recipe" / "hparams" / "encoder").mkdir(parents=True)
    >>> _ = (root / "recipe" / "hparams" / "encoder" / "fbank.yaml").write_text("x: 1\\n")
    >>> saved = root / "hyperparams.yaml"
    >>> _ = saved.write_text(f"# Generated 2024-01-01 from:\\n"
    ...                      f"# {root}/recipe/hparams/finetune.yaml\\nx: 1\\n")
    >>> find_encoder_hparams("hparams/encoder/fbank.yaml", saved).relative_to(root)
    PosixPath('recipe/hparams/encoder/fbank.yaml')
    """
    path = Path(encoder_hparams)
    if path.is_absolute():
        candidates = [path]
    elif recipe_dir is not None:
        candidates = [Path(recipe_dir) / path]
    else:
        candidates = [Path.cwd() / path]
        with open(hparams_file, encoding="utf-8") as f:
            head = "".join(f.readline() for _ in range(3))
        match = _GENERATED_FROM.search(head)
        if match:
            candidates += [parent / path for parent in Path(match.group(1)).parents]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ModelFolderError(
        f"Cannot find the encoder hparams file {encoder_hparams!r} of {hparams_file} "
        f"(relative to the recipe folder of training); tried "
        f"{[str(c) for c in candidates]}. Pass recipe_dir (--recipe_dir) or "
        "encoder_hparams (--encoder_hparams)."
    )


@dataclass
class TrainedModel:
    """The parts of a trained stage-2 model, as :func:`read_trained_model` finds them.

    Attributes
    ----------
    folder : pathlib.Path
        The stage-2 output folder.
    modules : dict
        ``backbone``, ``sap``, ``classifier``: the :class:`TaggedNode` definitions of
        training (class and arguments).
    classes : list of str
        The classes, in the order of the classifier outputs.
    encoder_hparams : pathlib.Path or None
        The encoder hparams file (None when not looked for).
    encoder_overrides : dict
        Its overrides in training.
    encoder_fingerprint : dict or None
        The fingerprint of the feature cache the model was trained on (None when the
        cache is gone).
    checkpoint : pathlib.Path
        The chosen ``CKPT+*`` folder (holds ``<module>.ckpt``).
    label_encoder_file : pathlib.Path or None
        ``label_encoder.txt`` when the run saved one.

    Example
    -------
    >>> model = TrainedModel(
    ...     folder=Path("run"), modules={}, classes=["neu", "sad"],
    ...     encoder_hparams=None, encoder_overrides={}, encoder_fingerprint=None,
    ...     checkpoint=Path("run/save/CKPT+x"), label_encoder_file=None)
    >>> model.checkpoint.name
    'CKPT+x'
    """

    folder: Path
    modules: dict
    classes: list
    encoder_hparams: Path
    encoder_overrides: dict
    encoder_fingerprint: dict
    checkpoint: Path
    label_encoder_file: Path


def _as_mapping(overrides, origin):
    """Overrides given as a dict, a YAML string or None, as a dict."""
    if overrides is None:
        return {}
    if isinstance(overrides, str):
        overrides = yaml.safe_load(overrides) or {}
    if not isinstance(overrides, dict):
        raise ModelFolderError(f"{origin}: encoder overrides must be a mapping")
    # Paths as strings: HyperPyYAML overrides are YAML.
    return {
        key: os.fspath(value) if isinstance(value, os.PathLike) else value
        for key, value in overrides.items()
    }


def read_trained_model(
    folder, encoder_hparams=None, recipe_dir=None, find_encoder=True
):
    """Finds the parts of the model trained in a stage-2 output folder.

    Arguments
    ---------
    folder : str or os.PathLike
        E.g. ``results/IEMOCAP/hubert_large_improvised/fold1/finetune``.
    encoder_hparams : str or os.PathLike, optional
        The encoder hparams file (default: found by :func:`find_encoder_hparams`).
    recipe_dir : str or os.PathLike, optional
        The recipe folder of training (helps to find the encoder hparams file).
    find_encoder : bool
        Whether to look for the encoder hparams file; without it
        ``encoder_hparams`` is None unless given (to use the model on cached
        features only).

    Returns
    -------
    TrainedModel
        Where everything is.

    Raises
    ------
    ModelFolderError
        If ``folder`` is not a trained stage-2 folder.

    Example
    -------
    >>> run = getfixture("tmp_path") / "fold1" / "finetune"
    >>> (run / "save" / "CKPT+x").mkdir(parents=True)
    >>> _ = (run / "save" / "CKPT+x" / "CKPT.yaml").write_text("unixtime: 1.0\\n")
    >>> _ = (run / "hyperparams.yaml").write_text(
    ...     "classes: [neu, sad]\\nencoder_hparams: enc.yaml\\n"
    ...     "backbone: !new:torch.nn.Identity {}\\nsap: !new:torch.nn.Identity {}\\n"
    ...     "classifier: !new:torch.nn.Linear [32, 2]\\n")
    >>> model = read_trained_model(run, find_encoder=False)
    >>> model.checkpoint.name, model.classes, model.modules["classifier"].value
    ('CKPT+x', ['neu', 'sad'], [32, 2])
    """
    folder = Path(folder).resolve()
    hparams_file = folder / HPARAMS_FILE
    if not is_trained_folder(folder) or not hparams_file.is_file():
        raise ModelFolderError(
            f"{folder} is not a trained stage-2 folder: it needs {HPARAMS_FILE} and "
            f"{SAVE_FOLDER}/CKPT+*{_stage2_hint(folder)}"
        )
    hparams = read_saved_hparams(hparams_file)
    missing = [
        key
        for key in (*MODEL_MODULES, "classes", "encoder_hparams")
        if key not in hparams
    ]
    if missing:
        raise ModelFolderError(
            f"{hparams_file} lacks {missing}: not the hparams of a stage-2 run"
        )
    for name in MODEL_MODULES:
        if not isinstance(hparams[name], TaggedNode):
            raise ModelFolderError(
                f"{hparams_file}: {name!r} is not a module definition (!new:...)"
            )
    if encoder_hparams is None and find_encoder:
        encoder_hparams = find_encoder_hparams(
            hparams["encoder_hparams"], hparams_file, recipe_dir
        )
    fingerprint = None
    feature_folder = hparams.get("feature_folder")
    if feature_folder and (Path(feature_folder) / "fingerprint.json").is_file():
        with open(Path(feature_folder) / "fingerprint.json", encoding="utf-8") as f:
            fingerprint = json.load(f)
    else:
        logger.warning(
            "The feature cache %s of %s is gone: the encoder's settings cannot be "
            "checked against those of training",
            feature_folder,
            folder,
        )
    label_file = folder / LABEL_ENCODER_FILE
    return TrainedModel(
        folder=folder,
        modules={name: hparams[name] for name in MODEL_MODULES},
        classes=list(hparams["classes"]),
        encoder_hparams=_resolved(encoder_hparams),
        encoder_overrides=_as_mapping(hparams.get("encoder_overrides"), hparams_file),
        encoder_fingerprint=fingerprint,
        checkpoint=Path(find_checkpoint(folder / SAVE_FOLDER).path),
        label_encoder_file=label_file if label_file.is_file() else None,
    )


def inference_hparams_yaml(model, float16_features=True, min_frames=1):
    """The inference ``hyperparams.yaml`` of an exported model folder.

    Paths are ``!ref <model_folder>/...``; ``model_folder`` is a placeholder that
    :meth:`EmotionRecognizer.from_hparams` sets to the folder.

    Arguments
    ---------
    model : TrainedModel
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
    >>> model = TrainedModel(
    ...     folder=Path("/runs/fold1/finetune"), classes=["neu", "sad"],
    ...     modules={"backbone": TaggedNode("!new:torch.nn.Identity", {}),
    ...              "sap": TaggedNode("!new:torch.nn.Identity", {}),
    ...              "classifier": TaggedNode("!new:torch.nn.Linear", [4, 2])},
    ...     encoder_hparams=None, encoder_overrides={}, encoder_fingerprint=None,
    ...     checkpoint=Path("/runs/fold1/finetune/save/CKPT+x"), label_encoder_file=None)
    >>> text = inference_hparams_yaml(model)
    >>> hparams = load_hyperpyyaml(text, {"model_folder": "/models/m"})
    >>> hparams["classifier"], hparams["label_encoder_file"]
    (Linear(in_features=4, out_features=2, bias=True), '/models/m/label_encoder.txt')
    """

    def ref(name):
        return TaggedNode("!ref", f"<model_folder>/{name}")

    settings = {
        "classes": list(model.classes),
        "float16_features": bool(float16_features),
        "min_frames": int(min_frames),
        "encoder_hparams": ref(ENCODER_FILE),
        "encoder_overrides": dict(model.encoder_overrides),
        "encoder_fingerprint_file": ref(FINGERPRINT_FILE),
        "weights_folder": TaggedNode("!ref", "<model_folder>"),
        "label_encoder_file": ref(LABEL_ENCODER_FILE),
        "encoder": TaggedNode(
            "!name:ser_lib.encoders.load_encoder",
            {
                "hparams_file": TaggedNode("!ref", "<encoder_hparams>"),
                "overrides": TaggedNode("!ref", "<encoder_overrides>"),
            },
        ),
        **model.modules,
        "modules": {name: TaggedNode("!ref", f"<{name}>") for name in MODEL_MODULES},
    }
    body = yaml.dump(
        settings, Dumper=_TagKeepingDumper, sort_keys=False, default_flow_style=False
    )
    header = (
        "# Emotion recognizer exported by ser_lib.inference.export_model\n"
        f"#   trained in: {model.folder}\n"
        f"#   checkpoint: {model.checkpoint.name}\n"
        "# Use: EmotionRecognizer.from_hparams(source=<this folder>) or\n"
        "#      ser-predict <this folder> file.wav\n"
        "# encoder.yaml is the encoder hparams file of training; a Hugging Face\n"
        "# encoder's weights are not copied: its encoder_source must be reachable\n"
        "# (override with encoder_overrides: {encoder_source: /local/copy}).\n\n"
        "model_folder: !PLACEHOLDER  # set by EmotionRecognizer.from_hparams\n"
    )
    return header + body


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
    >>> from ser_lib.encoders import FbankEncoder
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
    _label_encoder(model.label_encoder_file, model.classes).save(
        target / LABEL_ENCODER_FILE
    )
    (target / HPARAMS_FILE).write_text(inference_hparams_yaml(model), encoding="utf-8")
    logger.info("Exported %s (%s) to %s", model.folder, model.checkpoint.name, target)
    return target


def _label_encoder(label_encoder_file, classes):
    """Loads ``label_encoder_file`` (or builds one from ``classes``) and checks it."""
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


def check_encoder_fingerprint(encoder, expected, origin):
    """Raises when an encoder differs from the one a model was trained on.

    Every key of the fingerprints must agree except those of
    :data:`SOURCE_INDEPENDENT_KEYS` (where the weights are found: a hub id in
    training, a local copy at inference), whose differences are only logged.

    Arguments
    ---------
    encoder : ser_lib.encoders.FrozenEncoder
        The rebuilt encoder.
    expected : dict
        The fingerprint of training (the feature cache's ``fingerprint.json``).
    origin : str
        The model, named in the error.

    Raises
    ------
    ModelFolderError
        Naming every differing setting.

    Example
    -------
    >>> from ser_lib.encoders import FbankEncoder
    >>> trained_with = FbankEncoder(n_mels=40).fingerprint()
    >>> check_encoder_fingerprint(FbankEncoder(n_mels=40), trained_with, "model")
    >>> check_encoder_fingerprint(FbankEncoder(n_mels=40, stack=3), trained_with, "model")
    Traceback (most recent call last):
    ...
    ser_lib.inference.ModelFolderError: The encoder rebuilt for model differs from the one the model was trained on (output_dim: training=80, now=120; stack: training=2, now=3)
    """
    actual = json.loads(json.dumps(encoder.fingerprint(), sort_keys=True))
    expected = json.loads(json.dumps(expected, sort_keys=True))
    keys = sorted(set(actual) | set(expected))
    differing = [
        key
        for key in keys
        if actual.get(key) != expected.get(key) and key not in SOURCE_INDEPENDENT_KEYS
    ]
    if differing:
        details = "; ".join(
            f"{key}: training={expected.get(key)!r}, now={actual.get(key)!r}"
            for key in differing
        )
        raise ModelFolderError(
            f"The encoder rebuilt for {origin} differs from the one the model was "
            f"trained on ({details})"
        )
    for key in SOURCE_INDEPENDENT_KEYS:
        if actual.get(key) != expected.get(key):
            logger.info(
                "Encoder %s: %r (training used %r)",
                key,
                actual.get(key),
                expected.get(key),
            )


class EmotionPrediction(NamedTuple):
    """The prediction for one utterance.

    Attributes
    ----------
    label : str
        The most probable class.
    probability : float
        Its probability.
    probabilities : dict
        Every class -> probability, in the classifier's order.
    index : int
        The index of ``label``.

    Example
    -------
    >>> p = EmotionPrediction("sad", 0.75, {"neu": 0.25, "sad": 0.75}, 1)
    >>> p.label, p._asdict()["probability"]
    ('sad', 0.75)
    """

    label: str
    probability: float
    probabilities: dict
    index: int


class EmotionRecognizer(Pretrained):
    """Speech emotion recognition with a trained adapter model, on raw audio.

    ``encoder`` (frozen, optional) → ``backbone`` (WAP-Transformer) → ``sap``
    (statistical attentive pooling) → ``classifier`` (linear) → softmax. Build it
    with :meth:`from_hparams`; the constructor is SpeechBrain's ``Pretrained`` one.

    Arguments
    ---------
    modules : dict
        ``encoder`` (a ``ser_lib.encoders.FrozenEncoder``; may be left out to work on
        encoder features only), ``backbone``, ``sap``, ``classifier``.
    hparams : dict
        ``label_encoder`` (CategoricalEncoder), ``float16_features`` (bool: round the
        encoder features to float16 as the training feature cache did),
        ``min_frames`` (int: the fewest encoder frames a file may give).
    run_opts : dict, optional
        SpeechBrain run options, e.g. ``{"device": "cuda:0"}``.
    freeze_params : bool
        Freeze the parameters and switch to eval mode (as ``Pretrained``).

    Example
    -------
    >>> from ser_lib.encoders import FbankEncoder
    >>> from ser_lib.models import StatisticalAttentivePooling, WAPTransformer
    >>> modules = {
    ...     "encoder": FbankEncoder(n_mels=8, stack=2),
    ...     "backbone": WAPTransformer(input_dim=16, d_model=8, num_layers=1, nhead=2,
    ...                                max_frames=100),
    ...     "sap": StatisticalAttentivePooling(8, num_heads=2),
    ...     "classifier": torch.nn.Linear(32, 3)}
    >>> hparams = {"label_encoder": build_label_encoder(["neu", "hap", "sad"]),
    ...            "float16_features": True, "min_frames": 1}
    >>> recognizer = EmotionRecognizer(modules, hparams, run_opts={"device": "cpu"})
    >>> wavs = torch.randn(2, 16000) * 0.1
    >>> probs, score, index, labels = recognizer.classify_batch(
    ...     wavs, torch.tensor([1.0, 0.25]))
    >>> probs.shape, len(labels), bool(torch.allclose(probs.sum(dim=1), torch.ones(2)))
    (torch.Size([2, 3]), 2, True)
    >>> alone, _, _, _ = recognizer.classify_batch(wavs[1:, :4000])
    >>> bool(torch.allclose(alone[0], probs[1], atol=1e-5))  # padding changes nothing
    True
    >>> recognizer.encode_batch(wavs).shape  # SAP embeddings
    torch.Size([2, 32])
    """

    MODULES_NEEDED = ["backbone", "sap", "classifier"]
    HPARAMS_NEEDED = ["label_encoder", "float16_features", "min_frames"]

    def __init__(self, modules=None, hparams=None, run_opts=None, freeze_params=True):
        missing = [name for name in self.MODULES_NEEDED if name not in (modules or {})]
        if missing:
            raise ValueError(f"EmotionRecognizer needs the modules {missing}")
        super().__init__(
            modules=modules,
            hparams=hparams,
            run_opts=run_opts,
            freeze_params=freeze_params,
        )

    @classmethod
    def from_hparams(
        cls,
        source,
        hparams_file=HPARAMS_FILE,
        overrides=None,
        encoder_overrides=None,
        encoder_hparams=None,
        recipe_dir=None,
        with_encoder=True,
        run_opts=None,
        freeze_params=True,
    ):
        """Loads a trained stage-2 folder or an exported model folder.

        Arguments
        ---------
        source : str or os.PathLike
            A trained stage-2 folder or a folder written by :func:`export_model`
            (local folders only: nothing is downloaded).
        hparams_file : str
            The inference hparams file of an exported folder.
        overrides : dict, optional
            HyperPyYAML overrides of the inference hparams (e.g.
            ``{"float16_features": False}``).
        encoder_overrides : dict or str, optional
            Merged over the encoder overrides of training (e.g.
            ``{"encoder_source": "/models/hubert-large-ls960-ft"}``).
        encoder_hparams : str or os.PathLike, optional
            Trained folders: the encoder hparams file (default: found by
            :func:`find_encoder_hparams`).
        recipe_dir : str or os.PathLike, optional
            Trained folders: the recipe folder of training.
        with_encoder : bool
            Build the encoder. Without it only the methods on encoder features
            (:meth:`embed_features`, :meth:`classify_features`) work.
        run_opts : dict, optional
            SpeechBrain run options, e.g. ``{"device": "cuda"}``.
        freeze_params : bool
            As ``Pretrained``.

        Returns
        -------
        EmotionRecognizer
        """
        source = Path(source).resolve()
        if is_trained_folder(source):
            model = read_trained_model(
                source, encoder_hparams, recipe_dir, find_encoder=with_encoder
            )
            text = inference_hparams_yaml(model)
            paths = {
                "encoder_hparams": _optional_path(model.encoder_hparams),
                "weights_folder": str(model.checkpoint),
                "label_encoder_file": _optional_path(model.label_encoder_file),
                "encoder_fingerprint_file": None,
            }
            fingerprint = model.encoder_fingerprint
            origin = f"{source} ({model.checkpoint.name})"
        elif (source / hparams_file).is_file():
            text = (source / hparams_file).read_text(encoding="utf-8")
            paths, fingerprint, origin = {}, None, str(source)
        else:
            raise ModelFolderError(
                f"{source} is neither a trained stage-2 folder (with {HPARAMS_FILE} "
                f"and {SAVE_FOLDER}/CKPT+*) nor an exported model folder (with "
                f"{hparams_file}){_stage2_hint(source)}"
            )
        hparams = load_hyperpyyaml(
            text, {**paths, **(overrides or {}), "model_folder": str(source)}
        )
        hparams["encoder_overrides"] = {
            **_as_mapping(hparams["encoder_overrides"], origin),
            **_as_mapping(encoder_overrides, "encoder_overrides"),
        }
        if fingerprint is None and hparams["encoder_fingerprint_file"] is not None:
            fingerprint_file = Path(hparams["encoder_fingerprint_file"])
            with open(fingerprint_file, encoding="utf-8") as f:
                fingerprint = json.load(f)

        modules = dict(hparams["modules"])
        _load_weights(modules, Path(hparams["weights_folder"]), origin)
        if with_encoder:
            encoder = hparams["encoder"](overrides=hparams["encoder_overrides"])
            if fingerprint is not None:
                check_encoder_fingerprint(encoder, fingerprint, origin)
            modules["encoder"] = encoder
        label_file = hparams["label_encoder_file"]
        hparams["label_encoder"] = _label_encoder(
            None if label_file is None else Path(label_file), hparams["classes"]
        )
        logger.info("Loaded the emotion recognizer of %s", origin)
        return cls(
            modules=modules,
            hparams=hparams,
            run_opts=run_opts,
            freeze_params=freeze_params,
        )

    @property
    def classes(self):
        """The class labels, in the order of the classifier outputs (list of str)."""
        encoder = self.hparams.label_encoder
        return [encoder.ind2lab[i] for i in range(len(encoder))]

    @property
    def sample_rate(self):
        """The sample rate the encoder expects, Hz."""
        return self._encoder().sample_rate

    def _encoder(self):
        if "encoder" not in self.mods:
            raise RuntimeError(
                "This EmotionRecognizer was loaded without its encoder "
                "(with_encoder=False): it works on encoder features only"
            )
        return self.mods.encoder

    def load_audio(self, path, savedir=None):
        """Reads an audio file as a mono waveform at the encoder's sample rate.

        Any sample rate and channel count (see :func:`ser_lib.audio.read_audio`,
        which also refuses truncated files and non-finite samples). Files that give
        fewer than ``min_frames`` encoder frames are refused.

        Arguments
        ---------
        path : str or os.PathLike
            The audio file (local).
        savedir : None
            Unused (``Pretrained`` signature; nothing is downloaded).

        Returns
        -------
        torch.Tensor
            The waveform [samples] (on the CPU).

        Raises
        ------
        ser_lib.audio.AudioError
            Unreadable, empty, too short or non-finite audio; the message names the
            file.
        """
        wav = read_audio(path, sample_rate=self.sample_rate)
        frames = self._encoder().num_frames(wav.shape[0])
        if frames < self.hparams.min_frames:
            raise AudioError(
                f"Audio file {path} is too short: {wav.shape[0] / self.sample_rate:.3f}"
                f" s give {frames} encoder frame(s), {self.hparams.min_frames} needed"
            )
        return wav

    def encode_features(self, wavs, wav_lens=None):
        """Encoder features of a padded batch, as the model saw them in training.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms at :attr:`sample_rate`, [batch, samples] (or [samples]).
        wav_lens : torch.Tensor, optional
            Relative lengths [batch] (default: all 1.0).

        Returns
        -------
        feats : torch.Tensor
            [batch, frames, dim], float32 (rounded to float16 values when
            ``float16_features``); zero on padded frames.
        feat_lens : torch.Tensor
            Relative lengths [batch].
        """
        wavs, wav_lens = self._batch(wavs, wav_lens)
        with torch.no_grad():
            feats, feat_lens = self._encoder()(wavs, wav_lens)  # [B, T, D]
        if self.hparams.float16_features:
            feats = feats.to(torch.float16)
            if not torch.isfinite(feats).all():
                raise ValueError(
                    "The encoder output is not finite in float16 (NaN, or beyond "
                    f"+-{torch.finfo(torch.float16).max:.0f})"
                )
            feats = feats.float()
        return feats, feat_lens

    def _batch(self, wavs, wav_lens):
        """Adds the batch dimension and default lengths; moves to the device."""
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        return wavs.float().to(self.device), wav_lens.float().to(self.device)

    def embed_features(self, feats, feat_lens=None):
        """Utterance embeddings (SAP output) of encoder features.

        Arguments
        ---------
        feats : torch.Tensor
            Encoder features [batch, frames, dim] (e.g. from the feature cache).
        feat_lens : torch.Tensor, optional
            Relative lengths [batch] (default: all 1.0).

        Returns
        -------
        torch.Tensor
            [batch, 2 * d_model * heads].
        """
        feats, feat_lens = self._batch_feats(feats, feat_lens)
        with torch.no_grad():
            frames = self.mods.backbone(feats, feat_lens)  # [B, T, d_model]
            return self.mods.sap(frames, feat_lens)

    def _batch_feats(self, feats, feat_lens):
        if feat_lens is None:
            feat_lens = torch.ones(feats.shape[0])
        return feats.float().to(self.device), feat_lens.float().to(self.device)

    def classify_features(self, feats, feat_lens=None):
        """Class probabilities of encoder features.

        Arguments
        ---------
        feats : torch.Tensor
            Encoder features [batch, frames, dim].
        feat_lens : torch.Tensor, optional
            Relative lengths [batch].

        Returns
        -------
        torch.Tensor
            Probabilities [batch, classes].
        """
        embeddings = self.embed_features(feats, feat_lens)
        with torch.no_grad():
            logits = self.mods.classifier(embeddings)  # [B, C]
        if logits.shape[-1] != len(self.hparams.label_encoder):
            raise ValueError(
                f"The classifier has {logits.shape[-1]} outputs but the label "
                f"encoder {len(self.hparams.label_encoder)} classes"
            )
        return logits.float().softmax(dim=-1)

    def encode_batch(self, wavs, wav_lens=None):
        """Utterance embeddings (SAP output) of a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms at :attr:`sample_rate`, [batch, samples].
        wav_lens : torch.Tensor, optional
            Relative lengths [batch].

        Returns
        -------
        torch.Tensor
            [batch, 2 * d_model * heads].
        """
        return self.embed_features(*self.encode_features(wavs, wav_lens))

    def classify_batch(self, wavs, wav_lens=None):
        """Classifies a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms at :attr:`sample_rate` (mono), [batch, samples].
        wav_lens : torch.Tensor, optional
            Relative lengths [batch] (SpeechBrain convention; default all 1.0).

        Returns
        -------
        probs : torch.Tensor
            Class probabilities [batch, classes] (``EncoderClassifier`` returns
            log-probabilities here; these are probabilities).
        score : torch.Tensor
            The probability of the best class, [batch].
        index : torch.Tensor
            The best class, [batch].
        labels : list of str
            Its label.
        """
        probs = self.classify_features(*self.encode_features(wavs, wav_lens))
        score, index = probs.max(dim=-1)
        labels = [self.hparams.label_encoder.ind2lab[int(i)] for i in index]
        return probs, score, index, labels

    def classify_file(self, path):
        """Classifies one audio file (any sample rate, any channels).

        Arguments
        ---------
        path : str or os.PathLike
            The audio file.

        Returns
        -------
        EmotionPrediction
            Label, its probability, every class probability.

        Raises
        ------
        ser_lib.audio.AudioError
            Unreadable, empty or too short audio.
        """
        wav = self.load_audio(path)
        probs, _, index, labels = self.classify_batch(wav.unsqueeze(0))
        values = probs[0].tolist()
        return EmotionPrediction(
            label=labels[0],
            probability=values[int(index[0])],
            probabilities=dict(zip(self.classes, values, strict=True)),
            index=int(index[0]),
        )

    def forward(self, wavs, wav_lens=None):
        """Runs :meth:`classify_batch`."""
        return self.classify_batch(wavs, wav_lens)


def _load_weights(modules, folder, origin):
    """Loads ``<folder>/<name>.ckpt`` (state dicts, strictly) into the model modules."""
    for name in MODEL_MODULES:
        path = folder / f"{name}.ckpt"
        if not path.is_file():
            raise ModelFolderError(f"The weights file {path} of {origin} is missing")
        state = torch.load(path, map_location="cpu", weights_only=True)
        modules[name].load_state_dict(state)


def _stage2_hint(folder):
    """A hint when ``folder`` is a fold folder holding the stage-2 folder."""
    candidate = Path(folder) / DEFAULT_STAGE2_NAME
    return f" (did you mean {candidate}?)" if is_trained_folder(candidate) else ""


def _optional_path(path):
    return None if path is None else str(path)


def _resolved(path):
    return None if path is None else Path(path).resolve()
