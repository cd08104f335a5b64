"""ser_lib.report: the pictures researchers look at, and the README that shows them.

``build_report(fold_folders, report_folder)`` writes confusion matrices (per fold and
pooled), per-class recall, the stage-1 and stage-2 training curves and the paper's
Fig. 2 (t-SNE of test utterances before and after the adapter) with a README.md;
``discover_fold_folders(output_root)`` finds the folds of a cross-validation output
folder (``tools/make_report.py`` chains the two).
"""

from ser_lib.report.builder import (
    FoldRun,
    build_report,
    discover_fold_folders,
    read_fold_run,
)

__all__ = ["FoldRun", "build_report", "discover_fold_folders", "read_fold_run"]
