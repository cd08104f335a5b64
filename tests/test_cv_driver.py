"""The cross-validation driver: its own messages reach the console and cv_log.txt,
and the command line's overrides beat the config file's per-stage sections."""

import json
import subprocess
import sys

from test_recipe import RECIPE

from ser_lib.cross_validation import merge_overrides

CONFIG = """common:
  lr: 0.001
adapter:
  number_of_epochs: 8
finetune:
  number_of_epochs: 12
"""


def test_command_line_overrides_beat_the_config_sections():
    sections = {
        "common": {"lr": 0.001, "batch_size": 32},
        "adapter": {"number_of_epochs": 8, "num_prototypes": 64},
        "finetune": {"number_of_epochs": 12},
    }
    common, adapter, finetune = merge_overrides(
        sections, {"number_of_epochs": 2, "lr": 0.01}, {}, {"lr": 0.5}
    )
    stage1, stage2 = {**common, **adapter}, {**common, **finetune}
    assert stage1 == {
        "lr": 0.01,
        "batch_size": 32,
        "number_of_epochs": 2,
        "num_prototypes": 64,
    }
    assert stage2 == {"lr": 0.5, "batch_size": 32, "number_of_epochs": 2}
    # Without the command line, the config's per-stage sections win over common.
    common, adapter, finetune = merge_overrides(sections, {}, {}, {})
    assert {**common, **adapter}["number_of_epochs"] == 8
    assert {**common, **finetune}["number_of_epochs"] == 12


def test_driver_messages_reach_the_console_and_cv_log(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    fold1 = out / "fbank_all" / "fold1" / "finetune"
    fold1.mkdir(parents=True)
    (fold1 / "metrics.json").write_text(
        json.dumps({"UA": 60.0, "WA": 55.0, "F1": 50.0, "n_test": 10})
    )
    cmd = [
        sys.executable,
        "cross_validate.py",
        f"--data_folder={tmp_path}",
        f"--output_folder={out}",
        f"--config={config}",
        "--overrides={number_of_epochs: 2, encoder_name: fbank, subset: all}",
        "--folds",
        "1",
        "2",
        "--aggregate_only",
        "--no_report",
    ]
    result = subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (out / "cv_log.txt").read_text()
    for text in (result.stderr, log):
        assert "INFO" in text
        assert f"Fold 1: finished earlier ({fold1 / 'metrics.json'})" in text
        assert "Fold 2 has no results yet" in text
        assert f"Results: {out / 'cv_results.json'}" in text
        assert (
            "--overrides number_of_epochs: 2 replaces the config's adapter value 8"
            in text
        )
    assert "| 1 | 10 | 60.00 | 55.00 | 50.00 |" in result.stdout
