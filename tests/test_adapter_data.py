"""Stage 1's training sets (adapter_data) on the IEMOCAP fixture tree."""

import json
import logging
import os
import sys

import pytest
from fixtures_iemocap import make_iemocap_fixture

from ser_lib.data.folds import ADAPTER_DATA, adapter_manifest_name
from ser_lib.data.manifest import read_manifest

RECIPE = os.path.join(os.path.dirname(__file__), "..", "recipes", "IEMOCAP")
sys.path.insert(0, RECIPE)
from iemocap_prepare import prepare_iemocap  # noqa: E402

sys.path.remove(RECIPE)

logger = logging.getLogger(__name__)


def ids(path):
    return [row["ID"] for row in read_manifest(path)]


@pytest.fixture(scope="module", params=["all", "improvised"])
def prepared(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"adapter_data_{request.param}")
    corpus = make_iemocap_fixture(root / "corpus", utterances_per_dialog=6)
    prep = root / "prepared"
    prepare_iemocap(corpus["data_folder"], str(prep), subset=request.param)
    return {"corpus": corpus, "prep": prep, "subset": request.param}


def test_stage1_sets_never_hold_the_test_session_unless_transductive(prepared):
    corpus, prep = prepared["corpus"], prepared["prep"]
    annotated = {u["ID"]: u["session"] for u in corpus["utterances"]}
    sizes = {}
    for fold in range(1, 6):
        folder = prep / f"fold{fold}"
        sets = {
            name: ids(folder / adapter_manifest_name(name)) for name in ADAPTER_DATA
        }
        sizes[fold] = {name: len(value) for name, value in sets.items()}
        for name, members in sets.items():
            assert len(members) == len(set(members)), name
            sessions = {annotated[i] for i in members}
            assert (fold in sessions) == (name == "transductive"), (fold, name)
        # labelled = the stage-2 training set
        assert sets["labelled"] == ids(folder / "train.csv")
        # all_train: every annotated utterance of the four training sessions,
        # whatever its label or style
        training = sorted(i for i, s in annotated.items() if s != fold)
        assert sorted(sets["all_train"]) == training
        assert len(sets["all_train"]) > len(sets["labelled"])
        # transductive: every annotated utterance
        assert sorted(sets["transductive"]) == sorted(annotated)
    logger.info("stage-1 set sizes (%s): %s", prepared["subset"], json.dumps(sizes))


def test_unlabelled_manifest_holds_every_other_annotated_utterance(prepared):
    corpus, prep = prepared["corpus"], prepared["prep"]
    labelled = set(ids(prep / "all.csv"))
    unlabelled = read_manifest(prep / "unlabelled.csv")
    assert labelled.isdisjoint(row["ID"] for row in unlabelled)
    assert labelled | {row["ID"] for row in unlabelled} == {
        u["ID"] for u in corpus["utterances"]
    }
    labels = {row["emo"] for row in unlabelled}
    assert {"fru", "xxx", "sur"} <= labels
    if prepared["subset"] == "improvised":
        assert any(row["style"] == "scripted" for row in unlabelled)
