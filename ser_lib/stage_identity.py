"""A stage's identity: the resolved settings that change its result.

An ablation (another K, another initialisation) must never be answered from an
earlier run's files. Every stage folder holds ``stage_settings.json``, the resolved
settings of the run that wrote it (:func:`stage_settings`); before a stage resumes
or is skipped as finished, the settings of the new run are compared with it
(:func:`check_stage_settings`) and a difference is refused with the differing keys
named (:class:`StageSettingsError`). Two runs that should coexist get two folders:
``adapter_name`` (stage 1) and ``finetune_name`` (stage 2) name them.

What counts: every top-level hparam whose value is plain data (numbers, strings,
lists, mappings) or a named callable (``!name:`` entries such as
``train_sampler``, with their arguments); objects built with ``!new:`` are left out
(their arguments are top-level keys themselves), and so are :data:`RUN_KEYS` (where
the data and outputs live, workers, checkpoint intervals) and every path under the
run's ``output_root`` or ``data_folder``. Stage 2 also carries the settings of the
stage-1 folder it starts from (``adapter_settings``).

:data:`RESUMABLE_KEYS` may change between runs of one folder: extending a finished
run by a few epochs continues it (with a warning).
"""

import functools
import json
import os

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

SETTINGS_FILE = "stage_settings.json"
RUN_KEYS = (
    "data_folder",
    "output_root",
    "skip_prep",
    "num_workers",
    "ckpt_interval_minutes",
    "ckpt_interval_steps",
    "checkpoints_to_keep",
    "extraction_batch_seconds",
    "nonfinite_patience",
    "sync_interval",
    "find_unused_parameters",
    "train_dataloader_opts",
    "test_dataloader_opts",
    "label_encoder",
    # precision: auto's rule; the precision it resolves to is recorded instead.
    "bf16_cpu_min_d_model",
)
"""Keys that change where and how a run works, not what it computes."""
RESUMABLE_KEYS = ("number_of_epochs",)
"""Keys whose change continues a stage folder instead of being refused."""


class StageSettingsError(RuntimeError):
    """A stage folder holds the results of other settings than the run's."""


def _plain(value, roots):
    """``value`` as JSON data, or ``_SKIP`` when it is an object or a run path."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if any(root and root in value for root in roots):
            return _SKIP
        return value
    if isinstance(value, list | tuple):
        items = [_plain(item, roots) for item in value]
        return _SKIP if any(item is _SKIP for item in items) else items
    if isinstance(value, dict):
        items = {str(k): _plain(v, roots) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not _SKIP}
    if isinstance(value, functools.partial):
        arguments = _plain(dict(value.keywords), roots)
        return {"callable": _callable_name(value.func), **arguments}
    if callable(value) and hasattr(value, "__qualname__"):
        return _callable_name(value)
    return _SKIP


_SKIP = object()


def _callable_name(func):
    return f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', func)}"


def stage_settings(hparams):
    """The resolved settings of a stage that make its identity.

    Arguments
    ---------
    hparams : dict
        The loaded stage hparams.

    Returns
    -------
    dict
        Key -> JSON value (see the module docstring); with ``adapter_settings``
        (the stage-1 folder's saved settings, or None; always None with
        ``backbone_init: random``) when the stage starts from another folder's
        ``adapter_folder``.

    Example
    -------
    >>> import torch
    >>> hparams = {"output_root": "/runs", "output_folder": "/runs/x/adapter",
    ...            "num_prototypes": 64, "lr": 1e-4, "num_workers": 4,
    ...            "model": torch.nn.Linear(2, 2),
    ...            "opt_class": functools.partial(torch.optim.Adam, lr=1e-4)}
    >>> stage_settings(hparams)
    {'num_prototypes': 64, 'lr': 0.0001, 'opt_class': {'callable': 'torch.optim.adam.Adam', 'lr': 0.0001}}
    """
    roots = [
        os.fspath(hparams[key])
        for key in ("output_root", "data_folder")
        if key in hparams
    ]
    settings = {}
    for key, value in hparams.items():
        if key.startswith("__") or key in RUN_KEYS:
            continue
        plain = _plain(value, roots)
        if plain is not _SKIP:
            settings[key] = plain
    if hparams.get("adapter_folder") is not None and "output_folder" in hparams:
        adapter_stage = os.path.dirname(os.path.abspath(hparams["adapter_folder"]))
        if adapter_stage != os.path.abspath(hparams["output_folder"]):
            # A backbone started at random reads nothing from stage 1: its identity
            # must not depend on whether a stage-1 run exists in that folder.
            settings["adapter_settings"] = (
                None
                if hparams.get("backbone_init") == "random"
                else read_stage_settings(adapter_stage)
            )
    return settings


def read_stage_settings(folder):
    """The saved settings of a stage folder, or None when it has none."""
    path = os.path.join(folder, SETTINGS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_stage_settings(folder, settings):
    """Writes ``folder/stage_settings.json`` atomically."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, SETTINGS_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def differing_keys(saved, current, prefix=""):
    """Dotted keys whose values differ between two settings mappings.

    Example
    -------
    >>> differing_keys({"K": 64, "opt": {"lr": 1, "b": 2}}, {"K": 32, "opt": {"lr": 1}, "x": 0})
    ['K', 'opt.b', 'x']
    """
    keys = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, _SKIP), current.get(key, _SKIP)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def check_stage_settings(folder, settings, results_exist=False):
    """Compares a run's settings with those saved in its stage folder.

    Arguments
    ---------
    folder : str
        The stage folder (``output_folder``).
    settings : dict
        :func:`stage_settings` of the new run.
    results_exist : bool
        Whether the folder holds work of an earlier run (checkpoints, results);
        such a folder without saved settings cannot be trusted and is refused.

    Returns
    -------
    str
        ``"new"`` (nothing saved), ``"same"`` or ``"resumable"`` (only
        :data:`RESUMABLE_KEYS` differ).

    Raises
    ------
    StageSettingsError
        Naming the differing keys, and how to keep both runs.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> check_stage_settings(folder, {"num_prototypes": 64})
    'new'
    >>> write_stage_settings(folder, {"num_prototypes": 64, "number_of_epochs": 2})
    >>> check_stage_settings(folder, {"num_prototypes": 64, "number_of_epochs": 3})
    'resumable'
    >>> try:
    ...     check_stage_settings(folder, {"num_prototypes": 32, "number_of_epochs": 2})
    ... except StageSettingsError as error:
    ...     "differ in num_prototypes (saved 64, now 32)" in str(error)
    True
    """
    saved = read_stage_settings(folder)
    if saved is None:
        if results_exist:
            raise StageSettingsError(
                f"{folder} holds results but no {SETTINGS_FILE} (written before stage "
                "settings were recorded): its settings cannot be checked; delete the "
                "folder or give this run another folder name (adapter_name / "
                "finetune_name)"
            )
        return "new"
    keys = differing_keys(saved, settings)
    if not keys:
        return "same"
    if all(key in RESUMABLE_KEYS for key in keys):
        logger.warning(
            "%s: continuing a run with other %s (saved %s)",
            folder,
            keys,
            {key: saved.get(key) for key in keys},
        )
        return "resumable"
    shown = "; ".join(
        f"{key} (saved {_lookup(saved, key)!r}, now {_lookup(settings, key)!r})"
        for key in keys
    )
    raise StageSettingsError(
        f"The stage folder {folder} holds a run whose settings differ in {shown}. "
        "Its results would answer for other settings: give this run its own folder "
        "(adapter_name for stage 1 in both stages' overrides, finetune_name for "
        "stage 2), another output folder, or delete the old one"
    )


def stage_has_results(folder):
    """Whether a stage folder holds work of a run: checkpoints, a model or metrics.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> stage_has_results(folder)
    False
    >>> os.makedirs(os.path.join(folder, "save", "CKPT+1"))
    >>> stage_has_results(folder)
    True
    """
    for name in ("save", "model"):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and os.listdir(path):
            return True
    return os.path.isfile(os.path.join(folder, "metrics.json"))


def check_stage(hparams):
    """:func:`check_stage_settings` of a loaded stage's ``output_folder``.

    Returns
    -------
    status : str
        See :func:`check_stage_settings`.
    settings : dict
        The run's :func:`stage_settings`, to write with :func:`write_stage_settings`.
    """
    folder = hparams["output_folder"]
    settings = stage_settings(hparams)
    status = check_stage_settings(
        folder, settings, results_exist=stage_has_results(folder)
    )
    return status, settings


def _lookup(settings, dotted):
    value = settings
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
