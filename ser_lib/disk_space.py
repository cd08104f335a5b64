"""A full disk says so.

Writing a checkpoint on a full disk fails inside torch's zip writer with messages
such as ``basic_ios::clear: iostream error`` or ``[enforce fail at
inline_container.cc:672] unexpected pos ...``, and a feature file with
``OSError: [Errno 28] No space left on device``. :func:`reporting_disk_full` turns
each of them into a :class:`DiskFullError` naming what was being written.
"""

import contextlib
import errno

__all__ = ["DiskFullError", "is_disk_full", "reporting_disk_full"]

TORCH_WRITE_FAILURES = (
    "No space left on device",
    "basic_ios::clear",
    "unexpected pos",
    "PytorchStreamWriter failed writing file",
)
"""Parts of the RuntimeError messages torch gives when a write fails for space."""


class DiskFullError(OSError):
    """No space left on device while writing a named file or folder."""


def is_disk_full(err):
    """Whether ``err`` is an out-of-space failure (``ENOSPC``, ``EDQUOT`` or torch's).

    Example
    -------
    >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] "
    ...                           "unexpected pos 64 vs 0"))
    True
    >>> is_disk_full(OSError(errno.EACCES, "Permission denied"))
    False
    """
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(err, RuntimeError):
        return any(text in str(err) for text in TORCH_WRITE_FAILURES)
    return False


@contextlib.contextmanager
def reporting_disk_full(path):
    """Re-raises an out-of-space failure inside as :class:`DiskFullError` naming ``path``.

    Example
    -------
    >>> with reporting_disk_full("/data/feats/a.npy"):  # doctest: +ELLIPSIS
    ...     raise OSError(errno.ENOSPC, "No space left on device")
    Traceback (most recent call last):
    ...
    ser_lib.disk_space.DiskFullError: no space left on device while writing /data/feats/a.npy: ...
    """
    try:
        yield
    except (OSError, RuntimeError) as err:
        if isinstance(err, DiskFullError) or not is_disk_full(err):
            raise
        raise DiskFullError(
            f"no space left on device while writing {path}: free some space and "
            "run the same command again (finished work is kept)"
        ) from err
