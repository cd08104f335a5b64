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

import argparse
import os
import sys

import yaml

from ser_lib.cross_validation import cross_validate, results_table

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
FOLDS = [1, 2, 3, 4, 5]  # IEMOCAP: one fold per session


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data_folder", required=True, help="IEMOCAP_full_release folder"
    )
    parser.add_argument("--output_folder", default="results/IEMOCAP")
    parser.add_argument("--folds", type=int, nargs="+", default=FOLDS)
    parser.add_argument("--config", help="YAML with common/adapter/finetune overrides")
    parser.add_argument(
        "--overrides", default="{}", help="YAML mapping for both stages"
    )
    parser.add_argument(
        "--adapter_overrides", default="{}", help="YAML mapping, stage 1"
    )
    parser.add_argument(
        "--finetune_overrides", default="{}", help="YAML mapping, stage 2"
    )
    parser.add_argument("--adapter_hparams", default="hparams/adapter.yaml")
    parser.add_argument("--finetune_hparams", default="hparams/finetune.yaml")
    parser.add_argument("--skip_adapter", action="store_true", help="no stage 1")
    parser.add_argument("--aggregate_only", action="store_true")
    parser.add_argument("--results_folder", help="default: the output folder")
    parser.add_argument("--device", default="cpu", help="e.g. cuda:0")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sections = {"common": {}, "adapter": {}, "finetune": {}}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        unknown = set(loaded) - set(sections)
        if unknown:
            raise ValueError(f"{args.config}: unknown sections {sorted(unknown)}")
        sections.update({k: v or {} for k, v in loaded.items()})
    output_folder = os.path.abspath(args.output_folder)
    common = {
        **sections["common"],
        **yaml.safe_load(args.overrides),
        "data_folder": os.path.abspath(args.data_folder),
        "output_root": output_folder,
    }
    results = cross_validate(
        recipe_dir=RECIPE_DIR,
        folds=args.folds,
        adapter_hparams=args.adapter_hparams,
        finetune_hparams=args.finetune_hparams,
        common_overrides=common,
        results_folder=os.path.abspath(args.results_folder or output_folder),
        adapter_overrides={
            **sections["adapter"],
            **yaml.safe_load(args.adapter_overrides),
        },
        finetune_overrides={
            **sections["finetune"],
            **yaml.safe_load(args.finetune_overrides),
        },
        skip_adapter=args.skip_adapter,
        aggregate_only=args.aggregate_only,
        extra_args=[f"--device={args.device}"],
    )
    print(results_table(results))
    return results


if __name__ == "__main__":
    main()
