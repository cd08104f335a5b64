"""SpeechBrain CSV manifests and the skip/redo marker of data preparation.

Corpus-independent helpers shared by every ``*_prepare.py`` script:

* :func:`write_manifest` writes a SpeechBrain CSV (one row per utterance, sorted by
  ``ID``) atomically, so a reader never sees a half-written file;
* :func:`read_manifest` reads it back and checks the columns and the uniqueness of IDs;
* :func:`save_prep_options`, :func:`prep_options_match` and :func:`clear_prep_options`
  implement "skip if already prepared with these options, redo otherwise": the JSON
  marker is written LAST, after every manifest, so an interrupted preparation has no
  marker and is redone on the next run.

Authors
 * ser_lib contributors 2025
"""

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

MANIFEST_COLUMNS = [
    "ID",
    "duration",
    "wav",
    "emo",
    "spk_id",
    "gender",
    "session",
    "style",
    "dialog",
]
"""Columns of every utterance manifest, in file order."""

PREP_OPTIONS_FILE = "prep_options.json"
"""Default name of the marker that records the options of a finished preparation."""


_FILE_MODE = 0o666
"""Mode of a new file before the umask (as ``open`` creates files)."""


def _current_umask():
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write_text(path, text):
    """Writes ``text`` to ``path`` through a temporary file and ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        # mkstemp makes the file private (0600): give it the mode of any new file.
        os.fchmod(fd, _FILE_MODE & ~_current_umask())
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def write_manifest(
    rows: Iterable[Mapping], path, columns: Sequence[str] = MANIFEST_COLUMNS
):
    """Writes utterance rows to a SpeechBrain CSV, sorted by ``ID``, atomically.

    The file is first written to a temporary file in the same folder, then moved
    over ``path`` with ``os.replace``: readers see either the old or the new file.

    Arguments
    ---------
    rows : iterable of mapping
        One mapping per utterance; each must have exactly the keys in ``columns``.
        Values are written with ``str``.
    path : str or os.PathLike
        Output CSV file; its folder is created if needed.
    columns : sequence of str
        Column names in file order; must contain ``"ID"``.

    Raises
    ------
    ValueError
        If a row lacks a column or has an extra key, or if an ID occurs twice.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> rows = [
    ...     {"ID": "b", "duration": 1.5, "wav": "$data_root/b.wav"},
    ...     {"ID": "a", "duration": 2.0, "wav": "$data_root/a.wav"},
    ... ]
    >>> write_manifest(rows, path, columns=["ID", "duration", "wav"])
    >>> print(open(path).read().strip())
    ID,duration,wav
    a,2.0,$data_root/a.wav
    b,1.5,$data_root/b.wav
    """
    columns = list(columns)
    if "ID" not in columns:
        raise ValueError(f"Manifest {path}: the columns {columns} lack 'ID'")
    rows = list(rows)
    seen = set()
    for row in rows:
        missing = [c for c in columns if c not in row]
        extra = sorted(set(row) - set(columns))
        if missing or extra:
            raise ValueError(
                f"Manifest {path}: row {row.get('ID', '<no ID>')!r} has missing "
                f"columns {missing} and unexpected keys {extra} "
                f"(expected exactly {columns})"
            )
        if row["ID"] in seen:
            raise ValueError(f"Manifest {path}: duplicate ID {row['ID']!r}")
        seen.add(row["ID"])
    rows.sort(key=lambda row: str(row["ID"]))

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([str(row[c]) for c in columns])
    _atomic_write_text(path, buffer.getvalue())


def read_manifest(path, required_columns: Sequence[str] = MANIFEST_COLUMNS):
    """Reads a SpeechBrain CSV manifest into a list of dicts (values are strings).

    Arguments
    ---------
    path : str or os.PathLike
        The CSV file.
    required_columns : sequence of str
        Columns the file must have (extra columns are kept).

    Returns
    -------
    list of dict
        One dict per row, in file order, mapping column name to string value.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If a required column is missing, a row has the wrong number of fields, or an
        ID is duplicated; the message names the file (and the line).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> write_manifest([{"ID": "u1", "emo": "neu"}], path, columns=["ID", "emo"])
    >>> read_manifest(path, required_columns=["ID", "emo"])
    [{'ID': 'u1', 'emo': 'neu'}]
    >>> read_manifest(path, required_columns=["ID", "wav"])
    Traceback (most recent call last):
    ...
    ValueError: Manifest .../m.csv lacks the columns ['wav'] (header: ['ID', 'emo'])
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Manifest not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"Manifest {path} is empty (no header line)")
        missing = [c for c in required_columns if c not in header]
        if missing:
            raise ValueError(
                f"Manifest {path} lacks the columns {missing} (header: {header})"
            )
        if len(set(header)) != len(header):
            raise ValueError(f"Manifest {path} has repeated columns: {header}")
        rows, seen = [], {}
        for values in reader:
            line = reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                raise ValueError(
                    f"Manifest {path}, line {line}: {len(values)} fields, "
                    f"expected {len(header)}"
                )
            row = dict(zip(header, values, strict=True))
            row_id = row.get("ID")
            if row_id is not None:
                if row_id in seen:
                    raise ValueError(
                        f"Manifest {path}, line {line}: duplicate ID {row_id!r} "
                        f"(first on line {seen[row_id]})"
                    )
                seen[row_id] = line
            rows.append(row)
    return rows


def _normalise_options(options: Mapping):
    """Returns ``options`` as it reads back from JSON (tuples become lists...)."""
    return json.loads(json.dumps(dict(options), sort_keys=True))


def save_prep_options(save_folder, options: Mapping, filename=PREP_OPTIONS_FILE):
    """Records the options of a finished preparation; call it LAST.

    Arguments
    ---------
    save_folder : str or os.PathLike
        The preparation's output folder.
    options : mapping
        JSON-serialisable options that determine the outputs (paths, subset...).
    filename : str
        Name of the marker file inside ``save_folder``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> save_prep_options(folder, {"subset": "all"})
    >>> prep_options_match(folder, {"subset": "all"})
    True
    """
    text = json.dumps(_normalise_options(options), indent=2, sort_keys=True)
    _atomic_write_text(os.path.join(save_folder, filename), text + "\n")


def clear_prep_options(save_folder, filename=PREP_OPTIONS_FILE):
    """Removes the marker, so that a preparation interrupted from now on is redone.

    Arguments
    ---------
    save_folder : str or os.PathLike
        The preparation's output folder.
    filename : str
        Name of the marker file inside ``save_folder``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> save_prep_options(folder, {"subset": "all"})
    >>> clear_prep_options(folder)
    >>> prep_options_match(folder, {"subset": "all"})
    False
    """
    path = os.path.join(save_folder, filename)
    if os.path.lexists(path):
        os.remove(path)


def prep_options_match(
    save_folder,
    options: Mapping,
    required_files: Sequence[str] = (),
    filename=PREP_OPTIONS_FILE,
):
    """Tells whether a finished preparation with exactly these options is on disk.

    Arguments
    ---------
    save_folder : str or os.PathLike
        The preparation's output folder.
    options : mapping
        The options of the preparation about to run.
    required_files : sequence of str
        Paths relative to ``save_folder`` that must also exist (a user may have
        deleted an output after the marker was written).
    filename : str
        Name of the marker file inside ``save_folder``.

    Returns
    -------
    bool
        True when the marker exists, records the same options, and every required
        file exists; False otherwise (an unreadable marker counts as no marker).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> prep_options_match(folder, {"subset": "all"})
    False
    >>> save_prep_options(folder, {"subset": "all", "folds": (1, 2)})
    >>> prep_options_match(folder, {"subset": "all", "folds": [1, 2]})
    True
    >>> prep_options_match(folder, {"subset": "scripted", "folds": [1, 2]})
    False
    >>> prep_options_match(folder, {"subset": "all", "folds": [1, 2]}, ["all.csv"])
    False
    """
    path = os.path.join(save_folder, filename)
    if not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
    except (OSError, ValueError) as error:
        logger.warning("Ignoring unreadable preparation marker %s (%s)", path, error)
        return False
    if saved != _normalise_options(options):
        return False
    return all(os.path.isfile(os.path.join(save_folder, f)) for f in required_files)
