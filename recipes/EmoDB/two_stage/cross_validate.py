#!/usr/bin/env python3
"""Two-stage adapter fine-tuning on EmoDB: both stages of every fold, then the table.

    python cross_validate.py --data_folder=/path/to/EmoDB \
        --output_folder=results/EmoDB_two_stage \
        --overrides="{encoder_source: /path/to/whisper-base}" \
        [--stage_overrides="{stage2: {fusion: shared, scl: cos}}"]

Re-running the same command skips finished folds and stages and resumes the
unfinished stage from its checkpoints. See README.md for the table rows.
"""

import os
import sys

from ser_lib.multistage import Stage, multistage_main

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))

STAGES = [
    Stage("stage1", "hparams/stage1_ser_asr.yaml"),
    Stage("stage2", "hparams/stage2_adapters.yaml"),
]


def main(argv=None):
    """Runs the folds (default: all ten speakers) and prints the table."""
    sys.path.insert(0, os.path.dirname(RECIPE_DIR))  # emodb_prepare
    return multistage_main(
        sys.argv[1:] if argv is None else argv,
        RECIPE_DIR,
        STAGES,
        default_folds=list(range(1, 11)),
        description=__doc__,
    )


if __name__ == "__main__":
    main()
