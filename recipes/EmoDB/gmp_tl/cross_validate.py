#!/usr/bin/env python3
"""GMP-TL on EmoDB (Whisper encoder): every step of every fold (A, pseudo-labels, B, C), then the table.

    python cross_validate.py --data_folder=/path/to/EmoDB \
        --output_folder=results/EmoDB_gmp_tl --overrides="{encoder_source: /path/to/whisper-base}"

Re-running the same command skips finished folds and finished steps and resumes the
unfinished step from its checkpoints. See README.md for the ablations.
"""

import os
import sys

from ser_lib.multistage import Stage, multistage_main
from ser_lib.report import report_after_cross_validation

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))

STAGES = [
    Stage("A", "hparams/stageA_mtl.yaml"),
    Stage("labels", "hparams/pseudo_labels.yaml", script="make_pseudo_labels.py"),
    Stage("B", "hparams/stageB_gmp.yaml"),
    Stage("C", "hparams/stageC_ams.yaml"),
]


def main(argv=None):
    """Runs the folds (default: the ten speakers) and prints the table."""
    sys.path.insert(0, os.path.dirname(RECIPE_DIR))  # emodb_prepare
    return multistage_main(
        sys.argv[1:] if argv is None else argv,
        RECIPE_DIR,
        STAGES,
        default_folds=list(range(1, 11)),
        description=__doc__,
        post_run=report_after_cross_validation,
    )


if __name__ == "__main__":
    main()
