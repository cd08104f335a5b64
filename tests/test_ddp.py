"""Distributed training: both stages under ``torchrun`` with 2 CPU processes (gloo).

After every training epoch each Brain gathers a digest of its replicated modules
(stage 1: student, EMA teacher, local attributes; stage 2: backbone, SAP,
classifier) from every rank and stops if they differ; the log line it writes is
checked here against the files rank 0 exported. Only rank 0 writes files.
"""

import json
import re
import socket
import subprocess
import sys

import pandas as pd
import pytest
import torch
from fixtures_iemocap import make_iemocap_fixture
from test_recipe import RECIPE, TINY, read_jsonl

from ser_lib.brains.base import state_digest

EPOCHS = 2

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is needed",
)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(hparams, overrides):
    """``torchrun --nproc_per_node=2 train.py hparams ... --distributed_backend=gloo``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    cmd += ["--master_addr=127.0.0.1", f"--master_port={free_port()}"]
    cmd += ["train.py", hparams, *[f"--{k}={v}" for k, v in overrides.items()]]
    cmd += ["--distributed_backend=gloo"]
    result = subprocess.run(
        cmd, cwd=RECIPE, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def replica_digests(output):
    """The digests of every 'Replicas identical on 2 ranks' log line, in order."""
    lines = re.findall(r"Replicas identical on 2 ranks: (.*)", output)
    return [dict(item.split("=") for item in line.split()) for line in lines]


@pytest.fixture(scope="module")
def ddp_fold(tmp_path_factory):
    corpus = make_iemocap_fixture(
        tmp_path_factory.mktemp("iemocap"), utterances_per_dialog=8
    )
    out = tmp_path_factory.mktemp("results")
    common = {
        **TINY,
        "data_folder": corpus["data_folder"],
        "output_root": out,
        "test_session": 1,
        "number_of_epochs": EPOCHS,
    }
    adapter_output = torchrun(
        "hparams/adapter.yaml", {**common, "num_prototypes": 8, "reseed_after": 3}
    )
    finetune_output = torchrun("hparams/finetune.yaml", common)
    return {
        "corpus": corpus,
        "fold": out / "fbank_all" / "fold1",
        "adapter_output": adapter_output,
        "finetune_output": finetune_output,
    }


def test_stage1_ranks_hold_the_same_teacher_and_local_attributes(ddp_fold):
    digests = replica_digests(ddp_fold["adapter_output"])
    assert len(digests) == EPOCHS  # checked after every epoch
    assert set(digests[-1]) == {"student", "teacher", "local_attributes"}
    model = ddp_fold["fold"] / "adapter" / "model"
    for name in ("teacher", "student", "local_attributes"):
        exported = state_digest(torch.load(model / f"{name}.ckpt"))
        assert digests[-1][name] == exported, name
    # The EMA teacher moved away from the student, and the prototypes were used.
    assert digests[-1]["teacher"] != digests[-1]["student"]
    prototypes = torch.load(model / "local_attributes.ckpt")
    assert bool(prototypes["initialized"]) and int(prototypes["step"]) > 0


def test_stage2_ranks_agree_and_rank0_writes_once(ddp_fold):
    digests = replica_digests(ddp_fold["finetune_output"])
    assert len(digests) == EPOCHS
    assert set(digests[-1]) == {"backbone", "sap", "classifier"}
    finetune = ddp_fold["fold"] / "finetune"
    metrics = json.loads((finetune / "metrics.json").read_text())
    test_ids = [
        u["ID"]
        for u in ddp_fold["corpus"]["utterances"]
        if u["emo"] and u["session"] == 1
    ]
    assert metrics["n_test"] == len(test_ids)
    assert metrics["classes_absent_from_training"] == []
    n_train = sum(
        1 for u in ddp_fold["corpus"]["utterances"] if u["emo"] and u["session"] != 1
    )
    assert sum(metrics["train_class_counts"].values()) == n_train
    predictions = pd.read_csv(finetune / "predictions.csv")
    assert sorted(predictions["ID"]) == sorted(test_ids)  # one row each
    # One log line per epoch (plus the test line), not one per rank.
    for stage, extra in (("adapter", 0), ("finetune", 1)):
        records = read_jsonl(ddp_fold["fold"] / stage / "train_log.jsonl")
        assert len(records) == EPOCHS + extra, stage
