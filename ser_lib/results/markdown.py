"""The results table written out: ``RESULTS.md``, its JSON and the README headline.

:func:`write_results_files` builds the table from the collected rows
(:func:`ser_lib.results.rows.build_table`) and writes the machine-readable JSON,
the markdown for people (a summary of every row, then one section per row:
command, code version, schedule, per-fold table, pooled scores, per-class recall,
wall time) and the headline block between the README's markers.

Authors
 * ser_lib contributors
"""

import json
import os

from ser_lib.fold_results import METRICS, results_table
from ser_lib.results.rows import build_table

HEADLINE_START = "<!-- results-headline:start -->"
HEADLINE_END = "<!-- results-headline:end -->"


def _same_folds_lines(row):
    """Markdown lines: the compared rows' mean scores on this row's folds."""
    folds = ", ".join(str(fold) for fold in row["folds"])
    lines = [
        f"On the same folds ({folds}), mean over the folds:",
        "",
        "| row | UA | WA | F1 |",
        "|---|---|---|---|",
        "| this row | " + " | ".join(f"{row[m]['mean']:.2f}" for m in METRICS) + " |",
    ]
    for other, scores in row["same_folds"].items():
        if scores is None or scores["folds"] != row["folds"]:
            lines.append(f"| `{other}` | not run on these folds | | |")
            continue
        lines.append(
            f"| `{other}` | " + " | ".join(f"{scores[m]:.2f}" for m in METRICS) + " |"
        )
    return [*lines, ""]


def _mean_std(entry):
    return f"{entry['mean']:.2f} ± {entry['std']:.2f}"


def _folds_cell(row, n_folds):
    """The folds a row ran: their number, and ``k of n (folds ...)`` when partial.

    Example
    -------
    >>> _folds_cell({"folds": [1, 2]}, 5), _folds_cell({"folds": [1, 2]}, None)
    ('2 of 5 (folds 1, 2)', '2')
    """
    count = len(row["folds"])
    if n_folds and count < n_folds:
        listed = ", ".join(str(fold) for fold in row["folds"])
        return f"{count} of {n_folds} (folds {listed})"
    return str(count)


def _extra_cell(row):
    """The row's extra scores, mean ± std over its folds (``–`` if none)."""
    names = row.get("extra_metrics") or []
    return "; ".join(f"{m} {_mean_std(row[m])}" for m in names) or "–"


def _wall(row):
    if not (row.get("wall_s") or {}).get("total"):  # no stage ran (aggregated only)
        return "–"
    return f"{row['wall_s']['total'] / 60:.1f} min"


def summary_table(table, names):
    """Markdown table of the named rows: mean ± std and pooled UA/WA/F1, the other
    scores of the folds (mean ± std), wall time.

    Pending rows are listed as pending, without numbers. A row run on fewer folds
    than the table's ``n_folds`` says so in its folds cell.

    Example
    -------
    >>> table = {"rows": {"a": {"description": "row a", "status": "pending"}}}
    >>> print(summary_table(table, ["a"]).splitlines()[-1])
    | `a` | row a | pending | | | | | | | | |
    """
    lines = [
        "| row | what | folds | UA mean ± std | UA pooled | WA mean ± std | WA pooled "
        "| F1 mean ± std | F1 pooled | other scores | wall time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        row = table["rows"][name]
        if row["status"] != "done":
            lines.append(
                f"| `{name}` | {row['description']} | pending | | | | | | | | |"
            )
            continue
        cells = []
        for metric in METRICS:
            cells += [_mean_std(row[metric]), f"{row[metric]['pooled']:.2f}"]
        lines.append(
            f"| `{name}` | {row['description']} | "
            f"{_folds_cell(row, table.get('n_folds'))} | "
            + " | ".join(cells)
            + f" | {_extra_cell(row)} | {_wall(row)} |"
        )
    return "\n".join(lines)


def row_section(name, row):
    """Markdown section of one row: command, schedule, per-fold table, recall."""
    lines = [f"### `{name}`", "", row["description"], ""]
    if row.get("note"):
        lines += [row["note"].strip(), ""]
    if row["status"] != "done":
        return "\n".join([*lines, "Pending: not run yet.", ""])
    git = row["git"] or {}
    code = (
        f"Code: commit `{git['commit']}`"
        + (" (with local changes)" if git.get("dirty") else "")
        if git.get("commit")
        else "Code: not recorded (the command ran no stage: the folds had finished)"
    )
    lines += [
        "```bash",
        row["command"] or "(command not recorded)",
        "```",
        "",
        code,
        "",
        f"Schedule: {json.dumps(row['schedule'])}",
        "",
    ]
    extra = row.get("extra_metrics") or []
    names = (*METRICS, *extra)
    aggregated = {
        "folds": [
            {"fold": fold, "n_test": n, **{m: row[m]["per_fold"][i] for m in names}}
            for i, (fold, n) in enumerate(zip(row["folds"], row["n_test"], strict=True))
        ],
        "mean": {m: row[m]["mean"] for m in names},
        "std": {m: row[m]["std"] for m in names},
        "extra_metrics": extra,
    }
    lines += [results_table(aggregated)]
    lines.append(
        "| pooled | "
        + str(sum(row["n_test"]))
        + " | "
        + " | ".join(f"{row[m]['pooled']:.2f}" for m in METRICS)
        + " |"
        + " – |" * len(extra)
    )
    recall = ", ".join(
        f"{label} {'n/a' if value is None else f'{value:.1f}'}"
        for label, value in row["per_class_recall"].items()
    )
    lines += ["", f"Per-class recall (pooled, %): {recall}."]
    if row.get("same_folds"):
        lines += ["", *_same_folds_lines(row)]
    wall = row.get("wall_s") or {}
    if not wall.get("total"):  # no stage ran (the folds had finished)
        wall = {}
    if wall and set(wall) != {"stage1", "stage2", "total"}:  # a multi-stage run
        stages = ", ".join(
            f"{stage} {seconds:.0f} s"
            for stage, seconds in wall.items()
            if stage != "total"
        )
        lines.append(
            f"Wall time (summed over folds): {stages}, total {wall['total']:.0f} s."
        )
    elif wall:
        stage1 = (
            "no stage 1"
            if (row["schedule"] or {}).get("stage1") is None
            else f"stage 1 {wall['stage1']:.0f} s"
        )
        lines.append(
            f"Wall time (summed over folds): {stage1}, stage 2 "
            f"{wall['stage2']:.0f} s, total {wall['total']:.0f} s."
        )
    return "\n".join([*lines, ""])


def results_markdown(table, spec_path):
    """The whole ``RESULTS.md``: summary of every row, then one section per row."""
    names = list(table["rows"])
    lines = [
        f"# Results: {table['title']}",
        "",
        "Written by `python tools/results_table.py build "
        f"--spec {spec_path}` from the committed row files; do not edit by hand. "
        "UA, WA and macro F1 in percent: mean ± sample standard deviation over the "
        "folds, and pooled over every test utterance of the folds. Pending rows have "
        "not been run yet.",
        "",
        *([table["notes"].strip(), ""] if table.get("notes") else []),
        summary_table(table, names),
        "",
        "## Rows",
        "",
    ]
    lines += [row_section(name, table["rows"][name]) for name in names]
    return "\n".join(lines)


def headline_block(table, names, link):
    """The README's headline: the named rows and a link to the full table."""
    return "\n".join(
        [
            HEADLINE_START,
            f"**{table['title']}** (UA / WA / macro F1 in %, full table and "
            f"commands: [{os.path.basename(link)}]({link})):",
            "",
            summary_table(table, names),
            HEADLINE_END,
        ]
    )


def replace_headline(text, block):
    """Puts ``block`` between the headline markers of ``text``.

    Example
    -------
    >>> text = f"a\\n{HEADLINE_START}\\nold\\n{HEADLINE_END}\\nb"
    >>> replace_headline(text, f"{HEADLINE_START}\\nnew\\n{HEADLINE_END}").split()
    ['a', '<!--', 'results-headline:start', '-->', 'new', '<!--', 'results-headline:end', '-->', 'b']
    """
    start, end = text.find(HEADLINE_START), text.find(HEADLINE_END)
    if start < 0 or end < start:
        raise ValueError(
            f"The headline markers {HEADLINE_START} ... {HEADLINE_END} are missing"
        )
    return text[:start] + block + text[end + len(HEADLINE_END) :]


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_results_files(spec, spec_path):
    """Builds the table and writes the JSON, the markdown and the README headline.

    Arguments
    ---------
    spec : dict
        :func:`ser_lib.results.rows.load_row_spec`'s result.
    spec_path : str
        The spec as the user named it (quoted in ``RESULTS.md``).

    Returns
    -------
    dict
        The table (see :func:`ser_lib.results.rows.build_table`).
    """
    table = build_table(spec)
    _write(spec["json"], json.dumps(table, indent=2) + "\n")
    _write(spec["markdown"], results_markdown(table, spec_path))
    if spec["headline"]:
        with open(spec["readme"], encoding="utf-8") as f:
            readme = f.read()
        link = os.path.relpath(spec["markdown"], os.path.dirname(spec["readme"]))
        block = headline_block(table, spec["headline"], link)
        _write(spec["readme"], replace_headline(readme, block))
    return table
