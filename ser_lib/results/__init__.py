"""The project's results table, built from committed result files (not by hand).

Split by job: :mod:`ser_lib.results.rows` reads the row spec, collects a finished
run's small files into a row folder and computes a row's figures (``build_table``);
:mod:`ser_lib.results.markdown` writes ``RESULTS.md``, the JSON table and the
README's headline (``write_results_files``). ``tools/results_table.py`` is the
command line; every name below is importable from ``ser_lib.results``.

Authors
 * ser_lib contributors
"""

from ser_lib.results.markdown import (
    HEADLINE_END,
    HEADLINE_START,
    headline_block,
    replace_headline,
    results_markdown,
    row_section,
    summary_table,
    write_results_files,
)
from ser_lib.results.rows import (
    FOLD_FILES,
    ROW_FILES,
    STAGE1_FILES,
    build_table,
    collect_row,
    generic_paths,
    load_row_spec,
    pooled_scores,
    row_figures,
    row_fold_folders,
    scores_on_folds,
)

__all__ = [
    "FOLD_FILES",
    "HEADLINE_END",
    "HEADLINE_START",
    "ROW_FILES",
    "STAGE1_FILES",
    "build_table",
    "collect_row",
    "generic_paths",
    "headline_block",
    "load_row_spec",
    "pooled_scores",
    "replace_headline",
    "results_markdown",
    "row_figures",
    "row_fold_folders",
    "row_section",
    "scores_on_folds",
    "summary_table",
    "write_results_files",
]
