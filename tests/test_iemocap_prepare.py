"""Tests of the IEMOCAP preparation, the manifest helpers and the session folds."""

import csv
import logging
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import load_module
from fixtures_iemocap import make_iemocap_fixture

from ser_lib.data.folds import choose_valid_speaker, write_group_folds
from ser_lib.data.manifest import (
    MANIFEST_COLUMNS,
    prep_options_match,
    read_manifest,
    save_prep_options,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[1]
PREPARE_PATH = REPO / "recipes" / "IEMOCAP" / "iemocap_prepare.py"
# The prepare script imports iemocap_annotations from its own folder, as it does
# when run as a script or named in the recipe YAML.
if str(PREPARE_PATH.parent) not in sys.path:
    sys.path.insert(0, str(PREPARE_PATH.parent))
iemocap_prepare = load_module(PREPARE_PATH, "iemocap_prepare_under_test")
prepare_iemocap = iemocap_prepare.prepare_iemocap

SPLITS = ("train", "valid", "test")


@pytest.fixture
def corpus(tmp_path):
    """A fresh fixture tree (mutable by the test)."""
    return make_iemocap_fixture(tmp_path / "raw")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The fixture tree prepared once with the defaults (read-only)."""
    root = tmp_path_factory.mktemp("prepared")
    fixture = make_iemocap_fixture(root / "raw")
    save = root / "save"
    prepare_iemocap(fixture["data_folder"], str(save))
    return fixture, save


def _kept(fixture, subset="all"):
    return {
        u["ID"]: u
        for u in fixture["utterances"]
        if u["emo"] is not None and subset in ("all", u["style"])
    }


def _ids(path):
    return {row["ID"] for row in read_manifest(path)}


# ---------------------------------------------------------------- contents


def test_all_csv_rows_match_fixture(prepared):
    fixture, save = prepared
    with open(save / "all.csv", newline="") as handle:
        assert next(csv.reader(handle)) == MANIFEST_COLUMNS
    rows = read_manifest(save / "all.csv")
    expected = _kept(fixture)
    assert [r["ID"] for r in rows] == sorted(expected)
    for row in rows:
        utt = expected[row["ID"]]
        assert row["emo"] == utt["emo"]
        assert row["spk_id"] == utt["spk_id"]
        assert row["gender"] == utt["gender"]
        assert row["session"] == str(utt["session"])
        assert row["style"] == utt["style"]
        assert row["dialog"] == utt["dialog"]
        assert row["wav"] == "$data_root/" + utt["wav"]
        assert float(row["duration"]) == pytest.approx(utt["duration"], abs=1e-6)
    counts = fixture["counts"]["all"]
    assert dict(Counter(r["emo"] for r in rows)) == counts["emo"]
    assert dict(Counter(int(r["session"]) for r in rows)) == counts["session"]


def test_speaker_from_last_field_not_positions(prepared):
    _, save = prepared
    rows = {r["ID"]: r for r in read_manifest(save / "all.csv")}
    # The dialog's leading letter (Ses02M_...) is not the speaker's.
    female = [r for i, r in rows.items() if i.startswith("Ses02M_impro05a_F")]
    male = [r for i, r in rows.items() if i.startswith("Ses01F_script01_1b_M")]
    assert female and all(
        r["spk_id"] == "Ses02F" and r["gender"] == "F" for r in female
    )
    assert male and all(r["spk_id"] == "Ses01M" and r["gender"] == "M" for r in male)
    assert {r["dialog"] for r in rows.values()} >= {
        "Ses01F_script01_1b",
        "Ses02M_impro05a",
        "Ses03F_script02_2",
    }
    assert {r["spk_id"] for r in rows.values()} == {
        f"Ses0{s}{g}" for s in range(1, 6) for g in "FM"
    }


def test_exc_merged_into_hap_and_other_labels_dropped(prepared):
    fixture, save = prepared
    rows = {r["ID"]: r for r in read_manifest(save / "all.csv")}
    by_label = {}
    for utt in fixture["utterances"]:
        by_label.setdefault(utt["label"], []).append(utt["ID"])
    assert by_label["exc"] and all(rows[i]["emo"] == "hap" for i in by_label["exc"])
    assert by_label["hap"] and all(rows[i]["emo"] == "hap" for i in by_label["hap"])
    for dropped in ("fru", "xxx", "sur"):
        assert by_label[dropped] and not set(by_label[dropped]) & set(rows)
    assert {r["emo"] for r in rows.values()} == {"neu", "hap", "ang", "sad"}


@pytest.mark.parametrize("subset", ["improvised", "scripted"])
def test_subsets(corpus, tmp_path, subset):
    save = tmp_path / "save"
    prepare_iemocap(corpus["data_folder"], str(save), subset=subset)
    rows = read_manifest(save / "all.csv")
    assert {r["ID"] for r in rows} == set(_kept(corpus, subset))
    assert {r["style"] for r in rows} == {subset}
    counts = corpus["counts"][subset]
    assert len(rows) == counts["total"] < corpus["counts"]["all"]["total"]
    assert dict(Counter(r["emo"] for r in rows)) == counts["emo"]


def test_counts_logged(corpus, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))
    counts = corpus["counts"]["all"]
    label_text = ", ".join(
        f"{k}={counts['emo'][k]}" for k in ("neu", "hap", "ang", "sad")
    )
    session_text = ", ".join(f"{s}={counts['session'][s]}" for s in range(1, 6))
    assert label_text in caplog.text
    assert session_text in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------------- folds


def test_folds_leave_one_session_out(prepared):
    fixture, save = prepared
    all_rows = read_manifest(save / "all.csv")
    for k in range(1, 6):
        fold = save / f"fold{k}"
        test = read_manifest(fold / "test.csv")
        train = read_manifest(fold / "train.csv")
        assert {r["ID"] for r in test} == {
            r["ID"] for r in all_rows if r["session"] == str(k)
        }
        assert {r["session"] for r in test} == {str(k)}
        assert {r["ID"] for r in train} == {
            r["ID"] for r in all_rows if r["session"] != str(k)
        }
        test_speakers = {r["spk_id"] for r in test}
        assert test_speakers == {f"Ses0{k}F", f"Ses0{k}M"}
        assert not test_speakers & {r["spk_id"] for r in train}
        # valid_mode "none": header only.
        assert (fold / "valid.csv").read_text() == ",".join(MANIFEST_COLUMNS) + "\n"
        assert read_manifest(fold / "valid.csv") == []
    assert not (save / "fold6").exists()


def test_valid_mode_speaker(corpus, tmp_path):
    save = tmp_path / "save"
    prepare_iemocap(corpus["data_folder"], str(save), valid_mode="speaker")
    all_ids = _ids(save / "all.csv")
    expected_valid = ["Ses02F", "Ses03M", "Ses04F", "Ses05M", "Ses01F"]
    for k in range(1, 6):
        parts = {s: read_manifest(save / f"fold{k}" / f"{s}.csv") for s in SPLITS}
        ids = {s: {r["ID"] for r in rows} for s, rows in parts.items()}
        assert {r["spk_id"] for r in parts["valid"]} == {expected_valid[k - 1]}
        assert {r["session"] for r in parts["test"]} == {str(k)}
        assert str(k) not in {r["session"] for r in parts["train"] + parts["valid"]}
        assert not ids["train"] & ids["valid"]
        assert not (ids["train"] | ids["valid"]) & ids["test"]
        assert ids["train"] | ids["valid"] | ids["test"] == all_ids
        assert expected_valid[k - 1] not in {r["spk_id"] for r in parts["train"]}


def test_write_group_folds_rejects_bad_mode_and_single_group(tmp_path):
    rows = [{"ID": "a", "session": 1, "spk_id": "x"}]
    cols = ["ID", "session", "spk_id"]
    with pytest.raises(ValueError, match="valid_mode"):
        write_group_folds(rows, tmp_path, valid_mode="random", columns=cols)
    with pytest.raises(ValueError, match="at least 2"):
        write_group_folds(rows, tmp_path, columns=cols)


def test_choose_valid_speaker_never_in_test_group():
    rows = [{"session": s, "spk_id": f"{s}{g}"} for s in range(1, 6) for g in "FM"]
    groups = [1, 2, 3, 4, 5]
    chosen = [choose_valid_speaker(rows, groups, i) for i in range(5)]
    assert chosen == ["2F", "3M", "4F", "5M", "1F"]
    assert all(not c.startswith(str(groups[i])) for i, c in enumerate(chosen))


# --------------------------------------------------------------- skip/redo


def _age(save):
    """Sets every output's mtime to 0 so that a rewrite is visible."""
    for path in save.rglob("*.csv"):
        os.utime(path, (0, 0))


def _mtimes(save):
    return {p: p.stat().st_mtime for p in save.rglob("*.csv")}


def test_skip_when_options_match_and_redo_otherwise(corpus, tmp_path):
    save = tmp_path / "save"
    prepare_iemocap(corpus["data_folder"], str(save))
    assert (save / "prep_options.json").is_file()
    _age(save)
    prepare_iemocap(corpus["data_folder"], str(save))
    assert set(_mtimes(save).values()) == {0}

    # Other subset: redone.
    prepare_iemocap(corpus["data_folder"], str(save), subset="scripted")
    assert 0 not in _mtimes(save).values()
    assert _ids(save / "all.csv") == set(_kept(corpus, "scripted"))

    # Other valid_mode: redone.
    _age(save)
    prepare_iemocap(
        corpus["data_folder"], str(save), subset="scripted", valid_mode="speaker"
    )
    assert 0 not in _mtimes(save).values()

    # Other data_folder: redone.
    copy = tmp_path / "copy" / "IEMOCAP_full_release"
    shutil.copytree(corpus["data_folder"], copy)
    _age(save)
    prepare_iemocap(str(copy), str(save), subset="scripted", valid_mode="speaker")
    assert 0 not in _mtimes(save).values()


def test_interrupted_preparation_is_redone(corpus, tmp_path):
    save = tmp_path / "save"
    prepare_iemocap(corpus["data_folder"], str(save))
    # An interruption before the marker is written leaves no marker.
    (save / "prep_options.json").unlink()
    _age(save)
    prepare_iemocap(corpus["data_folder"], str(save))
    assert 0 not in _mtimes(save).values()
    # A deleted output also triggers a redo.
    (save / "fold3" / "train.csv").unlink()
    prepare_iemocap(corpus["data_folder"], str(save))
    assert (save / "fold3" / "train.csv").is_file()


def test_skip_prep_does_nothing(tmp_path):
    save = tmp_path / "save"
    prepare_iemocap(str(tmp_path / "nowhere"), str(save), skip_prep=True)
    assert not save.exists()


def test_run_on_main_kwargs(corpus, tmp_path):
    from speechbrain.utils.distributed import run_on_main

    save = tmp_path / "save"
    run_on_main(
        prepare_iemocap,
        kwargs={
            "data_folder": corpus["data_folder"],
            "save_folder": str(save),
            "subset": "improvised",
            "valid_mode": "speaker",
            "skip_prep": False,
        },
    )
    assert len(read_manifest(save / "fold2" / "valid.csv")) > 0


# ------------------------------------------------------------------ errors


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nope" / "IEMOCAP_full_release"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        prepare_iemocap(str(missing), str(tmp_path / "save"))


def test_parent_of_release_suggests_path(corpus, tmp_path):
    parent = os.path.dirname(corpus["data_folder"])
    with pytest.raises(FileNotFoundError, match="parent") as error:
        prepare_iemocap(parent, str(tmp_path / "save"))
    assert f"data_folder={corpus['data_folder']}" in str(error.value)


def test_missing_session_folder(corpus, tmp_path):
    session3 = os.path.join(corpus["data_folder"], "Session3")
    shutil.rmtree(session3)
    with pytest.raises(FileNotFoundError, match=re.escape(session3)):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))


def _annotation(corpus, session=2):
    return next(
        u["annotation_file"] for u in corpus["utterances"] if u["session"] == session
    )


def test_undecodable_annotation_file(corpus, tmp_path):
    path = _annotation(corpus)
    with open(path, "ab") as handle:
        handle.write(b"\xff\xfe broken \x80\n")
    with pytest.raises(
        ValueError, match=re.escape(path) + ".*UTF-8|UTF-8.*" + re.escape(path)
    ):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))


def test_unreadable_annotation_file(corpus, tmp_path):
    folder = os.path.dirname(_annotation(corpus))
    broken = os.path.join(folder, "Ses02F_broken.txt")
    os.symlink(os.path.join(folder, "does_not_exist.txt"), broken)
    with pytest.raises(OSError, match=re.escape(broken)):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))


def test_annotation_file_without_utterance_lines(corpus, tmp_path):
    path = os.path.join(os.path.dirname(_annotation(corpus)), "Ses02F_impro09.txt")
    Path(path).write_text("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n")
    with pytest.raises(ValueError, match=re.escape(path) + ".*no utterance line"):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))


def test_malformed_annotation_line_names_file_and_line(corpus, tmp_path):
    path = _annotation(corpus, session=4)
    lines = Path(path).read_text().splitlines()
    lines[2] = "[1.5000 - 1.6000]\tSes04M_impro03_F000"  # label and VAD lost
    Path(path).write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3")):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))


def _lose_bracket(corpus, session):
    """Removes the leading '[' of the first utterance line of an annotation file."""
    path = _annotation(corpus, session=session)
    lines = Path(path).read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith("["))
    lines[number] = lines[number][1:]
    Path(path).write_text("\n".join(lines) + "\n")
    utt_id = lines[number].split("\t")[1]
    return path, number + 1, utt_id


def test_lines_that_lost_their_bracket_are_all_reported(corpus, tmp_path):
    first = _lose_bracket(corpus, session=2)
    second = _lose_bracket(corpus, session=3)
    with pytest.raises(ValueError) as error:
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))
    message = str(error.value)
    assert message.startswith(
        "IEMOCAP: 2 utterance line(s) in the annotation files do not parse"
    )
    for path, number, utt_id in (first, second):
        assert f"{path}, line {number}: malformed utterance line" in message
        assert utt_id in message
    assert "set annotation_errors: warn" in message
    assert not (tmp_path / "save" / "prep_options.json").exists()


def test_annotation_errors_warn_drops_the_lines_loudly(corpus, tmp_path, caplog):
    path, number, utt_id = _lose_bracket(corpus, session=2)
    with caplog.at_level(logging.WARNING):
        prepare_iemocap(
            corpus["data_folder"], str(tmp_path / "save"), annotation_errors="warn"
        )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{path}, line {number}" in r.getMessage() for r in warnings)
    assert "1 utterance line(s) in the annotation files do not parse" in caplog.text
    ids = read_manifest(str(tmp_path / "save" / "all.csv"))
    assert utt_id not in {row["ID"] for row in ids}


def test_label_typo_is_a_warning_naming_file_and_line(corpus, tmp_path, caplog):
    path = _annotation(corpus, session=4)
    lines = Path(path).read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith("["))
    fields = lines[number].split("\t")
    fields[2] = "Neu"
    lines[number] = "\t".join(fields)
    Path(path).write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))
    warning = next(
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )
    assert "1 utterance(s) have a label outside" in warning
    assert f"{path}, line {number + 1}: {fields[1]} 'Neu'" in warning


def test_bad_speaker_field_names_file_and_line(corpus, tmp_path):
    path = _annotation(corpus, session=5)
    text = Path(path).read_text().replace("Ses05F_impro07_F000", "Ses05F_impro07_X000")
    Path(path).write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3") + ".*X000"):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))


def test_missing_wavs_are_all_reported(corpus, tmp_path):
    kept = sorted(_kept(corpus).values(), key=lambda u: u["ID"])
    gone = [kept[0], kept[-1]]
    for utt in gone:
        os.remove(os.path.join(corpus["data_folder"], *utt["wav"].split("/")))
    # A missing wav of a dropped label does not matter.
    dropped = next(u for u in corpus["utterances"] if u["emo"] is None)
    os.remove(os.path.join(corpus["data_folder"], *dropped["wav"].split("/")))
    with pytest.raises(FileNotFoundError, match="^2 labelled") as error:
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))
    for utt in gone:
        assert os.path.join(corpus["data_folder"], *utt["wav"].split("/")) in str(
            error.value
        )
    assert not (tmp_path / "save" / "prep_options.json").exists()


def test_bad_options(corpus, tmp_path):
    with pytest.raises(ValueError, match="subset"):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "s"), subset="impro")
    with pytest.raises(ValueError, match="valid_mode"):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "s"), valid_mode="random")


# --------------------------------------------------------- full-release check


def test_expected_full_release_constants_are_consistent():
    total = iemocap_prepare.EXPECTED_TOTAL
    assert total == 5531
    assert sum(iemocap_prepare.EXPECTED_LABEL_COUNTS.values()) == total
    assert sum(iemocap_prepare.EXPECTED_SESSION_COUNTS.values()) == total
    assert iemocap_prepare.FULL_RELEASE_N_ANNOTATED == 10039


def test_warning_when_complete_tree_gives_other_counts(
    corpus, tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(
        iemocap_prepare, "FULL_RELEASE_N_ANNOTATED", corpus["n_annotated"]
    )
    with caplog.at_level(logging.INFO):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "neu=1708, hap=1636, ang=1103, sad=1084" in message
    assert "1=1085, 2=1023, 3=1151, 4=1031, 5=1241" in message
    counts = corpus["counts"]["all"]
    assert f"neu={counts['emo']['neu']}, hap={counts['emo']['hap']}" in message


def test_no_warning_when_complete_tree_matches(corpus, tmp_path, caplog, monkeypatch):
    counts = corpus["counts"]["all"]
    monkeypatch.setattr(
        iemocap_prepare, "FULL_RELEASE_N_ANNOTATED", corpus["n_annotated"]
    )
    monkeypatch.setattr(iemocap_prepare, "EXPECTED_LABEL_COUNTS", counts["emo"])
    monkeypatch.setattr(iemocap_prepare, "EXPECTED_SESSION_COUNTS", counts["session"])
    with caplog.at_level(logging.INFO):
        prepare_iemocap(corpus["data_folder"], str(tmp_path / "save"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # A subset is never compared with the counts of "all".
    monkeypatch.setattr(iemocap_prepare, "EXPECTED_LABEL_COUNTS", {"neu": 1})
    with caplog.at_level(logging.INFO):
        prepare_iemocap(
            corpus["data_folder"], str(tmp_path / "s2"), subset="improvised"
        )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------- consumers


def test_speechbrain_loads_manifests(prepared):
    import torch
    from speechbrain.dataio.dataio import read_audio
    from speechbrain.dataio.dataset import DynamicItemDataset

    fixture, save = prepared
    for split in ("train", "test"):
        dataset = DynamicItemDataset.from_csv(
            str(save / "fold1" / f"{split}.csv"),
            replacements={"data_root": fixture["data_folder"]},
        )
        dataset.set_output_keys(["id", "wav", "duration", "emo"])
        item = dataset[0]
        assert os.path.isfile(item["wav"])
        assert item["wav"].startswith(fixture["data_folder"])
        assert isinstance(item["duration"], float)
        signal = read_audio(item["wav"])
        assert isinstance(signal, torch.Tensor)
        assert signal.shape[0] == round(item["duration"] * 16000)
    # SpeechBrain 1.1 cannot build a DynamicItemDataset from a header-only CSV
    # (IndexError); recipes must check read_manifest(valid.csv) before using it.
    assert read_manifest(save / "fold1" / "valid.csv") == []


def test_cli(corpus, tmp_path):
    save = tmp_path / "cli"
    result = subprocess.run(
        [
            sys.executable,
            str(PREPARE_PATH),
            "--data_folder",
            corpus["data_folder"],
            "--save_folder",
            str(save),
            "--subset",
            "improvised",
            "--valid_mode",
            "speaker",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert _ids(save / "all.csv") == set(_kept(corpus, "improvised"))
    assert all(
        (save / f"fold{k}" / f"{s}.csv").is_file() for k in range(1, 6) for s in SPLITS
    )


# ------------------------------------------------------------ manifest I/O


def test_manifest_roundtrip_sorted_and_atomic(tmp_path):
    path = tmp_path / "m.csv"
    rows = [
        {c: f"{c}{i}" for c in MANIFEST_COLUMNS} | {"ID": f"u{i}"} for i in (3, 1, 2)
    ]
    write_manifest(rows, path)
    assert [r["ID"] for r in read_manifest(path)] == ["u1", "u2", "u3"]
    assert os.listdir(tmp_path) == ["m.csv"]  # no temporary file left


def test_write_manifest_rejects_bad_rows(tmp_path):
    path = tmp_path / "m.csv"
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*duplicate ID 'a'"):
        write_manifest([{"ID": "a"}, {"ID": "a"}], path, columns=["ID"])
    with pytest.raises(ValueError, match="missing columns \\['wav'\\]"):
        write_manifest([{"ID": "a"}], path, columns=["ID", "wav"])
    assert not path.exists()


def test_read_manifest_errors_name_the_file(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("ID,emo\na,neu\nb,hap\na,sad\n")
    with pytest.raises(
        ValueError, match=re.escape(str(path)) + ", line 4: duplicate ID 'a'"
    ):
        read_manifest(path, required_columns=["ID", "emo"])
    with pytest.raises(ValueError, match=re.escape(str(path)) + " lacks the columns"):
        read_manifest(path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "x.csv"))):
        read_manifest(tmp_path / "x.csv")


def test_prep_options_marker(tmp_path):
    assert not prep_options_match(tmp_path, {"a": 1})
    save_prep_options(tmp_path, {"a": 1, "b": "x"})
    assert prep_options_match(tmp_path, {"b": "x", "a": 1})
    assert not prep_options_match(tmp_path, {"a": 2, "b": "x"})
    assert not prep_options_match(tmp_path, {"a": 1})
    (tmp_path / "prep_options.json").write_text("{not json")
    assert not prep_options_match(tmp_path, {"a": 1, "b": "x"})
