"""Speaker-independent folds for corpora without IEMOCAP's sessions.

Every fold of a speech emotion recognition protocol must be speaker-independent: no
speaker has utterances in both the training and the test part of a fold. This module
assigns each utterance a *fold group* (1..k); writing the group into the manifests'
``session`` column lets :func:`ser_lib.data.folds.write_group_folds` write the folds
exactly as for IEMOCAP (fold ``i`` tests on group ``i`` and trains on the others).

Three modes (``fold_mode`` in the recipes' YAML):

* ``"speaker_kfold"``: speakers are dealt into ``n_folds`` groups by
  :func:`balanced_speaker_folds` (deterministic, balanced in utterances and, within
  each gender, in speakers);
* ``"leave_one_speaker_out"``: one group per speaker (EmoDB's usual protocol);
* ``"leave_one_group_out"``: one group per value of a column given by the corpus
  (e.g. the recording session of a generic CSV); every speaker must belong to a
  single group, which is checked.

Authors
 * ser_lib contributors 2025
"""

from collections import Counter, defaultdict

from speechbrain.utils.logger import get_logger

from ser_lib.data.folds import sorted_groups

logger = get_logger(__name__)

FOLD_MODES = ("speaker_kfold", "leave_one_speaker_out", "leave_one_group_out")
"""Accepted values of ``fold_mode``."""


def speaker_strata(rows, speaker_key="spk_id", stratify_key="gender"):
    """The stratum (e.g. gender) of every speaker, checked to be unique per speaker.

    Arguments
    ---------
    rows : sequence of mapping
        Utterance rows.
    speaker_key : str
        Column holding the speaker.
    stratify_key : str or None
        Column holding the stratum; None puts every speaker in one stratum ``""``.

    Returns
    -------
    dict
        Speaker -> stratum value.

    Raises
    ------
    ValueError
        If a speaker's rows disagree on the stratum (names the speaker and values).

    Example
    -------
    >>> rows = [{"spk_id": "a", "gender": "F"}, {"spk_id": "b", "gender": "M"}]
    >>> speaker_strata(rows)
    {'a': 'F', 'b': 'M'}
    >>> speaker_strata(rows + [{"spk_id": "a", "gender": "M"}])
    Traceback (most recent call last):
    ...
    ValueError: Speaker 'a' has several values of 'gender': ['F', 'M']
    """
    values = defaultdict(set)
    for row in rows:
        values[row[speaker_key]].add("" if stratify_key is None else row[stratify_key])
    strata = {}
    for speaker, found in values.items():
        if len(found) > 1:
            raise ValueError(
                f"Speaker {speaker!r} has several values of {stratify_key!r}: "
                f"{sorted(found)}"
            )
        strata[speaker] = found.pop()
    return strata


def balanced_speaker_folds(rows, n_folds, speaker_key="spk_id", stratify_key="gender"):
    """Deals the speakers into ``n_folds`` balanced groups, deterministically.

    Speakers are taken stratum by stratum (strata sorted; e.g. F then M), within a
    stratum by decreasing number of utterances (ties: speaker name, numbers in numeric
    order). Each goes to the group with the fewest utterances of its stratum so far,
    ties broken by the fewest utterances overall, then the lowest group number. With
    equal-sized speakers this gives every group the same number of speakers of each
    gender, up to one; with unequal ones it balances the utterance counts greedily.
    The groups are then numbered in the order of their first speaker (group 1 holds
    the first speaker in natural order).

    Arguments
    ---------
    rows : sequence of mapping
        Utterance rows.
    n_folds : int
        Number of groups, between 2 and the number of speakers.
    speaker_key : str
        Column holding the speaker.
    stratify_key : str or None
        Column balanced within the groups (None: utterance counts only).

    Returns
    -------
    dict
        Speaker -> group number (1..n_folds).

    Raises
    ------
    ValueError
        If ``n_folds`` is below 2 or above the number of speakers.

    Example
    -------
    >>> rows = [{"spk_id": f"s{i}", "gender": "FM"[i % 2]}
    ...         for i in range(6) for _ in range(3)]
    >>> groups = balanced_speaker_folds(rows, 3)
    >>> groups
    {'s0': 1, 's1': 1, 's2': 2, 's3': 2, 's4': 3, 's5': 3}
    >>> sorted(Counter(groups.values()).values())  # two speakers, one F one M, each
    [2, 2, 2]
    """
    speakers = sorted_groups(rows, speaker_key)
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if n_folds > len(speakers):
        raise ValueError(
            f"n_folds={n_folds} speaker folds need at least {n_folds} speakers, "
            f"but the data has {len(speakers)}: {speakers}"
        )
    counts = Counter(row[speaker_key] for row in rows)
    strata = speaker_strata(rows, speaker_key, stratify_key)
    totals = [0] * n_folds
    assignment = {}
    for stratum in sorted(set(strata.values())):
        in_stratum = [0] * n_folds
        members = [s for s in speakers if strata[s] == stratum]  # natural order
        members.sort(key=lambda s: -counts[s])  # stable: ties keep the natural order
        for speaker in members:
            group = min(range(n_folds), key=lambda i: (in_stratum[i], totals[i], i))
            assignment[speaker] = group + 1
            in_stratum[group] += counts[speaker]
            totals[group] += counts[speaker]
    # Number the groups in the order of their first speaker: fold 1 holds speakers[0].
    order = {}
    for speaker in speakers:
        order.setdefault(assignment[speaker], len(order) + 1)
    return {speaker: order[assignment[speaker]] for speaker in speakers}


def leave_one_out_folds(rows, key):
    """One group per distinct value of ``key`` (sorted; numbers in numeric order).

    Arguments
    ---------
    rows : sequence of mapping
        Utterance rows.
    key : str
        Column whose values become the groups (e.g. ``"spk_id"``).

    Returns
    -------
    dict
        Value -> group number (1-based).

    Example
    -------
    >>> leave_one_out_folds([{"spk_id": "10"}, {"spk_id": "03"}, {"spk_id": "8"}],
    ...                     "spk_id")
    {'03': 1, '8': 2, '10': 3}
    """
    values = sorted_groups(rows, key)
    if len(values) < 2:
        raise ValueError(
            f"Leave-one-out folds need at least 2 values of {key!r}, got {values}"
        )
    return {value: index + 1 for index, value in enumerate(values)}


def check_speaker_independent(rows, group_key="session", speaker_key="spk_id"):
    """Raises if a speaker has utterances in two groups (folds would share them).

    Arguments
    ---------
    rows : sequence of mapping
        Utterance rows.
    group_key : str
        Column holding the group.
    speaker_key : str
        Column holding the speaker.

    Raises
    ------
    ValueError
        Naming the first such speaker (natural order) and its groups.

    Example
    -------
    >>> rows = [{"spk_id": "a", "session": 1}, {"spk_id": "b", "session": 2}]
    >>> check_speaker_independent(rows)
    >>> check_speaker_independent(rows + [{"spk_id": "a", "session": 2}])
    Traceback (most recent call last):
    ...
    ValueError: Speaker 'a' has utterances in several values of 'session' ([1, 2]): folds on 'session' would not be speaker-independent
    """
    groups = defaultdict(set)
    for row in rows:
        groups[row[speaker_key]].add(row[group_key])
    for speaker in sorted_groups(rows, speaker_key):
        if len(groups[speaker]) > 1:
            raise ValueError(
                f"Speaker {speaker!r} has utterances in several values of "
                f"{group_key!r} ({sorted(groups[speaker], key=str)}): folds on "
                f"{group_key!r} would not be speaker-independent"
            )


def assign_folds(
    rows,
    fold_mode,
    n_folds=5,
    speaker_key="spk_id",
    group_key=None,
    stratify_key="gender",
    fold_key="session",
):
    """Sets every row's fold group (``fold_key``) by one of :data:`FOLD_MODES`.

    Arguments
    ---------
    rows : sequence of mapping
        Utterance rows.
    fold_mode : str
        ``"speaker_kfold"``, ``"leave_one_speaker_out"`` or ``"leave_one_group_out"``.
    n_folds : int
        Number of folds of ``"speaker_kfold"`` (ignored otherwise).
    speaker_key : str
        Column holding the speaker.
    group_key : str, optional
        Column holding the groups of ``"leave_one_group_out"``.
    stratify_key : str or None
        Column balanced by ``"speaker_kfold"`` (see :func:`balanced_speaker_folds`).
    fold_key : str
        Key receiving the group number (int, 1-based).

    Returns
    -------
    list of dict
        Copies of the rows with ``fold_key`` set; the groups are speaker-independent.

    Example
    -------
    >>> rows = [{"ID": str(i), "spk_id": f"s{i % 4}", "gender": "FM"[i % 2],
    ...          "room": "AB"[i % 4 // 2]} for i in range(8)]
    >>> [r["session"] for r in assign_folds(rows, "speaker_kfold", n_folds=2)]
    [1, 1, 2, 2, 1, 1, 2, 2]
    >>> [r["session"] for r in assign_folds(rows, "leave_one_speaker_out")]
    [1, 2, 3, 4, 1, 2, 3, 4]
    >>> [r["session"] for r in assign_folds(rows, "leave_one_group_out", group_key="room")]
    [1, 1, 2, 2, 1, 1, 2, 2]
    """
    rows = [dict(row) for row in rows]
    if not rows:
        raise ValueError("assign_folds: no rows to split into folds")
    if fold_mode == "speaker_kfold":
        groups = balanced_speaker_folds(rows, n_folds, speaker_key, stratify_key)
        key = speaker_key
    elif fold_mode == "leave_one_speaker_out":
        groups = leave_one_out_folds(rows, speaker_key)
        key = speaker_key
    elif fold_mode == "leave_one_group_out":
        if group_key is None:
            raise ValueError("fold_mode 'leave_one_group_out' needs a group column")
        check_speaker_independent(rows, group_key, speaker_key)
        groups = leave_one_out_folds(rows, group_key)
        key = group_key
    else:
        raise ValueError(f"fold_mode must be one of {FOLD_MODES}, got {fold_mode!r}")
    for row in rows:
        row[fold_key] = groups[row[key]]
    check_speaker_independent(rows, fold_key, speaker_key)
    sizes = Counter(row[fold_key] for row in rows)
    logger.info(
        "%s: %d folds, utterances per fold: %s",
        fold_mode,
        len(sizes),
        ", ".join(f"{fold}={sizes[fold]}" for fold in sorted(sizes)),
    )
    return rows
