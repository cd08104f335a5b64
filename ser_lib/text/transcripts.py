"""Transcripts for character CTC: reading, normalising and joining to manifests.

* :func:`read_iemocap_transcripts` parses IEMOCAP's
  ``Session*/dialog/transcriptions/<dialog>.txt`` files (one line per utterance,
  ``UTT_ID [start-end]: text``; other lines are skipped);
* :func:`read_emodb_texts` reads EmoDB's sentence table (``code,text``), where the
  text code is the manifests' ``dialog`` column;
* :func:`normalize_transcript` upper-cases, drops bracketed non-speech tags, maps
  ``-`` to a space, keeps only the characters of an alphabet and collapses spaces;
* :func:`attach_transcripts` adds the normalised text as a ``wrd`` column to manifest
  rows, joined on a column of the YAML's choice; an utterance without a transcript is
  an error or a counted skip (``missing: error | skip``);
* :func:`write_transcribed_manifest` does the same from one manifest file to another.

Authors
 * ser_lib contributors
"""

import csv
import glob
import os
import re

from speechbrain.utils.logger import get_logger

from ser_lib.data.manifest import read_manifest, write_manifest

logger = get_logger(__name__)

TRANSCRIPT_LINE = re.compile(r"^(\S+) \[(\d+\.\d+)-(\d+\.\d+)\]: (.*)$")
"""One utterance line of an IEMOCAP transcription file (ID, start, end, text)."""

ENGLISH_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ' "
"""Characters kept for English character CTC: A-Z, apostrophe and space."""

GERMAN_ALPHABET = ENGLISH_ALPHABET + "ÄÖÜ"
"""Characters kept for German (EmoDB): the English ones and the upper-case umlauts
(``ß`` upper-cases to ``SS``)."""

TEXT_COLUMN = "wrd"
"""Manifest column holding the normalised transcript."""

MISSING_POLICIES = ("error", "skip")
"""What :func:`attach_transcripts` does with an utterance that has no transcript."""

_TAG = re.compile(r"\[[^\]]*\]")
_SPACES = re.compile(r"\s+")


def normalize_transcript(text, alphabet=ENGLISH_ALPHABET):
    """Normalises a transcript for character CTC.

    Upper-case; bracketed non-speech tags (``[LAUGHTER]``, ``[BREATHING]``...) dropped;
    ``-`` mapped to a space; every character outside ``alphabet`` dropped; runs of
    spaces collapsed and the ends stripped. A transcript of tags only becomes ``""``.

    Arguments
    ---------
    text : str
        Raw transcript.
    alphabet : str
        The characters to keep (upper-case; include the space).

    Returns
    -------
    str
        The normalised transcript.

    Example
    -------
    >>> normalize_transcript("Well--I don't [LAUGHTER] know, 2 things!")
    "WELL I DON'T KNOW THINGS"
    >>> normalize_transcript("Heute abend könnte ich's.", GERMAN_ALPHABET)
    "HEUTE ABEND KÖNNTE ICH'S"
    >>> normalize_transcript("[BREATHING]")
    ''
    """
    keep = set(alphabet)
    text = _TAG.sub(" ", text.upper()).replace("-", " ")
    text = "".join(
        char if char in keep else " " if char.isspace() else "" for char in text
    )
    return _SPACES.sub(" ", text).strip()


def read_iemocap_transcripts(data_folder):
    """Reads every utterance transcript of an IEMOCAP release.

    Parses ``data_folder/Session*/dialog/transcriptions/*.txt`` (AppleDouble ``._*``
    files are skipped) with :data:`TRANSCRIPT_LINE`; lines that do not match (speaker
    notes, blank lines) are skipped.

    Arguments
    ---------
    data_folder : str
        The release folder (``IEMOCAP_full_release``).

    Returns
    -------
    dict
        Utterance ID -> raw transcript text.

    Raises
    ------
    FileNotFoundError
        If no transcription file is found.
    ValueError
        If an utterance ID occurs twice with different texts (names both files).

    Example
    -------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> folder = os.path.join(root, "Session1", "dialog", "transcriptions")
    >>> os.makedirs(folder)
    >>> with open(os.path.join(folder, "Ses01F_impro01.txt"), "w") as f:
    ...     _ = f.write("Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\\n")
    ...     _ = f.write("M: [BREATHING]\\n")
    >>> read_iemocap_transcripts(root)
    {'Ses01F_impro01_F000': 'Excuse me.'}
    """
    pattern = os.path.join(data_folder, "Session*", "dialog", "transcriptions", "*.txt")
    paths = sorted(
        p for p in glob.glob(pattern) if not os.path.basename(p).startswith("._")
    )
    if not paths:
        raise FileNotFoundError(f"No IEMOCAP transcription file matches {pattern}")
    texts, sources = {}, {}
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = TRANSCRIPT_LINE.match(line.rstrip("\r\n"))
                if match is None:
                    continue
                utt_id, text = match.group(1), match.group(4).strip()
                if utt_id in texts and texts[utt_id] != text:
                    raise ValueError(
                        f"Utterance {utt_id} has two transcripts: {sources[utt_id]} "
                        f"and {path}"
                    )
                texts[utt_id], sources[utt_id] = text, path
    logger.info(
        f"Read {len(texts)} transcripts from {len(paths)} files in {data_folder}"
    )
    return texts


def read_emodb_texts(path):
    """Reads EmoDB's sentence table: text code -> sentence.

    Arguments
    ---------
    path : str
        CSV file with the columns ``code`` and ``text``.

    Returns
    -------
    dict
        Text code (``a01`` ... ``b10``, the manifests' ``dialog`` column) -> sentence.

    Raises
    ------
    ValueError
        If a column is missing or a code occurs twice.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "texts.csv")
    >>> with open(path, "w", encoding="utf-8") as f:
    ...     _ = f.write("code,text\\na01,Der Lappen liegt auf dem Eisschrank.\\n")
    >>> read_emodb_texts(path)
    {'a01': 'Der Lappen liegt auf dem Eisschrank.'}
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"code", "text"} <= set(reader.fieldnames):
            raise ValueError(
                f"{path}: expected the columns 'code' and 'text', got {reader.fieldnames}"
            )
        texts = {}
        for row in reader:
            if row["code"] in texts:
                raise ValueError(f"{path}: text code {row['code']!r} occurs twice")
            texts[row["code"]] = row["text"]
    return texts


def attach_transcripts(
    rows, transcripts, key="ID", missing="error", alphabet=ENGLISH_ALPHABET
):
    """Adds the normalised transcript of every row as its ``wrd`` column.

    Arguments
    ---------
    rows : list of dict
        Manifest rows.
    transcripts : dict
        Value of ``key`` -> raw transcript.
    key : str
        Row column to join on (``ID`` for IEMOCAP, ``dialog`` for EmoDB).
    missing : str
        ``"error"``: a row without a transcript raises; ``"skip"``: it is dropped and
        counted.
    alphabet : str
        Characters kept by :func:`normalize_transcript`.

    Returns
    -------
    kept : list of dict
        Copies of the rows that have a transcript, with ``wrd`` added.
    skipped : list of str
        IDs of the rows dropped for want of a transcript.

    Raises
    ------
    ValueError
        If ``missing`` is unknown, or is ``"error"`` and some row has no transcript
        (names the first few IDs and the number of them).

    Example
    -------
    >>> rows = [{"ID": "u1", "dialog": "a01"}, {"ID": "u2", "dialog": "x99"}]
    >>> kept, skipped = attach_transcripts(
    ...     rows, {"a01": "Das ist gut."}, key="dialog", missing="skip"
    ... )
    >>> kept, skipped
    ([{'ID': 'u1', 'dialog': 'a01', 'wrd': 'DAS IST GUT'}], ['u2'])
    >>> attach_transcripts(rows, {"a01": "x"}, key="dialog")
    Traceback (most recent call last):
    ...
    ValueError: 1 of 2 utterances have no transcript (joined on 'dialog'): ['u2']
    """
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    kept, skipped = [], []
    for row in rows:
        text = transcripts.get(row[key])
        if text is None:
            skipped.append(row["ID"])
            continue
        kept.append({**row, TEXT_COLUMN: normalize_transcript(text, alphabet)})
    if skipped and missing == "error":
        raise ValueError(
            f"{len(skipped)} of {len(rows)} utterances have no transcript "
            f"(joined on {key!r}): {skipped[:5]}"
        )
    if skipped:
        logger.warning(
            f"Skipped {len(skipped)} of {len(rows)} utterances without a transcript "
            f"(joined on {key!r}), e.g. {skipped[:5]}"
        )
    return kept, skipped


def write_transcribed_manifest(
    source,
    destination,
    transcripts,
    key="ID",
    missing="error",
    alphabet=ENGLISH_ALPHABET,
):
    """Copies a manifest with a ``wrd`` column added (see :func:`attach_transcripts`).

    Arguments
    ---------
    source : str
        Input manifest (any columns, ``ID`` and ``key`` among them).
    destination : str
        Output manifest: the input's columns plus ``wrd``, written atomically.
    transcripts : dict
        Value of ``key`` -> raw transcript.
    key : str
        Column to join on.
    missing : str
        ``"error"`` or ``"skip"``.
    alphabet : str
        Characters kept by :func:`normalize_transcript`.

    Returns
    -------
    int
        Number of utterances skipped for want of a transcript.

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> source, out = os.path.join(folder, "in.csv"), os.path.join(folder, "out.csv")
    >>> write_manifest([{"ID": "u1", "emo": "neu"}], source, columns=["ID", "emo"])
    >>> write_transcribed_manifest(source, out, {"u1": "Hi there."})
    0
    >>> print(open(out).read().strip())
    ID,emo,wrd
    u1,neu,HI THERE
    """
    rows = read_manifest(source, required_columns=["ID", key])
    with open(source, newline="", encoding="utf-8") as handle:
        columns = next(csv.reader(handle))
    kept, skipped = attach_transcripts(rows, transcripts, key, missing, alphabet)
    if TEXT_COLUMN not in columns:
        columns = [*columns, TEXT_COLUMN]
    write_manifest(kept, destination, columns=columns)
    return len(skipped)
