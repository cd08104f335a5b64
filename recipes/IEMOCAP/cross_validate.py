#!/usr/bin/env python3
"""Five-fold leave-one-session-out cross-validation on IEMOCAP, in one command.

Preparation, the feature cache, then for each fold stage 1 (hparams/adapter.yaml) and
stage 2 (hparams/finetune.yaml); finally OUTPUT/cv_results.json and cv_results.md
(UA, WA, macro-F1 per fold and mean ± std, in percent). A re-run skips finished folds
and resumes unfinished ones.

    python cross_validate.py --data_folder=/path/to/IEMOCAP_full_release --output_folder=results/IEMOCAP

Folds as separate jobs (one per GPU or cluster node), then the table:

    python cross_validate.py --data_folder=... --output_folder=OUT --folds 3 --device=cuda:0
    python cross_validate.py --data_folder=... --output_folder=OUT --aggregate_only

The paper's "w/o adapter training" ablation on the same folds:

    python cross_validate.py --data_folder=... --output_folder=OUT --skip_adapter \
        --finetune_overrides="{backbone_init: random, finetune_name: finetune_random}" \
        --results_folder=OUT/random_init

A config file (e.g. hparams/demo.yaml) holds overrides under ``common``, ``adapter``
and ``finetune``; ``--overrides`` and the per-stage flags take YAML mappings too.
"""

import os
import sys

from ser_lib.cross_validation import cross_validate_main
from ser_lib.report import report_after_cross_validation

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
FOLDS = [1, 2, 3, 4, 5]  # IEMOCAP: fold k tests on session k


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
