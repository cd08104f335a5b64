"""IEMOCAP annotation files: finding the release, parsing the label lines.

Used by ``iemocap_prepare.py`` (which writes the manifests). Each
``Session{1..5}/dialog/EmoEvaluation/<dialog>.txt`` file has one line per utterance,
``[start - end]<TAB>UTT_ID<TAB>LABEL<TAB>[V, A, D]``, followed by the annotators'
``C-...:``/``A-...:`` lines. Every line meant as an utterance line (starting with
``[`` or holding an utterance ID) must parse: the ones that do not are all listed
with file and line, and stop the preparation or are dropped with a warning
(``annotation_errors``); a label outside :data:`KNOWN_LABELS` is warned about.

Authors
 * ser_lib contributors 2025
"""

import os
import re

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

RELEASE_FOLDER_NAME = "IEMOCAP_full_release"
SESSIONS = (1, 2, 3, 4, 5)
STYLE_MARKERS = {"impro": "improvised", "script": "scripted"}
"""Substring of the dialog name -> style."""
KNOWN_LABELS = (
    "neu",
    "hap",
    "exc",
    "ang",
    "sad",
    "fru",
    "sur",
    "fea",
    "dis",
    "oth",
    "xxx",
)
"""The raw labels of the release; any other label (a typo such as ``Neu``) is warned
about, naming its file and line."""
ANNOTATION_ERRORS = ("error", "warn")
"""What to do with utterance lines that do not parse: stop, or warn and drop them."""

_LINE_RE = re.compile(
    r"^\[\s*(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\s*\]"
    r"\s+(?P<id>\S+)\s+(?P<label>\S+)\s+\[(?P<vad>[^\]]*)\]\s*$"
)
_FIRST_FIELD_RE = re.compile(r"^Ses(?P<session>\d+)[FM]$")
# An utterance ID anywhere in a line: the line is meant as an utterance line.
_UTT_ID_RE = re.compile(r"\bSes\d+[FM]_\S+_[FM]\d+\b")


def parse_utterance_id(utt_id):
    """Derives session, speaker, gender, dialog and style from an utterance ID.

    The speaker is the session plus the first letter of the LAST ``_`` field of the
    ID (``Ses01F_impro01_M012`` is session 1's male speaker); the dialog is the ID
    without that field. No fixed character positions are used, since dialog names
    vary (``script01_1b``, ``impro05a``).

    Arguments
    ---------
    utt_id : str
        An IEMOCAP utterance ID such as ``Ses01F_script01_1b_F000``.

    Returns
    -------
    dict
        Keys ``session`` (int), ``spk_id`` (e.g. ``Ses01M``), ``gender`` (F/M),
        ``dialog`` and ``style`` (improvised/scripted).

    Raises
    ------
    ValueError
        If the ID does not have the IEMOCAP shape.

    Example
    -------
    >>> info = parse_utterance_id("Ses01F_script01_1b_M003")
    >>> info["session"], info["spk_id"], info["gender"], info["dialog"], info["style"]
    (1, 'Ses01M', 'M', 'Ses01F_script01_1b', 'scripted')
    >>> parse_utterance_id("Ses02M_impro05a_F010")["spk_id"]
    'Ses02F'
    """
    fields = utt_id.split("_")
    first = _FIRST_FIELD_RE.match(fields[0])
    if len(fields) < 3 or first is None or not fields[-1]:
        raise ValueError(
            f"Not an IEMOCAP utterance ID (SesNNX_<dialog>_<X><NNN>): {utt_id!r}"
        )
    gender = fields[-1][0]
    if gender not in ("F", "M"):
        raise ValueError(
            f"Utterance ID {utt_id!r}: the last field {fields[-1]!r} must start "
            "with the speaker's gender F or M"
        )
    session = int(first.group("session"))
    dialog = "_".join(fields[:-1])
    styles = [s for marker, s in STYLE_MARKERS.items() if marker in dialog]
    if len(styles) != 1:
        raise ValueError(
            f"Utterance ID {utt_id!r}: cannot tell the style of dialog {dialog!r} "
            f"(expected exactly one of {sorted(STYLE_MARKERS)} in its name)"
        )
    return {
        "session": session,
        "spk_id": f"Ses{session:02d}{gender}",
        "gender": gender,
        "dialog": dialog,
        "style": styles[0],
    }


def read_emo_evaluation(path, malformed=None):
    """Reads the utterance label lines of one ``EmoEvaluation/<dialog>.txt`` file.

    Utterance lines (starting with ``[``, or holding an utterance ID anywhere, such
    as a line that lost its leading ``[``) must read ``[start - end]<TAB>UTT_ID<TAB>
    LABEL<TAB>[V, A, D]``; every other line (the ``%`` header, annotator lines
    ``C-E1:``, ``A-E1:``, blank lines) is ignored.

    Arguments
    ---------
    path : str
        The annotation file.
    malformed : list or None
        If given, receives one message (file, line, text) per utterance line that
        does not parse, instead of the first raising ``ValueError``.

    Returns
    -------
    list of tuple
        ``(utt_id, label, line_number)`` per utterance, in file order.

    Raises
    ------
    OSError
        If the file cannot be read (the message names it).
    ValueError
        If it is not UTF-8, if a ``[`` line is malformed (names file and line), or
        if it has no utterance line at all.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "Ses01F_impro01.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write(
    ...         "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\\n\\n"
    ...         "[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t[2.5000, 2.5000, 2.5000]\\n"
    ...         "C-E2:\\tNeutral;\\t()\\n"
    ...         "A-E3:\\tval 3; act 2; dom  2;\\t()\\n"
    ...         "7.1 - 9.0]\\tSes01F_impro01_M001\\tang\\t[2.5, 3.5, 3.0]\\n"
    ...     )
    >>> malformed = []
    >>> read_emo_evaluation(path, malformed)
    [('Ses01F_impro01_F000', 'neu', 3)]
    >>> print(malformed[0])  # doctest: +ELLIPSIS
    /...Ses01F_impro01.txt, line 6: malformed utterance line '7.1 - 9.0]\\tSes01F_...
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Cannot decode IEMOCAP annotation file {path} as UTF-8: {error}"
        ) from error
    except OSError as error:
        raise OSError(f"Cannot read IEMOCAP annotation file {path}: {error}") from error

    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.lstrip().startswith("[") and _UTT_ID_RE.search(line) is None:
            continue
        match = _LINE_RE.match(line.strip())
        if match is None:
            message = (
                f"{path}, line {number}: malformed utterance line {line!r} "
                "(expected '[start - end]<TAB>UTT_ID<TAB>LABEL<TAB>[V, A, D]')"
            )
            if malformed is None:
                raise ValueError(message)
            malformed.append(message)
            continue
        entries.append((match.group("id"), match.group("label"), number))
    if not entries and not malformed:
        raise ValueError(
            f"IEMOCAP annotation file {path} has no utterance line "
            "('[start - end]<TAB>UTT_ID<TAB>LABEL<TAB>[V, A, D]')"
        )
    return entries


def list_annotation_files(emo_folder):
    """Lists the ``*.txt`` annotation files of an ``EmoEvaluation`` folder.

    Sub-folders (``Categorical/``, ``Attribute/``, ``Self-evaluation/``), hidden
    files and AppleDouble ``._*`` files are skipped.

    Arguments
    ---------
    emo_folder : str
        A ``Session{s}/dialog/EmoEvaluation`` folder.

    Returns
    -------
    list of str
        Sorted file paths.

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(folder, "Categorical"))
    >>> for name in ("Ses01F_impro01.txt", "._Ses01F_impro01.txt", ".DS_Store"):
    ...     open(os.path.join(folder, name), "w").close()
    >>> [os.path.basename(p) for p in list_annotation_files(folder)]
    ['Ses01F_impro01.txt']
    """
    paths = []
    with os.scandir(emo_folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.is_dir():
                continue
            if entry.name.endswith(".txt"):
                paths.append(entry.path)
    return sorted(paths)


def _release_candidates(data_folder):
    """Child folders of ``data_folder`` that look like the release folder."""
    candidates = []
    with os.scandir(data_folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if os.path.isdir(os.path.join(entry.path, f"Session{SESSIONS[0]}")):
                candidates.append(entry.path)
    return sorted(candidates)


def check_data_folder(data_folder):
    """Checks that ``data_folder`` is an ``IEMOCAP_full_release`` folder.

    Arguments
    ---------
    data_folder : str
        The folder given by the user.

    Raises
    ------
    FileNotFoundError
        If it does not exist, if it is the parent of the release (the message
        suggests the right path), or if a ``Session{s}/dialog/EmoEvaluation`` or
        ``Session{s}/sentences/wav`` folder is missing (the message names it).

    Example
    -------
    >>> import tempfile
    >>> check_data_folder(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: IEMOCAP session folder not found: .../Session1 ...
    """
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(
            f"IEMOCAP data_folder not found: {data_folder} "
            f"(expected the path of {RELEASE_FOLDER_NAME})"
        )
    sessions = [os.path.join(data_folder, f"Session{s}") for s in SESSIONS]
    if not any(os.path.isdir(p) for p in sessions):
        candidates = _release_candidates(data_folder)
        if candidates:
            raise FileNotFoundError(
                f"IEMOCAP data_folder {data_folder} has no Session folders but "
                f"contains {candidates[0]}: it looks like the parent of the release; "
                f"use data_folder={candidates[0]}"
            )
    for session_folder in sessions:
        if not os.path.isdir(session_folder):
            raise FileNotFoundError(
                f"IEMOCAP session folder not found: {session_folder} (data_folder "
                f"must be {RELEASE_FOLDER_NAME} with Session1..Session{SESSIONS[-1]})"
            )
        for sub in (("dialog", "EmoEvaluation"), ("sentences", "wav")):
            folder = os.path.join(session_folder, *sub)
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"IEMOCAP folder not found: {folder}")


def collect_annotations(data_folder, annotation_errors="error"):
    """Parses every annotated utterance of the release (all labels, all styles).

    Every utterance line that does not parse is counted and listed with its file
    and line: ``annotation_errors="error"`` stops with all of them, ``"warn"`` logs
    them at WARNING and drops them. A label outside :data:`KNOWN_LABELS` (a typo
    such as ``Neu``) is logged at WARNING with its file and line (it is then
    dropped like any label outside the 4 classes).

    Arguments
    ---------
    data_folder : str
        The ``IEMOCAP_full_release`` folder (checked by :func:`check_data_folder`).
    annotation_errors : str
        ``"error"`` or ``"warn"`` (see above).

    Returns
    -------
    list of dict
        One dict per annotated utterance, sorted by ID, with ``ID``, ``label``
        (raw label), ``session``, ``spk_id``, ``gender``, ``dialog``, ``style`` and
        ``source`` (annotation file and line).

    Raises
    ------
    ValueError
        On an unparseable file or line, an ID of another session than its folder,
        or an ID listed twice (the messages name the files and lines).

    Example
    -------
    >>> import tempfile
    >>> collect_annotations(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: IEMOCAP session folder not found: .../Session1 ...
    """
    if annotation_errors not in ANNOTATION_ERRORS:
        raise ValueError(
            f"annotation_errors must be one of {ANNOTATION_ERRORS}, got "
            f"{annotation_errors!r}"
        )
    check_data_folder(data_folder)
    utterances, malformed, unknown_labels = {}, [], []
    for session in SESSIONS:
        emo_folder = os.path.join(
            data_folder, f"Session{session}", "dialog", "EmoEvaluation"
        )
        files = list_annotation_files(emo_folder)
        if not files:
            raise FileNotFoundError(f"No annotation file (*.txt) in {emo_folder}")
        for path in files:
            for utt_id, label, number in read_emo_evaluation(path, malformed):
                source = f"{path}, line {number}"
                if label not in KNOWN_LABELS:
                    unknown_labels.append(f"{source}: {utt_id} {label!r}")
                try:
                    info = parse_utterance_id(utt_id)
                except ValueError as error:
                    raise ValueError(f"{source}: {error}") from error
                if info["session"] != session:
                    raise ValueError(
                        f"{source}: utterance {utt_id} belongs to session "
                        f"{info['session']} but is listed in Session{session}"
                    )
                if utt_id in utterances:
                    raise ValueError(
                        f"{source}: utterance {utt_id} is already listed at "
                        f"{utterances[utt_id]['source']}"
                    )
                utterances[utt_id] = {
                    "ID": utt_id,
                    "label": label,
                    "source": source,
                    **info,
                }
    _report_annotation_problems(malformed, unknown_labels, annotation_errors)
    return [utterances[key] for key in sorted(utterances)]


def _report_annotation_problems(malformed, unknown_labels, annotation_errors):
    """Stops on, or warns about, malformed lines; warns about unknown labels."""
    if unknown_labels:
        logger.warning(
            "IEMOCAP: %d utterance(s) have a label outside %s (a typo?); they are "
            "dropped:\n  %s",
            len(unknown_labels),
            list(KNOWN_LABELS),
            "\n  ".join(unknown_labels),
        )
    if not malformed:
        return
    summary = (
        f"IEMOCAP: {len(malformed)} utterance line(s) in the annotation files do "
        "not parse:\n  " + "\n  ".join(malformed)
    )
    if annotation_errors == "error":
        raise ValueError(
            summary + "\n(fix the lines, or set annotation_errors: warn to drop them)"
        )
    logger.warning(
        "%s\nThese utterances are dropped (annotation_errors: warn)", summary
    )
