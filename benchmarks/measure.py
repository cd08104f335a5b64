"""Measuring primitives: wall time, peak memory, FLOPs, matmul peak, machine facts.

Authors
 * ser_lib contributors
"""

import ctypes
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

VERSIONED_PACKAGES = ("torch", "speechbrain", "transformers", "numpy")
"""Packages whose versions go into the report."""

M_MMAP_THRESHOLD = -3
"""glibc ``mallopt`` parameter number of the mmap threshold."""


def synchronize(device):
    """Waits for the device's queued work (CUDA); a no-op on CPU.

    Example
    -------
    >>> synchronize("cpu")
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, repeats, device="cpu"):
    """Wall-clock seconds of ``repeats`` calls of ``fn`` (synchronised on CUDA).

    Arguments
    ---------
    fn : callable
        Called without arguments.
    repeats : int
        Number of timed calls.
    device : str or torch.device
        Device to synchronise before and after each call.

    Returns
    -------
    list of float
        Seconds of every call.

    Example
    -------
    >>> times = time_calls(lambda: sum(range(100)), repeats=3)
    >>> len(times), all(t >= 0 for t in times)
    (3, True)
    """
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def timing_summary(times):
    """Best, median and all of a list of durations (the best is the figure used).

    On a shared machine other processes only ever add time, so the best of a few
    repeats is the least noisy estimate of a step's cost.

    Arguments
    ---------
    times : list of float
        Seconds.

    Returns
    -------
    dict
        ``best``, ``median``, ``all``.

    Example
    -------
    >>> timing_summary([3.0, 1.0, 2.0])
    {'best': 1.0, 'median': 2.0, 'all': [3.0, 1.0, 2.0]}
    """
    if not times:
        raise ValueError("timing_summary: no times")
    ordered = sorted(times)
    middle = len(ordered) // 2
    median = (
        ordered[middle]
        if len(ordered) % 2
        else (ordered[middle - 1] + ordered[middle]) / 2
    )
    return {"best": ordered[0], "median": median, "all": list(times)}


def _proc_status_kib(field):
    """A ``Vm*`` field of /proc/self/status in KiB (None where there is none)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def max_rss_mib():
    """Peak resident set size of this process so far, MiB.

    ``VmHWM`` of /proc/self/status where there is one (it follows
    :func:`reset_peak_rss`), else ``getrusage``. The latter also counts the peak
    of the process image replaced by ``exec`` (for a subprocess: its parent's
    size at the fork), so it is only a fallback.

    Example
    -------
    >>> max_rss_mib() > 0
    True
    """
    kib = _proc_status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    scale = 1.0 / (1024 * 1024) if sys.platform == "darwin" else 1.0 / 1024
    return usage * scale


def current_rss_mib():
    """Resident set size of this process now, MiB (None without /proc).

    Example
    -------
    >>> rss = current_rss_mib()
    >>> rss is None or rss > 0
    True
    """
    kib = _proc_status_kib("VmRSS")
    return None if kib is None else kib / 1024


def reset_peak_rss():
    """Resets this process's peak RSS to its current RSS (Linux ``clear_refs``).

    After the reset, :func:`max_rss_mib` reports the peak from now on, so a
    configuration's peak is not hidden by a higher transient peak of the imports.

    Returns
    -------
    bool
        Whether the peak could be reset.

    Example
    -------
    >>> isinstance(reset_peak_rss(), bool)
    True
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
    except OSError:
        return False
    return True


def set_malloc_mmap_threshold(num_bytes):
    """Makes glibc's malloc map every block of ``num_bytes`` or more separately.

    Such blocks go back to the operating system when freed, so the resident set
    size follows the memory in use instead of the heap that glibc keeps for
    reuse (which grows with the variety of tensor shapes, i.e. with the number of
    steps). Applies to the rest of the process's life.

    Arguments
    ---------
    num_bytes : int
        The threshold (glibc's ``M_MMAP_THRESHOLD``).

    Returns
    -------
    bool
        Whether it could be set (False without glibc).

    Example
    -------
    >>> isinstance(set_malloc_mmap_threshold(128 * 1024), bool)
    True
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(num_bytes)))


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kw):
    """FLOPs of the CPU flash-attention kernel (as torch counts the CUDA ones)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kw
):
    """FLOPs of the CPU flash-attention backward kernel."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def flop_counter():
    """A ``FlopCounterMode`` that also counts CPU scaled-dot-product attention.

    torch's counter knows the CUDA attention kernels but not
    ``_scaled_dot_product_flash_attention_for_cpu`` (and its backward); they are
    added with torch's own formulas. Matrix products and convolutions are counted;
    element-wise work (norms, activations, optimiser updates) is not.

    Example
    -------
    >>> q = torch.randn(1, 2, 8, 4)
    >>> with flop_counter() as counter:
    ...     _ = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    >>> counter.get_total_flops()  # Q K^T and A V: 2 x (2 * 2 heads * 8 * 8 * 4)
    2048
    """
    aten = torch.ops.aten
    return FlopCounterMode(
        display=False,
        custom_mapping={
            aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: (
                _sdpa_cpu_backward_flop
            ),
        },
    )


def count_flops(fn):
    """Runs ``fn()`` once and returns the FLOPs it performed (see :func:`flop_counter`).

    Example
    -------
    >>> a = torch.randn(4, 3)
    >>> count_flops(lambda: a @ a.t())
    96
    """
    with flop_counter() as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_flops(size):
    """Floating-point operations of a ``size`` x ``size`` matrix product.

    Example
    -------
    >>> matmul_flops(4)
    128.0
    """
    return 2.0 * size**3


def matmul_peak(size=2048, repeats=5, device="cpu", dtype=torch.float32):
    """This machine's matrix-multiply throughput: the best of ``repeats`` products.

    Arguments
    ---------
    size : int
        Side of the square matrices.
    repeats : int
        Timed products (one untimed product comes first).
    device : str or torch.device
        Where to multiply.
    dtype : torch.dtype
        Element type (the training steps' compute type).

    Returns
    -------
    dict
        ``flop_per_s`` (best), ``seconds`` (timing summary), ``size``, ``dtype``.

    Example
    -------
    >>> peak = matmul_peak(size=64, repeats=2)
    >>> peak["flop_per_s"] > 0, peak["size"], peak["dtype"]
    (True, 64, 'float32')
    """
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    a @ b
    seconds = timing_summary(time_calls(lambda: a @ b, repeats, device=device))
    return {
        "flop_per_s": matmul_flops(size) / seconds["best"],
        "seconds": seconds,
        "size": size,
        "dtype": str(dtype).replace("torch.", ""),
    }


def _cpu_model():
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _total_memory_gib():
    """Physical memory in GiB (Linux), or None."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        return pages * os.sysconf("SC_PAGE_SIZE") / 1024**3
    except (ValueError, OSError, AttributeError):
        return None


def _git_commit(folder):
    """The commit checked out in ``folder`` (None outside a git checkout)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip() or None


def machine_info(device, repo_folder=None):
    """What the figures were measured on: hardware, threads, load, versions.

    Arguments
    ---------
    device : str or torch.device
        The measured device.
    repo_folder : str or os.PathLike, optional
        A checkout whose commit is recorded.

    Returns
    -------
    dict
        JSON-serialisable.

    Example
    -------
    >>> info = machine_info("cpu")
    >>> info["device"], "torch" in info["versions"], info["torch_threads"] >= 1
    ('cpu', True, True)
    """
    device = torch.device(device)
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info = {
        "device": device.type,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": _total_memory_gib(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions,
        "gpu": None,
        "commit": _git_commit(repo_folder) if repo_folder is not None else None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = {
            "name": props.name,
            "memory_gib": props.total_memory / 1024**3,
            "cuda": torch.version.cuda,
        }
    return info
