"""Cross-corpus evaluation: train on corpus A, test on corpus B through shared classes.

One call of :func:`cross_corpus` (command line: ``tools/cross_corpus.py``):

1. prepares corpus A with its recipe and trains both stages on ALL of A (a single
   fold whose training manifest is A's ``all.csv``, with no validation set: the model
   is the last epoch), by running A's ``train.py`` through
   :func:`ser_lib.cross_validation.cross_validate` (so a re-run skips or resumes);
2. prepares corpus B with its recipe and fills B's feature cache with A's encoder
   (same encoder hparams and overrides; the caches' fingerprints are compared);
3. evaluates A's stage-2 model on B's manifest (default B's ``all.csv``) with
   :func:`evaluate_run`, which writes ``predictions.csv``, ``metrics.json`` and
   ``label_encoder.txt`` exactly as a fold's test does;
4. writes ``cv_results.json`` and ``cv_results.md`` (one row: the B test).

The classes are shared through the class maps: B's manifest must only use classes of
A's model (e.g. IEMOCAP's ``neu, hap, ang, sad`` and CREMA-D's ``4class`` set). B may
lack some of A's classes; UA then averages over the classes present in B.

Output layout of ``output_folder``::

    <A>/ and <B>/           output roots of the two recipes (manifests, feature caches)
    train/adapter/, train/finetune/   the model trained on all of A
    train/cv_results.*      A's model on A's own training data (a fit check, not a test)
    test/                   predictions.csv, metrics.json, label_encoder.txt, train_log.*
    cv_results.json, cv_results.md   the cross-corpus result

Authors
 * ser_lib contributors 2025
"""

import argparse
import json
import os
import sys

import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.logger import get_logger

from ser_lib.cross_validation import (
    cross_validate,
    fold_folders,
    load_recipe_hparams,
    read_cv_config,
    recipe_context,
)
from ser_lib.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest
from ser_lib.dataio import build_label_encoder, feature_dataset
from ser_lib.features import CacheMismatchError, FeatureCache
from ser_lib.fold_results import aggregate_folds, results_table, write_results
from ser_lib.precision import resolve_hparams_precision
from ser_lib.recipe import prepare_data
from ser_lib.train_logger import JsonlTrainLogger

logger = get_logger(__name__)

RUN_HPARAMS_FILE = "hyperparams.yaml"
"""The resolved hparams that ``train.py`` saves in every run folder."""


def check_shared_classes(model_classes, rows, csv_path):
    """Checks that every label of a test manifest is a class of the model.

    Arguments
    ---------
    model_classes : sequence of str
        The classes of the trained model.
    rows : sequence of mapping
        The test manifest's rows (``emo``).
    csv_path : str
        Named in the error.

    Returns
    -------
    list of str
        The model's classes absent from the test manifest (logged; UA then averages
        over the classes present).

    Raises
    ------
    ValueError
        If the manifest has labels the model does not know (names them and the file).

    Example
    -------
    >>> check_shared_classes(["neu", "hap", "ang", "sad"],
    ...                      [{"emo": "neu"}, {"emo": "ang"}], "test.csv")
    ['hap', 'sad']
    >>> check_shared_classes(["neu", "hap"], [{"emo": "fea"}], "test.csv")
    Traceback (most recent call last):
    ...
    ValueError: test.csv has labels ['fea'] that the model (classes ['neu', 'hap']) cannot predict: choose a class set of the test corpus that maps onto the model's classes (e.g. --test_overrides="{class_set: 4class}") or edit its class_maps
    """
    found = {row["emo"] for row in rows}
    unknown = sorted(found - set(model_classes))
    if unknown:
        raise ValueError(
            f"{csv_path} has labels {unknown} that the model (classes "
            f"{list(model_classes)}) cannot predict: choose a class set of the test "
            "corpus that maps onto the model's classes (e.g. "
            '--test_overrides="{class_set: 4class}") or edit its class_maps'
        )
    absent = [c for c in model_classes if c not in found]
    if absent:
        logger.warning(
            "%s has no utterance of the classes %s: UA averages over the others",
            csv_path,
            absent,
        )
    return absent


def evaluate_run(
    run_folder,
    test_csv,
    feature_folder,
    output_folder,
    recipe_dir,
    device="cpu",
    skip_ids=(),
):
    """Evaluates a finished stage-2 run on any manifest whose features are cached.

    The run's own ``hyperparams.yaml`` rebuilds the model; its checkpoint is the last
    epoch, or the best validation UA when the run kept checkpoints by UA (as
    ``FinetuneBrain.conclude`` does). ``predictions.csv``, ``metrics.json``,
    ``label_encoder.txt`` and ``train_log.{txt,jsonl}`` are written to
    ``output_folder``.

    Arguments
    ---------
    run_folder : str
        The stage-2 output folder (``.../finetune``) holding ``hyperparams.yaml``.
    test_csv : str
        The manifest to evaluate (``ID``, ``emo``...).
    feature_folder : str
        A feature cache holding every ID of ``test_csv``, made with the run's encoder.
    output_folder : str
        Where the evaluation files go.
    recipe_dir : str
        The recipe folder the run was trained from (for its prepare import and its
        relative paths).
    device : str
        E.g. ``"cpu"``, ``"cuda:0"``.
    skip_ids : collection of str
        Utterances of ``test_csv`` left out (too short or silent).

    Returns
    -------
    dict
        The content of ``metrics.json``.

    Example
    -------
    >>> import tempfile
    >>> evaluate_run(tempfile.mkdtemp(), "test.csv", "feats", "out", ".")
    Traceback (most recent call last):
    ...
    FileNotFoundError: .../hyperparams.yaml not found: ... is not the folder of a stage-2 run
    """
    run_folder, test_csv, feature_folder, output_folder = (
        os.path.abspath(p)
        for p in (run_folder, test_csv, feature_folder, output_folder)
    )
    hparams_file = os.path.join(run_folder, RUN_HPARAMS_FILE)
    if not os.path.isfile(hparams_file):
        raise FileNotFoundError(
            f"{hparams_file} not found: {run_folder} is not the folder of a stage-2 run"
        )
    with recipe_context(recipe_dir):
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin)
        # The saved YAML may say precision: auto; resolve it for this device as
        # train.py did (SpeechBrain's Brain accepts only fp32/fp16/bf16).
        resolve_hparams_precision(hparams, device)
        checkpointer = hparams["checkpointer"]
        checkpoints = checkpointer.list_checkpoints()
        if not checkpoints:
            raise FileNotFoundError(
                f"No checkpoint in {checkpointer.checkpoints_dir}: the run "
                f"{run_folder} has not trained yet"
            )
        label_encoder = build_label_encoder(hparams["classes"])
        check_shared_classes(hparams["classes"], read_manifest(test_csv), test_csv)
        test_set = feature_dataset(
            test_csv, FeatureCache(feature_folder), label_encoder, exclude_ids=skip_ids
        )
        os.makedirs(output_folder, exist_ok=True)
        hparams["label_encoder"] = label_encoder
        hparams["output_folder"] = output_folder
        hparams["train_logger"] = JsonlTrainLogger(
            save_file=os.path.join(output_folder, "train_log.txt"),
            jsonl_file=os.path.join(output_folder, "train_log.jsonl"),
        )
        brain = hparams["brain_class"](
            modules=hparams["modules"],
            opt_class=hparams["opt_class"],
            hparams=hparams,
            run_opts={"device": device},
            checkpointer=checkpointer,
        )
        label_encoder.save(os.path.join(output_folder, "label_encoder.txt"))
        by_ua = all("UA" in checkpoint.meta for checkpoint in checkpoints)
        brain.evaluate(
            test_set,
            max_key="UA" if by_ua else None,
            test_loader_kwargs=hparams["test_dataloader_opts"],
        )
    with open(os.path.join(output_folder, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def check_same_encoder(train_features, test_features):
    """Raises unless two feature caches were written by the same encoder settings.

    Arguments
    ---------
    train_features, test_features : str
        Feature cache folders.

    Raises
    ------
    CacheMismatchError
        Naming both folders and the fingerprints.

    Example
    -------
    >>> import tempfile
    >>> caches = []
    >>> for n_mels in (80, 80, 40):
    ...     folder = tempfile.mkdtemp()
    ...     for name, text in (("fingerprint.json", f'{{"n_mels": {n_mels}}}'),
    ...                        ("index.csv", "ID,num_frames,feat_path\\n")):
    ...         _ = open(os.path.join(folder, name), "w").write(text)
    ...     caches.append(folder)
    >>> check_same_encoder(caches[0], caches[1])
    >>> check_same_encoder(caches[0], caches[2])
    Traceback (most recent call last):
    ...
    ser_lib.features.cache.CacheMismatchError: The feature caches ... and ... were written by different encoders ({'n_mels': 80} vs {'n_mels': 40})
    """
    train_print = FeatureCache(train_features).fingerprint
    test_print = FeatureCache(test_features).fingerprint
    if train_print != test_print:
        raise CacheMismatchError(
            f"The feature caches {train_features} and {test_features} were written "
            f"by different encoders ({train_print} vs {test_print})"
        )


def cross_corpus(
    train_recipe,
    train_data_folder,
    test_recipe,
    test_data_folder,
    output_folder,
    common_overrides=None,
    adapter_overrides=None,
    finetune_overrides=None,
    test_overrides=None,
    train_output_root=None,
    test_output_root=None,
    test_manifest="all.csv",
    adapter_hparams="hparams/adapter.yaml",
    finetune_hparams="hparams/finetune.yaml",
    skip_adapter=False,
    device="cpu",
):
    """Trains on all of corpus A, tests on corpus B, writes the results files.

    Arguments
    ---------
    train_recipe, test_recipe : str
        Recipe folders of A and B (e.g. ``recipes/IEMOCAP``, ``recipes/CREMA-D``).
    train_data_folder, test_data_folder : str
        The corpora's ``data_folder``.
    output_folder : str
        Output folder (layout in the module docstring).
    common_overrides, adapter_overrides, finetune_overrides : dict, optional
        Overrides of A's stages (both, stage 1, stage 2), as for cross-validation.
    test_overrides : dict, optional
        Overrides of B's YAML for its preparation (e.g. ``{"class_set": "4class"}``);
        the encoder settings always come from A.
    train_output_root, test_output_root : str, optional
        The recipes' ``output_root`` (default ``output_folder/<recipe name>``); point
        them at earlier results to reuse manifests and feature caches.
    test_manifest : str
        B's manifest, relative to its ``prep_folder`` (e.g. ``fold1/test.csv``).
    adapter_hparams, finetune_hparams : str
        The stage YAMLs, relative to each recipe folder.
    skip_adapter : bool
        No stage 1 (with ``finetune_overrides={"backbone_init": "random"}``).
    device : str
        Where everything runs.

    Returns
    -------
    dict
        The results written to ``cv_results.json`` (see
        :func:`ser_lib.fold_results.aggregate_folds`) plus ``train_corpus``,
        ``test_corpus``, ``test_csv`` and ``model``.

    Example
    -------
    >>> import tempfile
    >>> cross_corpus("/nonexistent/A", "a", "/nonexistent/B", "b", tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: Recipe folder not found: /nonexistent/A
    """
    train_recipe, test_recipe = (
        os.path.abspath(r) for r in (train_recipe, test_recipe)
    )
    for recipe in (train_recipe, test_recipe):
        if not os.path.isdir(recipe):
            raise FileNotFoundError(f"Recipe folder not found: {recipe}")
    train_name, test_name = (os.path.basename(r) for r in (train_recipe, test_recipe))
    output_folder = os.path.abspath(output_folder)
    train_folder = os.path.join(output_folder, "train")
    adapter_overrides = dict(adapter_overrides or {})
    finetune_overrides = dict(finetune_overrides or {})

    # 1. All of A as a single fold (no validation set: the model is the last epoch).
    common = {
        **(common_overrides or {}),
        "data_folder": os.path.abspath(train_data_folder),
        "output_root": os.path.abspath(
            train_output_root or os.path.join(output_folder, train_name)
        ),
    }
    train_hparams = load_recipe_hparams(
        train_recipe, finetune_hparams, {**common, **finetune_overrides}
    )
    no_valid = os.path.join(train_folder, "no_valid.csv")
    write_manifest([], no_valid, MANIFEST_COLUMNS)
    common.update(
        train_csv=train_hparams["all_csv"],
        valid_csv=no_valid,
        test_csv=train_hparams["all_csv"],
        experiment_folder=train_folder,
    )
    logger.info("Cross-corpus: training on all of %s (%s)", train_name, common)
    cross_validate(
        recipe_dir=train_recipe,
        folds=[1],
        adapter_hparams=adapter_hparams,
        finetune_hparams=finetune_hparams,
        common_overrides=common,
        results_folder=train_folder,
        adapter_overrides=adapter_overrides,
        finetune_overrides=finetune_overrides,
        skip_adapter=skip_adapter,
        extra_args=[f"--device={device}"],
    )
    stage2 = {**common, **finetune_overrides, "test_session": 1}
    run_folder = fold_folders(finetune_hparams, stage2, train_recipe)["output_folder"]

    # 2. B's manifests and features, with A's encoder.
    encoder = {
        "encoder_name": train_hparams["encoder_name"],
        "encoder_hparams": os.path.join(train_recipe, train_hparams["encoder_hparams"]),
        "encoder_overrides": train_hparams["encoder_overrides"],
    }
    test_hparams = load_recipe_hparams(
        test_recipe,
        finetune_hparams,
        {
            **(test_overrides or {}),
            "data_folder": os.path.abspath(test_data_folder),
            "output_root": os.path.abspath(
                test_output_root or os.path.join(output_folder, test_name)
            ),
            **encoder,
        },
    )
    logger.info(
        "Cross-corpus: preparing %s with the encoder of %s", test_name, train_name
    )
    unusable_audio = prepare_data(test_hparams, test_recipe, device=device)
    check_same_encoder(train_hparams["feature_folder"], test_hparams["feature_folder"])
    test_csv = os.path.join(test_hparams["prep_folder"], test_manifest)
    if not os.path.isfile(test_csv):
        raise FileNotFoundError(
            f"Test manifest not found: {test_csv} (test_manifest is relative to "
            f"{test_hparams['prep_folder']})"
        )

    # 3. A's model on B.
    metrics = evaluate_run(
        run_folder,
        test_csv,
        test_hparams["feature_folder"],
        os.path.join(output_folder, "test"),
        train_recipe,
        device=device,
        skip_ids=unusable_audio,
    )
    results = aggregate_folds({1: metrics})
    results.update(
        train_corpus=train_name,
        test_corpus=test_name,
        test_csv=test_csv,
        model=run_folder,
    )
    write_results(
        results,
        output_folder,
        title=f"Cross-corpus: trained on {train_name}, tested on {test_name}",
    )
    return results


def parse_cross_corpus_args(argv):
    """Command line of ``tools/cross_corpus.py``.

    Example
    -------
    >>> args = parse_cross_corpus_args(
    ...     ["--train_recipe", "recipes/IEMOCAP", "--train_data_folder", "A",
    ...      "--test_recipe", "recipes/CREMA-D", "--test_data_folder", "B",
    ...      "--output_folder", "out", "--test_overrides", "{class_set: 4class}"])
    >>> args.test_recipe, args.test_manifest, args.test_overrides, args.device
    ('recipes/CREMA-D', 'all.csv', '{class_set: 4class}', 'cpu')
    """
    parser = argparse.ArgumentParser(
        description="Train on all of corpus A, test on corpus B (shared classes)."
    )
    parser.add_argument("--train_recipe", required=True, help="e.g. recipes/IEMOCAP")
    parser.add_argument("--train_data_folder", required=True)
    parser.add_argument("--test_recipe", required=True, help="e.g. recipes/CREMA-D")
    parser.add_argument("--test_data_folder", required=True)
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--config", help="YAML with common/adapter/finetune overrides")
    parser.add_argument("--overrides", default="{}", help="YAML mapping, A's stages")
    parser.add_argument("--adapter_overrides", default="{}", help="YAML, A stage 1")
    parser.add_argument("--finetune_overrides", default="{}", help="YAML, A stage 2")
    parser.add_argument(
        "--test_overrides", default="{}", help="YAML mapping for B's YAML"
    )
    parser.add_argument("--train_output_root", help="default: OUTPUT/<A recipe>")
    parser.add_argument("--test_output_root", help="default: OUTPUT/<B recipe>")
    parser.add_argument(
        "--test_manifest", default="all.csv", help="B's manifest, in its prep_folder"
    )
    parser.add_argument("--adapter_hparams", default="hparams/adapter.yaml")
    parser.add_argument("--finetune_hparams", default="hparams/finetune.yaml")
    parser.add_argument("--skip_adapter", action="store_true", help="no stage 1")
    parser.add_argument("--device", default="cpu", help="e.g. cuda:0")
    return parser.parse_args(argv)


def cross_corpus_main(argv=None):
    """Main of ``tools/cross_corpus.py``; prints and returns the results.

    Example
    -------
    >>> import tempfile
    >>> cross_corpus_main(["--train_recipe", "/nonexistent/A", "--train_data_folder",
    ...     "a", "--test_recipe", "/nonexistent/B", "--test_data_folder", "b",
    ...     "--output_folder", tempfile.mkdtemp()])
    Traceback (most recent call last):
    ...
    FileNotFoundError: Recipe folder not found: /nonexistent/A
    """
    args = parse_cross_corpus_args(sys.argv[1:] if argv is None else argv)
    sections = read_cv_config(args.config)
    results = cross_corpus(
        train_recipe=args.train_recipe,
        train_data_folder=args.train_data_folder,
        test_recipe=args.test_recipe,
        test_data_folder=args.test_data_folder,
        output_folder=args.output_folder,
        common_overrides={**sections["common"], **yaml.safe_load(args.overrides)},
        adapter_overrides={
            **sections["adapter"],
            **yaml.safe_load(args.adapter_overrides),
        },
        finetune_overrides={
            **sections["finetune"],
            **yaml.safe_load(args.finetune_overrides),
        },
        test_overrides=yaml.safe_load(args.test_overrides),
        train_output_root=args.train_output_root,
        test_output_root=args.test_output_root,
        test_manifest=args.test_manifest,
        adapter_hparams=args.adapter_hparams,
        finetune_hparams=args.finetune_hparams,
        skip_adapter=args.skip_adapter,
        device=args.device,
    )
    print(results_table(results))
    return results
