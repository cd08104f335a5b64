#!/usr/bin/env python3
"""GMP-TL on EmoDB (Whisper encoder): the multi-scale k-means pseudo-labels of one fold.

    python make_pseudo_labels.py hparams/pseudo_labels.yaml \
        --data_folder=/path/to/EmoDB --test_session=1
"""

import os
import sys

from ser_lib.inloop.pseudo_labels import pseudo_label_main

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(RECIPE_DIR))
    pseudo_label_main(sys.argv[1:])
