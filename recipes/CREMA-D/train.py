#!/usr/bin/env python3
"""Recipe: WAP-Transformer adapter with local attributes for SER on CREMA-D.

Stage 1, self-supervised adapter training on the training part of fold k:

    python train.py hparams/adapter.yaml --data_folder=/path/to/CREMA-D --test_session=1

Stage 2, SAP fine-tuning and evaluation on fold k's actor group (writes predictions.csv, metrics.json):

    python train.py hparams/finetune.yaml --data_folder=/path/to/CREMA-D --test_session=1

All folds, then the table: ``python cross_validate.py --data_folder=...``. The
preparation (``prepare: !name:cremad_prepare.prepare_cremad`` in the YAML), the class map and the folds
are chosen in the YAML; everything else is the IEMOCAP recipe's
(``ser_lib.recipe.train_main``). See README.md for the protocol.
"""

import os
import sys

from ser_lib.recipe import train_main

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    sys.path.insert(0, RECIPE_DIR)  # the YAML names cremad_prepare.prepare_cremad
    train_main(sys.argv[1:], RECIPE_DIR)
