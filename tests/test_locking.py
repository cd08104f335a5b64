"""One run per output folder (ser_lib.locking): a second run on a locked stage folder
stops at once naming the folder and the holder's pid; a lock left by a dead process
is taken over; a run waiting for the feature cache goes on once it is released."""

import logging
import os
import socket
import subprocess
import sys

import pytest
from test_recipe import TINY, run_train

from ser_lib.locking import FolderLock, FolderLockedError

HOLDER = """import sys, time
from ser_lib.locking import FolderLock
with FolderLock(sys.argv[1], "training"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def start_holder(tmp_path, folder, seconds):
    """A separate process holding the lock of ``folder`` for ``seconds``."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    holder = subprocess.Popen(
        [sys.executable, str(script), str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_run_on_a_locked_stage_folder_stops_naming_folder_and_pid(tmp_path):
    stage = tmp_path / "out" / "fbank_all" / "fold1" / "adapter"
    holder = start_holder(tmp_path, stage, 300)
    try:
        result = run_train(
            "hparams/adapter.yaml",
            {
                **TINY,
                "data_folder": tmp_path / "no_corpus_needed",
                "output_root": tmp_path / "out",
                "test_session": 1,
            },
            check=False,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode != 0
    assert (
        f"FolderLockedError: {stage} is in use by another run (pid {holder.pid}, "
        "training)" in result.stderr
    )
    assert (stage / ".lock").exists()  # the holder's lock was left alone


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    folder = tmp_path / "stage"
    folder.mkdir()
    (folder / ".lock").write_text(f"{pid} {socket.gethostname()}\n")
    with caplog.at_level(logging.WARNING, logger="ser_lib.locking"):
        with FolderLock(folder, "training") as lock:
            assert lock.held
            assert (folder / ".lock").read_text().split()[0] == str(os.getpid())
    assert f"left by pid {pid}, which no longer exists" in caplog.text
    assert not (folder / ".lock").exists()


def test_lock_of_another_host_is_reported_with_the_host(tmp_path):
    folder = tmp_path / "stage"
    folder.mkdir()
    (folder / ".lock").write_text("4242 node17\n")
    with pytest.raises(FolderLockedError, match="pid 4242 on host node17"):
        FolderLock(folder).acquire()


def test_a_waiting_run_goes_on_when_the_holder_is_done(tmp_path):
    folder = tmp_path / "features"
    holder = start_holder(tmp_path, folder, 1)
    with FolderLock(folder, "extracting features", wait=True, poll_seconds=0.1):
        assert holder.stdout.readline().strip() == "released"  # released first
        assert (folder / ".lock").read_text().split()[0] == str(os.getpid())
    holder.wait()
