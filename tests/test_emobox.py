"""Tests of the EmoBox metadata reader (ser_lib.data.emobox)."""

import json

import numpy as np
import pytest
import soundfile as sf
from shared_material import EMOBOX_DIR, EMODB_DIR, require

from ser_lib.data.emobox import emobox_fold_files, prepare_emobox
from ser_lib.data.manifest import read_manifest

CLASS_MAP = {"anger": "ang", "sad": "sad", "neutral": "neu", "happy": None}
EMODB_CLASS_MAP = {
    "anger": "ang",
    "boredem": "bor",  # EmoBox's spelling
    "disgust": "dis",
    "fear": "fea",
    "happy": "hap",
    "neutral": "neu",
    "sad": "sad",
}


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def emobox_tree(tmp_path):
    """A 2-fold EmoBox-style dataset ``demo``: 6 wavs, each tested in one fold."""
    download = tmp_path / "download"
    meta = tmp_path / "meta"
    emos = ["anger", "sad", "neutral", "anger", "sad", "happy"]
    records = []
    for i, emo in enumerate(emos):
        wav = download / "downloads" / "demo" / f"u{i}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, np.zeros(1600 * (i + 1)), 16000)
        records.append(
            {
                "key": f"demo-u{i}",
                "dataset": "demo",
                "wav": f"downloads/demo/u{i}.wav",
                "emo": emo,
                "length": 0.1 * (i + 1),
            }
        )
    for fold, test in ((1, [0, 1, 2]), (2, [3, 4, 5])):
        folder = meta / "demo" / f"fold_{fold}"
        write_jsonl(folder / f"demo_test_fold_{fold}.jsonl", [records[i] for i in test])
        write_jsonl(
            folder / f"demo_train_fold_{fold}.jsonl",
            [r for i, r in enumerate(records) if i not in test],
        )
    write_jsonl(meta / "demo" / "other.jsonl", [])
    return {"meta": meta, "download": download, "out": tmp_path / "out"}


def _ids(path):
    return sorted(row["ID"] for row in read_manifest(path))


def test_folds_become_manifests(emobox_tree):
    t = emobox_tree
    assert prepare_emobox(t["meta"], "demo", t["download"], t["out"], CLASS_MAP)
    rows = {row["ID"]: row for row in read_manifest(t["out"] / "all.csv")}
    assert sorted(rows) == [f"demo-u{i}" for i in range(5)]  # happy -> null: dropped
    assert [rows[f"demo-u{i}"]["session"] for i in range(5)] == ["1"] * 3 + ["2"] * 2
    assert rows["demo-u1"]["emo"] == "sad"
    assert rows["demo-u1"]["wav"] == "$data_root/downloads/demo/u1.wav"
    assert float(rows["demo-u1"]["duration"]) == pytest.approx(0.2)
    assert rows["demo-u1"]["spk_id"] == "demo"
    fold1 = t["out"] / "fold1"
    assert _ids(fold1 / "test.csv") == ["demo-u0", "demo-u1", "demo-u2"]
    assert _ids(fold1 / "train.csv") == ["demo-u3", "demo-u4"]
    assert _ids(fold1 / "valid.csv") == []
    assert _ids(fold1 / "adapter_all_train.csv") == ["demo-u3", "demo-u4"]
    assert _ids(t["out"] / "fold2" / "test.csv") == ["demo-u3", "demo-u4"]
    # The same options again: skipped; another class map: redone.
    assert not prepare_emobox(t["meta"], "demo", t["download"], t["out"], CLASS_MAP)
    other = {**CLASS_MAP, "happy": "hap"}
    assert prepare_emobox(t["meta"], "demo", t["download"], t["out"], other)
    assert "demo-u5" in _ids(t["out"] / "fold2" / "test.csv")


def test_label_map_json_is_read_case_insensitively(emobox_tree):
    t = emobox_tree
    label_map = {"Anger": "Angry", "sad": "Sad", "Neutral": "Neutral", "happy": "Happy"}
    (t["meta"] / "demo" / "label_map.json").write_text(json.dumps(label_map))
    prepare_emobox(t["meta"], "demo", t["download"], t["out"])
    emos = {row["ID"]: row["emo"] for row in read_manifest(t["out"] / "all.csv")}
    assert emos["demo-u0"] == "Angry" and emos["demo-u2"] == "Neutral"


def test_missing_jsonl_is_named(emobox_tree):
    t = emobox_tree
    missing = t["meta"] / "demo" / "fold_2" / "demo_train_fold_2.jsonl"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=f"{missing} is missing"):
        prepare_emobox(t["meta"], "demo", t["download"], t["out"], CLASS_MAP)
    with pytest.raises(FileNotFoundError, match="no fold_<k> folder"):
        emobox_fold_files(t["meta"].parent, "meta")
    with pytest.raises(FileNotFoundError, match="nodata"):
        emobox_fold_files(t["meta"], "nodata")


def _append(path, record):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


@pytest.mark.parametrize(
    "record, error, message",
    [
        (
            {"key": "demo-x", "wav": "downloads/demo/x.wav", "emo": "sad"},
            FileNotFoundError,
            "line 4: wav 'downloads/demo/x.wav' not found under the download root",
        ),
        (
            {"key": "demo-u9", "wav": "downloads/demo/u0.wav", "emo": "joy"},
            ValueError,
            "line 4: emo 'joy' is not in the label map",
        ),
        (
            {"key": "demo-u9", "emo": "sad"},
            ValueError,
            "line 4: 'wav' is missing",
        ),
        (
            {"key": "demo-u3", "wav": "downloads/demo/u3.wav", "emo": "anger"},
            ValueError,
            "key 'demo-u3' has wav .* and emo 'anger', but .* and 'sad'",
        ),
    ],
)
def test_bad_lines_name_file_and_line(emobox_tree, record, error, message):
    t = emobox_tree
    path = t["meta"] / "demo" / "fold_2" / "demo_test_fold_2.jsonl"
    if record["key"] == "demo-u3":  # u4 is sad (fold 1's train set): clash
        record = {**record, "key": "demo-u4", "wav": "downloads/demo/u4.wav"}
        message = message.replace("demo-u3", "demo-u4")
    _append(path, record)
    with pytest.raises(error, match=message) as err:
        prepare_emobox(t["meta"], "demo", t["download"], t["out"], CLASS_MAP)
    assert f"{path}, line 4: " in str(err.value)
    assert not (t["out"] / "all.csv").exists()


def test_bad_json_names_file_and_line(emobox_tree):
    t = emobox_tree
    path = t["meta"] / "demo" / "fold_1" / "demo_train_fold_1.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"demo_train_fold_1.jsonl, line 4: not valid"):
        prepare_emobox(t["meta"], "demo", t["download"], t["out"], CLASS_MAP)


def test_real_emobox_emodb_folds(tmp_path):
    require(EMOBOX_DIR / "emodb", EMODB_DIR / "wav")
    # EmoBox's wav paths are downloads/emodb/wav/<name>.wav under the download root.
    download = tmp_path / "download"
    (download / "downloads").mkdir(parents=True)
    (download / "downloads" / "emodb").symlink_to(EMODB_DIR)
    assert prepare_emobox(
        EMOBOX_DIR, "emodb", download, tmp_path / "out", EMODB_CLASS_MAP
    )
    rows = read_manifest(tmp_path / "out" / "all.csv")
    assert len(rows) == 535
    counts = {}
    for row in rows:
        counts[row["emo"]] = counts.get(row["emo"], 0) + 1
    assert counts == {
        "ang": 127,
        "bor": 81,
        "dis": 46,
        "fea": 69,
        "hap": 71,
        "neu": 79,
        "sad": 62,
    }
    tested = []
    for fold in range(1, 6):
        test = _ids(tmp_path / "out" / f"fold{fold}" / "test.csv")
        train = _ids(tmp_path / "out" / f"fold{fold}" / "train.csv")
        assert (len(test), len(train)) == (107, 428)
        assert not set(test) & set(train)
        assert {row["session"] for row in rows if row["ID"] in set(test)} == {str(fold)}
        # Speaker-dependent: every test fold holds all ten EmoDB speakers.
        assert len({utt_id[len("emodb-") :][:2] for utt_id in test}) == 10
        tested += test
    assert sorted(tested) == sorted(row["ID"] for row in rows)
    # EmoBox's own label_map.json (key "Neutral", data "neutral") works as well.
    assert prepare_emobox(EMOBOX_DIR, "emodb", download, tmp_path / "out2")
    assert {row["emo"] for row in read_manifest(tmp_path / "out2" / "all.csv")} == {
        "Angry",
        "Boredom",
        "Disgust",
        "Fear",
        "Happy",
        "Neutral",
        "Sad",
    }
