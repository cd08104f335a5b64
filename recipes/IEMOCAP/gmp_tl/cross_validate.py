#!/usr/bin/env python3
"""GMP-TL on IEMOCAP: every step of every fold (A, pseudo-labels, B, C), then the table.

    python cross_validate.py --data_folder=/path/to/IEMOCAP_full_release \
        --output_folder=results/IEMOCAP_gmp_tl --overrides="{encoder_source: /path/to/hubert}"

Re-running the same command skips finished folds and finished steps and resumes the
unfinished step from its checkpoints. See README.md for the ablations.
"""

import os

from ser_lib.multistage import Stage, recipe_cross_validate

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
FOLDS = [1, 2, 3, 4, 5]  # all five sessions

# The settings of the pseudo-label step recorded in run_info.json (it trains nothing).
LABEL_SCHEDULE = ("kmeans_layer", "label_scales", "kmeans", "max_fit_frames")

STAGES = [
    Stage("A", "hparams/stageA_mtl.yaml"),
    Stage(
        "labels",
        "hparams/pseudo_labels.yaml",
        script="make_pseudo_labels.py",
        schedule_keys=LABEL_SCHEDULE,
    ),
    Stage("B", "hparams/stageB_gmp.yaml"),
    Stage("C", "hparams/stageC_ams.yaml"),
]


def main(argv=None):
    """Runs the folds (default: all five sessions) and prints the table."""
    return recipe_cross_validate(argv, RECIPE_DIR, STAGES, FOLDS, __doc__)


if __name__ == "__main__":
    main()
