#!/usr/bin/env python3
"""Rebuilds the report of a cross-validation output folder (OUTPUT/report/).

The report (confusion matrices per fold and pooled, per-class recall, stage-1 and
stage-2 training curves, t-SNE of test utterances before and after the adapter, and a
README.md showing them) is written by ``cross_validate.py`` at the end of a run; this
command rebuilds it from what the runs left on disk, e.g. after more folds finished::

    python tools/make_report.py results/demo
    python tools/make_report.py results/IEMOCAP --experiment hubert_large_improvised \\
        --finetune_name finetune_random --report_folder results/IEMOCAP/random_init/report

Folds are found as ``OUTPUT/<experiment>/fold<k>/<finetune_name>``; ``--folds`` lists
the folds expected (a missing one is named in the README).
"""

import argparse
import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_lib.report import build_report, discover_fold_folders  # noqa: E402


def build_parser():
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        description="Rebuild OUTPUT/report/ from a cross-validation output folder."
    )
    parser.add_argument("output", help="the output folder (output_root) of the runs")
    parser.add_argument(
        "--report_folder", help="where the report goes (default: OUTPUT/report)"
    )
    parser.add_argument(
        "--experiment", help="experiment folder name, when OUTPUT holds several"
    )
    parser.add_argument(
        "--finetune_name", default="finetune", help="the stage-2 folder name"
    )
    parser.add_argument(
        "--folds", type=int, nargs="+", help="the folds expected (default: found)"
    )
    parser.add_argument(
        "--tsne_folds",
        type=int,
        nargs="*",
        help="folds with a t-SNE picture (default: the first finished; "
        "none when given without a value)",
    )
    parser.add_argument("--device", default="cpu", help="for the embeddings pass")
    return parser


def main(argv=None):
    """Rebuilds the report; returns the exit status."""
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    try:
        found = discover_fold_folders(output, args.experiment, args.finetune_name)
    except (FileNotFoundError, ValueError) as err:
        print(f"make_report: error: {err}", file=sys.stderr)
        return 2
    folders = dict(found)
    if args.folds:
        # An expected fold that never started is reported as missing.
        template = next(iter(found.values()))
        for fold in args.folds:
            folders.setdefault(
                fold, template.parent.parent / f"fold{fold}" / template.name
            )
        folders = {fold: folders[fold] for fold in sorted(args.folds)}
    report = build_report(
        folders,
        args.report_folder or output / "report",
        tsne_folds=args.tsne_folds,
        device=args.device,
    )
    print(f"Report: {report['readme']}")
    for name, description in report["pictures"].items():
        print(f"  {name}: {description}")
    if report["missing_folds"]:
        print(f"Missing folds: {report['missing_folds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
