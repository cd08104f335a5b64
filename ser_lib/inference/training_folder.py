"""Finding the parts of a trained stage-2 folder: its checkpoint, the encoder hparams
file of training, the fingerprint of the encoder that filled its feature cache."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.logger import get_logger

from ser_lib.inference.hparams import (
    as_mapping,
    node_tag,
    read_saved_hparams,
    resolve_saved_value,
)
from ser_lib.inference.layout import (
    DEFAULT_STAGE2_NAME,
    HPARAMS_FILE,
    LABEL_ENCODER_FILE,
    MODEL_MODULES,
    SAVE_FOLDER,
    ModelFolderError,
)

__all__ = [
    "TrainedModel",
    "find_checkpoint",
    "find_encoder_hparams",
    "is_trained_folder",
    "read_trained_model",
    "stage2_hint",
]

logger = get_logger(__name__)


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
    >>> import torch
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
        ``backbone``, ``sap``, ``classifier``: their definitions in the training
        hparams (tagged YAML nodes, see :func:`read_saved_hparams`).
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
    >>> model.checkpoint.name, model.classes, list(model.modules["classifier"])
    ('CKPT+x', ['neu', 'sad'], [32, 2])
    """
    folder = Path(folder).resolve()
    hparams_file = folder / HPARAMS_FILE
    if not is_trained_folder(folder) or not hparams_file.is_file():
        raise ModelFolderError(
            f"{folder} is not a trained stage-2 folder: it needs {HPARAMS_FILE} and "
            f"{SAVE_FOLDER}/CKPT+*{stage2_hint(folder)}"
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
        if not (node_tag(hparams[name]) or "").startswith("!new:"):
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
        classes=_saved_classes(hparams["classes"], hparams_file),
        encoder_hparams=_resolved(encoder_hparams),
        encoder_overrides=as_mapping(hparams.get("encoder_overrides"), hparams_file),
        encoder_fingerprint=fingerprint,
        checkpoint=Path(find_checkpoint(folder / SAVE_FOLDER).path),
        label_encoder_file=label_file if label_file.is_file() else None,
    )


def stage2_hint(folder):
    """A hint when ``folder`` is a fold folder holding the stage-2 folder.

    Arguments
    ---------
    folder : str or os.PathLike
        The folder given.

    Returns
    -------
    str
        `` (did you mean <folder>/finetune?)``, or empty.

    Example
    -------
    >>> stage2_hint(getfixture("tmp_path"))
    ''
    """
    candidate = Path(folder) / DEFAULT_STAGE2_NAME
    return f" (did you mean {candidate}?)" if is_trained_folder(candidate) else ""


def _saved_classes(value, hparams_file):
    """The ``classes`` of a saved training file as a list of str, built through
    HyperPyYAML when a tag defines them (EmoDB: ``!apply:`` of the class map)."""
    classes = resolve_saved_value(value)
    if not isinstance(classes, (list, tuple)) or not classes:
        raise ModelFolderError(
            f"{hparams_file}: 'classes' is {classes!r}, not a list of class labels"
        )
    return [str(label) for label in classes]


def _resolved(path):
    return None if path is None else Path(path).resolve()
