"""The main of an in-the-loop recipe stage: ``python train.py hparams/<stage>.yaml``.

As :func:`ser_lib.recipe.train_main` without the feature cache: the corpus prepare
function, the experiment folder, the waveform datasets (``dataio`` of the YAML,
e.g. :func:`ser_lib.inloop.data.inloop_dataio`), then ``brain_class`` ``fit`` and
``conclude``. Duration-bucketed training batches (reshuffled every epoch).
"""

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from ser_lib.recipe import ddp_group, release_ddp_wrappers


def inloop_train_main(argv, recipe_dir):
    """Runs one in-loop stage of a recipe.

    Arguments
    ---------
    argv : list of str
        ``[hparams_file, --key=value, ...]``.
    recipe_dir : str
        The recipe folder (its prepare script is importable from the YAML).

    Returns
    -------
    sb.Brain
        The trained Brain.
    """
    del recipe_dir  # train.py puts it on sys.path and runs from it
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with ddp_group(run_opts):
        return _run_inloop_stage(hparams_file, run_opts, overrides)


def _run_inloop_stage(hparams_file, run_opts, overrides):
    """The body of :func:`inloop_train_main`, inside the process group."""
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    run_on_main(hparams["prepare"], kwargs=hparams["prepare_kwargs"])
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    datasets = hparams["dataio"](hparams)
    hparams["label_encoder"] = datasets["label_encoder"]
    brain = hparams["brain_class"](
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    sampler = datasets["train_batch_sampler"]
    brain.train_sampler = sampler
    brain.fit(
        epoch_counter=hparams["epoch_counter"],
        train_set=datasets["train"],
        valid_set=datasets["valid"],
        train_loader_kwargs={
            "batch_sampler": sampler,
            "num_workers": hparams["num_workers"],
        },
        valid_loader_kwargs=hparams["test_dataloader_opts"],
    )
    brain.conclude(datasets, hparams["test_dataloader_opts"])
    release_ddp_wrappers(brain)
    return brain
