"""Interrupted runs resume: SIGKILL during feature extraction, stage 1, stage 2 and the
cross-validation driver, then the same command again.

The runs are subprocesses killed with SIGKILL: either from outside once enough work
is on disk (feature extraction, the cross-validation driver), or from inside at an
exact point by a launcher that is ``train.py`` plus an injected ``os.kill`` (in the
middle of writing a checkpoint file, or right after an intra-epoch checkpoint). The
re-runs are plain ``train.py`` / ``cross_validate.py`` / extraction calls.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_iemocap import make_iemocap_fixture
from test_recipe import RECIPE, TINY, read_jsonl, run_train

from ser_lib.brains import FinetuneBrain
from ser_lib.checkpoints import STAGING_PREFIX
from ser_lib.encoders import FbankEncoder
from ser_lib.features import FeatureCache, run_feature_extraction
from ser_lib.schedules import CosineSchedule

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

EPOCHS = 3
CKPT_EVERY = {"ckpt_interval_steps": 2, "ckpt_interval_minutes": 0}
# Stage 1 on the labelled training utterances (7 steps per epoch, the step counts
# below), so that every fold's stage-1 set lies in the cache fold 1 builds.
ADAPTER = {
    "number_of_epochs": EPOCHS,
    "num_prototypes": 8,
    "reseed_after": 3,
    "adapter_data": "labelled",
}
FINETUNE = {"number_of_epochs": EPOCHS}

LAUNCHER = '''"""train.py with an injected SIGKILL (written by tests/test_interrupt.py).

    python launcher.py RECIPE_DIR MODE N HPARAMS [--key=value ...]

MODE during_save: killed while writing the N-th optimizer.ckpt (left half written);
MODE after_save: killed right after the N-th intra-epoch checkpoint is complete.
"""
import os
import signal
import sys

import torch

from ser_lib.checkpoints import AtomicCheckpointer
from ser_lib.recipe import train_main

recipe_dir, mode, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = []
if mode == "during_save":
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.ckpt"):
            calls.append(f)
            if len(calls) == kill_at:
                with open(f, "wb") as handle:
                    handle.write(b"half a checkpoint")
                os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)

    torch.save = dying_save
else:
    real_checkpoint = AtomicCheckpointer.save_checkpoint

    def dying_checkpoint(self, *args, **kwargs):
        ckpt = real_checkpoint(self, *args, **kwargs)
        if not kwargs.get("end_of_epoch", True):
            calls.append(ckpt)
            if len(calls) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return ckpt

    AtomicCheckpointer.save_checkpoint = dying_checkpoint
sys.path.insert(0, recipe_dir)
os.chdir(recipe_dir)
train_main(sys.argv[4:], recipe_dir)
'''


class SlowFbankEncoder(FbankEncoder):
    """Fbank features computed slowly, so that a run can be killed half-way."""

    def __init__(self, delay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def encode(self, wavs, lens):
        time.sleep(self.delay)
        return super().encode(wavs, lens)


def env_with_tests_on_path():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), str(ROOT), env.get("PYTHONPATH", "")]
    )
    return env


def run_killed_launcher(tmp_path, mode, kill_at, hparams, overrides):
    """Runs the launcher; returns its output (it must die of SIGKILL)."""
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    args = [f"--{k}={v}" for k, v in overrides.items()]
    cmd = [sys.executable, str(launcher), RECIPE, mode, str(kill_at), hparams, *args]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env=env_with_tests_on_path()
    )
    output = result.stdout + result.stderr
    assert result.returncode == -signal.SIGKILL, output[-5000:]
    return output


def wait_for(condition, process, timeout=300.0, what="a condition"):
    """Polls ``condition()`` until it holds; fails if ``process`` ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def epochs_of(log_path):
    return [r["meta"]["epoch"] for r in read_jsonl(log_path) if "epoch" in r["meta"]]


def feature_mtimes(cache_dir):
    return {p.name: p.stat().st_mtime_ns for p in (cache_dir / "feats").glob("*.npy")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_iemocap_fixture(
        tmp_path_factory.mktemp("iemocap"), utterances_per_dialog=8
    )


@pytest.fixture(scope="module")
def common(corpus, tmp_path_factory):
    return {
        **TINY,
        **CKPT_EVERY,
        "data_folder": corpus["data_folder"],
        "output_root": tmp_path_factory.mktemp("results"),
        "test_session": 1,
    }


# ---------------------------------------------------------------- extraction


def test_feature_extraction_killed_then_resumed(corpus, tmp_path):
    csv_path = tmp_path / "all.csv"
    lines = ["ID,duration,wav"] + [
        f"{u['ID']},{u['duration']},$data_root/{u['wav']}" for u in corpus["utterances"]
    ]
    csv_path.write_text("\n".join(lines) + "\n")
    total = len(corpus["utterances"])
    encoder_yaml = tmp_path / "slow.yaml"
    encoder_yaml.write_text(
        "encoder: !new:test_interrupt.SlowFbankEncoder\n    delay: 0.1\n"
    )
    cache_dir = tmp_path / "cache"
    cmd = [sys.executable, str(ROOT / "tools" / "extract_features.py")]
    cmd += ["--encoder_hparams", str(encoder_yaml), "--csv", str(csv_path)]
    cmd += ["--data_root", corpus["data_folder"], "--cache_dir", str(cache_dir)]
    cmd += ["--batch_seconds", "0.01", "--no_progress"]  # one utterance per batch
    process = subprocess.Popen(
        cmd,
        env=env_with_tests_on_path(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(
        lambda: len(feature_mtimes(cache_dir)) >= 5 if cache_dir.exists() else False,
        process,
        what="5 cached utterances",
    )
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL

    done = feature_mtimes(cache_dir)
    assert 5 <= len(done) < total
    for name in done:  # only complete arrays under their final names
        feats = np.load(cache_dir / "feats" / name)
        assert feats.dtype == np.float16 and feats.shape[1] == 160
    assert not (cache_dir / "index.csv").exists()

    # The same extraction again: only the rest is encoded, nothing is redone.
    summary = run_feature_extraction(
        SlowFbankEncoder(),
        csv_path,
        cache_dir,
        data_root=corpus["data_folder"],
        progress=False,
    )
    assert (summary.num_skipped, summary.num_extracted) == (
        len(done),
        total - len(done),
    )
    after = feature_mtimes(cache_dir)
    assert {name: after[name] for name in done} == done
    assert len(FeatureCache(cache_dir)) == total
    assert not list(cache_dir.rglob("*.tmp"))


# ---------------------------------------------------------------- stage 1


@pytest.fixture(scope="module")
def stage1(common, tmp_path_factory):
    """Stage 1 killed while writing a checkpoint in epoch 2, then run again."""
    overrides = {**common, **ADAPTER}
    fold_dir = Path(common["output_root"]) / "fbank_all" / "fold1"
    # Checkpoints every 2 steps (7 steps per epoch): optimizer.ckpt is written at
    # steps 2, 4, 6 and at the end of epoch 1 (4 files), then at steps 2, 4, 6 of
    # epoch 2: the 7th write is killed half-way, at step 6 of epoch 2.
    killed = run_killed_launcher(
        tmp_path_factory.mktemp("launch1"),
        "during_save",
        7,
        "hparams/adapter.yaml",
        overrides,
    )
    save_dir = fold_dir / "adapter" / "save"
    after_kill = sorted(p.name for p in save_dir.iterdir())
    rerun = run_train("hparams/adapter.yaml", overrides)
    return {
        "fold_dir": fold_dir,
        "killed_output": killed,
        "after_kill": after_kill,
        "rerun_output": rerun.stdout + rerun.stderr,
        "save_dir": save_dir,
    }


def test_stage1_kill_leaves_no_half_written_checkpoint(stage1):
    staged = [n for n in stage1["after_kill"] if n.startswith(STAGING_PREFIX)]
    assert len(staged) == 1  # the checkpoint being written when killed
    # The resumed run ignored it, removed it and loaded the last complete one.
    assert not any(
        p.name.startswith(STAGING_PREFIX) for p in stage1["save_dir"].iterdir()
    )
    assert "Resuming epoch 2 at step 4 of 7" in stage1["rerun_output"]


def test_stage1_resumed_run_continues_the_epochs(stage1):
    adapter_dir = stage1["fold_dir"] / "adapter"
    records = read_jsonl(adapter_dir / "train_log.jsonl")
    assert epochs_of(adapter_dir / "train_log.jsonl") == [1, 2, 3]
    # Epoch 2's averages cover all its 7 steps (4 before the kill, restored from
    # the checkpoint, and 3 after): λ is deterministic, so its logged mean is
    # exactly the mean of the schedule over the epoch's steps.
    schedule = CosineSchedule(1.0, 0.5)
    steps = 7
    expected = np.mean([schedule((1 + s / steps) / EPOCHS) for s in range(1, 8)])
    assert records[1]["train"]["lambda"] == pytest.approx(expected, abs=1e-9)
    for record in records:
        assert all(math.isfinite(v) for v in record["train"].values())
    assert (adapter_dir / "model" / "teacher.ckpt").is_file()


# ---------------------------------------------------------------- stage 2


@pytest.fixture(scope="module")
def stage2(stage1, common, tmp_path_factory):
    """Stage 2 killed right after its 4th intra-epoch checkpoint, then run again."""
    overrides = {**common, **FINETUNE}
    # Stage 2 trains on 53 utterances plus 31 minority copies: 11 steps per epoch,
    # intra-epoch checkpoints at steps 2, 4, 6, 8, 10: the 4th is epoch 1, step 8.
    run_killed_launcher(
        tmp_path_factory.mktemp("launch2"),
        "after_save",
        4,
        "hparams/finetune.yaml",
        overrides,
    )
    finetune_dir = stage1["fold_dir"] / "finetune"
    assert not (finetune_dir / "metrics.json").exists()
    rerun = run_train("hparams/finetune.yaml", overrides)
    return {"finetune_dir": finetune_dir, "rerun_output": rerun.stdout + rerun.stderr}


def test_stage2_resumes_mid_epoch_and_evaluates(stage2, corpus):
    finetune_dir = stage2["finetune_dir"]
    assert "Resuming epoch 1 at step 8 of 11" in stage2["rerun_output"]
    assert epochs_of(finetune_dir / "train_log.jsonl") == [1, 2, 3]
    metrics = json.loads((finetune_dir / "metrics.json").read_text())
    n_test = sum(1 for u in corpus["utterances"] if u["emo"] and u["session"] == 1)
    assert metrics["n_test"] == n_test
    assert (finetune_dir / "predictions.csv").is_file()


def test_stage2_epoch_state_round_trip(tmp_path):
    """The predictions of a part-done training epoch survive a checkpoint."""
    brains = [
        FinetuneBrain(
            modules={"classifier": torch.nn.Linear(1, 2)},
            hparams={"output_folder": str(tmp_path)},
            run_opts={"device": "cpu", "noprogressbar": True},
        )
        for _ in range(2)
    ]
    brains[0].outputs = [
        (["a", "b"], torch.tensor([0, 1]), torch.tensor([[0.9, 0.1], [0.2, 0.8]])),
        (["c"], torch.tensor([1]), torch.tensor([[0.6, 0.4]])),
    ]
    state = json.loads(json.dumps(brains[0].epoch_state()))  # as in the checkpoint
    brains[1].load_epoch_state(state)
    for saved, restored in zip(
        brains[0].gather_predictions(), brains[1].gather_predictions(), strict=True
    ):
        assert np.array_equal(np.asarray(saved), np.asarray(restored))
    assert brains[1].stage_scores(0.0) == brains[0].stage_scores(0.0)


# ---------------------------------------------------------------- driver


def test_cross_validation_driver_killed_then_resumed(stage2, common, tmp_path):
    out = Path(common["output_root"])
    fold1 = out / "fbank_all" / "fold1"
    fold2 = out / "fbank_all" / "fold2"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "common": {**TINY, **CKPT_EVERY},
                "adapter": ADAPTER,
                "finetune": FINETUNE,
            }
        )
    )
    cmd = [sys.executable, "cross_validate.py", "--data_folder", common["data_folder"]]
    cmd += ["--output_folder", str(out), "--config", str(config), "--folds", "1", "2"]
    finished = {
        path: path.stat().st_mtime_ns
        for path in (
            fold1 / "finetune" / "metrics.json",
            fold1 / "adapter" / "model" / "teacher.ckpt",
            fold1 / "adapter" / "train_log.jsonl",
        )
    }
    cache = feature_mtimes(out / "features_fbank")

    log = tmp_path / "driver.log"
    with open(log, "w") as handle:
        driver = subprocess.Popen(
            cmd,
            cwd=RECIPE,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # like a cluster job: the whole group is killed
        )
        save_dir = fold2 / "adapter" / "save"
        wait_for(
            lambda: save_dir.is_dir() and any(save_dir.glob("CKPT+*")),
            driver,
            what="a stage-1 checkpoint of fold 2",
        )
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert not (fold2 / "finetune" / "metrics.json").exists()

    again = subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-5000:]
    # Fold 1 was finished: nothing of it is recomputed.
    assert {path: path.stat().st_mtime_ns for path in finished} == finished
    # Fold 2 continued from its checkpoint; the cached features were reused.
    assert f"Loading a checkpoint from {save_dir}" in output
    assert epochs_of(fold2 / "adapter" / "train_log.jsonl") == [1, 2, 3]
    assert feature_mtimes(out / "features_fbank") == cache
    results = json.loads((out / "cv_results.json").read_text())
    assert [fold["fold"] for fold in results["folds"]] == [1, 2]
