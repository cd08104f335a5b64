#!/usr/bin/env python3
"""Two-stage adapter fine-tuning on EmoDB: both stages of every fold, then the table.

    python cross_validate.py --data_folder=/path/to/EmoDB \
        --output_folder=results/EmoDB_two_stage \
        --overrides="{encoder_source: /path/to/whisper-base}" \
        [--stage_overrides="{stage2: {fusion: shared, scl: cos}}"]

``--stages=stage1`` (or ``stage2``) runs one stage only (single-stage rows).
Re-running the same command skips finished folds and stages and resumes the
unfinished stage from its checkpoints. See README.md for the table rows.
"""

import argparse
import os
import sys

from ser_lib.multistage import Stage, multistage_main
from ser_lib.report import report_after_cross_validation

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))

STAGES = [
    Stage("stage1", "hparams/stage1_ser_asr.yaml"),
    Stage("stage2", "hparams/stage2_adapters.yaml"),
]


def select_stages(argv):
    """Removes ``--stages=NAME[,NAME]`` from ``argv``; returns the chosen stages and the
    rest (single-stage rows of Table 1 run one stage only)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--stages", help="comma-separated stage names")
    args, rest = parser.parse_known_args(argv)
    if args.stages is None:
        return STAGES, rest
    names = args.stages.split(",")
    unknown = sorted(set(names) - {s.name for s in STAGES})
    if unknown:
        raise SystemExit(
            f"--stages: unknown {unknown}; stages: {[s.name for s in STAGES]}"
        )
    return [s for s in STAGES if s.name in names], rest


def main(argv=None):
    """Runs the folds (default: all ten speakers) and prints the table."""
    sys.path.insert(0, os.path.dirname(RECIPE_DIR))  # emodb_prepare
    stages, rest = select_stages(sys.argv[1:] if argv is None else argv)
    return multistage_main(
        rest,
        RECIPE_DIR,
        stages,
        default_folds=list(range(1, 11)),
        description=__doc__,
        post_run=report_after_cross_validation,
    )


if __name__ == "__main__":
    main()
