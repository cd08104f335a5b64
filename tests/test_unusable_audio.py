"""Audio too short or silent to carry emotion is skipped (counted, logged, listed) or
stops the run, as ``unusable_audio`` in the recipe YAML says (docs/RELIABILITY.md)."""

import json
import logging
import math
import os

import numpy as np
import pytest
import soundfile as sf
from fixtures_iemocap import make_iemocap_fixture
from test_recipe import ADAPTER, FINETUNE, TINY, run_train

from ser_lib.audio import AudioError
from ser_lib.audio_levels import AudioLevel, AudioScreen, measure_manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The tiny IEMOCAP tree with one all-zero test wav and one 0.05 s training wav."""
    corpus = make_iemocap_fixture(
        tmp_path_factory.mktemp("iemocap"), utterances_per_dialog=8
    )
    labelled = [u for u in corpus["utterances"] if u["emo"]]
    silent = next(u for u in labelled if u["session"] == 1)
    short = next(u for u in labelled if u["session"] == 2)
    root = corpus["data_folder"]
    sf.write(os.path.join(root, silent["wav"]), np.zeros(4000), 16000)
    noise = 0.1 * np.random.default_rng(0).standard_normal(800)
    sf.write(os.path.join(root, short["wav"]), noise, 16000)
    return {**corpus, "silent": silent["ID"], "short": short["ID"]}


def test_unusable_audio_is_skipped_counted_logged_and_listed(corpus, tmp_path):
    common = {
        **TINY,
        "data_folder": corpus["data_folder"],
        "output_root": tmp_path,
        "test_session": 1,
    }
    stage1 = run_train("hparams/adapter.yaml", {**common, **ADAPTER})
    assert "2 of " in stage1.stderr and "too short or silent" in stage1.stderr
    run_train("hparams/finetune.yaml", {**common, **FINETUNE})
    finetune = tmp_path / "fbank_all" / "fold1" / "finetune"
    metrics = json.loads((finetune / "metrics.json").read_text())
    skipped = metrics["unusable_audio_skipped"]
    assert sorted(skipped) == sorted([corpus["silent"], corpus["short"]])
    assert skipped[corpus["silent"]].startswith("silent: RMS -inf dBFS")
    assert skipped[corpus["short"]].startswith("too short: 0.050 s")
    n_test = sum(1 for u in corpus["utterances"] if u["emo"] and u["session"] == 1)
    assert metrics["n_test"] == n_test - 1  # the silent one is not tested on
    predictions = (finetune / "predictions.csv").read_text()
    assert corpus["silent"] not in predictions
    # Neither was encoded.
    feats = tmp_path / "features_fbank" / "feats"
    assert not (feats / f"{corpus['silent']}.npy").exists()
    assert not (feats / f"{corpus['short']}.npy").exists()


def test_unusable_audio_error_stops_the_run_listing_every_file(corpus, tmp_path):
    result = run_train(
        "hparams/adapter.yaml",
        {
            **TINY,
            **ADAPTER,
            "data_folder": corpus["data_folder"],
            "output_root": tmp_path,
            "test_session": 1,
            "unusable_audio": "error",
        },
        check=False,
    )
    assert result.returncode != 0
    assert "AudioError: 2 of " in result.stderr
    assert f"{corpus['silent']}: silent" in result.stderr
    assert f"{corpus['short']}: too short: 0.050 s, below min_duration 0.08 s" in (
        result.stderr
    )
    assert not (tmp_path / "features_fbank" / "index.csv").exists()  # before encoding


def test_screen_warns_with_the_count_or_raises(tmp_path, caplog):
    levels = {
        "ok": AudioLevel(1.0, -30.0),
        "zeros": AudioLevel(1.0, -math.inf),
        "quiet": AudioLevel(1.0, -75.0),
        "short": AudioLevel(0.05, -30.0),
    }
    with caplog.at_level(logging.WARNING, logger="ser_lib.audio_levels"):
        skipped = AudioScreen(0.08, -60, "skip").screen(levels, "all.csv")
    assert sorted(skipped) == ["quiet", "short", "zeros"]
    assert caplog.records[0].levelno == logging.WARNING
    assert "3 of 4 utterances of all.csv are too short or silent" in caplog.text
    with pytest.raises(AudioError, match="3 of 4 utterances"):
        AudioScreen(0.08, -60, "error").screen(levels, "all.csv")
    with pytest.raises(ValueError, match="unusable_audio must be one of"):
        AudioScreen(0.08, -60, "ignore")


def test_levels_are_measured_once_and_again_when_the_wav_changes(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(1600), 16000)
    sf.write(tmp_path / "b.wav", np.full(1600, 0.1), 16000)
    manifest = tmp_path / "all.csv"
    manifest.write_text("ID,wav\na,$data_root/a.wav\n")
    assert measure_manifest(manifest, tmp_path)["a"].rms_dbfs == -math.inf
    manifest.write_text("ID,wav\na,$data_root/b.wav\n")
    level = measure_manifest(manifest, tmp_path)["a"]
    assert level.rms_dbfs == pytest.approx(-20.0, abs=0.01)
