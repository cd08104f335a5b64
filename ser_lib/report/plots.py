"""The report's pictures: confusion matrices, per-class recall, curves, t-SNE.

Every function returns a ``matplotlib.figure.Figure`` built without ``pyplot`` (no
global figure state, no GUI backend: ``savefig`` renders with Agg), which
:func:`save_figure` writes as PNG.
"""

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "confusion_figure",
    "curves_figure",
    "per_class_recall",
    "recall_figure",
    "row_normalise",
    "save_figure",
    "tsne_figure",
]


def row_normalise(matrix):
    """Divides every row of a confusion matrix by its total (rows without counts stay 0).

    Arguments
    ---------
    matrix : array-like
        Counts [C, C], rows are true classes.

    Returns
    -------
    numpy.ndarray
        float [C, C]; row ``c`` sums to 1 when class ``c`` occurs.

    Example
    -------
    >>> row_normalise([[3, 1], [0, 0]])
    array([[0.75, 0.25],
           [0.  , 0.  ]])
    """
    matrix = np.asarray(matrix, dtype=float)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def per_class_recall(matrix):
    """Recall of every class from a confusion matrix; NaN for absent classes.

    Arguments
    ---------
    matrix : array-like
        Counts [C, C], rows are true classes.

    Returns
    -------
    numpy.ndarray
        float [C] in [0, 1], NaN where the class has no utterance.

    Example
    -------
    >>> per_class_recall([[3, 1], [0, 0]])
    array([0.75,  nan])
    """
    matrix = np.asarray(matrix, dtype=float)
    totals = matrix.sum(axis=1)
    recall = np.full(len(totals), np.nan)
    present = totals > 0
    recall[present] = np.diag(matrix)[present] / totals[present]
    return recall


def save_figure(figure, path, dpi=100):
    """Writes ``figure`` as a PNG file.

    Arguments
    ---------
    figure : matplotlib.figure.Figure
        The figure.
    path : str or os.PathLike
        The PNG file.
    dpi : int
        Resolution.

    Example
    -------
    >>> path = getfixture("tmp_path") / "cm.png"
    >>> save_figure(confusion_figure([[2, 1], [0, 3]], ["neu", "sad"], "Fold 1"), path)
    >>> path.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    figure.savefig(path, dpi=dpi, bbox_inches="tight", format="png")


def _draw_matrix(axes, values, classes, fmt, title, vmax):
    """One annotated heat map of a [C, C] matrix."""
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
    axes.set_xticks(range(len(classes)), labels=classes)
    axes.set_yticks(range(len(classes)), labels=classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in range(len(classes)):
        for col in range(len(classes)):
            value = values[row, col]
            dark = vmax > 0 and value > 0.5 * vmax
            axes.text(
                col,
                row,
                format(value, fmt),
                ha="center",
                va="center",
                color="white" if dark else "black",
            )
    return image


def confusion_figure(matrix, classes, title):
    """Confusion matrix: counts (left) and row-normalised (right).

    Arguments
    ---------
    matrix : array-like
        Counts [C, C], rows are true classes, columns predictions.
    classes : list of str
        Class labels.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Example
    -------
    >>> fig = confusion_figure([[2, 1], [0, 3]], ["neu", "sad"], "Fold 1")
    >>> len(fig.axes) >= 2, fig.axes[1].get_title()
    (True, 'row-normalised (recall on the diagonal)')
    """
    counts = np.asarray(matrix)
    size = 2.2 + 0.7 * len(classes)
    figure = Figure(figsize=(2 * size + 1.5, size), layout="constrained")
    left, right = figure.subplots(1, 2)
    image = _draw_matrix(left, counts, classes, "d", "counts", max(counts.max(), 1))
    figure.colorbar(image, ax=left, shrink=0.8)
    image = _draw_matrix(
        right,
        row_normalise(counts),
        classes,
        ".2f",
        "row-normalised (recall on the diagonal)",
        1.0,
    )
    figure.colorbar(image, ax=right, shrink=0.8)
    figure.suptitle(title)
    return figure


def recall_figure(recalls, classes, title):
    """Grouped bars: the recall of every class, one bar per fold.

    Arguments
    ---------
    recalls : dict
        Fold (int) -> recall per class, [C] in [0, 1] (NaN: no utterance of the
        class, no bar).
    classes : list of str
        Class labels.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Example
    -------
    >>> fig = recall_figure({1: [0.5, 1.0], 2: [0.25, float("nan")]}, ["neu", "sad"], "Recall")
    >>> len(fig.axes[0].patches)  # one bar per fold and class
    4
    """
    folds = sorted(recalls)
    figure = Figure(figsize=(2.0 + 1.4 * len(classes), 3.5), layout="constrained")
    axes = figure.subplots()
    width = 0.8 / max(len(folds), 1)
    positions = np.arange(len(classes))
    for i, fold in enumerate(folds):
        values = 100.0 * np.asarray(recalls[fold], dtype=float)
        axes.bar(
            positions - 0.4 + (i + 0.5) * width,
            np.nan_to_num(values),
            width,
            label=f"fold {fold}",
        )
    axes.set_xticks(positions, labels=classes)
    axes.set_ylabel("recall (%)")
    axes.set_ylim(0, 100)
    axes.set_title(title)
    figure.legend(loc="outside right upper", fontsize="small")
    return figure


def curves_figure(logs, panels, title):
    """Training curves: one panel per quantity, one line per fold.

    Arguments
    ---------
    logs : dict
        Fold (int) -> records of a ``train_log.jsonl`` (dicts with ``meta.epoch``
        and ``train``/``valid`` stats). Records without ``meta.epoch`` (the test
        line) are skipped.
    panels : list of tuple
        ``(key, label)``: the stat to plot and the panel title. Train values are
        solid lines, validation values (when logged) dashed.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Example
    -------
    >>> logs = {1: [{"meta": {"epoch": 1}, "train": {"loss": 2.0}},
    ...             {"meta": {"epoch": 2}, "train": {"loss": 1.0}},
    ...             {"meta": {"Epoch loaded": 2}, "test": {"loss": 1.5}}]}
    >>> fig = curves_figure(logs, [("loss", "loss")], "Stage 2")
    >>> fig.axes[0].lines[0].get_xydata().tolist()
    [[1.0, 2.0], [2.0, 1.0]]
    """
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
    axes_grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for axes, (key, label) in zip(axes_grid, panels, strict=False):
        for i, fold in enumerate(sorted(logs)):
            epochs = [r for r in logs[fold] if "epoch" in r.get("meta", {})]
            for split, style in (("train", "-"), ("valid", "--")):
                points = [
                    (r["meta"]["epoch"], r[split][key])
                    for r in epochs
                    if key in r.get(split, {})
                ]
                if points:
                    x, y = zip(*points, strict=True)
                    axes.plot(
                        x,
                        y,
                        style,
                        color=f"C{i}",
                        marker="." if len(points) < 30 else None,
                        label=f"fold {fold}" + (" (valid)" if split == "valid" else ""),
                    )
        axes.set_title(label)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axes in axes_grid[len(panels) :]:
        axes.set_visible(False)
    handles, labels = axes_grid[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside right upper", fontsize="small")
    figure.suptitle(title)
    return figure


def tsne_figure(panels, labels, classes, title):
    """Side-by-side 2-D scatter plots coloured by class.

    Arguments
    ---------
    panels : list of tuple
        ``(points, panel_title)`` with points [N, 2], the same utterances in
        every panel.
    labels : array-like
        Class index of every utterance, [N].
    classes : list of str
        Class labels.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Example
    -------
    >>> points = np.random.default_rng(0).normal(size=(6, 2))
    >>> fig = tsne_figure([(points, "encoder"), (points, "adapter")],
    ...                   [0, 0, 1, 1, 2, 2], ["neu", "hap", "sad"], "t-SNE")
    >>> [ax.get_title() for ax in fig.axes]
    ['encoder', 'adapter']
    """
    labels = np.asarray(labels)
    figure = Figure(figsize=(4.5 * len(panels) + 1.2, 4.5), layout="constrained")
    axes_row = np.atleast_1d(figure.subplots(1, len(panels)))
    for axes, (points, panel_title) in zip(axes_row, panels, strict=True):
        points = np.asarray(points)
        for index, name in enumerate(classes):
            chosen = labels == index
            if chosen.any():
                axes.scatter(
                    points[chosen, 0],
                    points[chosen, 1],
                    s=12,
                    alpha=0.8,
                    color=f"C{index}",
                    label=name,
                )
        axes.set_title(panel_title)
        axes.set_xticks([])
        axes.set_yticks([])
    handles, names = axes_row[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="outside right upper", title="emotion")
    figure.suptitle(title)
    return figure
