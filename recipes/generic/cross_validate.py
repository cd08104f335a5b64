#!/usr/bin/env python3
"""Speaker-independent cross-validation on a corpus described by a labelled CSV.

Preparation, the feature cache, then for each fold stage 1 (hparams/adapter.yaml) and
stage 2 (hparams/finetune.yaml); finally OUTPUT/cv_results.json and cv_results.md
(UA, WA, macro-F1 per fold and mean ± std, in percent). A re-run skips finished folds
and resumes unfinished ones.

    python cross_validate.py --data_folder=/path/to/corpus --output_folder=results/generic

reads ``/path/to/corpus/labels.csv`` (``--overrides="{csv_file: PATH}"`` for another
file). Options (``--folds``, ``--config``, ``--overrides``, ``--device``...) are those
of ``recipes/IEMOCAP/cross_validate.py``. FOLDS matches ``n_folds: 5`` of the YAML; with
other fold settings give the folds, e.g. three recording sessions:

    python cross_validate.py --data_folder=... --output_folder=... --folds 1 2 3 \
        --overrides="{fold_mode: leave_one_group_out, group_column: session}"
"""

import os
import sys

from ser_lib.cross_validation import cross_validate_main
from ser_lib.report import report_after_cross_validation

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
FOLDS = list(range(1, 6))  # 5 speaker folds; pass --folds for other fold settings


def main(argv=None):
    """Runs the cross-validation; returns the aggregated results."""
    argv = sys.argv[1:] if argv is None else argv
    return cross_validate_main(
        argv,
        RECIPE_DIR,
        FOLDS,
        __doc__.split("\n\n")[0],
        post_run=report_after_cross_validation,
    )


if __name__ == "__main__":
    main()
