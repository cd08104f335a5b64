"""The command line of a ``<corpus>_prepare.py`` script.

Every prepare script runs the same way: the options of :func:`prepare_arg_parser`
(the class map read from the recipe's ``hparams/finetune.yaml``), the corpus's own
options, then its ``prepare_<corpus>`` function (:func:`prepare_main`); as a program
it logs at INFO level. :func:`run_prepare_script` chains them.

Authors
 * ser_lib contributors 2025
"""

import argparse
import logging
import os

from ser_lib.data.class_map import (
    UNMAPPED_POLICIES,
    read_class_maps,
    select_class_map,
)
from ser_lib.data.folds import VALID_MODES
from ser_lib.data.speaker_folds import FOLD_MODES

__all__ = [
    "RECIPE_HPARAMS",
    "configure_script_logging",
    "prepare_arg_parser",
    "prepare_main",
    "run_prepare_script",
]

RECIPE_HPARAMS = os.path.join("hparams", "finetune.yaml")
"""The recipe YAML holding ``class_maps``, relative to the recipe folder."""

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
"""How a prepare script run as a program logs."""


def prepare_arg_parser(
    description,
    hparams_file,
    folds=True,
    fold_mode="speaker_kfold",
    n_folds=5,
    unmapped="error",
):
    """The command-line options shared by the ``<corpus>_prepare.py`` scripts.

    The class map comes from the recipe's YAML (``--hparams_file``, key
    ``class_maps``) and ``--class_set``, so it is written in one place only.

    Arguments
    ---------
    description : str
        Shown by ``--help``.
    hparams_file : str
        Default of ``--hparams_file`` (the recipe's ``hparams/finetune.yaml``).
    folds : bool
        Whether to add ``--fold_mode``, ``--n_folds`` and ``--valid_mode``.
    fold_mode : str
        Default of ``--fold_mode``.
    n_folds : int
        Default of ``--n_folds``.
    unmapped : str
        Default of ``--unmapped``.

    Returns
    -------
    argparse.ArgumentParser
        With ``--data_folder``, ``--save_folder``, ``--hparams_file``,
        ``--class_set``, ``--unmapped``, ``--skip_prep`` (and the fold options).

    Example
    -------
    >>> parser = prepare_arg_parser("demo", "hparams/finetune.yaml", n_folds=10)
    >>> args = parser.parse_args(["--data_folder", "D", "--save_folder", "S"])
    >>> args.class_set, args.fold_mode, args.n_folds, args.valid_mode, args.unmapped
    ('4class', 'speaker_kfold', 10, 'none', 'error')
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data_folder", required=True, help="the corpus folder")
    parser.add_argument("--save_folder", required=True, help="output folder")
    parser.add_argument(
        "--hparams_file", default=hparams_file, help="YAML holding class_maps"
    )
    parser.add_argument("--class_set", default="4class", help="a key of class_maps")
    parser.add_argument("--unmapped", default=unmapped, choices=UNMAPPED_POLICIES)
    if folds:
        parser.add_argument("--fold_mode", default=fold_mode, choices=FOLD_MODES)
        parser.add_argument("--n_folds", type=int, default=n_folds)
        parser.add_argument("--valid_mode", default="none", choices=VALID_MODES)
    parser.add_argument("--skip_prep", action="store_true", help="do nothing")
    return parser


def prepare_main(prepare, parser, argv=None):
    """Runs a prepare function from the command line built by :func:`prepare_arg_parser`.

    Every option but ``--hparams_file`` and ``--class_set`` is passed to ``prepare``
    as the keyword of the same name; those two give its ``class_map`` (read from the
    YAML by :func:`ser_lib.data.class_map.read_class_maps`).

    Arguments
    ---------
    prepare : callable
        E.g. ``prepare_ravdess``.
    parser : argparse.ArgumentParser
        From :func:`prepare_arg_parser`, with the corpus's own options added.
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    dict
        The keyword arguments ``prepare`` was called with.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "finetune.yaml")
    >>> _ = open(path, "w").write("class_maps:\\n  4class: {neutral: neu}\\n")
    >>> def prepare(data_folder, save_folder, class_map, unmapped, skip_prep):
    ...     pass
    >>> kwargs = prepare_main(prepare, prepare_arg_parser("demo", path, folds=False),
    ...                       ["--data_folder", "D", "--save_folder", "S"])
    >>> kwargs["class_map"], kwargs["save_folder"], kwargs["unmapped"]
    ({'neutral': 'neu'}, 'S', 'error')
    """
    kwargs = vars(parser.parse_args(argv))
    class_maps = read_class_maps(kwargs.pop("hparams_file"))
    kwargs["class_map"] = select_class_map(class_maps, kwargs.pop("class_set"))
    prepare(**kwargs)
    return kwargs


def run_prepare_script(
    prepare, doc, recipe_dir, argv=None, add_options=None, **parser_options
):
    """Parses a prepare script's command line and runs its prepare function.

    Arguments
    ---------
    prepare : callable
        The script's ``prepare_<corpus>`` function.
    doc : str
        The script's docstring; its first paragraph is the ``--help`` description.
    recipe_dir : str
        The recipe folder (``--hparams_file`` defaults to its
        ``hparams/finetune.yaml``).
    argv : list of str, optional
        The command line (default: the program's).
    add_options : callable, optional
        Called with the parser to add the corpus's own options.
    **parser_options
        Passed to :func:`prepare_arg_parser` (``folds``,
        ``fold_mode``, ``n_folds``, ``unmapped``).

    Returns
    -------
    dict
        What :func:`prepare_main` returns.

    Example
    -------
    >>> import os, tempfile
    >>> recipe = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(recipe, "hparams"))
    >>> _ = open(os.path.join(recipe, RECIPE_HPARAMS), "w").write(
    ...     "class_maps:\\n  4class: {neutral: neu}\\n")
    >>> def prepare(data_folder, save_folder, class_map, unmapped, skip_prep, take):
    ...     pass
    >>> def add_options(parser):
    ...     _ = parser.add_argument("--take", default="first")
    >>> kwargs = run_prepare_script(prepare, "Prepares a demo.\\n\\nMore.", recipe,
    ...     ["--data_folder", "D", "--save_folder", "S"], add_options, folds=False)
    >>> kwargs["class_map"], kwargs["take"]
    ({'neutral': 'neu'}, 'first')
    """
    parser = prepare_arg_parser(
        doc.split("\n\n")[0],
        os.path.join(recipe_dir, RECIPE_HPARAMS),
        **parser_options,
    )
    if add_options is not None:
        add_options(parser)
    return prepare_main(prepare, parser, argv)


def configure_script_logging():
    """Logs at INFO level to stderr, as a prepare script run as a program does."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
