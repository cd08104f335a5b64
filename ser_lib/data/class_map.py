"""Class mappings: a corpus's emotion labels -> the classes a recipe trains on.

A *class map* is a dict ``{raw label: class}`` chosen in the recipe's YAML. A raw label
mapped to ``None`` (``null`` in YAML) is dropped on purpose (e.g. ``calm`` in the
4-class set of RAVDESS) and counted in the log. A raw label that is not a key of the
map at all is *unmapped*; the ``unmapped`` policy decides:

* ``"error"``: a ``ValueError`` naming the utterance and the label (the map is meant
  to be complete: a missing key is a mistake);
* ``"drop"``: the utterance is dropped and counted in the log, like a ``None`` value.

The classes of a map are its distinct non-``None`` values, in first-appearance order;
that order is the order of the classifier outputs (see
:func:`ser_lib.dataio.build_label_encoder`). Several raw labels may map to one class
(IEMOCAP's ``hap`` and ``exc``).

A recipe's YAML holds several named maps and picks one with ``class_set``::

    class_set: 4class
    class_maps:
        4class: {neutral: neu, happy: hap, angry: ang, sad: sad, calm: null}
        full: {neutral: neu, happy: hap, angry: ang, sad: sad, calm: cal}
    class_map: !apply:ser_lib.data.class_map.select_class_map [!ref <class_maps>, !ref <class_set>]
    classes: !apply:ser_lib.data.class_map.class_names [!ref <class_map>]

Authors
 * ser_lib contributors 2025
"""

from collections import Counter
from collections.abc import Mapping

import yaml
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

UNMAPPED_POLICIES = ("error", "drop")
"""Accepted values of ``unmapped``."""


def check_class_map(class_map):
    """Checks that a class map is a mapping of labels to class names or ``None``.

    Arguments
    ---------
    class_map : mapping
        ``{raw label: class or None}``.

    Returns
    -------
    dict
        The map as a plain dict with string keys.

    Raises
    ------
    ValueError
        If it is not a mapping, if a class is not a non-empty string (or None), or if
        no label maps to a class.

    Example
    -------
    >>> check_class_map({"neutral": "neu", "calm": None})
    {'neutral': 'neu', 'calm': None}
    >>> check_class_map({"neutral": 3})
    Traceback (most recent call last):
    ...
    ValueError: Class map: label 'neutral' maps to 3; classes must be non-empty strings (or null to drop the label)
    """
    if not isinstance(class_map, Mapping):
        raise ValueError(
            f"A class map must be a mapping {{raw label: class}}, got {class_map!r}"
        )
    checked = {}
    for label, target in class_map.items():
        if target is not None and (not isinstance(target, str) or not target):
            raise ValueError(
                f"Class map: label {label!r} maps to {target!r}; classes must be "
                "non-empty strings (or null to drop the label)"
            )
        checked[str(label)] = target
    if not any(target is not None for target in checked.values()):
        raise ValueError(f"Class map {checked} maps no label to a class")
    return checked


def select_class_map(class_maps, class_set):
    """Picks the class map named ``class_set`` (the YAML's ``class_set`` setting).

    Arguments
    ---------
    class_maps : mapping
        ``{set name: class map}``.
    class_set : str
        The name of the set to use.

    Returns
    -------
    dict
        The chosen class map (checked by :func:`check_class_map`).

    Raises
    ------
    ValueError
        If ``class_set`` is not a key of ``class_maps`` (the message lists them).

    Example
    -------
    >>> maps = {"4class": {"neutral": "neu", "calm": None},
    ...         "full": {"neutral": "neu", "calm": "cal"}}
    >>> select_class_map(maps, "full")
    {'neutral': 'neu', 'calm': 'cal'}
    >>> select_class_map(maps, "7class")
    Traceback (most recent call last):
    ...
    ValueError: class_set '7class' is not one of the class maps ['4class', 'full']
    """
    if class_set not in class_maps:
        raise ValueError(
            f"class_set {class_set!r} is not one of the class maps {sorted(class_maps)}"
        )
    return check_class_map(class_maps[class_set])


def class_names(class_map):
    """The classes of a class map: distinct non-None values, first appearance first.

    Arguments
    ---------
    class_map : mapping
        ``{raw label: class or None}``.

    Returns
    -------
    list of str
        The class set, in classifier-output order.

    Example
    -------
    >>> class_names({"neu": "neu", "hap": "hap", "exc": "hap", "fru": None, "sad": "sad"})
    ['neu', 'hap', 'sad']
    """
    class_map = check_class_map(class_map)
    return list(dict.fromkeys(c for c in class_map.values() if c is not None))


def apply_class_map(
    utterances,
    class_map,
    unmapped="error",
    label_key="label",
    source_key="source",
    corpus="corpus",
):
    """Sets each utterance's class (``emo``) from its raw label; drops the others.

    Arguments
    ---------
    utterances : sequence of mapping
        One mapping per utterance with at least ``ID`` and ``label_key``; the value of
        ``source_key`` (e.g. the file or CSV line), if present, is named in errors.
    class_map : mapping
        ``{raw label: class or None}`` (``None`` drops the label on purpose).
    unmapped : str
        ``"error"`` or ``"drop"``: what to do with a raw label that is not a key of
        the map (see the module docstring).
    label_key : str
        Key of the raw label.
    source_key : str
        Key naming where the utterance comes from.
    corpus : str
        Corpus name for the log.

    Returns
    -------
    kept : list of dict
        Copies of the kept utterances with ``emo`` set, in input order.
    dropped : collections.Counter
        Raw label -> number of dropped utterances.

    Raises
    ------
    ValueError
        With ``unmapped="error"``, on the first label missing from the map (the
        message names the utterance, its source and the known labels).

    Example
    -------
    >>> utts = [{"ID": "a", "label": "neutral"}, {"ID": "b", "label": "calm"},
    ...         {"ID": "c", "label": "happy"}]
    >>> kept, dropped = apply_class_map(utts, {"neutral": "neu", "calm": None},
    ...                                 unmapped="drop")
    >>> [(u["ID"], u["emo"]) for u in kept], dict(dropped)
    ([('a', 'neu')], {'calm': 1, 'happy': 1})
    >>> apply_class_map(utts, {"neutral": "neu", "calm": None})
    Traceback (most recent call last):
    ...
    ValueError: corpus: utterance c has label 'happy', which is not in the class map (labels: ['calm', 'neutral']); map it to a class, to null to drop it, or set unmapped: drop
    """
    if unmapped not in UNMAPPED_POLICIES:
        raise ValueError(
            f"unmapped must be one of {UNMAPPED_POLICIES}, got {unmapped!r}"
        )
    class_map = check_class_map(class_map)
    kept, dropped, unknown = [], Counter(), Counter()
    for utt in utterances:
        label = str(utt[label_key])
        if label not in class_map:
            if unmapped == "error":
                where = utt.get(source_key) or corpus
                raise ValueError(
                    f"{where}: utterance {utt['ID']} has label {label!r}, which is "
                    f"not in the class map (labels: {sorted(class_map)}); map it to "
                    "a class, to null to drop it, or set unmapped: drop"
                )
            unknown[label] += 1
            dropped[label] += 1
            continue
        target = class_map[label]
        if target is None:
            dropped[label] += 1
            continue
        kept.append({**utt, "emo": target})
    if dropped:
        logger.info(
            "%s: %d utterances dropped by the class map (%s)",
            corpus,
            sum(dropped.values()),
            ", ".join(f"{label}={n}" for label, n in sorted(dropped.items())),
        )
    if unknown:
        logger.warning(
            "%s: labels outside the class map dropped (unmapped: drop): %s",
            corpus,
            ", ".join(f"{label!r}={n}" for label, n in sorted(unknown.items())),
        )
    return kept, dropped


class _TagIgnoringLoader(yaml.SafeLoader):
    """A safe YAML loader that reads HyperPyYAML tags (``!ref``, ``!new:``...) as None."""


_TagIgnoringLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def unlabelled_utterances(utterances, kept, label_key="label"):
    """The utterances that :func:`apply_class_map` dropped, their raw label as ``emo``.

    Stage 1 uses no labels, so it trains on these too (``adapter_data: all_train``).

    Arguments
    ---------
    utterances : sequence of mapping
        The collected utterances (with ``ID`` and ``label_key``).
    kept : sequence of mapping
        What :func:`apply_class_map` kept.
    label_key : str
        The raw label's key.

    Returns
    -------
    list of dict
        Copies of the dropped utterances with ``emo`` = the raw label.

    Example
    -------
    >>> utts = [{"ID": "a", "label": "neutral"}, {"ID": "b", "label": "calm"}]
    >>> kept, _ = apply_class_map(utts, {"neutral": "neu", "calm": None})
    >>> unlabelled_utterances(utts, kept)
    [{'ID': 'b', 'label': 'calm', 'emo': 'calm'}]
    """
    kept_ids = {utt["ID"] for utt in kept}
    return [
        {**utt, "emo": str(utt[label_key])}
        for utt in utterances
        if utt["ID"] not in kept_ids
    ]


def read_class_maps(hparams_file, key="class_maps"):
    """Reads the named class maps of a recipe's YAML without building its objects.

    Used by the prepare scripts' command lines, so that the YAML stays the only place
    where a recipe's class maps are written.

    Arguments
    ---------
    hparams_file : str
        A recipe's HyperPyYAML file (tags such as ``!ref`` are ignored).
    key : str
        The key holding ``{set name: class map}``.

    Returns
    -------
    dict

    Raises
    ------
    KeyError
        If the file has no such key (names the file).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "hparams.yaml")
    >>> with open(path, "w") as f:
    ...     _ = f.write("class_maps:\\n  4class: {neutral: neu, calm: null}\\n"
    ...                 "classes: !apply:ser_lib.data.class_map.class_names [x]\\n")
    >>> read_class_maps(path)
    {'4class': {'neutral': 'neu', 'calm': None}}
    """
    with open(hparams_file, encoding="utf-8") as handle:
        loaded = yaml.load(handle, Loader=_TagIgnoringLoader) or {}
    if key not in loaded:
        raise KeyError(f"{hparams_file} has no {key!r} key")
    return loaded[key]
