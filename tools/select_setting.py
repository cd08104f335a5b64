#!/usr/bin/env python3
"""Chooses a setting from held-out-speaker validation, never from the test folds.

Every candidate is a cross-validation run of one setting on the same folds with
``valid_mode: speaker``; the score is the held-out speaker's UA at the last epoch
(the model the results rows use), averaged over folds. See :mod:`ser_lib.selection`.

    python tools/select_setting.py --question baseline_layer \\
        --title "Whisper layer of the frozen baseline" \\
        --candidate layer0 /work/exp/emodb_sel/rows/baseline_layer0 \\
        --candidate layer6 /work/exp/emodb_sel/rows/baseline_layer6

A candidate is ``NAME PATH [PATH ...]``: one results folder (``run_info.json``),
one row folder (``fold<k>/``) or the stage-2 folders of its folds. The question's
section is added to (or replaced in) ``docs/results/emodb_selection.json`` and
``.md``; the chosen candidate is printed.
"""

import argparse
import shlex
import sys
from pathlib import Path

import yaml

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_lib.results import generic_paths  # noqa: E402
from ser_lib.selection import SCORES, select_candidate, write_selection  # noqa: E402

DEFAULT_JSON = "docs/results/emodb_selection.json"
DEFAULT_MARKDOWN = "docs/results/emodb_selection.md"


def build_parser():
    """The command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--question", required=True, help="key of this choice, e.g. baseline_layer"
    )
    parser.add_argument("--title", help="its heading (default: the question)")
    parser.add_argument(
        "--candidate",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "PATH"),
        help="a candidate: its name, then its results folder, row folder or the "
        "stage-2 folders of its folds (repeat for every candidate)",
    )
    parser.add_argument("--metric", default="UA", choices=SCORES)
    parser.add_argument("--json", default=DEFAULT_JSON, help="the selections JSON")
    parser.add_argument(
        "--markdown", default=DEFAULT_MARKDOWN, help="the selections page"
    )
    parser.add_argument(
        "--path_names",
        default="{}",
        help="YAML mapping: a path of this machine -> the placeholder the recorded "
        'command shows instead, e.g. "{/home/me/exp: OUT}" (this option itself is '
        "left out of the recorded command)",
    )
    return parser


def main(argv=None):
    """Scores the candidates, writes the files; returns the selection."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    candidates = {}
    for name, *paths in args.candidate:
        if not paths:
            parser.error(f"--candidate {name}: give its results or fold folders")
        if name in candidates:
            parser.error(f"--candidate {name} is given twice")
        candidates[name] = paths
    result = select_candidate(candidates, metric=args.metric)
    recorded, skip = [], False
    for arg in argv:  # without "--path_names VALUE" / "--path_names=VALUE"
        if skip or arg.startswith("--path_names="):
            skip = False
        elif arg == "--path_names":
            skip = True
        else:
            recorded.append(arg)
    command = generic_paths(
        shlex.join(["python", "tools/select_setting.py", *recorded]),
        yaml.safe_load(args.path_names) or {},
    )
    write_selection(
        args.json,
        args.markdown,
        args.question,
        args.title or args.question,
        result,
        command,
    )
    chosen = result["candidates"][result["chosen"]]
    print(
        f"{args.question}: chosen {result['chosen']} (valid {args.metric} "
        f"{chosen['mean'][args.metric]:.2f} ± {chosen['std'][args.metric]:.2f} over "
        f"folds {result['folds']}) -> {args.markdown}"
    )
    return result


if __name__ == "__main__":
    main()
