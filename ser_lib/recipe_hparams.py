"""A recipe's hparams as ``train.py`` reads them, and the folders a fold uses.

The cross-validation driver (:mod:`ser_lib.cross_validation`) and the multi-stage and
cross-corpus runners load a recipe's YAML here exactly as the recipe's ``train.py``
would (inside the recipe folder, with the same overrides), and turn overrides into
the ``--key=value`` arguments of a ``train.py`` command line.
"""

import contextlib
import os
import sys

import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import infer_device

from ser_lib.precision import resolve_hparams_precision
from ser_lib.run_info import stage_schedule


def overrides_to_args(overrides):
    """Turns a mapping of hparams overrides into ``--key=value`` arguments.

    Values are written as YAML (flow style), which is how SpeechBrain reads them back.

    Example
    -------
    >>> overrides_to_args({"number_of_epochs": 3, "encoder_overrides": {"stack": 2}})
    ['--number_of_epochs=3', '--encoder_overrides={stack: 2}']
    """
    args = []
    for key, value in overrides.items():
        text = yaml.safe_dump(value, default_flow_style=True).strip()
        if text.endswith("\n..."):
            text = text[: -len("\n...")]
        args.append(f"--{key}={text}")
    return args


@contextlib.contextmanager
def recipe_context(recipe_dir):
    """Runs the body inside ``recipe_dir`` with it importable, as ``train.py`` does.

    Relative paths of a recipe's YAML are relative to its folder, and its prepare
    script is imported by name (``!name:cremad_prepare.prepare_cremad``).

    Arguments
    ---------
    recipe_dir : str
        The recipe folder.

    Example
    -------
    >>> import tempfile
    >>> folder = os.path.realpath(tempfile.mkdtemp())
    >>> with recipe_context(folder):
    ...     os.getcwd() == folder, sys.path[0] == folder
    (True, True)
    >>> folder in sys.path
    False
    """
    recipe_dir = os.path.abspath(recipe_dir)
    cwd = os.getcwd()
    sys.path.insert(0, recipe_dir)
    try:
        os.chdir(recipe_dir)
        yield
    finally:
        os.chdir(cwd)
        sys.path.remove(recipe_dir)


def load_recipe_hparams(recipe_dir, hparams_file, overrides=None):
    """Loads a recipe's YAML with overrides, as ``train.py`` would in ``recipe_dir``.

    Arguments
    ---------
    recipe_dir : str
        The recipe folder.
    hparams_file : str
        The YAML, relative to ``recipe_dir`` (or absolute).
    overrides : dict, optional
        Overrides (e.g. ``data_folder``, ``output_root``).

    Returns
    -------
    dict
        The loaded hparams.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "stage.yaml"), "w") as f:
    ...     _ = f.write("output_root: out\\nprep_folder: !ref <output_root>/prepared\\n")
    >>> load_recipe_hparams(folder, "stage.yaml", {"output_root": "/tmp/x"})["prep_folder"]
    '/tmp/x/prepared'
    """
    with recipe_context(recipe_dir):
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, yaml.safe_dump(overrides or {}))
    # As train.py resolves it on this machine's default device (its identity check).
    resolve_hparams_precision(hparams, infer_device())
    return hparams


def fold_folders(hparams_file, overrides, recipe_dir):
    """Reads ``output_folder`` and ``adapter_folder`` the YAML gives for a fold.

    Arguments
    ---------
    hparams_file : str
        Stage-2 YAML, relative to ``recipe_dir``.
    overrides : dict
        Overrides, including ``test_session``.
    recipe_dir : str
        Where ``train.py`` runs.

    Returns
    -------
    dict
        ``output_folder`` and ``adapter_folder`` as absolute paths
        (``adapter_folder`` None for a configuration without an adapter stage), and
        ``needs_adapter`` (see :func:`needs_adapter_stage`), ``schedule`` (see
        :func:`ser_lib.run_info.stage_schedule`).
    """
    hparams = load_recipe_hparams(recipe_dir, hparams_file, overrides)
    adapter_folder = hparams["adapter_folder"]
    return {
        "output_folder": os.path.abspath(hparams["output_folder"]),
        "adapter_folder": adapter_folder and os.path.abspath(adapter_folder),
        "needs_adapter": needs_adapter_stage(hparams),
        "schedule": stage_schedule(hparams),
    }


def needs_adapter_stage(hparams):
    """Whether a stage-2 configuration needs stage 1 (the adapter) to run first.

    No when ``adapter_folder`` is null (a configuration without an adapter, e.g.
    ``hparams/baseline.yaml``) or the backbone starts at random
    (``backbone_init: random``, the "w/o adapter training" ablation).

    Arguments
    ---------
    hparams : dict
        Loaded stage-2 hparams: ``adapter_folder``, and ``backbone_init`` when
        ``adapter_folder`` is set.

    Returns
    -------
    bool

    Example
    -------
    >>> needs_adapter_stage({"adapter_folder": None})
    False
    >>> needs_adapter_stage({"adapter_folder": "a/model", "backbone_init": "random"})
    False
    >>> needs_adapter_stage({"adapter_folder": "a/model", "backbone_init": "teacher"})
    True
    """
    if hparams["adapter_folder"] is None:
        return False
    return hparams["backbone_init"] != "random"
