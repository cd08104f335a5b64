#!/usr/bin/env python3
"""Cross-corpus evaluation in one command (see ser_lib/cross_corpus.py).

Train both stages on all of IEMOCAP, test on CREMA-D's 4 shared emotions::

    python tools/cross_corpus.py \\
        --train_recipe recipes/IEMOCAP --train_data_folder /data/IEMOCAP_full_release \\
        --test_recipe recipes/CREMA-D --test_data_folder /data/CREMA-D \\
        --output_folder results/IEMOCAP_to_CREMA-D --device cuda:0

Writes OUTPUT/test/{predictions.csv,metrics.json} and OUTPUT/cv_results.{json,md}.
"""

import logging
import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_lib.cross_corpus import cross_corpus_main  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    cross_corpus_main()
