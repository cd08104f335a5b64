"""The efficiency benchmark: what training on cached features costs against the
frozen encoder in the loop and full fine-tuning (``tools/benchmark.py``).

* :mod:`~ser_lib.benchmark.config`: the sizes measured (``tiny``, ``full``);
* :mod:`~ser_lib.benchmark.synthetic`: IEMOCAP-like durations, noise corpora,
  random feature caches;
* :mod:`~ser_lib.benchmark.baselines`: the encoder-in-the-loop and full
  fine-tuning Brains;
* :mod:`~ser_lib.benchmark.measure`: wall time, peak memory, FLOPs, matmul peak;
* :mod:`~ser_lib.benchmark.padding`: padding waste of batchings;
* :mod:`~ser_lib.benchmark.tasks` / :mod:`~ser_lib.benchmark.worker`: one
  measurement per configuration, each in a fresh process;
* :mod:`~ser_lib.benchmark.suite`: the run;
* :mod:`~ser_lib.benchmark.figures` / :mod:`~ser_lib.benchmark.report`: the ratios
  and estimates, and the report (``docs/BENCHMARKS.md``, ``docs/benchmarks.json``).
"""

from ser_lib.benchmark.config import SIZES, BenchmarkSize
from ser_lib.benchmark.report import write_report
from ser_lib.benchmark.suite import run_benchmark

__all__ = ["SIZES", "BenchmarkSize", "run_benchmark", "write_report"]
