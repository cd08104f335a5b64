"""Command line: fill a feature cache with a frozen encoder.

::

    python tools/extract_features.py \\
        --encoder_hparams recipes/IEMOCAP/hparams/encoder/fbank.yaml \\
        --csv results/IEMOCAP/prepared_all/all.csv \\
        --data_root /data/IEMOCAP_full_release --cache_dir results/IEMOCAP/features_fbank

Already cached utterances are skipped, so an interrupted run resumes where it
stopped; a cache built by another encoder or other settings is refused unless
``--overwrite`` is given.
"""

import argparse
import time

from ser_lib.encoders import load_encoder
from ser_lib.features import run_feature_extraction

__all__ = ["build_parser", "main"]


def build_parser():
    """Returns the argument parser of the feature-extraction command.

    Returns
    -------
    argparse.ArgumentParser
        The parser.

    Example
    -------
    >>> args = build_parser().parse_args(
    ...     ["--encoder_hparams", "enc.yaml", "--csv", "a.csv", "b.csv",
    ...      "--cache_dir", "cache"])
    >>> args.csv, args.device, args.overwrite, args.batch_seconds
    (['a.csv', 'b.csv'], 'cpu', False, 60.0)
    """
    parser = argparse.ArgumentParser(
        description="Encode the utterances of SpeechBrain CSV manifests with a "
        "frozen encoder and store the features in a feature cache."
    )
    parser.add_argument(
        "--encoder_hparams",
        required=True,
        help="HyperPyYAML file defining `encoder`, e.g. "
        "recipes/IEMOCAP/hparams/encoder/hubert_large.yaml",
    )
    parser.add_argument(
        "--csv",
        required=True,
        nargs="+",
        help="SpeechBrain CSV manifest(s) with columns ID, duration, wav",
    )
    parser.add_argument(
        "--data_root", default=None, help="Replaces $data_root in the CSV wav paths"
    )
    parser.add_argument("--cache_dir", required=True, help="The feature cache folder")
    parser.add_argument(
        "--overrides",
        default=None,
        help='YAML overrides of the encoder file, e.g. "{encoder_source: /models/hubert}"',
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--batch_seconds",
        type=float,
        default=60.0,
        help="Maximum padded audio per batch, in seconds",
    )
    parser.add_argument(
        "--num_workers", type=int, default=0, help="DataLoader workers reading audio"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Delete the cache and rebuild it (needed when the encoder changed)",
    )
    parser.add_argument(
        "--no_progress", action="store_true", help="Hide the progress bar"
    )
    return parser


def main(argv=None):
    """Runs the feature-extraction command.

    Arguments
    ---------
    argv : list of str or None
        Command-line arguments (``sys.argv[1:]`` if None).

    Returns
    -------
    int
        The exit status (0).

    Example
    -------
    >>> import numpy as np, soundfile as sf
    >>> root = getfixture("tmp_path")
    >>> sf.write(root / "a.wav", np.random.randn(16000) * 0.1, 16000)
    >>> _ = (root / "all.csv").write_text("ID,duration,wav\\na,1.0,$data_root/a.wav\\n")
    >>> _ = (root / "enc.yaml").write_text(
    ...     "encoder: !new:ser_lib.encoders.FbankEncoder\\n    n_mels: 40\\n")
    >>> main(["--encoder_hparams", str(root / "enc.yaml"), "--csv", str(root / "all.csv"),
    ...       "--data_root", str(root), "--cache_dir", str(root / "cache"),
    ...       "--no_progress"])  # doctest: +ELLIPSIS
    Extracted 1 utterance(s), skipped 0 already cached, into ... s with model loading)
    0
    """
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    encoder = load_encoder(args.encoder_hparams, args.overrides)
    summary = run_feature_extraction(
        encoder,
        args.csv,
        args.cache_dir,
        data_root=args.data_root,
        batch_seconds=args.batch_seconds,
        device=args.device,
        overwrite=args.overwrite,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    print(
        f"Extracted {summary.num_extracted} utterance(s), skipped "
        f"{summary.num_skipped} already cached, into {summary.cache_dir} in "
        f"{summary.seconds:.1f} s ({time.perf_counter() - start:.1f} s with model "
        "loading)"
    )
    return 0
