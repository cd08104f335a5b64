"""One run per output folder: a lock file holding the owner's pid and host.

Two runs writing the same stage folder delete each other's checkpoints and log every
epoch twice; two extractions into the same feature cache race on ``index.csv``.
:class:`FolderLock` creates ``<folder>/.lock`` atomically (``O_CREAT | O_EXCL``)
with the pid and host of its owner. A second run either stops at once with a message
naming the folder and the holder's pid (stage folders), or waits until the holder is
done (the feature cache, which every fold of a cross-validation reads). A lock left by
a process that no longer exists (killed run) is taken over with a warning; a lock
from another host cannot be checked and is reported with the host's name.
"""

import errno
import os
import socket
import time

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

LOCK_FILE = ".lock"
"""Name of the lock file inside the locked folder."""


class FolderLockedError(RuntimeError):
    """The folder is locked by another live run (the message names folder and pid)."""


def _pid_alive(pid):
    """Whether a process with ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM  # exists, owned by another user
    return True


class FolderLock:
    """An exclusive lock on a folder for one run (a context manager).

    Arguments
    ---------
    folder : str or os.PathLike
        The folder (created if needed); the lock file is ``folder/.lock``.
    purpose : str
        What the holder does there, for the messages (e.g. ``"training"``).
    wait : bool
        Wait for the holder to finish instead of raising :class:`FolderLockedError`.
    poll_seconds : float
        How often a waiting run looks again.

    Example
    -------
    >>> folder = getfixture("tmp_path") / "stage"
    >>> with FolderLock(folder, "training"):
    ...     FolderLock(folder, "training").acquire()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser_lib.locking.FolderLockedError: .../stage is in use by another run (pid ...
    >>> (folder / ".lock").exists()
    False
    """

    def __init__(self, folder, purpose="writing", wait=False, poll_seconds=5.0):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self.purpose = purpose
        self.wait = wait
        self.poll_seconds = poll_seconds
        self.held = False

    def _holder(self):
        """(pid, host) written in the lock file, or None if it vanished."""
        try:
            with open(self.path, encoding="utf-8") as f:
                pid, _, host = f.read().strip().partition(" ")
        except FileNotFoundError:
            return None
        try:
            return int(pid), host
        except ValueError:  # a lock file being written right now
            return -1, host

    def _try_create(self):
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
        return True

    def acquire(self):
        """Takes the lock, waiting or raising :class:`FolderLockedError` if held."""
        os.makedirs(self.folder, exist_ok=True)
        waiting_logged = False
        while not self._try_create():
            holder = self._holder()
            if holder is None:
                continue  # released meanwhile
            pid, host = holder
            if host == socket.gethostname() and pid > 0 and not _pid_alive(pid):
                logger.warning(
                    "Taking over the lock of %s left by pid %d, which no longer "
                    "exists (a killed run)",
                    self.folder,
                    pid,
                )
                os.remove(self.path)
                continue
            where = "" if host == socket.gethostname() else f" on host {host}"
            if not self.wait:
                raise FolderLockedError(
                    f"{self.folder} is in use by another run (pid {pid}{where}, "
                    f"{self.purpose}); wait for it to finish or stop it (if that "
                    f"process is gone, delete {self.path})"
                )
            if not waiting_logged:
                logger.info(
                    "Waiting for pid %d%s to finish %s %s",
                    pid,
                    where,
                    self.purpose,
                    self.folder,
                )
                waiting_logged = True
            time.sleep(self.poll_seconds)
        self.held = True
        return self

    def release(self):
        """Removes the lock file if this object holds it."""
        if self.held:
            self.held = False
            if os.path.exists(self.path):
                os.remove(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
