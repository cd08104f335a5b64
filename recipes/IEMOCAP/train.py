#!/usr/bin/env python3
"""Recipe: WAP-Transformer adapter with local attributes for SER on IEMOCAP.

Stage 1, self-supervised adapter training on fold k's four training sessions:

    python train.py hparams/adapter.yaml --data_folder=/path/to/IEMOCAP_full_release --test_session=1

Stage 2, SAP fine-tuning and evaluation on session k (writes predictions.csv, metrics.json):

    python train.py hparams/finetune.yaml --data_folder=/path/to/IEMOCAP_full_release --test_session=1

All five folds, then the table: ``python cross_validate.py --data_folder=...``.
Multi-GPU: ``torchrun --nproc_per_node=4 train.py hparams/adapter.yaml --distributed_launch ...``.

The steps (preparation through ``prepare: !name:iemocap_prepare.prepare_iemocap`` in
the YAML, the feature cache, the Brains of ``ser_lib.brains``) are in
``ser_lib.recipe.train_main``; the YAML files choose everything.

Paper: H. Song et al., "An Efficient Transfer Learning Method Based on Adapter with
Local Attributes for Speech Emotion Recognition", arXiv 2509.23795.
"""

import os
import sys

from ser_lib.recipe import train_main

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    sys.path.insert(0, RECIPE_DIR)  # the YAML names iemocap_prepare.prepare_iemocap
    train_main(sys.argv[1:], RECIPE_DIR)
