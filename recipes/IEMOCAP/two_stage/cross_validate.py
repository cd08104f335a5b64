#!/usr/bin/env python3
"""Two-stage adapter fine-tuning on IEMOCAP: both stages of every fold, then the table.

    python cross_validate.py --data_folder=/path/to/IEMOCAP_full_release \
        --output_folder=results/IEMOCAP_two_stage \
        --overrides="{encoder_source: /path/to/wav2vec2-xls-r-300m}" \
        [--stage_overrides="{stage2: {fusion: shared, scl: cos}}"]

``--stages=stage1`` (or ``stage2``) runs one stage only (single-stage rows).
Re-running the same command skips finished folds and stages and resumes the
unfinished stage from its checkpoints. See README.md for the table rows.
"""

import os

from ser_lib.multistage import Stage, recipe_cross_validate

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
FOLDS = [1, 2, 3, 4, 5]  # all five sessions

STAGES = [
    Stage("stage1", "hparams/stage1_ser_asr.yaml"),
    Stage("stage2", "hparams/stage2_adapters.yaml"),
]


def main(argv=None):
    """Runs the folds (default: all five sessions) and prints the table."""
    return recipe_cross_validate(
        argv, RECIPE_DIR, STAGES, FOLDS, __doc__, stage_option=True
    )


if __name__ == "__main__":
    main()
