"""Tests of ser_lib.metrics against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from ser_lib.metrics import confusion_matrix, ser_scores


def sklearn_scores(y_true, y_pred):
    # UA averages recall over the classes present in y_true (sklearn's default
    # label set would also count predicted-only classes with recall 0).
    return {
        "UA": recall_score(
            y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0
        ),
        "WA": accuracy_score(y_true, y_pred),
        "F1": f1_score(y_true, y_pred, average="macro", zero_division=0),
    }


@pytest.mark.parametrize("seed", range(5))
def test_ser_scores_match_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, size=50)
    y_pred = np.where(rng.random(50) < 0.6, y_true, rng.integers(0, 4, size=50))
    ours = ser_scores(y_true, y_pred, num_classes=4)
    for key, value in sklearn_scores(y_true, y_pred).items():
        assert ours[key] == pytest.approx(value), key


def test_ser_scores_missing_classes_match_sklearn():
    rng = np.random.default_rng(7)
    y_true = rng.choice([0, 1, 2], size=40)  # class 3 never true
    y_pred = rng.choice([0, 1, 3], size=40)  # class 2 never predicted
    ours = ser_scores(y_true, y_pred, num_classes=4)
    reference = sklearn_scores(y_true, y_pred)
    for key in ["UA", "WA", "F1"]:
        assert ours[key] == pytest.approx(reference[key]), key
    # UA averages over the 3 true classes, F1 over the 4 seen classes
    recalls = [np.mean(y_pred[y_true == c] == c) for c in [0, 1, 2]]
    assert ours["UA"] == pytest.approx(np.mean(recalls))
    assert ours["UA"] != pytest.approx(
        recall_score(y_true, y_pred, average="macro", zero_division=0)
    )


def test_ser_scores_strings_and_perfect():
    labels = ["neu", "hap", "ang", "sad", "neu"]
    assert ser_scores(labels, labels) == {"UA": 1.0, "WA": 1.0, "F1": 1.0}
    pred = ["neu", "neu", "ang", "sad", "hap"]
    ours = ser_scores(labels, pred)
    for key, value in sklearn_scores(labels, pred).items():
        assert ours[key] == pytest.approx(value)


def test_ser_scores_errors():
    with pytest.raises(ValueError, match="y_pred has"):
        ser_scores([0, 1], [0])
    with pytest.raises(ValueError, match="no labels"):
        ser_scores([], [])
    with pytest.raises(ValueError, match="outside"):
        ser_scores([0, 4], [0, 1], num_classes=4)


def test_confusion_matrix_matches_sklearn():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, size=30)
    y_pred = rng.integers(0, 4, size=30)
    ours = confusion_matrix(y_true, y_pred, num_classes=5)
    expected = sk_confusion_matrix(y_true, y_pred, labels=range(5))
    np.testing.assert_array_equal(ours, expected)
    assert ours.shape == (5, 5) and ours.sum() == 30
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 5], [0, 1], num_classes=5)
