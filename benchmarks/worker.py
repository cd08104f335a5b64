"""Runs one benchmark task, in this process or in a fresh one, with its peak memory.

Peak memory is the growth of the process's peak resident set size (``getrusage``)
over its resident set size when the task starts (the peak is reset there with
Linux's ``clear_refs``, so a transient peak of the imports does not hide it). A task
measured in a fresh process thus reports the memory of that configuration alone
(weights, optimiser state, activations, data).
On CUDA the peak of ``torch.cuda.max_memory_allocated`` is reported too.

Command line (used by :func:`run_in_subprocess`)::

    python -m benchmarks.worker TASK SPEC.json RESULT.json

Authors
 * ser_lib contributors
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.measure import current_rss_mib, max_rss_mib, reset_peak_rss
from benchmarks.tasks import TASKS


def run_task(name, spec):
    """Runs task ``name`` here and adds its wall time and peak memory.

    In a process that ran other work before, memory freed by it may be reused
    without showing as growth (a lower bound); :func:`run_in_subprocess` isolates
    the task.

    Arguments
    ---------
    name : str
        A key of :data:`benchmarks.tasks.TASKS`.
    spec : dict
        The task's spec.

    Returns
    -------
    dict
        The task's result plus ``task_seconds``, ``peak_rss_mib``,
        ``peak_cuda_mib`` (None on CPU) and ``isolated`` (False).
    """
    if name not in TASKS:
        raise KeyError(f"Unknown benchmark task {name!r}; known: {sorted(TASKS)}")
    return run_measured(TASKS[name], spec)


def run_measured(fn, spec):
    """Runs ``fn(spec)`` here and adds its wall time and peak memory (as :func:`run_task`).

    Example
    -------
    >>> result = run_measured(lambda spec: {"x": 1}, {"device": "cpu"})
    >>> result["x"], result["peak_cuda_mib"], result["task_seconds"] >= 0
    (1, None, True)
    """
    cuda = torch.device(spec["device"]).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    peak_reset = reset_peak_rss()
    baseline = current_rss_mib() if peak_reset else max_rss_mib()
    start = time.perf_counter()
    result = fn(spec)
    result["task_seconds"] = time.perf_counter() - start
    result["peak_rss_mib"] = max_rss_mib() - baseline
    result["peak_cuda_mib"] = (
        torch.cuda.max_memory_allocated() / 1024**2 if cuda else None
    )
    result["peak_reset"] = peak_reset
    result["isolated"] = False
    return result


def run_in_subprocess(name, spec, work_dir, python=sys.executable):
    """Runs task ``name`` in a fresh Python process (see :func:`run_task`).

    Arguments
    ---------
    name : str
        Task name.
    spec : dict
        The task's spec (JSON-serialisable).
    work_dir : str or os.PathLike
        Receives ``<name>.spec.json`` and ``<name>.result.json``.
    python : str
        Interpreter.

    Returns
    -------
    dict
        As :func:`run_task`, with ``isolated`` True and ``process_seconds`` (the
        subprocess's wall time, imports included).

    Raises
    ------
    RuntimeError
        If the subprocess fails; the message holds the end of its output.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    tag = spec.get("tag", name)
    spec_path = work_dir / f"{tag}.spec.json"
    result_path = work_dir / f"{tag}.result.json"
    spec_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    result_path.unlink(missing_ok=True)
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    start = time.perf_counter()
    process = subprocess.run(
        [python, "-m", "benchmarks.worker", name, spec_path, result_path],
        capture_output=True,
        text=True,
        env=env,
    )
    if process.returncode != 0 or not result_path.is_file():
        tail = (process.stdout + process.stderr)[-3000:]
        raise RuntimeError(
            f"Benchmark task {tag!r} failed (exit code {process.returncode}):\n{tail}"
        )
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result["isolated"] = True
    result["process_seconds"] = time.perf_counter() - start
    return result


def main(argv=None):
    """Entry point of the worker process: ``TASK SPEC.json RESULT.json``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        raise SystemExit(
            "usage: python -m benchmarks.worker TASK SPEC.json RESULT.json"
        )
    name, spec_path, result_path = argv
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = run_task(name, spec)
    tmp_path = Path(result_path).with_suffix(".tmp")
    tmp_path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    os.replace(tmp_path, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
