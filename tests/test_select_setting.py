"""tools/select_setting.py: a setting chosen on held-out-speaker validation.

Tiny fake stage-2 folders (``hyperparams.yaml`` + ``train_log.jsonl`` as
:class:`ser_lib.train_logger.JsonlTrainLogger` writes it), then one real pair of
baseline runs with ``valid_mode: speaker`` through the IEMOCAP fold driver.
"""

import importlib.util
import json
import os
from pathlib import Path

import pytest
from conftest import iemocap_cross_validate
from fixtures_iemocap import make_iemocap_fixture

from ser_lib.selection import SelectionError, last_epoch_validation, select_candidate

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "select_setting", ROOT / "tools" / "select_setting.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(folder, valid_uas, test_ua=99.0, epochs=None, extra_lines=()):
    """A finished stage-2 folder: one log line per epoch with its validation UA
    (WA = UA + 1, F1 = UA - 1), the test line the evaluation appends, and a
    metrics.json whose test UA would reverse every choice if it were read."""
    folder.mkdir(parents=True)
    epochs = len(valid_uas) if epochs is None else epochs
    (folder / "hyperparams.yaml").write_text(
        f"# Generated 2026-12-06 from:\n# x/finetune.yaml\nnumber_of_epochs: {epochs}\n"
        "classes: &id1 !apply:ser_lib.data.class_map.class_names [{a: a}]\n"
    )
    lines = [
        {
            "meta": {"epoch": epoch, "lr": 0.1},
            "train": {"loss": 0.5, "UA": 95.0, "WA": 95.0, "F1": 95.0},
            "valid": {"loss": 1.0, "UA": ua, "WA": ua + 1.0, "F1": ua - 1.0},
        }
        for epoch, ua in enumerate(valid_uas, start=1)
    ]
    lines += list(extra_lines)
    lines.append(
        {
            "meta": {"Epoch loaded": epochs},
            "test": {"loss": 0.1, "UA": test_ua, "WA": test_ua, "F1": test_ua},
        }
    )
    (folder / "train_log.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    (folder / "metrics.json").write_text(json.dumps({"UA": test_ua}))
    return folder


def results_folder(root, name, runs):
    """A cross-validation results folder whose run_info.json names the folds."""
    folder = root / "rows" / name
    folder.mkdir(parents=True)
    info = {
        "command": "python cross_validate.py",
        "folds": {
            str(fold): {"folder": str(run), "adapter_folder": None}
            for fold, run in runs.items()
        },
    }
    (folder / "run_info.json").write_text(json.dumps(info))
    return folder


def test_last_epoch_not_best_and_never_the_test(tmp_path):
    # "early" peaks at epoch 1 (80) but ends at 50; "steady" ends at 60. The test
    # scores (metrics.json, the test log line) favour "early".
    early = {
        fold: fake_run(tmp_path / "early" / f"fold{fold}" / "finetune", [80.0, 50.0])
        for fold in (1, 2)
    }
    steady = [
        fake_run(tmp_path / "steady" / f"fold{fold}" / "finetune", [55.0, 60.0], 10.0)
        for fold in (1, 2)
    ]
    # A third form: a collected row folder (fold<k>/ holding the run's files).
    fake_run(tmp_path / "row" / "fold1", [40.0, 58.0])
    fake_run(tmp_path / "row" / "fold2", [40.0, 64.0])
    for run in (*early.values(), *steady):
        (run / "metrics.json").write_text("not JSON: must not be read")
    result = select_candidate(
        {
            "early": [str(results_folder(tmp_path, "early", early))],
            "steady": [str(run) for run in steady],
            "row": [str(tmp_path / "row")],
        }
    )
    assert result["folds"] == [1, 2]
    assert result["candidates"]["early"]["mean"]["UA"] == pytest.approx(50.0)
    assert result["candidates"]["steady"]["mean"]["UA"] == pytest.approx(60.0)
    assert result["candidates"]["row"]["mean"]["UA"] == pytest.approx(61.0)
    assert result["candidates"]["row"]["std"]["UA"] == pytest.approx(4.2426, abs=1e-4)
    assert result["candidates"]["row"]["mean"]["WA"] == pytest.approx(62.0)
    assert result["chosen"] == "row"
    assert result["candidates"]["steady"]["per_fold"]["2"]["epoch"] == 2


def test_choice_by_another_metric_and_ties_go_to_the_first(tmp_path):
    a = fake_run(tmp_path / "a" / "fold1" / "finetune", [60.0])
    b = fake_run(tmp_path / "b" / "fold1" / "finetune", [60.0])
    assert select_candidate({"a": [str(a)], "b": [str(b)]})["chosen"] == "a"
    assert select_candidate({"b": [str(b)], "a": [str(a)]}, "F1")["chosen"] == "b"


def test_a_resumed_epoch_counts_its_last_record(tmp_path):
    resumed = {"meta": {"epoch": 2}, "valid": {"loss": 1, "UA": 70, "WA": 7, "F1": 7}}
    run = fake_run(tmp_path / "fold1", [50.0, 55.0], extra_lines=[resumed])
    assert last_epoch_validation(run)["UA"] == 70.0


def test_runs_that_cannot_be_scored_are_clear_errors(tmp_path):
    unfinished = fake_run(tmp_path / "unfinished" / "fold1", [50.0], epochs=3)
    with pytest.raises(SelectionError, match="no record of epoch 3"):
        last_epoch_validation(unfinished)
    no_valid = tmp_path / "none" / "fold1"
    no_valid.mkdir(parents=True)
    (no_valid / "hyperparams.yaml").write_text("number_of_epochs: 1\n")
    (no_valid / "train_log.jsonl").write_text(
        json.dumps({"meta": {"epoch": 1}, "train": {"UA": 50.0}}) + "\n"
    )
    with pytest.raises(SelectionError, match="valid_mode: speaker"):
        last_epoch_validation(no_valid)
    one = fake_run(tmp_path / "x" / "fold1", [50.0])
    two = fake_run(tmp_path / "x" / "fold2", [50.0])
    with pytest.raises(SelectionError, match="same folds"):
        select_candidate({"a": [str(one), str(two)], "b": [str(one)]})
    with pytest.raises(SelectionError, match="names no fold"):
        select_candidate({"a": [str(tmp_path / "somewhere")]})
    with pytest.raises(SelectionError, match="given twice"):
        select_candidate({"a": [str(one), str(one)]})


def test_tool_writes_json_and_markdown_per_question(tmp_path, capsys):
    tool = load_tool()
    low = fake_run(tmp_path / "low" / "fold1" / "finetune", [40.0])
    high = fake_run(tmp_path / "high" / "fold1" / "finetune", [70.0])
    out = ["--json", str(tmp_path / "s.json"), "--markdown", str(tmp_path / "s.md")]
    tool.main(
        ["--question", "baseline_layer", "--title", "Whisper layer"]
        + ["--candidate", "layer0", str(low), "--candidate", "layer6", str(high)]
        + out
    )
    assert "chosen layer6" in capsys.readouterr().out
    tool.main(
        ["--question", "kmeans_update", "--candidate", "ema", str(low)]
        + ["--candidate", "cumulative", str(high)]
        + out
    )
    saved = json.loads((tmp_path / "s.json").read_text())
    assert list(saved["questions"]) == ["baseline_layer", "kmeans_update"]
    layer = saved["questions"]["baseline_layer"]
    assert layer["chosen"] == "layer6" and layer["title"] == "Whisper layer"
    assert layer["command"].startswith("python tools/select_setting.py --question")
    assert layer["candidates"]["layer0"]["per_fold"]["1"]["UA"] == 40.0
    markdown = (tmp_path / "s.md").read_text()
    assert "## Whisper layer" in markdown and "## kmeans_update" in markdown
    assert "| **layer6** (chosen) | 70.00 | 70.00 ± 0.00 | 71.00 ± 0.00" in markdown
    with pytest.raises(SystemExit):
        tool.main(["--question", "q", "--candidate", "lonely"] + out)
    # --path_names: the recorded command shows placeholders and not the option itself
    tool.main(
        ["--question", "pce_logits", "--candidate", "cosine", str(low)]
        + [
            "--candidate",
            "neg_sqdist",
            str(high),
            "--path_names",
            f"{{{tmp_path}: OUT}}",
        ]
        + out
    )
    command = json.loads((tmp_path / "s.json").read_text())["questions"]["pce_logits"][
        "command"
    ]
    assert str(tmp_path) not in command and "--path_names" not in command
    assert "--candidate cosine OUT/low/fold1/finetune" in command
    assert "--json OUT/s.json" in command


def test_real_baseline_runs_with_a_validation_speaker(tmp_path):
    """Stage 2 run by the fold driver with valid_mode: speaker logs what the
    selection reads; a run without a validation speaker is refused."""
    corpus = make_iemocap_fixture(tmp_path / "iemocap", utterances_per_dialog=8)
    cross_validate = iemocap_cross_validate()
    folders = {}
    for name, layer, valid_mode in (
        ("layer0", 0, "speaker"),
        ("layer1", 1, "speaker"),
        ("no_valid", 1, "none"),
    ):
        common = {
            "encoder_name": "fbank",
            "encoder_hparams": "hparams/encoder/fbank.yaml",
            "subset": "all",
            "cached_layers": 2,
            "layer_dim": 80,
            "feature_layers": layer,
            "proj_dim": 16,
            "number_of_epochs": 2,
            "batch_size": 8,
            "valid_mode": valid_mode,
            "baseline_name": f"baseline_{name}",
        }
        config = tmp_path / f"{name}.yaml"
        config.write_text(json.dumps({"common": common}))
        folders[name] = tmp_path / "rows" / name
        argv = ["--data_folder", corpus["data_folder"]]
        argv += ["--output_folder", str(tmp_path / "cv"), "--config", str(config)]
        argv += ["--folds", "1", "--finetune_hparams", "hparams/baseline.yaml"]
        argv += ["--results_folder", str(folders[name]), "--no_report"]
        cross_validate.main(argv)
    result = select_candidate(
        {name: [str(folders[name])] for name in ("layer0", "layer1")}
    )
    assert result["folds"] == [1]
    for name in ("layer0", "layer1"):
        fold = result["candidates"][name]["per_fold"]["1"]
        assert fold["epoch"] == 2
        assert 0.0 <= fold["UA"] <= 100.0
        run = result["candidates"][name]["folders"]["1"]
        assert os.path.basename(os.path.dirname(run)) == "fold1"
    expected = max(
        ("layer0", "layer1"),
        key=lambda n: (result["candidates"][n]["mean"]["UA"], n == "layer0"),
    )
    assert result["chosen"] == expected
    with pytest.raises(SelectionError, match="valid_mode: speaker"):
        select_candidate({"no_valid": [str(folders["no_valid"])]})
