"""The corpus-independent steps of a data preparation, shared by the prepare scripts.

A ``<corpus>_prepare.py`` script only knows its corpus's layout: its ``collect``
function lists the utterances with their raw labels, speakers and wav paths.
Everything after that is here and is the same for every corpus;
:func:`prepare_corpus` chains it:

1. :func:`already_prepared`: skip when a finished preparation with the same options
   is on disk (the marker of :mod:`ser_lib.data.manifest`);
2. :func:`write_prepared_corpus`: the class map of the YAML
   (:func:`ser_lib.data.class_map.apply_class_map`), the speaker-independent fold
   groups (:func:`ser_lib.data.speaker_folds.assign_folds`, written to ``session``),
   the durations read from the wavs (:func:`manifest_rows`), ``all.csv``, the
   ``fold{k}/{train,valid,test}.csv`` manifests
   (:func:`ser_lib.data.folds.write_group_folds`) and, last, the marker.

The scripts' command lines are in :mod:`ser_lib.data.prepare_script`; reading a
corpus's own files (folder checks, audio listing, coded names, label tables, gender
spellings) in :mod:`ser_lib.data.corpus_files`.

Utterances are dicts with ``ID``, ``label`` (raw label), ``spk_id``, ``gender``
(``F``, ``M`` or ``U`` for unknown; see :func:`normalise_gender`), ``style``,
``dialog``, ``wav`` (path relative to the corpus folder, ``/``-separated) and
``source`` (the file or line it comes from, named in errors).

Authors
 * ser_lib contributors 2025
"""

import os
from collections import Counter

from speechbrain.utils.logger import get_logger

from ser_lib.audio import AudioError, EmptyAudioError, audio_info, bad_wavs_error
from ser_lib.data.class_map import (
    apply_class_map,
    class_names,
    unlabelled_utterances,
)
from ser_lib.data.corpus_files import (
    GENDER_VALUES,
    UNKNOWN_GENDER,
    check_folder,
    list_audio_files,
    normalise_gender,
)
from ser_lib.data.folds import (
    ADAPTER_DATA,
    adapter_manifest_name,
    sorted_groups,
    write_group_folds,
)
from ser_lib.data.manifest import (
    MANIFEST_COLUMNS,
    clear_prep_options,
    prep_options_match,
    read_manifest,
    save_prep_options,
    write_manifest,
)
from ser_lib.data.speaker_folds import assign_folds

__all__ = [
    "SPLITS",
    "already_prepared",
    "fold_files",
    "log_counts",
    "manifest_rows",
    "prepare_corpus",
    "write_prepared_corpus",
    # Moved to ser_lib.data.corpus_files, importable from here:
    "GENDER_VALUES",
    "UNKNOWN_GENDER",
    "check_folder",
    "list_audio_files",
    "normalise_gender",
]

logger = get_logger(__name__)

SPLITS = ("train", "valid", "test")


def manifest_rows(utterances, data_folder, corpus, max_listed_missing=5):
    """Manifest rows of kept utterances, with the durations read from the wavs.

    Wavs with no samples are dropped with a warning naming them (an empty recording
    has nothing to classify); missing or unreadable wavs are errors.

    Arguments
    ---------
    utterances : sequence of mapping
        With ``ID``, ``wav`` (relative to ``data_folder``, ``/``-separated), ``emo``,
        ``spk_id``, ``gender``, ``session``, ``style`` and ``dialog``.
    data_folder : str
        The corpus folder (written as ``$data_root``).
    corpus : str
        Corpus name for the messages.
    max_listed_missing : int
        How many missing paths the error lists.

    Returns
    -------
    list of dict
        Rows with exactly the columns of ``MANIFEST_COLUMNS``.

    Raises
    ------
    FileNotFoundError
        If wavs are missing (the count and the first paths), listing the unusable
        ones too.
    ser_lib.audio.AudioError
        If wavs are unreadable, truncated or broken links (none missing).

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> root = tempfile.mkdtemp()
    >>> sf.write(os.path.join(root, "a.wav"), np.zeros(4000), 16000)
    >>> sf.write(os.path.join(root, "empty.wav"), np.zeros(0), 16000)
    >>> utts = [{"ID": i, "wav": f"{i}.wav", "emo": "neu", "spk_id": "s1",
    ...          "gender": "F", "session": 1, "style": "", "dialog": ""}
    ...         for i in ("a", "empty")]
    >>> rows = manifest_rows(utts, root, "demo")
    >>> [(r["ID"], r["duration"], r["wav"]) for r in rows]
    [('a', 0.25, '$data_root/a.wav')]
    """
    rows, missing, problems, empty = [], [], [], []
    for utt in utterances:
        path = os.path.join(data_folder, *utt["wav"].split("/"))
        if not os.path.lexists(path):
            missing.append(path)
            continue
        try:
            info = audio_info(path)
        except EmptyAudioError:
            empty.append(path)
            continue
        except AudioError as error:
            problems.append(str(error))
            continue
        row = {column: utt.get(column, "") for column in MANIFEST_COLUMNS}
        row["duration"] = info.duration
        row["wav"] = f"$data_root/{utt['wav']}"
        rows.append(row)
    if missing or problems:  # every bad wav at once
        raise bad_wavs_error(
            missing,
            problems,
            len(utterances),
            corpus,
            data_folder,
            max_listed=max_listed_missing,
        )
    if empty:
        logger.warning(
            "%s: %d wav(s) without samples dropped: %s", corpus, len(empty), empty
        )
    return rows


def log_counts(rows, corpus, keys=("emo", "session", "gender")):
    """Logs the number of rows, speakers, and rows per value of ``keys``.

    Arguments
    ---------
    rows : sequence of mapping
        Manifest rows.
    corpus : str
        Corpus name for the messages.
    keys : sequence of str
        Columns to count.

    Returns
    -------
    dict
        Column -> {value: count} (values as strings, natural order), plus
        ``"speakers"``: the number of distinct ``spk_id``.

    Example
    -------
    >>> log_counts([{"emo": "sad", "session": 2, "gender": "F", "spk_id": "a"},
    ...             {"emo": "neu", "session": 1, "gender": "F", "spk_id": "b"}], "demo")
    {'emo': {'neu': 1, 'sad': 1}, 'session': {'1': 1, '2': 1}, 'gender': {'F': 2}, 'speakers': 2}
    """
    counts = {}
    logger.info("%s: %d utterances kept", corpus, len(rows))
    for key in keys:
        found = Counter(str(row[key]) for row in rows)
        ordered = sorted_groups([{key: value} for value in found], key)
        counts[key] = {value: found[value] for value in ordered}
        logger.info(
            "%s per %s: %s",
            corpus,
            key,
            ", ".join(f"{value}={n}" for value, n in counts[key].items()),
        )
    counts["speakers"] = len({row["spk_id"] for row in rows})
    logger.info("%s: %d speakers", corpus, counts["speakers"])
    return counts


def fold_files(n_folds):
    """Paths, relative to the save folder, of ``all.csv`` and ``n_folds`` folds.

    Every fold has its three splits and its stage-1 sets (one per ``adapter_data``),
    so a folder prepared before the stage-1 sets existed is prepared again.

    Example
    -------
    >>> fold_files(1)[:4]
    ['all.csv', 'fold1/train.csv', 'fold1/valid.csv', 'fold1/test.csv']
    >>> fold_files(1)[4:]
    ['fold1/adapter_all_train.csv', 'fold1/adapter_labelled.csv', 'fold1/adapter_transductive.csv']
    """
    files = ["all.csv"]
    for fold in range(1, n_folds + 1):
        files += [f"fold{fold}/{split}.csv" for split in SPLITS]
        files += [f"fold{fold}/{adapter_manifest_name(name)}" for name in ADAPTER_DATA]
    return files


def already_prepared(save_folder, options, corpus, n_folds=None):
    """Tells whether a finished preparation with these options is in ``save_folder``.

    Arguments
    ---------
    save_folder : str
        The preparation's output folder.
    options : mapping
        Everything that determines the outputs (corpus folder, class map, folds...).
    corpus : str
        Corpus name for the log.
    n_folds : int, optional
        Number of fold folders to expect; default: one per distinct ``session`` of
        ``all.csv`` (leave-one-group-out preparations).

    Returns
    -------
    bool
        True (and the counts are logged) when the marker matches and every manifest
        is there.

    Example
    -------
    >>> import tempfile
    >>> already_prepared(tempfile.mkdtemp(), {"corpus": "demo"}, "demo")
    False
    """
    if not prep_options_match(save_folder, options, required_files=["all.csv"]):
        return False
    rows = read_manifest(os.path.join(save_folder, "all.csv"))
    if n_folds is None:
        n_folds = len(sorted_groups(rows, "session"))
    if not all(
        os.path.isfile(os.path.join(save_folder, f)) for f in fold_files(n_folds)
    ):
        return False
    logger.info(
        "%s already prepared in %s with %s: skipping", corpus, save_folder, options
    )
    log_counts(rows, corpus)
    return True


def write_prepared_corpus(
    corpus,
    utterances,
    data_folder,
    save_folder,
    options,
    class_map,
    unmapped="error",
    fold_mode="speaker_kfold",
    n_folds=5,
    valid_mode="none",
    group_key=None,
    stratify_key="gender",
):
    """Maps the classes, assigns the folds and writes the manifests and the marker.

    Arguments
    ---------
    corpus : str
        Corpus name for the messages.
    utterances : sequence of dict
        Collected utterances (see the module docstring); ``group_key`` too for
        ``fold_mode="leave_one_group_out"``.
    data_folder : str
        The corpus folder (``$data_root`` of the wav paths).
    save_folder : str
        Output folder: ``all.csv``, ``fold{k}/{train,valid,test}.csv`` and the marker.
    options : mapping
        The options recorded in the marker (see :func:`already_prepared`).
    class_map : mapping
        ``{raw label: class or None}`` (see :mod:`ser_lib.data.class_map`).
    unmapped : str
        ``"error"`` or ``"drop"``: what to do with a label missing from the map.
    fold_mode : str
        One of :data:`ser_lib.data.speaker_folds.FOLD_MODES`.
    n_folds : int
        Number of folds of ``"speaker_kfold"``.
    valid_mode : str
        ``"none"`` or ``"speaker"`` (see :func:`ser_lib.data.folds.write_group_folds`).
    group_key : str, optional
        Key of the groups of ``"leave_one_group_out"``.
    stratify_key : str or None
        Key balanced by ``"speaker_kfold"``.

    Returns
    -------
    list of dict
        The rows of ``all.csv``.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> root, save = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> utts = []
    >>> for spk, gender in (("a", "F"), ("b", "M"), ("c", "F")):
    ...     for label in ("angry", "calm"):
    ...         sf.write(os.path.join(root, f"{spk}_{label}.wav"), np.zeros(1600), 16000)
    ...         utts.append({"ID": f"{spk}_{label}", "label": label, "spk_id": spk,
    ...                      "gender": gender, "style": "", "dialog": "",
    ...                      "wav": f"{spk}_{label}.wav"})
    >>> rows = write_prepared_corpus("demo", utts, root, save, {"corpus": "demo"},
    ...     {"angry": "ang", "calm": None}, fold_mode="leave_one_speaker_out")
    >>> [(r["ID"], r["emo"], r["session"]) for r in rows]
    [('a_angry', 'ang', 1), ('b_angry', 'ang', 2), ('c_angry', 'ang', 3)]
    >>> sorted(os.listdir(save))
    ['all.csv', 'fold1', 'fold2', 'fold3', 'prep_options.json']
    >>> already_prepared(save, {"corpus": "demo"}, "demo")
    True
    """
    clear_prep_options(save_folder)
    kept, _ = apply_class_map(utterances, class_map, unmapped=unmapped, corpus=corpus)
    if not kept:
        raise ValueError(
            f"{corpus}: no utterance of the classes {class_names(class_map)} under "
            f"{data_folder}"
        )
    others = unlabelled_utterances(utterances, kept)
    kept = assign_folds(
        kept,
        fold_mode,
        n_folds=n_folds,
        group_key=group_key,
        stratify_key=stratify_key,
    )
    rows = manifest_rows(kept, data_folder, corpus)
    # Utterances of other labels join stage 1's sets in their speaker's fold (folds
    # are speaker-independent); a speaker without a labelled utterance has no fold.
    speaker_fold = {row["spk_id"]: row["session"] for row in kept}
    others = [
        {**utt, "session": speaker_fold[utt["spk_id"]]}
        for utt in others
        if utt["spk_id"] in speaker_fold
    ]
    other_rows = manifest_rows(others, data_folder, corpus) if others else []
    log_counts(rows, corpus)
    write_manifest(rows, os.path.join(save_folder, "all.csv"), MANIFEST_COLUMNS)
    write_group_folds(
        rows,
        save_folder,
        group_key="session",
        valid_mode=valid_mode,
        speaker_key="spk_id",
        other_rows=other_rows,
    )
    save_prep_options(save_folder, options)
    logger.info("%s manifests written to %s", corpus, save_folder)
    return rows


def prepare_corpus(
    corpus,
    collect,
    data_folder,
    save_folder,
    class_map,
    settings=None,
    unmapped="error",
    fold_mode="speaker_kfold",
    n_folds=5,
    valid_mode="none",
    group_key=None,
    skip_prep=False,
):
    """A whole preparation with speaker-independent folds: skip, collect, write.

    The body of every ``prepare_<corpus>`` function whose folds come from
    :func:`ser_lib.data.speaker_folds.assign_folds`. The options recorded in the
    marker are the resolved ``data_folder``, the class map, the fold settings,
    ``unmapped`` and ``settings``; a run with the same options skips.

    Arguments
    ---------
    corpus : str
        Corpus name for the messages and the marker.
    collect : callable
        Called without arguments (only when the preparation is not skipped); returns
        the utterance dicts of the corpus (see the module docstring).
    data_folder : str
        The corpus folder (``$data_root``).
    save_folder : str
        Output folder.
    class_map : mapping
        ``{raw label: class or None}``.
    settings : mapping, optional
        Corpus-specific options that change the outputs (recorded in the marker),
        e.g. ``{"vocal_channel": "speech", "prep_version": 1}``.
    unmapped : str
        ``"error"`` or ``"drop"``.
    fold_mode : str
        One of :data:`ser_lib.data.speaker_folds.FOLD_MODES`.
    n_folds : int
        Number of folds of ``"speaker_kfold"``.
    valid_mode : str
        ``"none"`` or ``"speaker"``.
    group_key : str, optional
        Utterance key holding the groups of ``"leave_one_group_out"``.
    skip_prep : bool
        If True, do nothing.

    Returns
    -------
    bool
        True if manifests were written, False if skipped.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np, soundfile as sf
    >>> root, save = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> def collect():
    ...     utts = []
    ...     for spk in ("a", "b"):
    ...         sf.write(os.path.join(root, f"{spk}.wav"), np.zeros(1600), 16000)
    ...         utts.append({"ID": spk, "label": "angry", "spk_id": spk, "gender": "U",
    ...                      "style": "", "dialog": "", "wav": f"{spk}.wav"})
    ...     return utts
    >>> prepare_corpus("demo", collect, root, save, {"angry": "ang"}, n_folds=2)
    True
    >>> prepare_corpus("demo", collect, root, save, {"angry": "ang"}, n_folds=2)
    False
    """
    if skip_prep:
        logger.info("%s preparation skipped (skip_prep=True)", corpus)
        return False
    options = {
        "corpus": corpus,
        "data_folder": os.path.realpath(data_folder),
        "class_map": dict(class_map),
        "fold_mode": fold_mode,
        "n_folds": n_folds,
        "group_key": group_key,
        "valid_mode": valid_mode,
        "unmapped": unmapped,
        **(settings or {}),
    }
    if already_prepared(save_folder, options, corpus):
        return False
    logger.info("Preparing %s from %s into %s", corpus, data_folder, save_folder)
    write_prepared_corpus(
        corpus,
        collect(),
        data_folder,
        save_folder,
        options,
        class_map,
        unmapped=unmapped,
        fold_mode=fold_mode,
        n_folds=n_folds,
        valid_mode=valid_mode,
        group_key=group_key,
    )
    return True
