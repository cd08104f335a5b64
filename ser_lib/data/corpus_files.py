"""Reading a corpus's own files: its audio folder, coded file names, label tables.

What the ``<corpus>_prepare.py`` scripts share when they turn a corpus's layout into
utterance dicts (see :mod:`ser_lib.data.preparation`): the folder checks and the
listing of the audio files, the decoding of file names made of codes, the utterance
dict of one audio file, the opening of a CSV label table and the spellings of the
gender. A prepare script keeps only what is specific to its corpus: the patterns,
the code tables, the columns.

Authors
 * ser_lib contributors 2025
"""

import contextlib
import csv
import os

__all__ = [
    "audio_utterance",
    "check_codes",
    "check_folder",
    "corpus_audio_files",
    "csv_table",
    "list_audio_files",
    "match_file_name",
    "normalise_gender",
]

GENDER_VALUES = {
    "f": "F",
    "female": "F",
    "w": "F",
    "woman": "F",
    "m": "M",
    "male": "M",
    "man": "M",
}
"""Lower-cased gender spellings -> ``F``/``M``; anything else is unknown (``U``)."""

UNKNOWN_GENDER = "U"
"""The gender written when a corpus does not give it."""


def check_folder(path, description):
    """Raises ``FileNotFoundError`` naming ``path`` when it is not a folder.

    Arguments
    ---------
    path : str
        The folder that must exist.
    description : str
        What it is, for the message (e.g. ``"RAVDESS data_folder"``).

    Example
    -------
    >>> check_folder("/nonexistent/AudioWAV", "CREMA-D audio folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: CREMA-D audio folder not found: /nonexistent/AudioWAV
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{description} not found: {path}")


def list_audio_files(folder, extension=".wav"):
    """Sorted paths of the audio files directly inside ``folder``.

    Sub-folders, hidden files and AppleDouble ``._*`` files are skipped, as are files
    with another extension (compared case-insensitively).

    Arguments
    ---------
    folder : str
        The folder to list.
    extension : str
        The audio file extension.

    Returns
    -------
    list of str

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("b.wav", "a.WAV", "._a.wav", ".DS_Store", "notes.txt"):
    ...     open(os.path.join(folder, name), "w").close()
    >>> [os.path.basename(p) for p in list_audio_files(folder)]
    ['a.WAV', 'b.wav']
    """
    paths = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if entry.name.lower().endswith(extension.lower()):
                paths.append(entry.path)
    return sorted(paths)


def normalise_gender(value):
    """``F``, ``M``, or ``U`` (unknown) from a corpus's spelling of the gender.

    Arguments
    ---------
    value : str or None
        E.g. ``"Female"``, ``"m"``, ``"Unknown"``, ``""``.

    Returns
    -------
    str

    Example
    -------
    >>> [normalise_gender(v) for v in ("Female", "m", "Unknown", "", None)]
    ['F', 'M', 'U', 'U', 'U']
    """
    if value is None:
        return UNKNOWN_GENDER
    return GENDER_VALUES.get(str(value).strip().lower(), UNKNOWN_GENDER)


def corpus_audio_files(data_folder, corpus, audio_folder):
    """The ``.wav`` files of ``data_folder/audio_folder``, checked and sorted.

    Arguments
    ---------
    data_folder : str
        The corpus folder.
    corpus : str
        Corpus name for the messages.
    audio_folder : str
        The audio folder, relative to ``data_folder``.

    Returns
    -------
    list of str
        Sorted paths (hidden and ``._*`` files skipped).

    Raises
    ------
    FileNotFoundError
        If a folder is missing or holds no ``.wav`` file (names it).

    Example
    -------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(root, "wav"))
    >>> corpus_audio_files(root, "Demo", "wav")
    Traceback (most recent call last):
    ...
    FileNotFoundError: No .wav file in the Demo folder .../wav
    >>> open(os.path.join(root, "wav", "a.wav"), "w").close()
    >>> [os.path.basename(p) for p in corpus_audio_files(root, "Demo", "wav")]
    ['a.wav']
    """
    check_folder(data_folder, f"{corpus} data_folder")
    folder = os.path.join(data_folder, audio_folder)
    check_folder(folder, f"{corpus} audio folder")
    paths = list_audio_files(folder)
    if not paths:
        raise FileNotFoundError(f"No .wav file in the {corpus} folder {folder}")
    return paths


def match_file_name(path, pattern, corpus, shape):
    """Matches a file's name (without extension) against the corpus's pattern.

    Arguments
    ---------
    path : str
        The file (only its base name is matched).
    pattern : re.Pattern
        The name's pattern, with groups for its fields.
    corpus : str
        Corpus name for the message.
    shape : str
        The expected shape, for the message (``<speaker><text>.wav (e.g. ...)``).

    Returns
    -------
    (str, re.Match)
        The name without extension (the utterance ID) and the match.

    Raises
    ------
    ValueError
        If the name does not match (names the file and the shape).

    Example
    -------
    >>> import re
    >>> pattern = re.compile(r"^(?P<speaker>\\d{2})(?P<emotion>[A-Z])$")
    >>> stem, match = match_file_name("wav/03F.wav", pattern, "Demo", "<NN><E>.wav")
    >>> stem, match.group("emotion")
    ('03F', 'F')
    >>> match_file_name("wav/3F.wav", pattern, "Demo", "<NN><E>.wav")
    Traceback (most recent call last):
    ...
    ValueError: Demo file wav/3F.wav: the name must be <NN><E>.wav
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    match = pattern.match(stem)
    if match is None:
        raise ValueError(f"{corpus} file {path}: the name must be {shape}")
    return stem, match


def check_codes(path, corpus, fields):
    """Checks that every code of a file name is a known one.

    Arguments
    ---------
    path : str
        The file, for the message.
    corpus : str
        Corpus name for the message.
    fields : sequence of (str, str, collection)
        ``(what, code, known codes)``, e.g. ``("emotion code", "ANG", EMOTIONS)``.

    Raises
    ------
    ValueError
        At the first unknown code (names the file, the field and the known codes).

    Example
    -------
    >>> check_codes("a/01-09.wav", "Demo", [("emotion code", "01", {"01": "neutral"})])
    >>> check_codes("a/01-09.wav", "Demo", [("level code", "09", {"01": "low"})])
    Traceback (most recent call last):
    ...
    ValueError: Demo file a/01-09.wav: unknown level code '09' (expected one of ['01'])
    """
    for what, code, known in fields:
        if code not in known:
            raise ValueError(
                f"{corpus} file {path}: unknown {what} {code!r} "
                f"(expected one of {sorted(known)})"
            )


def audio_utterance(path, folder, **columns):
    """The utterance dict of one audio file (``wav`` relative to ``data_folder``).

    Arguments
    ---------
    path : str
        The file.
    folder : str
        Its folder relative to the corpus folder (``$data_root``).
    **columns
        The other keys (``ID``, ``label``, ``spk_id``, ``gender``, ``style``,
        ``dialog``...).

    Returns
    -------
    dict
        ``columns`` with ``wav`` (``folder/<file name>``) and ``source`` (``path``).

    Example
    -------
    >>> audio_utterance("/data/wav/03F.wav", "wav", ID="03F", label="happy")
    {'ID': '03F', 'label': 'happy', 'wav': 'wav/03F.wav', 'source': '/data/wav/03F.wav'}
    """
    return {**columns, "wav": f"{folder}/{os.path.basename(path)}", "source": path}


@contextlib.contextmanager
def csv_table(path, columns, missing_message):
    """Opens a corpus's CSV table, checking that it exists and has ``columns``.

    Arguments
    ---------
    path : str
        The table (UTF-8, with or without a byte-order mark).
    columns : sequence of str
        The columns the corpus needs.
    missing_message : str
        The message when the file does not exist (naming it).

    Yields
    ------
    csv.DictReader
        Its ``line_num`` names the line of a bad row.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If a column is missing (names the file and its header).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.csv")
    >>> _ = open(path, "w").write("name,label\\na.wav,angry\\n")
    >>> with csv_table(path, ("name", "label"), f"No labels: {path}") as reader:
    ...     [(row["label"], reader.line_num) for row in reader]
    [('angry', 2)]
    >>> with csv_table(path, ("name", "speaker"), f"No labels: {path}") as reader:
    ...     pass
    Traceback (most recent call last):
    ...
    ValueError: .../labels.csv lacks the columns ['speaker'] (header: ['name', 'label'])
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(missing_message)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path} lacks the columns {missing} (header: {reader.fieldnames})"
            )
        yield reader
