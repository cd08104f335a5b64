#!/usr/bin/env python3
"""GMP-TL on IEMOCAP: one trained stage (A, B or C) of one fold.

    python train.py hparams/stageA_mtl.yaml --data_folder=/path/to/IEMOCAP_full_release \
        --encoder_source=/path/to/hubert-base-ls960 --test_session=1

The pseudo-label step between stages A and B is ``make_pseudo_labels.py``; all steps of
all folds and the table: ``cross_validate.py`` (see README.md).
"""

import os
import sys

from ser_lib.inloop.recipe import inloop_train_main

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    # The YAML names iemocap_prepare.prepare_iemocap (in the parent recipe folder).
    sys.path.insert(0, os.path.dirname(RECIPE_DIR))
    inloop_train_main(sys.argv[1:], RECIPE_DIR)
