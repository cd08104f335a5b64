#!/usr/bin/env python3
"""The project's results table (docs/RESULTS.md, docs/results/<corpus>.json).

Built from committed small files, never typed by hand. A row spec
(``docs/results/emodb_rows.yaml``) names the rows; see :mod:`ser_lib.results`.

    # after a run finished: copy its small files into docs/results/emodb/<row>/
    python tools/results_table.py collect baseline_last_layer \\
        --results_folder recipes/EmoDB/results/EmoDB/baseline
    # rebuild docs/RESULTS.md, docs/results/emodb.json and the README headline
    python tools/results_table.py build

``collect`` takes the run from ``--results_folder`` or the row's ``results_folder``
in the spec; ``--with_report`` also copies its report pictures. Rows without files
stay pending.
"""

import argparse
import os
import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_lib.results import (  # noqa: E402
    collect_row,
    load_row_spec,
    write_results_files,
)

DEFAULT_SPEC = "docs/results/emodb_rows.yaml"


def build_parser():
    """The command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=DEFAULT_SPEC, help="the row spec (YAML)")
    commands = parser.add_subparsers(dest="command", required=True)
    collect = commands.add_parser("collect", help="copy a finished row's small files")
    collect.add_argument("row", help="the row name (a key of the spec's rows)")
    collect.add_argument(
        "--results_folder", help="the run's results folder (default: the spec's)"
    )
    collect.add_argument(
        "--with_report", action="store_true", help="also copy its report/ folder"
    )
    commands.add_parser("build", help="write RESULTS.md, the JSON and the headline")
    return parser


def main(argv=None):
    """Runs a subcommand; returns the built table (build) or the folds copied."""
    args = build_parser().parse_args(argv)
    spec = load_row_spec(args.spec)
    if args.command == "build":
        table = write_results_files(spec, args.spec)
        done = [name for name, row in table["rows"].items() if row["status"] == "done"]
        print(f"{len(done)} of {len(table['rows'])} rows done: {spec['markdown']}")
        return table
    if args.row not in spec["rows"]:
        raise SystemExit(f"{args.row} is not a row of {args.spec}")
    source = args.results_folder or spec["rows"][args.row].get("results_folder")
    if not source:
        raise SystemExit(f"Row {args.row}: give --results_folder")
    target = os.path.join(spec["rows_folder"], args.row)
    folds = collect_row(source, target, with_report=args.with_report)
    print(f"{args.row}: folds {folds} copied to {target}")
    return folds


if __name__ == "__main__":
    main()
