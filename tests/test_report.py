"""The cross-validation report: every picture is produced, valid, and shown in README.md.

Reuses the tiny trained fold of ``test_inference.py`` (trained once per session).
"""

import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from conftest import load_module
from test_inference import trained_fold
from test_recipe import RECIPE

from ser_lib.cross_validation import cross_validate
from ser_lib.report import (
    build_report,
    discover_fold_folders,
    read_fold_run,
    report_after_cross_validation,
)
from ser_lib.report.plots import confusion_figure, per_class_recall, save_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]
EXPECTED_PICTURES = {
    "confusion_pooled.png",
    "confusion_fold1.png",
    "recall_per_class.png",
    "curves_stage1.png",
    "curves_stage2.png",
    "tsne_fold1.png",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_fold(tmp_path_factory.getbasetemp() / "trained_fold1")


def assert_valid_png(path):
    """A PNG file that matplotlib reads back as a non-empty, non-blank image."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50, path
    assert float(image[..., :3].std()) > 0.01, f"{path} is blank"


def load_tool(name):
    """Imports ``tools/<name>.py`` as a module."""
    return load_module(REPO / "tools" / f"{name}.py", name)


def test_every_picture_is_a_valid_png_shown_in_the_readme(trained, tmp_path):
    folders = {1: trained["finetune"], 2: trained["finetune"].parents[1] / "fold2"}
    report = build_report(folders, tmp_path / "report")
    assert set(report["pictures"]) == EXPECTED_PICTURES
    assert report["finished_folds"] == [1] and report["missing_folds"] == [2]
    readme = (tmp_path / "report" / "README.md").read_text()
    shown = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", readme)
    assert sorted(shown) == sorted(EXPECTED_PICTURES)
    for name, description in report["pictures"].items():
        assert_valid_png(tmp_path / "report" / name)
        # Each picture is followed by the sentence that says what it shows.
        assert f"]({name})\n\n{description}" in readme
    assert "Missing folds: 2" in readme
    # The table of scores is that of metrics.json.
    metrics = json.loads((trained["finetune"] / "metrics.json").read_text())
    assert f"| 1 | {metrics['n_test']} | {metrics['UA']:.2f} |" in readme
    # Fig. 2 explains that mean-pooled, per-utterance normalised fbank is flat.
    assert "rounding noise" in report["pictures"]["tsne_fold1.png"]


def test_fold_reading_finds_both_train_logs(trained):
    run = read_fold_run(1, trained["finetune"])
    assert run.metrics["classes"] == ["neu", "hap", "ang", "sad"]
    assert [r["meta"]["epoch"] for r in run.stage1_log] == [1, 2]
    assert "L_pce" in run.stage1_log[0]["train"]
    assert "UA" in run.stage2_log[0]["train"]
    assert "test" in run.stage2_log[-1]


def test_make_report_tool_rebuilds_the_report(trained, tmp_path, capsys):
    tool = load_tool("make_report")
    out = tmp_path / "report"
    out.mkdir()
    (out / "confusion_fold7.png").write_bytes(PNG_SIGNATURE)  # an earlier report's
    argv = [str(trained["out"]), "--report_folder", str(out), "--folds", "1", "3"]
    assert tool.main(argv + ["--tsne_folds"]) == 0  # no t-SNE: quicker
    printed = capsys.readouterr().out
    assert "Missing folds: [3]" in printed
    assert "confusion_pooled.png: Confusion matrix pooled" in printed
    pictures = {p.name for p in out.glob("*.png")}
    assert pictures == EXPECTED_PICTURES - {"tsne_fold1.png"}
    assert "Missing folds: 3" in (out / "README.md").read_text()
    assert tool.main([str(tmp_path / "nothing")]) == 2


def test_report_without_finished_folds(tmp_path):
    report = build_report({1: tmp_path / "a" / "fold1" / "finetune"}, tmp_path / "r")
    assert report["pictures"] == {} and report["missing_folds"] == [1]
    assert "No fold has finished yet" in report["readme"].read_text()


def test_discovery_needs_an_experiment_when_there_are_several(tmp_path):
    for name in ("fbank_all", "hubert_large_improvised"):
        (tmp_path / name / "fold1" / "finetune").mkdir(parents=True)
    with pytest.raises(ValueError, match="several experiments"):
        discover_fold_folders(tmp_path)
    folders = discover_fold_folders(tmp_path, experiment="fbank_all")
    assert folders == {1: tmp_path / "fbank_all" / "fold1" / "finetune"}
    with pytest.raises(FileNotFoundError, match="experiments there"):
        discover_fold_folders(tmp_path, experiment="wavlm")


def test_cross_validation_writes_the_report(trained, tmp_path):
    """``cross_validate`` ends with the report (aggregating the finished fold 1)."""
    results = cross_validate(
        recipe_dir=RECIPE,
        folds=[1, 2],
        adapter_hparams="hparams/adapter.yaml",
        finetune_hparams="hparams/finetune.yaml",
        common_overrides={
            key: str(value) if isinstance(value, Path) else value
            for key, value in trained["common"].items()
            if key != "test_session"
        },
        results_folder=str(tmp_path),
        aggregate_only=True,
        post_run=report_after_cross_validation,
    )
    assert results["missing_folds"] == [2]
    readme = (tmp_path / "report" / "README.md").read_text()
    assert "Missing folds: 2" in readme
    assert "fbank_all/finetune" in readme.splitlines()[0]
    for name in EXPECTED_PICTURES:
        assert_valid_png(tmp_path / "report" / name)


def test_confusion_picture_of_a_class_never_seen(tmp_path):
    matrix = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # no "sad" utterance
    assert np.isnan(per_class_recall(matrix)[2])
    save_figure(
        confusion_figure(matrix, ["neu", "hap", "sad"], "x"), tmp_path / "c.png"
    )
    assert_valid_png(tmp_path / "c.png")
