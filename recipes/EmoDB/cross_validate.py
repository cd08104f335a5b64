#!/usr/bin/env python3
"""Leave-one-speaker-out cross-validation on EmoDB (10 folds), in one command.

Preparation, the feature cache, then for each fold stage 1 (hparams/adapter.yaml) and
stage 2 (hparams/finetune.yaml); finally OUTPUT/cv_results.json and cv_results.md
(UA, WA, macro-F1 per fold and mean ± std, in percent). A re-run skips finished folds
and resumes unfinished ones.

    python cross_validate.py --data_folder=/path/to/EmoDB --output_folder=results/EmoDB

Options (``--folds``, ``--config``, ``--overrides``, ``--device``...) are those of
``recipes/IEMOCAP/cross_validate.py``; e.g. the full class set:
``--overrides="{class_set: full}"``.
"""

import os
import sys

from ser_lib.cross_validation import cross_validate_main
from ser_lib.report import report_after_cross_validation

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
FOLDS = list(range(1, 11))  # leave-one-speaker-out: 10 speakers


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
