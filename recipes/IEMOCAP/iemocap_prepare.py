#!/usr/bin/env python3
"""Prepares IEMOCAP for 4-class speech emotion recognition with 5 session folds.

Reads the categorical labels of ``IEMOCAP_full_release``, keeps neutral, happy
(``hap`` and ``exc`` merged), angry and sad, and writes SpeechBrain CSV manifests:

* ``save_folder/all.csv``: every kept utterance;
* ``save_folder/unlabelled.csv``: every other annotated utterance (other labels
  such as fru/sur/xxx, and the other style when ``subset`` is not ``all``), its raw
  label in ``emo``: stage 1 uses no labels and trains on them too;
* ``save_folder/fold{k}/{train,valid,test}.csv`` for k = 1..5: fold k tests on
  session k and trains on the other four (leave-one-session-out). ``valid.csv`` is
  empty (header only) with ``valid_mode="none"`` (model selection = last epoch) or
  holds one speaker of a training session with ``valid_mode="speaker"`` (see
  :func:`ser_lib.data.folds.choose_valid_speaker`).
* ``save_folder/fold{k}/adapter_{all_train,labelled,transductive}.csv``: the stage-1
  sets of every ``adapter_data`` setting (:func:`ser_lib.data.folds.write_group_folds`).

Columns: ``ID,duration,wav,emo,spk_id,gender,session,style,dialog``; ``wav`` starts
with ``$data_root`` (give ``replacements={"data_root": data_folder}`` to
``DynamicItemDataset.from_csv``).

Expected layout (the official release)::

    IEMOCAP_full_release/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt
    IEMOCAP_full_release/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav

Each annotation file has one line per utterance,
``[start - end]<TAB>UTT_ID<TAB>LABEL<TAB>[V, A, D]``, followed by the annotators'
``C-...:``/``A-...:`` lines. Sub-folders (``Categorical/``, ``Attribute/``,
``Self-evaluation/``) and hidden or AppleDouble ``._*`` files are skipped. Finding
the release and parsing these files is ``iemocap_annotations.py`` (beside this file);
this module turns the kept utterances into manifests.

Usage from a recipe::

    from iemocap_prepare import prepare_iemocap
    run_on_main(prepare_iemocap, kwargs={"data_folder": ..., "save_folder": ...})

Command line::

    python recipes/IEMOCAP/iemocap_prepare.py \\
        --data_folder PATH/IEMOCAP_full_release --save_folder OUT \\
        [--subset all|improvised|scripted] [--valid_mode none|speaker]

Authors
 * ser_lib contributors 2025
"""

import argparse
import logging
import os
from collections import Counter

from iemocap_annotations import ANNOTATION_ERRORS, SESSIONS, collect_annotations
from speechbrain.utils.logger import get_logger

from ser_lib.audio import AudioError, audio_info, bad_wavs_error
from ser_lib.data.folds import VALID_MODES, write_group_folds
from ser_lib.data.manifest import (
    MANIFEST_COLUMNS,
    clear_prep_options,
    prep_options_match,
    read_manifest,
    save_prep_options,
    write_manifest,
)
from ser_lib.data.preparation import fold_files

logger = get_logger(__name__)

SUBSETS = ("all", "improvised", "scripted")
EMOTION_MAP = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
"""Raw IEMOCAP label -> class; every other label (fru, sur, xxx...) is dropped."""
CLASSES = ("neu", "hap", "ang", "sad")
"""The 4 classes, in logging order."""
PREP_VERSION = 2
"""Bump when the outputs change for the same options, so old preparations redo."""

# Counts of the 4-class "all" subset on the official full release (hap + exc merged).
FULL_RELEASE_N_ANNOTATED = 10039
"""Utterances with a categorical label line in the full release."""
EXPECTED_LABEL_COUNTS = {"neu": 1708, "hap": 1636, "ang": 1103, "sad": 1084}
EXPECTED_SESSION_COUNTS = {1: 1085, 2: 1023, 3: 1151, 4: 1031, 5: 1241}
EXPECTED_TOTAL = 5531


def wav_relative_path(utterance):
    """Path of an utterance's wav relative to the release folder.

    Arguments
    ---------
    utterance : dict
        With keys ``ID``, ``session`` and ``dialog``.

    Returns
    -------
    str
        ``Session{s}/sentences/wav/<dialog>/<ID>.wav`` (``/``-separated).

    Example
    -------
    >>> wav_relative_path(
    ...     {"ID": "Ses01F_impro01_F000", "session": 1, "dialog": "Ses01F_impro01"}
    ... )
    'Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav'
    """
    return "/".join(
        [
            f"Session{utterance['session']}",
            "sentences",
            "wav",
            utterance["dialog"],
            f"{utterance['ID']}.wav",
        ]
    )


def build_rows(utterances, data_folder, max_listed_missing=5):
    """Turns kept utterances into manifest rows, reading durations from the wavs.

    Arguments
    ---------
    utterances : list of dict
        Output of :func:`collect_annotations`, already filtered, with ``emo`` set.
    data_folder : str
        The release folder (wav paths are written relative to it as ``$data_root``).
    max_listed_missing : int
        How many missing (or unusable) wav paths an error message lists.

    Returns
    -------
    list of dict
        Manifest rows with the columns of ``MANIFEST_COLUMNS``.

    Raises
    ------
    FileNotFoundError
        If wavs are missing: the count and the first expected paths, then the
        unusable ones as below.
    ser_lib.audio.AudioError
        If wavs are unreadable, empty, truncated or broken links: the count and the
        first ones, each with the reason.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> root = tempfile.mkdtemp()
    >>> utt = {"ID": "Ses01F_impro01_F000", "session": 1, "dialog": "Ses01F_impro01",
    ...        "emo": "neu", "spk_id": "Ses01F", "gender": "F", "style": "improvised"}
    >>> wav = os.path.join(root, wav_relative_path(utt))
    >>> os.makedirs(os.path.dirname(wav))
    >>> sf.write(wav, np.zeros(8000, dtype="float32"), 16000)
    >>> row = build_rows([utt], root)[0]
    >>> row["duration"], row["wav"]
    (0.5, '$data_root/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav')
    """
    relatives = [wav_relative_path(utt) for utt in utterances]
    paths = [os.path.join(data_folder, *rel.split("/")) for rel in relatives]
    # Missing, unreadable, empty or truncated wavs and broken links: all listed in
    # one error, so that one fix-and-rerun cycle is enough.
    infos, missing, problems = [], [], []
    for path in paths:
        if not os.path.lexists(path):
            missing.append(path)
            continue
        try:
            infos.append(audio_info(path))
        except AudioError as err:
            problems.append(str(err))
    if missing or problems:
        raise bad_wavs_error(
            missing,
            problems,
            len(paths),
            "",
            data_folder,
            max_listed=max_listed_missing,
        )
    rows = []
    for utt, relative, info in zip(utterances, relatives, infos, strict=True):
        rows.append(
            {
                "ID": utt["ID"],
                "duration": info.duration,
                "wav": f"$data_root/{relative}",
                "emo": utt["emo"],
                "spk_id": utt["spk_id"],
                "gender": utt["gender"],
                "session": utt["session"],
                "style": utt["style"],
                "dialog": utt["dialog"],
            }
        )
    return rows


def _with_wav(utterances, data_folder):
    """The utterances whose wav exists (the others are logged and left out).

    Used for the utterances outside the labelled set, which only stage 1 uses: a
    missing wav of one of them is no reason to stop.
    """
    present = [
        utt
        for utt in utterances
        if os.path.isfile(os.path.join(data_folder, *wav_relative_path(utt).split("/")))
    ]
    if len(present) < len(utterances):
        logger.warning(
            "%d annotated IEMOCAP utterance(s) outside the labelled set have no wav "
            "under %s: left out of the stage-1 sets",
            len(utterances) - len(present),
            data_folder,
        )
    return present


def _format_counts(counts, keys):
    return ", ".join(f"{key}={counts.get(key, 0)}" for key in keys)


def check_full_release_counts(n_annotated, label_counts, session_counts):
    """Warns loudly when a complete-looking release gives unexpected 4-class counts.

    A tree "looks complete" when it yields as many annotated utterances as the full
    release (``FULL_RELEASE_N_ANNOTATED``); its ``all`` subset must then match
    ``EXPECTED_LABEL_COUNTS`` and ``EXPECTED_SESSION_COUNTS`` (the module constants
    are read at call time).

    Arguments
    ---------
    n_annotated : int
        Annotated utterances parsed (all labels).
    label_counts : mapping
        Kept utterances per class.
    session_counts : mapping
        Kept utterances per session (int keys).

    Returns
    -------
    bool
        True if a warning was logged.

    Example
    -------
    >>> check_full_release_counts(
    ...     10039, EXPECTED_LABEL_COUNTS, EXPECTED_SESSION_COUNTS
    ... )
    False
    >>> check_full_release_counts(12, {"neu": 1}, {1: 1})  # not a full tree
    False
    >>> check_full_release_counts(10039, {"neu": 1}, {1: 1})  # logs a warning
    True
    """
    if n_annotated != FULL_RELEASE_N_ANNOTATED:
        return False
    labels = dict(label_counts)
    sessions = {int(k): v for k, v in dict(session_counts).items()}
    if labels == EXPECTED_LABEL_COUNTS and sessions == EXPECTED_SESSION_COUNTS:
        return False
    label_keys = list(EXPECTED_LABEL_COUNTS)
    session_keys = list(EXPECTED_SESSION_COUNTS)
    logger.warning(
        "!!! IEMOCAP counts differ from the full release although the tree looks "
        "complete (%d annotated utterances) !!!\n"
        "  labels   expected: %s\n  labels   got:      %s\n"
        "  sessions expected: %s\n  sessions got:      %s\n"
        "Results will not be comparable with published ones: check the release.",
        n_annotated,
        _format_counts(EXPECTED_LABEL_COUNTS, label_keys),
        _format_counts(labels, label_keys + sorted(set(labels) - set(label_keys))),
        _format_counts(EXPECTED_SESSION_COUNTS, session_keys),
        _format_counts(sessions, session_keys),
    )
    return True


def log_counts(rows, subset):
    """Logs (INFO) the number of kept utterances per class and per session.

    Arguments
    ---------
    rows : sequence of mapping
        Manifest rows (``session`` may be an int or a string).
    subset : str
        Subset name, for the message.

    Returns
    -------
    label_counts : dict
        Class -> count, in :data:`CLASSES` order (missing classes count 0).
    session_counts : dict
        Session (int) -> count, in :data:`SESSIONS` order.

    Example
    -------
    >>> log_counts([{"emo": "sad", "session": "2"}, {"emo": "sad", "session": 2}], "all")
    ({'neu': 0, 'hap': 0, 'ang': 0, 'sad': 2}, {1: 0, 2: 2, 3: 0, 4: 0, 5: 0})
    """
    labels = Counter(row["emo"] for row in rows)
    sessions = Counter(int(row["session"]) for row in rows)
    label_counts = {label: labels.get(label, 0) for label in CLASSES}
    session_counts = {session: sessions.get(session, 0) for session in SESSIONS}
    logger.info("IEMOCAP %s: %d utterances kept", subset, len(rows))
    logger.info("IEMOCAP %s per label: %s", subset, _format_counts(labels, CLASSES))
    logger.info(
        "IEMOCAP %s per session: %s", subset, _format_counts(sessions, SESSIONS)
    )
    return label_counts, session_counts


def _output_files(n_folds):
    return [*fold_files(n_folds), "unlabelled.csv"]


def prepare_iemocap(
    data_folder,
    save_folder,
    subset="all",
    valid_mode="none",
    skip_prep=False,
    annotation_errors="error",
):
    """Writes the IEMOCAP manifests: ``all.csv`` and 5 leave-one-session-out folds.

    Re-running with the same options (same resolved ``data_folder``, ``subset``,
    ``valid_mode``) skips; other options redo. The options marker is written last,
    so an interrupted preparation is redone.

    Arguments
    ---------
    data_folder : str
        The ``IEMOCAP_full_release`` folder.
    save_folder : str
        Output folder.
    subset : str
        ``"all"``, ``"improvised"`` or ``"scripted"`` (style of the dialogs kept).
    valid_mode : str
        ``"none"`` (``valid.csv`` header only; select the last epoch) or
        ``"speaker"`` (one speaker of a training session held out).
    skip_prep : bool
        If True, do nothing.
    annotation_errors : str
        ``"error"``: an utterance line that does not parse stops the preparation
        (all such lines listed); ``"warn"``: they are listed at WARNING and dropped.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> tmp = tempfile.mkdtemp()
    >>> root = os.path.join(tmp, "IEMOCAP_full_release")
    >>> for s in range(1, 6):
    ...     dialog = f"Ses0{s}F_impro01"
    ...     emo_dir = os.path.join(root, f"Session{s}", "dialog", "EmoEvaluation")
    ...     wav_dir = os.path.join(root, f"Session{s}", "sentences", "wav", dialog)
    ...     os.makedirs(emo_dir); os.makedirs(wav_dir)
    ...     with open(os.path.join(emo_dir, dialog + ".txt"), "w") as f:
    ...         for i, (spk, lab) in enumerate([("F", "exc"), ("M", "neu"), ("F", "fru")]):
    ...             utt = f"{dialog}_{spk}00{i}"
    ...             _ = f.write(f"[1.0 - 2.0]\\t{utt}\\t{lab}\\t[2.5, 2.5, 2.5]\\n\\n")
    ...             sf.write(os.path.join(wav_dir, utt + ".wav"), np.zeros(1600), 16000)
    >>> prepare_iemocap(root, os.path.join(tmp, "prep"))
    >>> sorted(os.listdir(os.path.join(tmp, "prep")))
    ['all.csv', 'fold1', 'fold2', 'fold3', 'fold4', 'fold5', 'prep_options.json', 'unlabelled.csv']
    >>> print(open(os.path.join(tmp, "prep", "fold1", "test.csv")).read().strip())
    ID,duration,wav,emo,spk_id,gender,session,style,dialog
    Ses01F_impro01_F000,0.1,$data_root/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav,hap,Ses01F,F,1,improvised,Ses01F_impro01
    Ses01F_impro01_M001,0.1,$data_root/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M001.wav,neu,Ses01M,M,1,improvised,Ses01F_impro01
    """
    if skip_prep:
        logger.info("IEMOCAP preparation skipped (skip_prep=True)")
        return
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    if valid_mode not in VALID_MODES:
        raise ValueError(f"valid_mode must be one of {VALID_MODES}, got {valid_mode!r}")
    data_folder = os.fspath(data_folder)
    save_folder = os.fspath(save_folder)
    options = {
        "corpus": "IEMOCAP",
        "data_folder": os.path.realpath(data_folder),
        "subset": subset,
        "valid_mode": valid_mode,
        "annotation_errors": annotation_errors,
        "prep_version": PREP_VERSION,
    }
    outputs = _output_files(len(SESSIONS))
    if prep_options_match(save_folder, options, required_files=outputs):
        logger.info(
            "IEMOCAP already prepared in %s with %s: skipping", save_folder, options
        )
        log_counts(read_manifest(os.path.join(save_folder, "all.csv")), subset)
        return
    logger.info(
        "Preparing IEMOCAP from %s into %s (%s)", data_folder, save_folder, options
    )
    clear_prep_options(save_folder)

    annotated = collect_annotations(data_folder, annotation_errors)
    kept, others = [], []
    for utt in annotated:
        emo = EMOTION_MAP.get(utt["label"])
        if emo is None or subset not in ("all", utt["style"]):
            others.append({**utt, "emo": utt["label"]})
            continue
        kept.append({**utt, "emo": emo})
    if not kept:
        raise ValueError(
            f"No utterance of classes {sorted(set(EMOTION_MAP.values()))} in subset "
            f"{subset!r} under {data_folder}"
        )
    rows = build_rows(kept, data_folder)
    other_rows = build_rows(_with_wav(others, data_folder), data_folder)

    logger.info(
        "IEMOCAP: %d annotated utterances (raw labels: %s)",
        len(annotated),
        _format_counts(
            Counter(u["label"] for u in annotated),
            sorted({u["label"] for u in annotated}),
        ),
    )
    label_counts, session_counts = log_counts(rows, subset)
    if subset == "all":
        check_full_release_counts(len(annotated), label_counts, session_counts)

    write_manifest(rows, os.path.join(save_folder, "all.csv"), MANIFEST_COLUMNS)
    write_manifest(
        other_rows, os.path.join(save_folder, "unlabelled.csv"), MANIFEST_COLUMNS
    )
    write_group_folds(
        rows,
        save_folder,
        group_key="session",
        valid_mode=valid_mode,
        speaker_key="spk_id",
        other_rows=other_rows,
    )
    save_prep_options(save_folder, options)
    logger.info("IEMOCAP manifests written to %s", save_folder)


def main(argv=None):
    """Command-line entry point (see the module docstring).

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Example
    -------
    >>> import tempfile
    >>> main(["--data_folder", "/nonexistent", "--save_folder", tempfile.mkdtemp()])
    Traceback (most recent call last):
    ...
    FileNotFoundError: IEMOCAP data_folder not found: /nonexistent ...
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data_folder", required=True, help="IEMOCAP_full_release path"
    )
    parser.add_argument("--save_folder", required=True, help="output folder")
    parser.add_argument("--subset", default="all", choices=SUBSETS)
    parser.add_argument("--valid_mode", default="none", choices=VALID_MODES)
    parser.add_argument("--skip_prep", action="store_true", help="do nothing")
    parser.add_argument(
        "--annotation_errors",
        default="error",
        choices=ANNOTATION_ERRORS,
        help="stop on utterance lines that do not parse, or warn and drop them",
    )
    args = parser.parse_args(argv)
    prepare_iemocap(
        args.data_folder,
        args.save_folder,
        subset=args.subset,
        valid_mode=args.valid_mode,
        skip_prep=args.skip_prep,
        annotation_errors=args.annotation_errors,
    )
    print(f"IEMOCAP manifests in {args.save_folder}")


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    main()
