#!/usr/bin/env python3
"""Recipe: WAP-Transformer adapter with local attributes for SER on IEMOCAP.

Stage 1, self-supervised adapter training on fold k's four training sessions:

    python train.py hparams/adapter.yaml --data_folder=/path/to/IEMOCAP_full_release --test_session=1

Stage 2, SAP fine-tuning and evaluation on session k (writes predictions.csv, metrics.json):

    python train.py hparams/finetune.yaml --data_folder=/path/to/IEMOCAP_full_release --test_session=1

All five folds, then the table: ``python cross_validate.py --data_folder=...``.
Both stages train from cached encoder features; the first run prepares the manifests
and fills the cache (``feature_folder``), later runs reuse them.

Paper: H. Song et al., "An Efficient Transfer Learning Method Based on Adapter with
Local Attributes for Speech Emotion Recognition", arXiv 2509.23795.
"""

import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from ser_lib.dataio import dataio_prep
from ser_lib.features import prepare_features

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, RECIPE_DIR)
from iemocap_prepare import prepare_iemocap  # noqa: E402

if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)

    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)

    run_on_main(
        prepare_iemocap,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["prep_folder"],
            "subset": hparams["subset"],
            "valid_mode": hparams["valid_mode"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    run_on_main(
        prepare_features,
        kwargs={
            # a relative encoder YAML path is relative to the recipe folder
            "encoder_hparams": os.path.join(RECIPE_DIR, hparams["encoder_hparams"]),
            "encoder_overrides": hparams["encoder_overrides"],
            "csv_files": [hparams["all_csv"]],
            "data_root": hparams["data_folder"],
            "cache_dir": hparams["feature_folder"],
            "batch_seconds": hparams["extraction_batch_seconds"],
            "device": run_opts.get("device", "cpu"),
        },
    )

    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )

    datasets = dataio_prep(hparams)
    hparams["label_encoder"] = datasets["label_encoder"]

    brain = hparams["brain_class"](
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        epoch_counter=hparams["epoch_counter"],
        train_set=datasets["train"],
        valid_set=datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["test_dataloader_opts"],
    )
    brain.conclude(datasets, hparams["test_dataloader_opts"])
