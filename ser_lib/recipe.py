"""The recipe's main, shared by every corpus: one YAML file chooses everything.

``python train.py hparams/<stage>.yaml [--key=value ...]`` runs, in SpeechBrain's order:

1. ``parse_arguments`` and ``ddp_init_group`` (``torchrun ... --distributed_launch``;
   :func:`ddp_group` also destroys the process group when the stage ends);
2. ``load_hyperpyyaml`` (``__set_seed`` seeds everything), then the stage identity
   check (:mod:`ser_lib.stage_identity`): a stage folder holding a run of other
   settings is refused before any work;
3. ``run_on_main(hparams["prepare"], kwargs=hparams["prepare_kwargs"])``: the corpus's
   prepare function (the only corpus-specific code) writes ``all.csv`` and the fold
   manifests;
4. ``run_on_main(prepare_features, ...)``: the frozen encoder fills the feature cache
   (only utterances not cached yet); steps 3 and 4 run inside
   :func:`preserved_random_state`, so training starts from the same random state
   whether or not the manifests and the cache already existed;
5. ``create_experiment_directory`` (plus ``stage_settings.json``),
   ``dataio_prep(hparams)``; steps 3 to 6 hold the stage folder's
   :class:`ser_lib.locking.FolderLock` (a second run on the same folder stops at
   once, naming the holder's pid);
6. ``hparams["brain_class"](...)`` (``AdapterBrain`` for stage 1, ``FinetuneBrain`` for
   stage 2), ``fit``, then ``conclude`` (stage 1 exports the adapter, stage 2 evaluates
   the test fold).
"""

import contextlib
import gc
import os
import random

import numpy as np
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from ser_lib.audio_levels import measure_manifest
from ser_lib.dataio import dataio_prep
from ser_lib.features import prepare_features
from ser_lib.locking import FolderLock
from ser_lib.precision import resolve_hparams_precision
from ser_lib.stage_identity import check_stage, write_stage_settings


@contextlib.contextmanager
def ddp_group(run_opts):
    """``ddp_init_group`` on entry; on exit, a last barrier and ``destroy_process_group``.

    A rank that leaves the interpreter while the gloo/NCCL group is still alive can
    abort in the backend's threads ("terminate called without an active exception")
    although its work is done; every rank therefore waits for the others (after a
    clean stage only) and tears the group down before returning. Without ``--distributed_launch`` nothing happens.

    Example
    -------
    >>> _, run_opts, _ = sb.parse_arguments(["x.yaml"])
    >>> with ddp_group(run_opts):
    ...     torch.distributed.is_initialized()
    False
    """
    sb.utils.distributed.ddp_init_group(run_opts)
    initialized = (
        torch.distributed.is_available() and torch.distributed.is_initialized()
    )
    try:
        yield
        if initialized:  # not after an error: the other ranks may never arrive
            torch.distributed.barrier()
    finally:
        if initialized:
            gc.collect()  # DDP reducers released by release_ddp_wrappers go now
            torch.distributed.destroy_process_group()


def release_ddp_wrappers(brain):
    """Replaces the Brain's ``DistributedDataParallel`` wrappers by their modules.

    A DDP reducer keeps the gloo work of its last gradient all-reduce (tensors
    included) and a reference to the process group; alive at interpreter exit, it is
    destroyed during finalisation, where releasing those tensors needs the GIL and the
    process aborts ("terminate called without an active exception", exit -6) although
    the stage finished. Called after ``conclude``, so that :func:`ddp_group` can
    destroy the group while the interpreter is still whole. Without DDP, nothing
    changes.

    Example
    -------
    >>> brain = sb.Brain(modules={"lin": torch.nn.Linear(2, 2)})
    >>> release_ddp_wrappers(brain)
    >>> type(brain.modules["lin"]).__name__
    'Linear'
    """
    for name, module in list(brain.modules.items()):
        if isinstance(module, torch.nn.parallel.DistributedDataParallel):
            brain.modules[name] = module.module


@contextlib.contextmanager
def preserved_random_state():
    """Restores the global random generators (Python, numpy, torch) on exit.

    Preparation and feature extraction run inside it, so whatever random numbers
    they draw (or do not draw, when the manifests and the cache already exist),
    training starts from the state that ``__set_seed`` and the YAML objects left:
    a run depends only on (seed, data, hparams), not on whether a cache existed.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> with preserved_random_state():
    ...     _ = torch.rand(3), np.random.rand(), random.random()
    >>> after = torch.rand(1)
    >>> _ = torch.manual_seed(0)
    >>> bool(torch.equal(after, torch.rand(1)))
    True
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=_cuda_devices()):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _cuda_devices():
    """The CUDA devices whose generators :func:`preserved_random_state` restores."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def prepare_data(hparams, recipe_dir, device="cpu"):
    """Steps 3 and 4: the corpus preparation, then the features of every utterance.

    The cache covers ``all_csv`` and ``train_csv`` (stage 1's set holds utterances
    outside ``all_csv`` with ``adapter_data: all_train`` or ``transductive``).

    Shared by :func:`train_main` and the cross-corpus evaluation
    (:mod:`ser_lib.cross_corpus`), which prepares a test corpus with the encoder of
    the training corpus.

    Arguments
    ---------
    hparams : dict
        Loaded recipe hparams: ``prepare``, ``prepare_kwargs``, ``encoder_hparams``
        (relative to ``recipe_dir``, or absolute), ``encoder_overrides``, ``all_csv``,
        ``train_csv``, ``data_folder``, ``feature_folder``,
        ``extraction_batch_seconds``, ``audio_screen``
        (:class:`ser_lib.audio_levels.AudioScreen`: the files too short or silent
        to use are skipped, or stop the run).
    recipe_dir : str
        The recipe folder.
    device : str
        Where the encoder runs.

    Returns
    -------
    dict
        ID -> why it is skipped, for the utterances of ``all_csv`` and
        ``train_csv`` too short or silent to carry emotion (not extracted, left
        out of every dataset).

    Example
    -------
    >>> import numpy as np, soundfile as sf
    >>> from ser_lib.audio_levels import AudioScreen
    >>> root = getfixture("tmp_path")
    >>> sf.write(root / "a.wav", np.random.randn(16000) * 0.1, 16000)
    >>> _ = (root / "enc.yaml").write_text("encoder: !new:ser_lib.encoders.FbankEncoder\\n")
    >>> def prepare(save_folder):
    ...     _ = (root / "all.csv").write_text("ID,duration,wav\\na,1.0,$data_root/a.wav\\n")
    >>> hparams = {"prepare": prepare, "prepare_kwargs": {"save_folder": root},
    ...     "encoder_hparams": "enc.yaml", "encoder_overrides": {},
    ...     "all_csv": root / "all.csv", "train_csv": root / "all.csv",
    ...     "data_folder": root,
    ...     "feature_folder": root / "feats", "extraction_batch_seconds": 10,
    ...     "audio_screen": AudioScreen(0.08, -60, "skip")}
    >>> prepare_data(hparams, root)
    {}
    >>> sorted(p.name for p in (root / "feats").iterdir())
    ['feats', 'fingerprint.json', 'index.csv']
    >>> sorted(p.name for p in root.iterdir() if p.suffix == ".csv")
    ['all.csv', 'audio_levels.csv']
    """
    # all_csv: every labelled utterance; train_csv: stage 1's set, which may hold
    # more (adapter_data: all_train, transductive)
    csv_files = list(dict.fromkeys([hparams["all_csv"], hparams["train_csv"]]))
    with preserved_random_state():  # training must not depend on a cache existing
        run_on_main(hparams["prepare"], kwargs=hparams["prepare_kwargs"])
        for csv_file in csv_files:
            run_on_main(
                measure_manifest,
                kwargs={"csv_file": csv_file, "data_root": hparams["data_folder"]},
            )
        # Every rank reads the measurements and applies the thresholds.
        levels = {}
        for csv_file in csv_files:
            levels.update(measure_manifest(csv_file, hparams["data_folder"]))
        unusable = hparams["audio_screen"].screen(
            levels, ", ".join(map(str, csv_files))
        )
        run_on_main(
            prepare_features,
            kwargs={
                "encoder_hparams": os.path.join(recipe_dir, hparams["encoder_hparams"]),
                "encoder_overrides": hparams["encoder_overrides"],
                "csv_files": csv_files,
                "data_root": hparams["data_folder"],
                "cache_dir": hparams["feature_folder"],
                "batch_seconds": hparams["extraction_batch_seconds"],
                "device": device,
                "skip_ids": sorted(unusable),
            },
        )
    return unusable


def record_run_options(hparams, run_opts):
    """Puts the command line's SpeechBrain run options into ``hparams``.

    SpeechBrain takes ``--precision``, ``--max_grad_norm``, ``--nonfinite_patience``
    ... as run options, which win over the YAML's keys of the same name but never
    reach the YAML overrides; without this the stage settings would record the
    YAML's value instead of the one in force (and a resumed run would be refused).

    Arguments
    ---------
    hparams : dict
        The loaded hparams, changed in place: each run option given on the
        command line that is also an hparams key gets the command line's value.
    run_opts : speechbrain.core.RunOptions
        From :func:`speechbrain.parse_arguments`.

    Example
    -------
    >>> _, run_opts, _ = sb.parse_arguments(["x.yaml", "--precision=bf16"])
    >>> hparams = {"precision": "fp32", "max_grad_norm": 5.0}
    >>> record_run_options(hparams, run_opts)
    >>> hparams
    {'precision': 'bf16', 'max_grad_norm': 5.0}
    """
    for key in sorted(run_opts.overridden_args & set(hparams)):
        hparams[key] = run_opts[key]


def train_main(argv, recipe_dir):
    """Runs one stage of a recipe.

    Arguments
    ---------
    argv : list of str
        ``[hparams_file, --key=value, ...]`` as given to ``train.py``.
    recipe_dir : str
        The recipe folder: relative paths in the YAML (``encoder_hparams``) are
        relative to it, and its prepare script is importable from the YAML.

    Returns
    -------
    sb.Brain
        The trained Brain.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with contextlib.ExitStack() as stack:
        stack.enter_context(ddp_group(run_opts))
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides)
        record_run_options(hparams, run_opts)

        # One run per stage folder: a second one stops at once, naming the holder's pid.
        if sb.utils.distributed.if_main_process():
            stack.enter_context(FolderLock(hparams["output_folder"], "training"))
        return _run_stage(hparams, hparams_file, run_opts, overrides, recipe_dir)


def _run_stage(hparams, hparams_file, run_opts, overrides, recipe_dir):
    """Steps 2 (identity check) to 6 of :func:`train_main`, under the folder's lock."""
    # --device unset: the device the Brain will use (cuda:<local rank> or cpu)
    device = run_opts["device"] or sb.utils.distributed.infer_device()
    # precision: auto -> the device's precision, recorded in the stage settings.
    resolve_hparams_precision(hparams, device)

    # A stage folder of other settings is refused before any work (StageSettingsError).
    _, settings = check_stage(hparams)

    unusable_audio = prepare_data(hparams, recipe_dir, device=device)

    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    run_on_main(
        write_stage_settings,
        kwargs={"folder": hparams["output_folder"], "settings": settings},
    )

    datasets = dataio_prep(hparams, skipped_audio=unusable_audio)
    hparams["label_encoder"] = datasets["label_encoder"]

    brain = hparams["brain_class"](
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    train_loader_kwargs = hparams["train_dataloader_opts"]
    if datasets["train_batch_sampler"] is not None:
        # Length-bucketed batches; the Brain reshuffles them with set_epoch.
        brain.train_sampler = datasets["train_batch_sampler"]
        train_loader_kwargs = {
            "batch_sampler": datasets["train_batch_sampler"],
            "num_workers": train_loader_kwargs["num_workers"],
        }
    brain.fit(
        epoch_counter=hparams["epoch_counter"],
        train_set=datasets["train"],
        valid_set=datasets["valid"],
        train_loader_kwargs=train_loader_kwargs,
        valid_loader_kwargs=hparams["test_dataloader_opts"],
    )
    brain.conclude(datasets, hparams["test_dataloader_opts"])
    release_ddp_wrappers(brain)
    return brain
