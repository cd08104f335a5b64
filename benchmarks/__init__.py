"""The efficiency benchmark: what training on cached features costs against the
frozen encoder in the loop and full fine-tuning (``tools/benchmark.py``).

* :mod:`~benchmarks.config`: the sizes measured (``tiny``, ``full``);
* :mod:`~benchmarks.synthetic`: IEMOCAP-like durations, noise corpora,
  random feature caches;
* :mod:`~benchmarks.baselines`: the encoder-in-the-loop and full
  fine-tuning Brains;
* :mod:`~benchmarks.measure`: wall time, peak memory, FLOPs, matmul peak;
* :mod:`~benchmarks.padding`: padding waste of batchings;
* :mod:`~benchmarks.tasks` / :mod:`~benchmarks.worker`: one
  measurement per configuration, each in a fresh process;
* :mod:`~benchmarks.suite`: the run;
* :mod:`~benchmarks.figures`: every ratio and estimate, computed once;
* :mod:`~benchmarks.sections_training` / :mod:`~benchmarks.sections_data`: the
  sections of the report, written with :mod:`~benchmarks.markdown`;
* :mod:`~benchmarks.report`: the report (``docs/BENCHMARKS.md``,
  ``docs/benchmarks.json``).
"""

from benchmarks.config import SIZES, BenchmarkSize
from benchmarks.report import write_report
from benchmarks.suite import run_benchmark

__all__ = ["SIZES", "BenchmarkSize", "run_benchmark", "write_report"]
