"""Leave-one-group-out folds (e.g. leave-one-session-out) written as manifests.

For each value ``g`` of a grouping column (sorted; numbers in numeric order), fold
``i`` (1-based) tests on the rows of group ``g`` and trains on all the others. Model
selection must not peek at the test group, so the validation set is either empty
(``valid_mode="none"``: the recipe keeps the last epoch) or one held-out speaker of
a training group (``valid_mode="speaker"``).

Authors
 * ser_lib contributors 2025
"""

import os

from speechbrain.utils.logger import get_logger

from ser_lib.data.manifest import MANIFEST_COLUMNS, write_manifest

logger = get_logger(__name__)

VALID_MODES = ("none", "speaker")
"""Accepted values of ``valid_mode``."""


ADAPTER_DATA = ("all_train", "labelled", "transductive")
"""Values of the ``adapter_data`` setting: which utterances stage 1 trains on
(``all_train``: every utterance of the fold's training groups whatever its label;
``labelled``: the stage-2 training utterances only; ``transductive``: also the test
group's audio, without labels)."""


def adapter_manifest_name(adapter_data):
    """File name, in a fold folder, of the stage-1 set of ``adapter_data``.

    Example
    -------
    >>> adapter_manifest_name("all_train")
    'adapter_all_train.csv'
    >>> adapter_manifest_name("everything")
    Traceback (most recent call last):
    ...
    ValueError: adapter_data must be one of ('all_train', 'labelled', 'transductive'), got 'everything'
    """
    if adapter_data not in ADAPTER_DATA:
        raise ValueError(
            f"adapter_data must be one of {ADAPTER_DATA}, got {adapter_data!r}"
        )
    return f"adapter_{adapter_data}.csv"


def write_adapter_sets(
    folder, train, test, other_train=(), other_test=(), columns=MANIFEST_COLUMNS
):
    """Writes a fold's stage-1 sets, one manifest per :data:`ADAPTER_DATA` value.

    ``adapter_labelled.csv`` = ``train``; ``adapter_all_train.csv`` = ``train`` +
    ``other_train`` (utterances of the training speakers/groups outside the labelled
    set); ``adapter_transductive.csv`` = that + ``test`` + ``other_test``.

    Arguments
    ---------
    folder : str
        The fold folder.
    train, test : sequence of mapping
        The fold's labelled training and test rows.
    other_train, other_test : sequence of mapping
        Rows outside the labelled set, of the training and of the test side.
    columns : sequence of str
        Manifest columns.

    Returns
    -------
    dict
        ``adapter_data`` value -> number of rows.

    Example
    -------
    >>> import tempfile
    >>> rows = [{"ID": name} for name in "abcd"]
    >>> write_adapter_sets(tempfile.mkdtemp(), rows[:2], rows[2:3], rows[3:], [], ["ID"])
    {'all_train': 3, 'labelled': 2, 'transductive': 4}
    """
    sets = {
        "all_train": [*train, *other_train],
        "labelled": list(train),
        "transductive": [*train, *other_train, *test, *other_test],
    }
    for name in ADAPTER_DATA:
        write_manifest(
            sets[name], os.path.join(folder, adapter_manifest_name(name)), columns
        )
    return {name: len(rows) for name, rows in sets.items()}


def _natural_key(value):
    """Sort key putting integers (or integer strings) first, in numeric order."""
    text = str(value)
    try:
        return (0, int(text), text)
    except ValueError:
        return (1, 0, text)


def sorted_groups(rows, group_key="session"):
    """Returns the distinct values of ``group_key`` in fold order.

    Arguments
    ---------
    rows : sequence of mapping
        Utterance rows.
    group_key : str
        Column that defines the groups.

    Returns
    -------
    list
        Distinct group values; integer-like values sort numerically ("2" < "10").

    Example
    -------
    >>> sorted_groups([{"session": "10"}, {"session": "2"}, {"session": "2"}])
    ['2', '10']
    """
    return sorted({row[group_key] for row in rows}, key=_natural_key)


def choose_valid_speaker(
    rows, groups, fold_index, group_key="session", speaker_key="spk_id"
):
    """Deterministic held-out validation speaker for one fold.

    Fold ``i`` (0-based) tests on ``groups[i]``; its validation group is the next
    group in cyclic order, ``groups[(i + 1) % n]``, and its validation speaker is
    speaker number ``i % m`` among the ``m`` sorted speakers of that group. The choice
    thus rotates with the fold over groups and speakers: with IEMOCAP's sessions
    (speakers ``Ses0kF``, ``Ses0kM``) fold 1 validates on Ses02F, fold 2 on Ses03M,
    fold 3 on Ses04F, fold 4 on Ses05M and fold 5 on Ses01F.

    Arguments
    ---------
    rows : sequence of mapping
        All utterance rows.
    groups : sequence
        The groups in fold order (see :func:`sorted_groups`).
    fold_index : int
        0-based fold index.
    group_key : str
        Column that defines the groups.
    speaker_key : str
        Column holding the speaker.

    Returns
    -------
    speaker
        The held-out speaker (a value of ``speaker_key``).

    Example
    -------
    >>> rows = [{"session": s, "spk_id": f"S{s}{g}"} for s in (1, 2, 3) for g in "FM"]
    >>> [choose_valid_speaker(rows, [1, 2, 3], i) for i in range(3)]
    ['S2F', 'S3M', 'S1F']
    """
    if len(groups) < 2:
        raise ValueError(
            f"valid_mode='speaker' needs at least 2 groups of {group_key!r}, got {groups}"
        )
    valid_group = groups[(fold_index + 1) % len(groups)]
    speakers = sorted(
        {row[speaker_key] for row in rows if row[group_key] == valid_group},
        key=_natural_key,
    )
    return speakers[fold_index % len(speakers)]


def write_group_folds(
    rows,
    save_folder,
    group_key="session",
    valid_mode="none",
    speaker_key="spk_id",
    columns=MANIFEST_COLUMNS,
    fold_prefix="fold",
    other_rows=(),
):
    """Writes ``fold{i}/{train,valid,test}.csv`` for leave-one-group-out evaluation.

    Also writes the stage-1 (adapter) sets of every fold, one per ``adapter_data``
    setting (:data:`ADAPTER_DATA`): ``adapter_labelled.csv`` (= ``train.csv``),
    ``adapter_all_train.csv`` (every utterance of the training groups whatever its
    label: ``train`` + the ``other_rows`` of those groups; a held-out validation
    speaker stays out) and
    ``adapter_transductive.csv`` (that plus every utterance of the test group,
    whose labels stage 1 never reads).

    For the ``i``-th group ``g`` (1-based, groups sorted by :func:`sorted_groups`),
    ``fold{i}/test.csv`` holds exactly the rows of group ``g`` and ``train.csv`` the
    rows of every other group, minus the validation rows. ``valid.csv`` depends on
    ``valid_mode``:

    * ``"none"``: header only (model selection = last epoch; the test group is never
      looked at during training);
    * ``"speaker"``: every row of one speaker of one training group, chosen by
      :func:`choose_valid_speaker` (deterministic, rotating with the fold); those
      rows are removed from ``train.csv``.

    Arguments
    ---------
    rows : sequence of mapping
        Utterance rows (each with the keys in ``columns``).
    save_folder : str or os.PathLike
        Folder receiving the ``fold{i}`` sub-folders.
    group_key : str
        Column defining the held-out groups (IEMOCAP: ``"session"``).
    valid_mode : str
        ``"none"`` or ``"speaker"``.
    speaker_key : str
        Column holding the speaker (used by ``valid_mode="speaker"``).
    columns : sequence of str
        Manifest columns (see :func:`ser_lib.data.manifest.write_manifest`).
    fold_prefix : str
        Prefix of the fold folder names.
    other_rows : sequence of mapping
        Utterances outside the labelled set (other labels, other styles), with the
        same columns; they only enter the stage-1 sets.

    Returns
    -------
    list of str
        The fold folders, in fold order.

    Example
    -------
    >>> import os, tempfile
    >>> from ser_lib.data.manifest import read_manifest
    >>> rows = [
    ...     {"ID": f"{s}{g}{k}", "session": s, "spk_id": f"S{s}{g}"}
    ...     for s in (1, 2, 3) for g in "FM" for k in range(2)
    ... ]
    >>> folder = tempfile.mkdtemp()
    >>> cols = ["ID", "session", "spk_id"]
    >>> folds = write_group_folds(rows, folder, valid_mode="speaker", columns=cols)
    >>> [os.path.basename(f) for f in folds]
    ['fold1', 'fold2', 'fold3']
    >>> def ids(name):
    ...     return [r["ID"] for r in read_manifest(os.path.join(folds[0], name), cols)]
    >>> ids("test.csv"), ids("valid.csv"), ids("train.csv")
    (['1F0', '1F1', '1M0', '1M1'], ['2F0', '2F1'], ['2M0', '2M1', '3F0', '3F1', '3M0', '3M1'])
    >>> other = [{"ID": f"x{s}", "session": s, "spk_id": f"S{s}F"} for s in (1, 2)]
    >>> folds = write_group_folds(rows, folder, columns=cols, other_rows=other)
    >>> [len(ids(f"adapter_{name}.csv")) for name in ADAPTER_DATA]
    [9, 8, 14]
    >>> "x1" in ids("adapter_all_train.csv"), "x1" in ids("adapter_transductive.csv")
    (False, True)
    """
    if valid_mode not in VALID_MODES:
        raise ValueError(f"valid_mode must be one of {VALID_MODES}, got {valid_mode!r}")
    rows = list(rows)
    if not rows:
        raise ValueError("write_group_folds: no rows to split into folds")
    groups = sorted_groups(rows, group_key)
    if len(groups) < 2:
        raise ValueError(
            f"Leave-one-group-out needs at least 2 values of {group_key!r}, got {groups}"
        )

    fold_folders = []
    for index, test_group in enumerate(groups):
        test = [row for row in rows if row[group_key] == test_group]
        train = [row for row in rows if row[group_key] != test_group]
        valid = []
        if valid_mode == "speaker":
            speaker = choose_valid_speaker(rows, groups, index, group_key, speaker_key)
            valid = [row for row in train if row[speaker_key] == speaker]
            train = [row for row in train if row[speaker_key] != speaker]
            if not train:
                raise ValueError(
                    f"Fold {index + 1}: holding out speaker {speaker!r} leaves no "
                    "training rows"
                )
        # The test group must never leak into model training or selection.
        assert all(row[group_key] != test_group for row in train + valid), (
            f"fold {index + 1}: a row of test group {test_group!r} is in train/valid"
        )
        assert len(train) + len(valid) + len(test) == len(rows)

        folder = os.path.join(save_folder, f"{fold_prefix}{index + 1}")
        write_manifest(train, os.path.join(folder, "train.csv"), columns)
        write_manifest(valid, os.path.join(folder, "valid.csv"), columns)
        write_manifest(test, os.path.join(folder, "test.csv"), columns)
        # The held-out validation speaker stays held out in stage 1 too.
        valid_speakers = {row[speaker_key] for row in valid}
        write_adapter_sets(
            folder,
            train,
            test,
            other_train=[
                row
                for row in other_rows
                if row[group_key] != test_group
                and row[speaker_key] not in valid_speakers
            ],
            other_test=[row for row in other_rows if row[group_key] == test_group],
            columns=columns,
        )
        logger.info(
            "%s: test %s=%s (%d rows), train %d rows, valid %d rows",
            folder,
            group_key,
            test_group,
            len(test),
            len(train),
            len(valid),
        )
        fold_folders.append(folder)
    return fold_folders
