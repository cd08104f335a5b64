"""The results table: run_info.json, collecting a row, building the table.

Fixture fold folders with hand-made predictions; every expected figure is worked
out by hand in the comments.
"""

import json
import math

import pytest

from ser_lib.results import (
    HEADLINE_END,
    HEADLINE_START,
    collect_row,
    load_row_spec,
    write_results_files,
)
from ser_lib.run_info import read_run_info, record_fold, write_run_info

# fold -> (true, predicted); classes neu, sad.
FOLDS = {
    1: (["neu", "neu", "sad", "sad"], ["neu", "sad", "sad", "sad"]),
    2: (["neu", "sad", "sad"], ["neu", "neu", "sad"]),
}
# Per fold, by hand:
# fold 1: recall neu 1/2, sad 2/2 -> UA 75; WA 3/4 = 75;
#         F1 neu 2*1/(2+0+1) = 2/3, sad 2*2/(4+1+0) = 4/5 -> 73.33
# fold 2: recall neu 1/1, sad 1/2 -> UA 75; WA 2/3 = 66.67;
#         F1 neu 2/(2+1+0) = 2/3, sad 2/(2+0+1) = 2/3 -> 66.67
HAND = {
    1: {"UA": 75.0, "WA": 75.0, "F1": 100 * (2 / 3 + 4 / 5) / 2},
    2: {"UA": 75.0, "WA": 200 / 3, "F1": 200 / 3},
}
CONFUSION = {1: [[1, 1], [0, 2]], 2: [[1, 0], [1, 1]]}


def make_run(root):
    """A finished two-fold run as the driver leaves it; returns its results folder."""
    results = root / "cv"
    info = read_run_info(results)
    info["command"] = "python recipes/EmoDB/cross_validate.py --folds 1 2"
    info["schedule"] = {"stage1": None, "stage2": {"number_of_epochs": 3}}
    for fold, (true, predicted) in FOLDS.items():
        folder = root / "exp" / f"fold{fold}" / "baseline"
        (folder / "save" / "CKPT+x").mkdir(parents=True)
        (folder / "save" / "CKPT+x" / "model.ckpt").write_text("weights")
        lines = ["ID,true,predicted"]
        lines += [
            f"f{fold}u{i},{t},{p}"
            for i, (t, p) in enumerate(zip(true, predicted, strict=True))
        ]
        (folder / "predictions.csv").write_text("\n".join(lines) + "\n")
        metrics = {
            **HAND[fold],
            "n_test": len(true),
            "classes": ["neu", "sad"],
            "confusion_matrix": CONFUSION[fold],
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / "train_log.txt").write_text("epoch: 1\n")
        record_fold(info, fold, str(folder), None, {"stage2": 10.0 * fold})
    write_run_info(results, info)
    return results


def make_spec(root):
    (root / "README.md").write_text(f"intro\n{HEADLINE_START}\n{HEADLINE_END}\nend\n")
    spec = root / "docs" / "results" / "rows.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(
        "title: Fixture\nrows_folder: rows\njson: table.json\n"
        "markdown: ../RESULTS.md\nreadme: ../../README.md\n"
        "headline: [done_row, pending_row]\n"
        "notes: Protocol in words.\n"
        "rows:\n"
        "  done_row: {description: two folds}\n"
        "  pending_row: {description: not run, note: No time left.}\n"
    )
    return spec


def test_build_from_fold_folders(tmp_path):
    results = make_run(tmp_path)
    spec_path = make_spec(tmp_path)
    spec = load_row_spec(spec_path)
    row_folder = tmp_path / "docs" / "results" / "rows" / "done_row"
    assert collect_row(str(results), str(row_folder)) == [1, 2]
    assert sorted(p.name for p in (row_folder / "fold1").iterdir()) == [
        "metrics.json",
        "predictions.csv",
        "train_log.txt",
    ]  # no checkpoints
    table = write_results_files(spec, str(spec_path))

    row = table["rows"]["done_row"]
    assert row["folds"] == [1, 2]
    for metric in ("UA", "WA", "F1"):
        assert row[metric]["per_fold"] == pytest.approx(
            [HAND[1][metric], HAND[2][metric]]
        )
        assert row[metric]["mean"] == pytest.approx(
            (HAND[1][metric] + HAND[2][metric]) / 2
        )
        assert row[metric]["std"] == pytest.approx(
            abs(HAND[1][metric] - HAND[2][metric]) / math.sqrt(2)
        )
    # Pooled over the 7 utterances: recall neu 2/3, sad 3/4 -> UA 70.83; WA 5/7;
    # F1 neu 2*2/(4+1+1) = 2/3, sad 2*3/(6+1+1) = 3/4 -> 70.83.
    assert row["UA"]["pooled"] == pytest.approx(100 * (2 / 3 + 3 / 4) / 2)
    assert row["WA"]["pooled"] == pytest.approx(100 * 5 / 7)
    assert row["F1"]["pooled"] == pytest.approx(100 * (2 / 3 + 3 / 4) / 2)
    assert row["per_class_recall"] == pytest.approx({"neu": 200 / 3, "sad": 75.0})
    assert row["wall_s"] == {"stage1": 0.0, "stage2": 30.0, "total": 30.0}
    assert row["command"] == "python recipes/EmoDB/cross_validate.py --folds 1 2"
    assert table["rows"]["pending_row"] == {
        "description": "not run",
        "note": "No time left.",
        "status": "pending",
    }
    assert table["notes"] == "Protocol in words."

    saved = json.loads((tmp_path / "docs" / "results" / "table.json").read_text())
    assert saved == json.loads(json.dumps(table))
    markdown = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "| `pending_row` | not run | pending |" in markdown
    assert "Protocol in words.\n\n| row |" in markdown
    assert "not run\n\nNo time left.\n\nPending: not run yet." in markdown
    assert "| `done_row` | two folds | 2 | 75.00 ± 0.00 | 70.83 |" in markdown
    assert "no stage 1, stage 2 30 s, total 30 s." in markdown
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("intro\n") and readme.endswith("end\n")
    assert "| `done_row` | two folds | 2 | 75.00 ± 0.00 | 70.83 |" in readme
    assert "[RESULTS.md](docs/RESULTS.md)" in readme


def test_run_info_keeps_earlier_fold_times(tmp_path):
    info = read_run_info(tmp_path)
    record_fold(info, 1, "f1", "a1", {"stage1": 5.0, "stage2": 2.0})
    write_run_info(tmp_path, info)
    info = read_run_info(tmp_path)
    record_fold(info, 1, "f1", "a1", {})  # finished earlier: nothing ran now
    record_fold(info, 2, "f2", "a2", {"stage2": 1.0})
    write_run_info(tmp_path, info)
    saved = read_run_info(tmp_path)
    assert saved["folds"]["1"]["stage1_s"] == 5.0
    assert saved["folds"]["2"]["stage1_s"] is None
    assert saved["wall_s"] == {"stage1": 5.0, "stage2": 3.0, "total": 8.0}


def test_collect_needs_run_info_and_a_finished_fold(tmp_path):
    with pytest.raises(FileNotFoundError, match="run_info.json"):
        collect_row(str(tmp_path), str(tmp_path / "row"))
    write_run_info(tmp_path, read_run_info(tmp_path))
    with pytest.raises(FileNotFoundError, match="No finished fold"):
        collect_row(str(tmp_path), str(tmp_path / "row"))
    assert not (tmp_path / "row").exists()


def make_multistage_run(root):
    """A finished run of ser_lib.multistage (stages A, C) on fold 2 only."""
    results = root / "cv_multi"
    info = read_run_info(results)
    info["command"] = "python recipes/EmoDB/gmp_tl/cross_validate.py --folds 2"
    info["schedule"] = {"A": {"number_of_epochs": 2}, "C": {"number_of_epochs": 1}}
    true, predicted = FOLDS[2]
    stage_a = root / "multi" / "fold2" / "stageA"
    stage_c = root / "multi" / "fold2" / "stageC"
    for folder in (stage_a, stage_c):
        folder.mkdir(parents=True)
        (folder / "train_log.txt").write_text(f"{folder.name} epoch: 1\n")
    lines = ["ID,true,predicted"]
    lines += [
        f"u{i},{t},{p}" for i, (t, p) in enumerate(zip(true, predicted, strict=True))
    ]
    (stage_c / "predictions.csv").write_text("\n".join(lines) + "\n")
    metrics = {
        **HAND[2],
        "n_test": len(true),
        "classes": ["neu", "sad"],
        "confusion_matrix": CONFUSION[2],
    }
    (stage_c / "metrics.json").write_text(json.dumps(metrics))
    info["folds"]["2"] = {
        "folder": str(stage_c),
        "adapter_folder": None,
        "stage_folders": {"A": str(stage_a), "C": str(stage_c)},
        "stage_s": {"A": 20.0, "C": 5.0},
        "git": None,
    }
    write_run_info(results, info)
    return results


def test_multistage_row_on_fewer_folds_compares_on_its_folds(tmp_path):
    two_fold = make_run(tmp_path)
    multi = make_multistage_run(tmp_path)
    (tmp_path / "README.md").write_text(f"{HEADLINE_START}\n{HEADLINE_END}\n")
    spec_path = tmp_path / "docs" / "results" / "rows.yaml"
    spec_path.parent.mkdir(parents=True)
    spec_path.write_text(
        "title: Fixture\nrows_folder: rows\njson: table.json\n"
        "markdown: ../RESULTS.md\nreadme: ../../README.md\n"
        "rows:\n"
        "  two_fold: {description: folds 1 and 2}\n"
        "  multi: {description: fold 2 only, compare_on_folds: [two_fold, pending]}\n"
        "  pending: {description: not run}\n"
    )
    spec = load_row_spec(spec_path)
    rows = tmp_path / "docs" / "results" / "rows"
    collect_row(str(two_fold), str(rows / "two_fold"))
    assert collect_row(str(multi), str(rows / "multi")) == [2]
    # The earlier stage's log comes along, named after its stage.
    assert (rows / "multi" / "fold2" / "A_train_log.txt").read_text() == (
        "stageA epoch: 1\n"
    )
    assert not (rows / "multi" / "fold2" / "C_train_log.txt").exists()
    table = write_results_files(spec, str(spec_path))

    row = table["rows"]["multi"]
    assert row["folds"] == [2]
    assert row["wall_s"] == {"A": 20.0, "C": 5.0, "total": 25.0}
    # two_fold on fold 2 alone: HAND[2], not its mean over folds 1 and 2.
    same = dict(row["same_folds"]["two_fold"])
    assert same.pop("folds") == [2]
    assert same == pytest.approx(HAND[2])
    assert row["same_folds"]["pending"] is None
    markdown = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "Wall time (summed over folds): A 20 s, C 5 s, total 25 s." in markdown
    assert "On the same folds (2), mean over the folds:" in markdown
    assert "| `two_fold` | 75.00 | 66.67 | 66.67 |" in markdown
    assert "| `pending` | not run on these folds | | |" in markdown
    with pytest.raises(ValueError, match="unknown rows"):
        spec_path.write_text(
            spec_path.read_text().replace("[two_fold, pending]", "[nope]")
        )
        load_row_spec(spec_path)


def test_extra_scores_and_partial_folds(tmp_path):
    """WER and gender UA in every fold's metrics.json are averaged and shown; a row
    on 2 of the protocol's 5 folds says so."""
    results = make_run(tmp_path)
    extra = {1: {"WER": 40.0, "gender_UA": 90.0}, 2: {"WER": 30.0, "gender_UA": 100.0}}
    for fold, scores in extra.items():
        path = tmp_path / "exp" / f"fold{fold}" / "baseline" / "metrics.json"
        metrics = json.loads(path.read_text())
        path.write_text(json.dumps({**metrics, **scores, "loss": 1.5 * fold}))
    spec_path = make_spec(tmp_path)
    spec_path.write_text(spec_path.read_text() + "n_folds: 5\n")
    spec = load_row_spec(spec_path)
    collect_row(str(results), str(tmp_path / "docs" / "results" / "rows" / "done_row"))
    table = write_results_files(spec, str(spec_path))

    row = table["rows"]["done_row"]
    assert row["extra_metrics"] == ["WER", "gender_UA"]  # not loss, not n_test
    assert row["WER"]["per_fold"] == [40.0, 30.0]
    assert row["WER"]["mean"] == pytest.approx(35.0)
    assert row["WER"]["std"] == pytest.approx(10 / math.sqrt(2))
    assert row["gender_UA"]["mean"] == pytest.approx(95.0)
    markdown = (tmp_path / "docs" / "RESULTS.md").read_text()
    summary = "| `done_row` | two folds | 2 of 5 (folds 1, 2) | 75.00 ± 0.00 | 70.83 |"
    assert summary in markdown
    assert "| WER 35.00 ± 7.07; gender_UA 95.00 ± 7.07 | 0.5 min |" in markdown
    # The row's section: one column per extra score, per fold and mean ± std.
    assert "| fold | n_test | UA (%) | WA (%) | F1 (%) | WER | gender_UA |" in markdown
    assert "| 75.00 | 73.33 | 40.00 | 90.00 |" in markdown
    assert "| 35.00 ± 7.07 | 95.00 ± 7.07 |" in markdown
    pending = "| `pending_row` | not run | pending | | | | | | | | |"
    assert pending in markdown


def test_row_aggregated_without_running_says_so(tmp_path):
    """A row whose command ran no stage (its folds had finished: --stages with
    finished folds) has no code commit or wall time to show, and says so."""
    results = make_run(tmp_path)
    spec_path = make_spec(tmp_path)
    row_folder = tmp_path / "docs" / "results" / "rows" / "done_row"
    collect_row(str(results), str(row_folder))
    info = json.loads((row_folder / "run_info.json").read_text())
    info.update(git=None, wall_s={"total": 0})
    (row_folder / "run_info.json").write_text(json.dumps(info))
    write_results_files(load_row_spec(spec_path), str(spec_path))
    markdown = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "Code: not recorded (the command ran no stage" in markdown
    assert "Wall time" not in markdown and "commit `None`" not in markdown
    assert "| 70.83 | – | – |" in markdown  # F1 pooled, no other scores, no time


def test_commands_show_placeholders_for_the_machine_paths(tmp_path):
    results = make_run(tmp_path)
    info_path = results / "run_info.json"
    info = json.loads(info_path.read_text())
    info["command"] = (
        "python recipes/EmoDB/cross_validate.py --data_folder=/srv/me/EmoDB "
        "--output_folder=/srv/me/exp --results_folder=/srv/me/exp/rows/r "
        "--overrides='{encoder_source: /srv/me/EmoDB2}'"
    )
    info_path.write_text(json.dumps(info))
    spec_path = make_spec(tmp_path)
    spec = load_row_spec(spec_path)
    spec["path_names"] = {"/srv/me/EmoDB": "/path/to/EmoDB", "/srv/me/exp": "OUT"}
    collect_row(str(results), str(tmp_path / "docs" / "results" / "rows" / "done_row"))
    table = write_results_files(spec, str(spec_path))
    assert table["rows"]["done_row"]["command"] == (
        "python recipes/EmoDB/cross_validate.py --data_folder=/path/to/EmoDB "
        "--output_folder=OUT --results_folder=OUT/rows/r "
        "--overrides='{encoder_source: /srv/me/EmoDB2}'"
    )
    assert (
        "--results_folder=OUT/rows/r" in (tmp_path / "docs" / "RESULTS.md").read_text()
    )
