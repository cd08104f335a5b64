"""ser_lib.report: the pictures researchers look at, and the README that shows them.

``build_report(fold_folders, report_folder)`` writes confusion matrices (per fold and
pooled), per-class recall, the stage-1 and stage-2 training curves and the paper's
Fig. 2 (t-SNE of test utterances before and after the adapter) with a README.md;
``discover_fold_folders(output_root)`` (from :mod:`ser_lib.fold_results`) finds the
folds of a cross-validation output folder (``tools/make_report.py`` chains the two).
``report_after_cross_validation`` is the post-run hook the recipes'
``cross_validate.py`` give the driver. The report reads results through
:mod:`ser_lib.fold_results` and never imports the driver.
"""

from ser_lib.fold_results import FoldRun, discover_fold_folders, read_fold_run
from ser_lib.report.builder import build_report, report_after_cross_validation

__all__ = [
    "FoldRun",
    "build_report",
    "discover_fold_folders",
    "read_fold_run",
    "report_after_cross_validation",
]
