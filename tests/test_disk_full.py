"""A full disk says so (simulated): checkpoints and feature files name what was being
written, and what was finished before is kept."""

import errno

import numpy as np
import pytest
import torch
from conftest import write_wav

from ser_lib.checkpoints import STAGING_PREFIX, AtomicCheckpointer
from ser_lib.disk_space import DiskFullError
from ser_lib.encoders import FbankEncoder
from ser_lib.features import FeatureCache, run_feature_extraction

FAILURES = [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("basic_ios::clear: iostream error"),
    RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos 64 vs 0"),
]


@pytest.mark.parametrize("failure", FAILURES, ids=["ENOSPC", "iostream", "zip"])
def test_full_disk_at_a_checkpoint_is_reported_and_the_last_one_kept(
    tmp_path, monkeypatch, failure
):
    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(tmp_path, recoverables={"model": model})
    first = checkpointer.save_checkpoint()

    def full(*args, **kwargs):
        raise failure

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DiskFullError) as error:
        checkpointer.save_checkpoint()
    assert str(error.value).startswith(
        f"no space left on device while writing a checkpoint in {tmp_path}"
    )
    assert error.value.__cause__ is failure
    assert not list(tmp_path.glob(STAGING_PREFIX + "*"))  # half-written one removed
    monkeypatch.undo()
    assert checkpointer.recover_if_possible().path == first.path


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    checkpointer = AtomicCheckpointer(
        tmp_path, recoverables={"model": torch.nn.Linear(2, 2)}
    )

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(torch, "save", denied)
    with pytest.raises(PermissionError):
        checkpointer.save_checkpoint()


def test_full_disk_while_writing_features_names_the_file(tmp_path, monkeypatch):
    for name in ("a", "b"):
        write_wav(tmp_path / f"{name}.wav", 16000, 0.5)
    csv_path = tmp_path / "all.csv"
    csv_path.write_text(
        "ID,duration,wav\na,0.5,$data_root/a.wav\nb,0.5,$data_root/b.wav\n"
    )

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    cache_dir = tmp_path / "cache"
    with pytest.raises(DiskFullError) as error:
        run_feature_extraction(
            FbankEncoder(), csv_path, cache_dir, data_root=tmp_path, progress=False
        )
    message = str(error.value)
    assert message.startswith("no space left on device while writing ")
    assert str(cache_dir / "feats") in message and message.split(":")[0].endswith(
        ".npy"
    )
    assert not list((cache_dir / "feats").glob(".*"))  # no temporary file left
    monkeypatch.undo()  # space freed: the same call completes
    run_feature_extraction(
        FbankEncoder(), csv_path, cache_dir, data_root=tmp_path, progress=False
    )
    assert FeatureCache(cache_dir).ids == ["a", "b"]
