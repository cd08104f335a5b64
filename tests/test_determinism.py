"""The same seed on CPU gives the same results.

Two separate processes (with different hash seeds) each run stage 1 and stage 2 of
fold 1 into their own output folder; the exported adapter, the training logs, the
predictions and the metrics must be identical. A third run starts from the manifests
and the feature cache of the first (as after ``tools/extract_features.py``, or a
fold re-run after deleting its outputs) and must give the same files too. ``max_frames`` is set below the
length of the longest utterances, so the runs also exercise the random crop of long
utterances in training and the interpolated position table at evaluation.
"""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from fixtures_iemocap import make_iemocap_fixture
from test_recipe import RECIPE, TINY

from ser_lib.brains.base import state_digest
from ser_lib.features import FeatureCache

MAX_FRAMES = 6  # the fixture's utterances have 5 to 7 frames at 50 Hz

RUNNER = """import os, sys
recipe_dir, common = sys.argv[1], sys.argv[2:]
sys.path.insert(0, recipe_dir)
os.chdir(recipe_dir)
from ser_lib.recipe import train_main
train_main(["hparams/adapter.yaml", *common, "--number_of_epochs=2",
            "--num_prototypes=8", "--reseed_after=3"], recipe_dir)
train_main(["hparams/finetune.yaml", *common, "--number_of_epochs=2"], recipe_dir)
"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    corpus = make_iemocap_fixture(
        tmp_path_factory.mktemp("iemocap"), utterances_per_dialog=8
    )
    runner = tmp_path_factory.mktemp("runner") / "run_both.py"
    runner.write_text(RUNNER)
    common = {
        **TINY,
        "data_folder": corpus["data_folder"],
        "test_session": 1,
        "max_frames": MAX_FRAMES,
    }
    folds = []
    for hash_seed in ("1", "2", "3"):
        out = tmp_path_factory.mktemp(f"run{hash_seed}")
        if hash_seed == "3":  # the manifests and the cache exist before stage 1
            for name in ("prepared_all", "features_fbank"):
                shutil.copytree(folds[0]["out"] / name, out / name)
        args = [f"--{k}={v}" for k, v in {**common, "output_root": out}.items()]
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, str(runner), RECIPE, *args],
            capture_output=True,
            text=True,
            env=env,
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
        folds.append({"out": out, "fold": out / "fbank_all" / "fold1"})
    return folds


def test_long_utterances_are_present(two_runs):
    cache = FeatureCache(two_runs[0]["out"] / "features_fbank")
    lengths = [cache.num_frames(utt_id) for utt_id in cache.ids]
    assert max(lengths) > MAX_FRAMES  # cropped in training, interpolated at test


@pytest.mark.parametrize(
    "relative",
    [
        "adapter/train_log.jsonl",
        "finetune/train_log.jsonl",
        "finetune/predictions.csv",
        "finetune/metrics.json",
    ],
)
def test_same_seed_same_files(two_runs, relative):
    first, second = (run["fold"] / relative for run in two_runs[:2])
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize(
    "relative",
    [
        "adapter/train_log.jsonl",
        "finetune/train_log.jsonl",
        "finetune/predictions.csv",
        "finetune/metrics.json",
    ],
)
def test_same_seed_same_files_with_a_prebuilt_cache(two_runs, relative):
    fresh, cached = two_runs[0]["fold"] / relative, two_runs[2]["fold"] / relative
    assert fresh.read_bytes() == cached.read_bytes()


@pytest.mark.parametrize(
    "name", ["teacher.ckpt", "student.ckpt", "local_attributes.ckpt"]
)
def test_same_seed_same_adapter(two_runs, name):
    digests = [
        state_digest(torch.load(run["fold"] / "adapter" / "model" / name))
        for run in two_runs
    ]
    assert digests[0] == digests[2]
    assert digests[0] == digests[1]
