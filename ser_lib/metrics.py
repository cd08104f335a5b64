"""Speech emotion recognition scores: UA, WA, macro F1 and the confusion matrix.

Numpy only. UA (macro recall) averages over the classes present in ``y_true``
(a class that is only predicted has no recall; scikit-learn's default
``recall_score(average="macro")`` would count it as 0, which equals ours with
``labels=np.unique(y_true)``). Macro F1 follows scikit-learn's default label set,
the classes present in ``y_true`` or ``y_pred``, with F1 = 0 for a class that
is never correctly predicted.

Authors
 * ser_lib contributors
"""

import numpy as np


def _as_label_arrays(y_true, y_pred, caller):
    """Converts to 1-D numpy arrays and checks they are non-empty and aligned."""
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{caller}: y_true has {y_true.size} labels, y_pred has {y_pred.size}"
        )
    if y_true.size == 0:
        raise ValueError(f"{caller}: no labels")
    return y_true, y_pred


def _check_range(labels, num_classes, caller):
    """Raises if integer labels fall outside [0, num_classes)."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{caller}: labels must be integers when num_classes is given")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size > 0:
        raise ValueError(
            f"{caller}: labels {sorted(set(bad.tolist()))[:5]} outside [0, {num_classes})"
        )


def ser_scores(y_true, y_pred, num_classes=None):
    """Unweighted accuracy, weighted accuracy and macro F1.

    Arguments
    ---------
    y_true : array-like
        Reference labels (ints or strings).
    y_pred : array-like
        Predicted labels, same length.
    num_classes : int, optional
        If given, integer labels are checked to lie in [0, num_classes).

    Returns
    -------
    dict
        ``UA``: mean per-class recall over the classes present in ``y_true``;
        ``WA``: overall accuracy; ``F1``: macro F1 over the classes present in
        ``y_true`` or ``y_pred``. Fractions in [0, 1].

    Example
    -------
    >>> scores = ser_scores([0, 0, 1, 2], [0, 1, 1, 2])
    >>> {k: round(v, 4) for k, v in scores.items()}
    {'UA': 0.8333, 'WA': 0.75, 'F1': 0.7778}
    """
    y_true, y_pred = _as_label_arrays(y_true, y_pred, "ser_scores")
    if num_classes is not None:
        _check_range(y_true, num_classes, "ser_scores")
        _check_range(y_pred, num_classes, "ser_scores")
    correct = y_true == y_pred
    recalls = [correct[y_true == label].mean() for label in np.unique(y_true)]
    f1s = []
    for label in np.union1d(y_true, y_pred):
        true_positive = np.sum(correct & (y_true == label))
        false_positive = np.sum((y_pred == label) & ~correct)
        false_negative = np.sum((y_true == label) & ~correct)
        f1s.append(
            2 * true_positive / (2 * true_positive + false_positive + false_negative)
        )
    return {
        "UA": float(np.mean(recalls)),
        "WA": float(correct.mean()),
        "F1": float(np.mean(f1s)),
    }


def confusion_matrix(y_true, y_pred, num_classes):
    """Confusion matrix of integer labels; rows are true classes, columns predictions.

    Arguments
    ---------
    y_true : array-like
        Integer reference labels in [0, num_classes).
    y_pred : array-like
        Integer predicted labels in [0, num_classes).
    num_classes : int
        Number of classes C.

    Returns
    -------
    numpy.ndarray
        int64 [C, C] counts.

    Example
    -------
    >>> confusion_matrix([0, 0, 1], [0, 1, 1], num_classes=3)
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 0, 0]])
    """
    y_true, y_pred = _as_label_arrays(y_true, y_pred, "confusion_matrix")
    _check_range(y_true, num_classes, "confusion_matrix")
    _check_range(y_pred, num_classes, "confusion_matrix")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix
