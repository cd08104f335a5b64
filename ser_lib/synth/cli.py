"""Command line of the synthetic mini-IEMOCAP generator (``ser-make-mini-iemocap``).

Example::

    ser-make-mini-iemocap --out_dir data/mini_iemocap
    python tools/make_mini_iemocap.py --out_dir data/mini_iemocap --seed 1 --apple_double

Authors
 * ser_lib contributors
"""

import argparse
import json
import time

from ser_lib.synth.mini_iemocap import make_mini_iemocap


def build_parser():
    """Returns the argument parser of the generator.

    Returns
    -------
    argparse.ArgumentParser
        Options ``--out_dir``, ``--seed``, the size knobs, ``--apple_double`` and
        ``--num_workers``.

    Example
    -------
    >>> args = build_parser().parse_args(["--out_dir", "x", "--utterances_per_dialog", "3"])
    >>> args.out_dir, args.seed, args.utterances_per_dialog, args.apple_double
    ('x', 0, 3, False)
    """
    parser = argparse.ArgumentParser(
        description=(
            "Generate a synthetic mini-IEMOCAP (eSpeak NG voices, emotions rendered by "
            "prosody) in the IEMOCAP_full_release layout under OUT_DIR. Skipped when a "
            "corpus with the same settings is already there."
        )
    )
    parser.add_argument("--out_dir", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--improvised_per_session",
        type=int,
        default=2,
        help="improvised dialogs per session (default 2, at most 10)",
    )
    parser.add_argument(
        "--scripted_per_session",
        type=int,
        default=2,
        help="scripted dialogs per session (default 2, at most 7)",
    )
    parser.add_argument(
        "--utterances_per_dialog",
        type=int,
        default=24,
        help="utterances per dialog (default 24: 480 utterances in all)",
    )
    parser.add_argument(
        "--apple_double",
        action="store_true",
        help="also write AppleDouble ._* junk files, as found in copies made on macOS",
    )
    parser.add_argument(
        "--num_workers",
        type=int,
        default=2,
        help="synthesis processes in parallel (does not change the output; default 2)",
    )
    return parser


def main(argv=None):
    """Generates the corpus, then prints its summary and the elapsed time.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status, 0 on success.

    Example
    -------
    >>> import tempfile
    >>> main(["--out_dir", tempfile.mkdtemp(), "--improvised_per_session", "1",
    ...       "--scripted_per_session", "0", "--utterances_per_dialog", "1"])  # doctest: +ELLIPSIS
    {
      "path": ...
      "num_utterances": 5,
    ...
    0
    """
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    summary = make_mini_iemocap(
        args.out_dir,
        seed=args.seed,
        improvised_per_session=args.improvised_per_session,
        scripted_per_session=args.scripted_per_session,
        utterances_per_dialog=args.utterances_per_dialog,
        apple_double=args.apple_double,
        num_workers=args.num_workers,
    )
    print(json.dumps(summary, indent=2))
    action = "Generated" if summary["regenerated"] else "Already up to date (skipped):"
    print(f"{action} {summary['path']} in {time.perf_counter() - start:.1f} s")
    return 0
