"""Command line ``ser-predict``: classify audio files with a trained model.

::

    ser-predict MODEL WAV_OR_DIR... [--csv OUT.csv] [--json OUT.json] [--device cuda]

``MODEL`` is a trained stage-2 folder (``<output_root>/<experiment>/fold<k>/finetune``)
or a folder written by ``tools/export_model.py``. Folders among the inputs are searched
recursively for audio files (``--extensions``, by default every format the reader
decodes: wav, flac, ogg, mp3, ...; hidden files such as AppleDouble ``._*`` are
skipped, and the other files left out are named on stderr). Files at any sample rate
and channel count are accepted.

The terminal shows one row per file (label, its probability, every class probability)
and a progress bar while several files are classified. A file that cannot be used
(unreadable, empty, missing, or too short or silent to carry emotion: below
``--min_duration`` or ``--min_rms_dbfs``, the recipes' thresholds by default) gets an
error row and the others go on.

Exit status: 0 when at least one file was classified, 1 when every file failed (or no
audio file was found), 2 for a model that cannot be loaded or bad arguments.
"""

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import soundfile as sf
import yaml
from tqdm import tqdm

from ser_lib.audio_levels import AudioScreen, measure_audio
from ser_lib.inference import EmotionRecognizer, ModelFolderError

__all__ = [
    "build_parser",
    "collect_audio_files",
    "format_table",
    "main",
    "predict",
    "write_csv",
]

# File extensions of the formats libsndfile (the reader, ser_lib.audio) decodes.
_FORMAT_EXTENSIONS = {
    "WAV": ("wav",),
    "FLAC": ("flac",),
    "OGG": ("ogg", "oga", "opus"),
    "MP3": ("mp3",),
    "AIFF": ("aiff", "aif"),
    "AU": ("au", "snd"),
    "CAF": ("caf",),
    "W64": ("w64",),
    "RF64": ("rf64",),
}
DEFAULT_EXTENSIONS = tuple(
    ext
    for name, extensions in _FORMAT_EXTENSIONS.items()
    if name in sf.available_formats()
    for ext in extensions
)
DEFAULT_MIN_DURATION = 0.08
"""Shorter inputs are refused, s (the recipes' ``min_duration``)."""
DEFAULT_MIN_RMS_DBFS = -60.0
"""Quieter inputs are refused as silent, dBFS (the recipes' ``min_rms_dbfs``)."""


def build_parser():
    """Returns the argument parser of ``ser-predict``.

    Returns
    -------
    argparse.ArgumentParser
        The parser.

    Example
    -------
    >>> args = build_parser().parse_args(["model", "a.wav", "dir", "--csv", "o.csv"])
    >>> args.model, args.inputs, args.csv, args.device, args.extensions[:3]
    ('model', ['a.wav', 'dir'], 'o.csv', 'cpu', ['wav', 'flac', 'ogg'])
    >>> "mp3" in args.extensions, args.min_duration, args.min_rms_dbfs
    (True, 0.08, -60.0)
    """
    parser = argparse.ArgumentParser(
        prog="ser-predict",
        description="Classify the emotion of audio files with a trained model "
        "(a trained fold folder .../fold<k>/finetune or an exported model folder).",
        epilog="Exit status: 0 if at least one file was classified, 1 if all "
        "failed, 2 if the model cannot be loaded.",
    )
    parser.add_argument("model", help="trained stage-2 folder or exported model folder")
    parser.add_argument(
        "inputs", nargs="+", help="audio files, or folders searched recursively"
    )
    parser.add_argument("--csv", help="also write the results to this CSV file")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--extensions",
        nargs="+",
        default=list(DEFAULT_EXTENSIONS),
        help="file extensions searched for in folders",
    )
    parser.add_argument(
        "--encoder_overrides",
        default=None,
        help="YAML mapping merged over the encoder overrides of training, e.g. "
        '"{encoder_source: /models/hubert-large-ls960-ft}"',
    )
    parser.add_argument(
        "--recipe_dir",
        default=None,
        help="trained folders: the recipe folder of training (where its "
        "encoder_hparams path is relative to), if not found automatically",
    )
    parser.add_argument(
        "--min_duration",
        type=float,
        default=DEFAULT_MIN_DURATION,
        help="refuse shorter inputs, s",
    )
    parser.add_argument(
        "--min_rms_dbfs",
        type=float,
        default=DEFAULT_MIN_RMS_DBFS,
        help="refuse quieter inputs as silent, dBFS",
    )
    parser.add_argument(
        "--no_progress", action="store_true", help="hide the progress bar"
    )
    return parser


def collect_audio_files(inputs, extensions=DEFAULT_EXTENSIONS):
    """Expands the command-line inputs into a list of files.

    Files are kept as given (whatever their extension, existing or not, so that a
    missing file gets its own error); folders are searched recursively for the
    ``extensions`` (case-insensitive), hidden files and folders skipped, sorted.

    Arguments
    ---------
    inputs : list of str
        Files and folders.
    extensions : sequence of str
        Extensions without the dot.

    Returns
    -------
    files : list of str
        The files, in order.
    empty_folders : list of str
        Folders without any matching file.
    skipped : list of str
        Files in the folders left out for their extension (hidden files aside).

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> (root / "d" / "sub").mkdir(parents=True)
    >>> for name in ("d/b.wav", "d/sub/a.FLAC", "d/._b.wav", "d/notes.txt"):
    ...     _ = (root / name).write_bytes(b"")
    >>> (root / "empty").mkdir()
    >>> inputs = [str(root / "d"), str(root / "empty"), str(root / "gone.wav")]
    >>> files, empty, skipped = collect_audio_files(inputs, ["wav", "flac"])
    >>> [os.path.relpath(f, root) for f in files], [os.path.basename(e) for e in empty]
    (['d/b.wav', 'd/sub/a.FLAC', 'gone.wav'], ['empty'])
    >>> [os.path.relpath(f, root) for f in skipped]
    ['d/notes.txt']
    """
    suffixes = {f".{ext.lower().lstrip('.')}" for ext in extensions}
    files, empty_folders, skipped = [], [], []
    for item in inputs:
        if not os.path.isdir(item):
            files.append(item)
            continue
        found = []
        for folder, subfolders, names in os.walk(item):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(n for n in names if not n.startswith(".")):
                matched = Path(name).suffix.lower() in suffixes
                (found if matched else skipped).append(os.path.join(folder, name))
        if not found:
            empty_folders.append(item)
        files += found
    return files, empty_folders, skipped


def predict(recognizer, files, progress=True, screen=None):
    """Classifies every file; a failing file gets an error record, the others go on.

    Arguments
    ---------
    recognizer : ser_lib.inference.EmotionRecognizer
        The model.
    files : list of str
        Audio files.
    progress : bool
        Show a progress bar (when there are several files).
    screen : ser_lib.audio_levels.AudioScreen or None
        Refuses files too short or silent to carry emotion (error record).

    Returns
    -------
    list of dict
        One record per file: ``file``, ``label``, ``probability``,
        ``probabilities`` (class -> probability), ``error`` (None or the message).

    Example
    -------
    >>> from ser_lib.audio import AudioError
    >>> from ser_lib.inference import EmotionPrediction
    >>> class Stub:  # a recognizer that refuses files named "bad*"
    ...     def classify_file(self, path):
    ...         if os.path.basename(path).startswith("bad"):
    ...             raise AudioError(f"Audio file {path} holds no samples")
    ...         return EmotionPrediction("sad", 0.75, {"neu": 0.25, "sad": 0.75}, 1)
    >>> root = getfixture("tmp_path")
    >>> for name in ("a.wav", "bad.wav"):
    ...     _ = (root / name).write_bytes(b"")
    >>> files = [str(root / "a.wav"), str(root / "bad.wav"), str(root / "gone.wav")]
    >>> [(r["label"], r["error"] is None) for r in predict(Stub(), files, progress=False)]
    [('sad', True), (None, False), (None, False)]
    """
    records = []
    for path in tqdm(
        files,
        desc="Classifying",
        unit="file",
        disable=not progress or len(files) < 2,
        dynamic_ncols=True,
    ):
        record = {
            "file": path,
            "label": None,
            "probability": None,
            "probabilities": None,
            "error": None,
        }
        if not os.path.isfile(path):
            record["error"] = f"No such file: {path}"
            records.append(record)
            continue
        try:
            unusable = None if screen is None else screen.reason(measure_audio(path))
            if unusable is not None:
                record["error"] = f"{unusable}: not classified"
                records.append(record)
                continue
            prediction = recognizer.classify_file(path)
        except ValueError as err:  # AudioError: unreadable, empty, too short
            record["error"] = str(err)
        else:
            record.update(
                label=prediction.label,
                probability=prediction.probability,
                probabilities=prediction.probabilities,
            )
        records.append(record)
    return records


def format_table(records, classes):
    """The results as an aligned text table.

    Arguments
    ---------
    records : list of dict
        As returned by :func:`predict`.
    classes : list of str
        Class labels (one probability column each).

    Returns
    -------
    str
        The table.

    Example
    -------
    >>> records = [
    ...     {"file": "bad.wav", "label": None, "probability": None,
    ...      "probabilities": None, "error": "too short"},
    ...     {"file": "a.wav", "label": "sad", "probability": 0.75,
    ...      "probabilities": {"neu": 0.25, "sad": 0.75}, "error": None}]
    >>> print(format_table(records, ["neu", "sad"]))
    file     label  prob   neu    sad
    bad.wav  ERROR: too short
    a.wav    sad    0.750  0.250  0.750
    """
    header = ["file", "label", "prob", *classes]
    rows = []
    for record in records:
        if record["error"] is not None:
            rows.append([record["file"], f"ERROR: {record['error']}"])
            continue
        probs = [f"{record['probabilities'][c]:.3f}" for c in classes]
        rows.append(
            [record["file"], record["label"], f"{record['probability']:.3f}", *probs]
        )
    # Error rows do not widen the columns after the file name.
    widths = [len(h) for h in header]
    for row in rows:
        cells = row if len(row) == len(header) else row[:1]
        for i, cell in enumerate(cells):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def write_csv(records, classes, path):
    """Writes the records as CSV: file, label, probability, prob_<class>..., error.

    Arguments
    ---------
    records : list of dict
        As returned by :func:`predict`.
    classes : list of str
        Class labels (one probability column each).
    path : str or os.PathLike
        The CSV file.

    Example
    -------
    >>> path = getfixture("tmp_path") / "out.csv"
    >>> write_csv([{"file": "a.wav", "label": "sad", "probability": 0.75,
    ...             "probabilities": {"neu": 0.25, "sad": 0.75}, "error": None}],
    ...           ["neu", "sad"], path)
    >>> print(path.read_text().strip())
    file,label,probability,prob_neu,prob_sad,error
    a.wav,sad,0.75,0.25,0.75,
    """
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["file", "label", "probability", *[f"prob_{c}" for c in classes], "error"]
        )
        for record in records:
            probs = record["probabilities"] or {}
            writer.writerow(
                [
                    record["file"],
                    record["label"] or "",
                    "" if record["probability"] is None else record["probability"],
                    *[probs.get(c, "") for c in classes],
                    record["error"] or "",
                ]
            )


def main(argv=None):
    """Runs ``ser-predict``.

    Arguments
    ---------
    argv : list of str or None
        Command-line arguments (``sys.argv[1:]`` if None).

    Returns
    -------
    int
        0 if at least one file was classified, 1 if all failed, 2 if the model
        cannot be loaded.

    Example
    -------
    >>> main([str(getfixture("tmp_path")), "a.wav"])  # not a model folder
    2
    """
    args = build_parser().parse_args(argv)
    try:
        recognizer = EmotionRecognizer.from_hparams(
            args.model,
            encoder_overrides=yaml.safe_load(args.encoder_overrides or "{}"),
            recipe_dir=args.recipe_dir,
            run_opts={"device": args.device},
        )
    except (ModelFolderError, FileNotFoundError) as err:
        print(f"ser-predict: error: {err}", file=sys.stderr)
        return 2
    files, empty_folders, skipped = collect_audio_files(args.inputs, args.extensions)
    for folder in empty_folders:
        print(
            f"ser-predict: no {'/'.join(args.extensions)} file in {folder}",
            file=sys.stderr,
        )
    if skipped:
        print(
            f"ser-predict: skipped {len(skipped)} file(s) that are not "
            f"{'/'.join(args.extensions)}: {', '.join(skipped[:5])}"
            + (" ..." if len(skipped) > 5 else ""),
            file=sys.stderr,
        )
    screen = AudioScreen(args.min_duration, args.min_rms_dbfs, policy="error")
    records = predict(recognizer, files, progress=not args.no_progress, screen=screen)
    classes = recognizer.classes
    if records:
        print(format_table(records, classes))
    if args.csv:
        write_csv(records, classes, args.csv)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
    failed = sum(record["error"] is not None for record in records)
    if failed:
        print(
            f"ser-predict: {failed} of {len(records)} file(s) failed", file=sys.stderr
        )
    return 0 if len(records) > failed else 1


if __name__ == "__main__":
    sys.exit(main())
