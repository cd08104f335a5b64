"""Builds the report of a cross-validation run: pictures and a README.md that shows them.

The report reads only what the runs left on disk, per fold: the stage-2 folder's
``metrics.json`` (scores, confusion matrix), ``train_log.jsonl`` and
``hyperparams.yaml`` (which names the stage-1 folder, the test CSV and the feature
cache), the stage-1 ``train_log.jsonl``, and, for the embeddings picture, the fold's
checkpoint and feature cache. Folds without ``metrics.json`` (not finished) are listed
as missing and left out; so are pictures whose inputs are gone, with the reason in the
README. Rebuild a report with ``python tools/make_report.py OUTPUT``.
"""

import os
from pathlib import Path

import numpy as np
from speechbrain.utils.logger import get_logger

from ser_lib.fold_results import aggregate_folds, read_fold_run, results_table
from ser_lib.inference import ModelFolderError
from ser_lib.report.plots import (
    confusion_figure,
    curves_figure,
    per_class_recall,
    recall_figure,
    save_figure,
    tsne_figure,
)
from ser_lib.report.tsne import class_separation, embed_test_session, tsne_2d

__all__ = [
    "REPORT_FOLDER",
    "STAGE1_PANELS",
    "STAGE2_PANELS",
    "build_report",
    "report_after_cross_validation",
]

logger = get_logger(__name__)

STAGE1_PANELS = (
    ("L", "L = λ L_rec + (1 − λ) L_pce"),
    ("L_rec", "L_rec (masked-frame reconstruction)"),
    ("L_pce", "L_pce (prototype pseudo-label CE)"),
    ("lambda", "λ"),
    ("perplexity", "prototype perplexity"),
    ("L_VQ", "L_VQ (k-means distortion)"),
)
"""Stage-1 quantities plotted (key in train_log.jsonl, panel title)."""

STAGE2_PANELS = (
    ("loss", "cross-entropy loss"),
    ("UA", "UA (%)"),
    ("WA", "WA (%)"),
    ("F1", "macro F1 (%)"),
)
"""Stage-2 quantities plotted (key in train_log.jsonl, panel title)."""

README = "README.md"
REPORT_FOLDER = "report"
"""The report's folder in a cross-validation results folder."""
PICTURE_PATTERNS = ("confusion_*.png", "recall_*.png", "curves_*.png", "tsne_*.png")


class _Readme:
    """Collects the README sections and the pictures they show."""

    def __init__(self, folder, dpi):
        self.folder = Path(folder)
        self.dpi = dpi
        self.lines = []
        self.pictures = {}

    def text(self, *lines):
        """Adds a paragraph (the lines, then a blank line)."""
        for line in (*lines, ""):
            if line or (self.lines and self.lines[-1]):  # no double blank lines
                self.lines.append(line)

    def picture(self, figure, name, alt, description):
        save_figure(figure, self.folder / name, dpi=self.dpi)
        self.pictures[name] = description
        self.text(f"![{alt}]({name})", "", description)

    def write(self):
        path = self.folder / README
        with open(f"{path}.tmp", "w", encoding="utf-8") as f:
            f.write("\n".join(self.lines).rstrip() + "\n")
        os.replace(f"{path}.tmp", path)
        return path


def _fold_list(folds):
    return ", ".join(str(fold) for fold in folds)


def _folds_phrase(folds):
    """``fold 1`` or ``folds 1, 2``."""
    return f"fold{'s' if len(folds) > 1 else ''} {_fold_list(folds)}"


def build_report(
    fold_folders,
    report_folder,
    title=None,
    tsne_folds=None,
    tsne_perplexity=30.0,
    seed=0,
    batch_size=32,
    device="cpu",
    dpi=100,
    flat_encoder_ratio=0.01,
):
    """Writes the pictures of a cross-validation run and a README.md showing them.

    Pictures (PNG, in ``report_folder``): ``confusion_pooled.png`` and
    ``confusion_fold<k>.png`` (counts and row-normalised), ``recall_per_class.png``,
    ``curves_stage1.png``, ``curves_stage2.png`` and ``tsne_fold<k>.png`` (the
    paper's Fig. 2). Pictures whose inputs are missing are left out and the README
    says why.

    Arguments
    ---------
    fold_folders : dict
        Fold number -> stage-2 folder. Folds without ``metrics.json`` are reported
        as missing.
    report_folder : str or os.PathLike
        Where the report goes (created; pictures of an earlier report are replaced).
    title : str, optional
        The README title (default: names the experiment, i.e. the folder above
        ``fold<k>``, and the stage-2 folder name).
    tsne_folds : list of int, optional
        Folds whose test set gets a t-SNE picture (default: the first finished
        fold).
    tsne_perplexity : float
        t-SNE perplexity (lowered for small test sets).
    seed : int
        t-SNE random state.
    batch_size : int
        Batch size of the embedding pass.
    device : str
        Where the fold model runs for the embeddings.
    dpi : int
        Resolution of the pictures.
    flat_encoder_ratio : float
        When the spread of the mean-pooled encoder vectors across utterances is
        below this fraction of the spread of the encoder frames, the README warns
        that the encoder panel shows (nearly) one point, e.g. with per-utterance
        normalised filterbanks, whose utterance means are all zero.

    Returns
    -------
    dict
        ``readme`` (path), ``pictures`` (file name -> description),
        ``finished_folds``, ``missing_folds``.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> fold1 = root / "fbank_all" / "fold1" / "finetune"
    >>> fold1.mkdir(parents=True)
    >>> import json
    >>> _ = (fold1 / "metrics.json").write_text(json.dumps({
    ...     "UA": 50.0, "WA": 60.0, "F1": 40.0, "n_test": 5, "classes": ["neu", "sad"],
    ...     "confusion_matrix": [[3, 0], [2, 0]]}))
    >>> _ = (fold1 / "train_log.jsonl").write_text(
    ...     '{"meta": {"epoch": 1}, "train": {"loss": 1.0, "UA": 50.0}}\\n')
    >>> report = build_report({1: fold1, 2: root / "fbank_all" / "fold2" / "finetune"},
    ...                       root / "report")
    >>> sorted(report["pictures"]), report["missing_folds"]
    (['confusion_fold1.png', 'confusion_pooled.png', 'curves_stage2.png', 'recall_per_class.png'], [2])
    >>> "Missing folds: 2" in report["readme"].read_text()
    True
    """
    report_folder = Path(report_folder)
    report_folder.mkdir(parents=True, exist_ok=True)
    for pattern in PICTURE_PATTERNS:
        for stale in report_folder.glob(pattern):
            stale.unlink()
    runs = {fold: read_fold_run(fold, folder) for fold, folder in fold_folders.items()}
    finished = sorted(fold for fold, run in runs.items() if run.metrics is not None)
    missing = sorted(fold for fold, run in runs.items() if run.metrics is None)
    readme = _Readme(report_folder, dpi)
    if title is None:
        title = f"Cross-validation report: {_experiment_name(fold_folders)}"
    readme.text(f"# {title}")
    readme.text(
        "Rebuild this report from the output folder with "
        "`python tools/make_report.py OUTPUT`."
    )
    if finished:
        readme.text(f"In this report: {_folds_phrase(finished)}.")
    if missing:
        readme.text(
            f"**Missing folds: {_fold_list(missing)}** (no metrics.json: not "
            "finished, or not run). They are left out of every picture, of the "
            "pooled confusion matrix and of the mean ± std below."
        )
    if not finished:
        readme.text("No fold has finished yet: there is nothing to show.")
        return _summary(readme, finished, missing)

    classes = runs[finished[0]].metrics["classes"]
    for fold in finished:
        if runs[fold].metrics["classes"] != classes:
            raise ValueError(
                f"Fold {fold} has classes {runs[fold].metrics['classes']} but fold "
                f"{finished[0]} has {classes}: the folders mix experiments"
            )
    matrices = {
        fold: np.asarray(runs[fold].metrics["confusion_matrix"]) for fold in finished
    }
    readme.text("## Scores", "", "UA, WA and macro F1 in percent, per test fold.", "")
    readme.text(
        results_table(aggregate_folds({fold: runs[fold].metrics for fold in finished}))
    )
    for fold in finished:
        absent = runs[fold].metrics.get("classes_absent_from_training") or []
        if absent:
            readme.text(
                f"Fold {fold} had no training utterance of {', '.join(absent)}: "
                "that class could not be learned."
            )
    _confusion_section(readme, matrices, classes)
    _curves_section(readme, runs, finished)
    _tsne_section(
        readme,
        runs,
        finished[:1] if tsne_folds is None else tsne_folds,
        finished,
        dict(
            perplexity=tsne_perplexity,
            seed=seed,
            batch_size=batch_size,
            device=device,
            flat_encoder_ratio=flat_encoder_ratio,
        ),
    )
    return _summary(readme, finished, missing)


def report_after_cross_validation(fold_folders, results_folder):
    """Post-run hook of :func:`ser_lib.cross_validation.cross_validate`: the report.

    Writes ``results_folder/report/`` with :func:`build_report`'s defaults; the
    recipes' ``cross_validate.py`` pass it as ``post_run``.

    Arguments
    ---------
    fold_folders : dict
        Fold number -> stage-2 folder.
    results_folder : str or os.PathLike
        The cross-validation results folder.

    Returns
    -------
    dict
        What :func:`build_report` returns.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> report = report_after_cross_validation({1: root / "x" / "fold1" / "finetune"}, root)
    >>> report["readme"].relative_to(root).as_posix(), report["missing_folds"]
    ('report/README.md', [1])
    """
    report = build_report(fold_folders, os.path.join(results_folder, REPORT_FOLDER))
    logger.info("Report: %s", report["readme"])
    return report


def _experiment_name(fold_folders):
    """``<experiment>/<stage-2 folder>`` of ``.../<experiment>/fold<k>/<stage-2>``."""
    names = {
        f"{Path(folder).parent.parent.name}/{Path(folder).name}"
        for folder in fold_folders.values()
    }
    return ", ".join(sorted(names))


def _summary(readme, finished, missing):
    path = readme.write()
    logger.info("Report written to %s (%d pictures)", path, len(readme.pictures))
    return {
        "readme": path,
        "pictures": dict(readme.pictures),
        "finished_folds": finished,
        "missing_folds": missing,
    }


def _confusion_section(readme, matrices, classes):
    """Pooled and per-fold confusion matrices, per-class recall."""
    pooled = sum(matrices.values())
    folds = sorted(matrices)
    readme.text("## Confusion matrices")
    readme.picture(
        confusion_figure(pooled, classes, f"Pooled over {_folds_phrase(folds)}"),
        "confusion_pooled.png",
        "pooled confusion matrix",
        f"Confusion matrix pooled over the test sets of {_folds_phrase(folds)} "
        f"({int(pooled.sum())} utterances): rows are the true emotions, columns the "
        "predicted ones; left the counts, right each row divided by its total, so "
        "the diagonal holds the per-class recall.",
    )
    for fold in folds:
        matrix = matrices[fold]
        readme.picture(
            confusion_figure(matrix, classes, f"Fold {fold}"),
            f"confusion_fold{fold}.png",
            f"confusion matrix of fold {fold}",
            f"Confusion matrix of fold {fold} alone ({int(matrix.sum())} test "
            "utterances), counts and row-normalised.",
        )
    recalls = {fold: per_class_recall(matrices[fold]) for fold in folds}
    mean_recall = np.nanmean(np.stack(list(recalls.values())), axis=0)
    readme.text("## Per-class recall")
    readme.picture(
        recall_figure(recalls, classes, "Recall per class and fold"),
        "recall_per_class.png",
        "per-class recall per fold",
        "Recall of every emotion on each fold's test set (UA is their mean); "
        "mean over folds: "
        + ", ".join(
            f"{name} {100 * value:.1f} %"
            for name, value in zip(classes, mean_recall, strict=True)
        )
        + ". A missing bar: no test utterance of that class in the fold.",
    )


def _curves_section(readme, runs, finished):
    """Stage-1 and stage-2 training curves from the train logs."""
    readme.text("## Training curves")
    stage1 = {fold: runs[fold].stage1_log for fold in finished if runs[fold].stage1_log}
    if stage1:
        readme.picture(
            curves_figure(stage1, STAGE1_PANELS, "Stage 1: adapter training"),
            "curves_stage1.png",
            "stage-1 curves",
            "Stage 1 (self-supervised adapter training), per epoch and fold: the "
            "total loss L, the masked-frame reconstruction loss L_rec, the "
            "prototype pseudo-label cross-entropy L_pce, the weight λ of L_rec "
            "(ramping from 1 down to 0.5), the perplexity of the prototype "
            "assignments (how many prototypes are effectively used) and the "
            "k-means distortion L_VQ.",
        )
        without = [fold for fold in finished if fold not in stage1]
        if without:
            readme.text(f"Folds without a stage-1 log: {_fold_list(without)}.")
    else:
        readme.text(
            "No stage-1 log was found (stage 1 skipped, e.g. `backbone_init: "
            "random`, or its folder is gone): no stage-1 curves."
        )
    stage2 = {fold: runs[fold].stage2_log for fold in finished if runs[fold].stage2_log}
    if stage2:
        has_valid = any("valid" in r for log in stage2.values() for r in log)
        readme.picture(
            curves_figure(stage2, STAGE2_PANELS, "Stage 2: fine-tuning"),
            "curves_stage2.png",
            "stage-2 curves",
            "Stage 2 (fine-tuning with SAP and the classifier), per epoch and fold: "
            "the cross-entropy loss and UA, WA, macro F1 (%) on the training set"
            + (" (solid) and the validation speaker (dashed)." if has_valid else ".")
            + " The test scores are in the table above.",
        )


def _tsne_section(readme, runs, tsne_folds, finished, options):
    """The paper's Fig. 2 for each fold of ``tsne_folds``."""
    readme.text("## Utterance embeddings before and after the adapter (paper Fig. 2)")
    for fold in tsne_folds:
        if fold not in finished:
            readme.text(f"Fold {fold}: not finished, no embeddings picture.")
            continue
        try:
            embeddings = embed_test_session(
                runs[fold].folder,
                batch_size=options["batch_size"],
                device=options["device"],
            )
        except (FileNotFoundError, KeyError, ModelFolderError) as err:
            readme.text(f"Fold {fold}: no embeddings picture ({err}).")
            continue
        count = len(embeddings.ids)
        if count < 4:
            readme.text(
                f"Fold {fold}: only {count} test utterances, too few for t-SNE."
            )
            continue
        panels = [
            (
                tsne_2d(embeddings.encoder, options["perplexity"], options["seed"]),
                "frozen encoder (mean-pooled)",
            ),
            (
                tsne_2d(embeddings.adapter, options["perplexity"], options["seed"]),
                "after the adapter (SAP output)",
            ),
        ]
        scores = [
            class_separation(points, embeddings.labels)
            for points in (embeddings.encoder, embeddings.adapter)
        ]
        described = ", ".join(
            f"{name} {'n/a' if score is None else f'{score:.2f}'}"
            for name, score in zip(("encoder", "adapter"), scores, strict=True)
        )
        description = (
            f"t-SNE of the {count} test utterances of fold {fold}, coloured by their "
            "true emotion: left, the frozen encoder's features mean-pooled over each "
            "utterance; right, the same utterances after the fold's trained adapter "
            "(WAP-Transformer and SAP). Tighter, better separated colour groups on "
            "the right mean the adapter made the emotions easier to tell apart. "
            f"Silhouette score by emotion (cosine, in the original spaces; 1 = "
            f"separated, 0 = overlapping): {described}."
        )
        spread = float(np.std(embeddings.encoder, axis=0).mean())
        if spread < options["flat_encoder_ratio"] * embeddings.encoder_frame_std:
            description += (
                " Note: the mean-pooled encoder vectors hardly differ between "
                f"utterances (spread {spread:.2g} against {embeddings.encoder_frame_std:.2g}"
                " for single frames), e.g. because the encoder normalises every "
                "utterance to zero mean (fbank with per-utterance normalisation): "
                "the left panel then shows rounding noise, not the encoder."
            )
        readme.picture(
            tsne_figure(
                panels,
                embeddings.labels,
                embeddings.classes,
                f"Fold {fold}: test utterances, t-SNE",
            ),
            f"tsne_fold{fold}.png",
            f"t-SNE of fold {fold}",
            description,
        )
