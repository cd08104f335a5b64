"""The command line and config file of a recipe's ``cross_validate.py``.

Parsing the arguments, merging a config file's ``common``/``adapter``/``finetune``
override sections with the command line's, and the driver's own log; the main that
uses them is :func:`ser_lib.cross_validation.cross_validate_main`.
"""

import argparse
import contextlib
import logging
import os
import shlex

import yaml
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def parse_cv_args(argv, default_folds, description):
    """Command line of a recipe's ``cross_validate.py`` (see IEMOCAP's for usage)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data_folder", required=True, help="the corpus folder")
    parser.add_argument(
        "--output_folder", required=True, help="output_root of the runs"
    )
    parser.add_argument("--folds", type=int, nargs="+", default=list(default_folds))
    parser.add_argument("--config", help="YAML with common/adapter/finetune overrides")
    parser.add_argument(
        "--overrides", default="{}", help="YAML mapping for both stages"
    )
    parser.add_argument(
        "--adapter_overrides", default="{}", help="YAML mapping, stage 1"
    )
    parser.add_argument(
        "--finetune_overrides", default="{}", help="YAML mapping, stage 2"
    )
    parser.add_argument("--adapter_hparams", default="hparams/adapter.yaml")
    parser.add_argument("--finetune_hparams", default="hparams/finetune.yaml")
    parser.add_argument("--skip_adapter", action="store_true", help="no stage 1")
    parser.add_argument("--aggregate_only", action="store_true")
    parser.add_argument("--results_folder", help="default: the output folder")
    parser.add_argument("--device", default="cpu", help="e.g. cuda:0")
    parser.add_argument(
        "--no_report", action="store_true", help="do not write OUTPUT/report/"
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def driver_logging(log_file):
    """Shows the driver's INFO messages on the console and appends them to ``log_file``.

    The ``train.py`` subprocesses log on their own; without this the driver's lines
    ("Fold 1: stage 1 skipped ...", "Running: ...", "Results: ...") went nowhere.

    Example
    -------
    >>> path = getfixture("tmp_path") / "cv_log.txt"
    >>> with driver_logging(path):
    ...     logger.info("Fold 1: finished earlier")
    >>> "Fold 1: finished earlier" in path.read_text()
    True
    """
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    package = logging.getLogger(__name__.split(".")[0])
    handlers = [logging.StreamHandler(), logging.FileHandler(log_file)]
    previous_level = package.level
    package.setLevel(logging.INFO)
    for handler in handlers:
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        package.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            package.removeHandler(handler)
            handler.close()
        package.setLevel(previous_level)


def merge_overrides(sections, common, adapter, finetune):
    """Merges the config file's sections with the command line's overrides.

    Precedence, lowest first: the config's ``common`` section, its per-stage
    section, ``--overrides`` (both stages), ``--adapter_overrides`` /
    ``--finetune_overrides``: a value given on the command line always beats the
    config file, also when the file sets it in a per-stage section.

    Arguments
    ---------
    sections : dict
        ``common``, ``adapter``, ``finetune`` mappings (:func:`read_cv_config`).
    common, adapter, finetune : dict
        The command line's ``--overrides``, ``--adapter_overrides``,
        ``--finetune_overrides``.

    Returns
    -------
    tuple of dict
        (common, adapter, finetune) overrides for :func:`cross_validate`, whose
        stage overrides are applied over the common ones.

    Example
    -------
    >>> sections = {"common": {"lr": 0.1}, "adapter": {"number_of_epochs": 8},
    ...             "finetune": {"number_of_epochs": 12}}
    >>> merge_overrides(sections, {"number_of_epochs": 2}, {}, {"lr": 0.5})
    ({'lr': 0.1, 'number_of_epochs': 2}, {}, {'lr': 0.5})
    """
    merged_common = {**sections["common"], **common}
    merged = []
    for stage, given in (("adapter", adapter), ("finetune", finetune)):
        from_file = dict(sections[stage])
        for key in set(from_file) & set(common):
            logger.info(
                "--overrides %s: %r replaces the config's %s value %r",
                key,
                common[key],
                stage,
                from_file.pop(key),
            )
        merged.append({**from_file, **given})
    return (merged_common, *merged)


def read_cv_config(path):
    """Reads a config file of ``common``/``adapter``/``finetune`` override sections."""
    sections = {"common": {}, "adapter": {}, "finetune": {}}
    if path:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        unknown = set(loaded) - set(sections)
        if unknown:
            raise ValueError(f"{path}: unknown sections {sorted(unknown)}")
        sections.update({k: v or {} for k, v in loaded.items()})
    return sections


def cv_command(recipe_dir, argv):
    """The command line of a recipe's ``cross_validate.py``, run from the repository.

    The script's path starts at the last ``recipes`` folder of ``recipe_dir``.

    Example
    -------
    >>> cv_command("/x/recipes/EmoDB", ["--folds", "1", "2", "--overrides={a: 1}"])
    "python recipes/EmoDB/cross_validate.py --folds 1 2 '--overrides={a: 1}'"
    >>> cv_command("/x/recipes/EmoDB/gmp_tl", ["--folds", "1"])
    'python recipes/EmoDB/gmp_tl/cross_validate.py --folds 1'
    """
    parts = os.path.normpath(recipe_dir).split(os.sep)
    tail = parts[-1:]
    if "recipes" in parts:
        tail = parts[len(parts) - parts[::-1].index("recipes") :]
    script = "/".join(["recipes", *tail, "cross_validate.py"])
    return shlex.join(["python", script, *argv])
