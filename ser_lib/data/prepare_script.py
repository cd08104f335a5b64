"""The command line of a ``<corpus>_prepare.py`` script.

Every prepare script runs the same way: the options of
:func:`ser_lib.data.preparation.prepare_arg_parser` (the class map read from the
recipe's ``hparams/finetune.yaml``), the corpus's own options, then its
``prepare_<corpus>`` function; as a program it logs at INFO level.

Authors
 * ser_lib contributors 2025
"""

import logging
import os

from ser_lib.data.preparation import prepare_arg_parser, prepare_main

__all__ = ["RECIPE_HPARAMS", "configure_script_logging", "run_prepare_script"]

RECIPE_HPARAMS = os.path.join("hparams", "finetune.yaml")
"""The recipe YAML holding ``class_maps``, relative to the recipe folder."""

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
"""How a prepare script run as a program logs."""


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
        Passed to :func:`ser_lib.data.preparation.prepare_arg_parser` (``folds``,
        ``fold_mode``, ``n_folds``, ``unmapped``).

    Returns
    -------
    dict
        What :func:`ser_lib.data.preparation.prepare_main` returns.

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
