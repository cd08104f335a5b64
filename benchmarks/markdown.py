"""The markdown of the benchmark pages: numbers, tables and sections.

One table writer (:func:`table`) and one section writer (:func:`render_section`)
for ``BENCHMARKS.md`` (:mod:`benchmarks.report`) and ``BENCHMARKS_GPU.md``
(:mod:`benchmarks.device_check`); a table whose columns are data goes through
:func:`column_table`.

Authors
 * ser_lib contributors
"""


def fmt(value, digits=3):
    """A number for the tables: ``digits`` significant digits, thousands grouped.

    Example
    -------
    >>> fmt(0.012345), fmt(1234.5), fmt(12), fmt(None)
    ('0.0123', '1,234', '12', '–')
    """
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}" if abs(value) < 1e3 else f"{value:,.0f}"


def percent(value):
    """A fraction as a percentage with one decimal.

    Example
    -------
    >>> percent(0.0712)
    '7.1 %'
    """
    return f"{100 * value:.1f} %"


def yes(holds):
    """Whether a target holds, for a table cell.

    Example
    -------
    >>> yes(True), yes(False)
    ('yes', '**no**')
    """
    return "yes" if holds else "**no**"


def table(header, rows):
    """A markdown table.

    Example
    -------
    >>> print(table(["a", "b"], [[1, 2]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def column_table(columns, items):
    """A table given as data: ``(header, rows)`` for :func:`render_section`.

    Arguments
    ---------
    columns : sequence of (str, callable)
        Per column: its header and the function from an item to its cell.
    items : iterable
        One row each.

    Returns
    -------
    tuple
        (header, rows).

    Example
    -------
    >>> columns = (("x", lambda item: item), ("x / 2", lambda item: fmt(item / 2)))
    >>> column_table(columns, [1, 3])
    (['x', 'x / 2'], [[1, '0.5'], [3, '1.5']])
    """
    header = [name for name, _ in columns]
    return header, [[cell(item) for _, cell in columns] for item in items]


def render_section(title, *blocks):
    """A report section: its title, then paragraphs and tables, blank-line separated.

    Arguments
    ---------
    title : str
        The heading (without ``##``).
    *blocks : str or tuple
        A paragraph, or a table as ``(header, rows)``.

    Returns
    -------
    list of str
        The lines.

    Example
    -------
    >>> print("\\n".join(render_section("x", "Text.", (["a"], [[1]]))))
    ## x
    <BLANKLINE>
    Text.
    <BLANKLINE>
    | a |
    |---|
    | 1 |
    <BLANKLINE>
    """
    out = ["## " + title, ""]
    for block in blocks:
        out += [block if isinstance(block, str) else table(*block), ""]
    return out
