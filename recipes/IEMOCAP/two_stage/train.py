#!/usr/bin/env python3
"""Two-stage adapter fine-tuning on IEMOCAP: one stage of one fold.

    python train.py hparams/stage1_ser_asr.yaml --data_folder=/path/to/IEMOCAP_full_release \
        --encoder_source=/path/to/wav2vec2-xls-r-300m --test_session=1
    python train.py hparams/stage2_adapters.yaml --data_folder=/path/to/IEMOCAP_full_release \
        --test_session=1

Both stages of all folds and the table: ``cross_validate.py`` (see README.md).
"""

import os
import sys

from ser_lib.inloop.recipe import inloop_train_main

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    # The YAML names iemocap_prepare.prepare_iemocap (in the parent recipe folder).
    sys.path.insert(0, os.path.dirname(RECIPE_DIR))
    inloop_train_main(sys.argv[1:], RECIPE_DIR)
