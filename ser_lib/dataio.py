"""Datasets over the feature cache, shared by both stages and every corpus.

A recipe's ``dataio_prep(hparams)`` is :func:`dataio_prep` here: it reads the fold's
SpeechBrain CSVs, serves each utterance's cached encoder output (``feats``, float32
``[T, D]``) and its class index (``emo_encoded``), and, for stage-2 training, adds the
minority-class copies that are masked on the fly (``augment`` = 1).
"""

import numpy as np
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes
from speechbrain.utils.logger import get_logger

from ser_lib.data.manifest import read_manifest
from ser_lib.features import FeatureCache
from ser_lib.models.augment import oversample_minority

logger = get_logger(__name__)

COPY_SEPARATOR = "__aug"
DATASET_COLUMNS = ("ID", "emo")
"""The manifest columns the datasets read (other columns are ignored)."""


def build_label_encoder(classes):
    """Label encoder with a fixed class order (index i = ``classes[i]``).

    Arguments
    ---------
    classes : list of str
        The class set, in the order of the classifier outputs.

    Returns
    -------
    speechbrain.dataio.encoder.CategoricalEncoder

    Example
    -------
    >>> enc = build_label_encoder(["neu", "hap", "ang", "sad"])
    >>> enc.encode_label("ang"), enc.decode_ndim(3), len(enc)
    (2, 'sad', 4)
    """
    if len(set(classes)) != len(classes):
        raise ValueError(f"Duplicate class names in {classes}")
    encoder = CategoricalEncoder()
    for label in classes:
        encoder.add_label(label)
    return encoder


def check_labels(rows, classes, csv_path):
    """Raises a clear error when a row's ``emo`` is outside the class set.

    Arguments
    ---------
    rows : list of dict
        Manifest rows (``ID``, ``emo``, ...).
    classes : list of str
        The class set.
    csv_path : str
        Named in the error.

    Example
    -------
    >>> check_labels([{"ID": "a", "emo": "neu"}], ["neu", "sad"], "x.csv")
    >>> check_labels([{"ID": "b", "emo": "fru"}], ["neu", "sad"], "x.csv")
    Traceback (most recent call last):
    ...
    ValueError: x.csv: utterance b has label 'fru', which is not in the class set ['neu', 'sad']
    """
    known = set(classes)
    for row in rows:
        if row["emo"] not in known:
            raise ValueError(
                f"{csv_path}: utterance {row['ID']} has label {row['emo']!r}, "
                f"which is not in the class set {list(classes)}"
            )


def feature_dataset(
    csv_path,
    cache,
    label_encoder,
    max_frames=None,
    random_crop=False,
    oversample_ratio=0.0,
    seed=0,
    labelled=True,
    exclude_ids=(),
):
    """A ``DynamicItemDataset`` of cached features for one manifest.

    Arguments
    ---------
    csv_path : str
        SpeechBrain CSV with at least ``ID`` and ``emo``.
    cache : ser_lib.features.FeatureCache
        Holds every ID of the manifest.
    label_encoder : CategoricalEncoder
        Fixed class order (:func:`build_label_encoder`).
    max_frames : int, optional
        With ``random_crop``, longer utterances are cropped to a random window of this
        many frames (the position table's length; training only).
    random_crop : bool
        Whether to crop (training) or keep whole utterances (evaluation).
    oversample_ratio : float
        0 disables minority-class augmentation. Otherwise minority classes receive
        extra copies (``augment`` = 1) toward ``ratio`` x the majority count.
    seed : int
        Seed for the choice of copies.
    labelled : bool
        False for stage 1's sets, which may hold utterances of any label (or
        none): the labels are neither checked nor served.
    exclude_ids : collection of str
        Utterances left out (too short or silent: :mod:`ser_lib.audio_levels`).

    Returns
    -------
    DynamicItemDataset
        Output keys ``id``, ``feats``, ``emo_encoded`` (labelled only), ``augment``.
    """
    rows = read_manifest(csv_path, required_columns=DATASET_COLUMNS)
    exclude_ids = set(exclude_ids)
    rows = [row for row in rows if row["ID"] not in exclude_ids]
    if labelled:
        check_labels(rows, label_encoder.lab2ind.keys(), csv_path)
    elif oversample_ratio > 0:
        raise ValueError(
            f"{csv_path}: minority-class oversampling needs labels "
            "(oversample_ratio > 0 with an unlabelled training set)"
        )
    missing = [row["ID"] for row in rows if row["ID"] not in cache]
    if missing:
        raise KeyError(
            f"{len(missing)} utterances of {csv_path} are not in the feature cache "
            f"{cache.cache_dir} (first: {missing[:3]}); extract features first"
        )

    data = {}
    for row in rows:
        data[row["ID"]] = {"emo": row["emo"], "source_id": row["ID"], "augment": 0}
    if oversample_ratio > 0:
        labels = [row["emo"] for row in rows]
        n_copies = 0
        for index, is_copy in oversample_minority(
            labels, ratio=oversample_ratio, seed=seed
        ):
            if not is_copy:
                continue
            n_copies += 1
            row = rows[index]
            copy_id = f"{row['ID']}{COPY_SEPARATOR}{n_copies}"
            data[copy_id] = {"emo": row["emo"], "source_id": row["ID"], "augment": 1}
        logger.info(
            "Minority-class augmentation: %d masked copies added to %d utterances of %s",
            n_copies,
            len(rows),
            csv_path,
        )

    @takes("source_id")
    @provides("feats")
    def feats_pipeline(source_id):
        feats = torch.from_numpy(np.array(cache.load(source_id), dtype=np.float32))
        if not torch.isfinite(feats).all():
            raise ValueError(
                f"Non-finite values in the cached features of {source_id} "
                f"({cache.feature_path(source_id)}): delete that file and re-run; "
                "only missing features are extracted again"
            )
        if random_crop and max_frames is not None and feats.shape[0] > max_frames:
            start = int(torch.randint(0, feats.shape[0] - max_frames + 1, (1,)))
            feats = feats[start : start + max_frames]
        return feats

    @takes("emo")
    @provides("emo_encoded")
    def label_pipeline(emo):
        return torch.tensor([label_encoder.encode_label(emo)], dtype=torch.long)  # [1]

    if not labelled:
        return DynamicItemDataset(
            data, dynamic_items=[feats_pipeline], output_keys=["id", "feats", "augment"]
        )
    return DynamicItemDataset(
        data,
        dynamic_items=[feats_pipeline, label_pipeline],
        output_keys=["id", "feats", "emo_encoded", "augment"],
    )


def class_counts(rows, classes):
    """Number of rows of every class, in class-set order (absent classes count 0).

    Arguments
    ---------
    rows : list of dict
        Manifest rows with an ``emo`` column.
    classes : list of str
        The class set.

    Returns
    -------
    dict
        Class -> count.

    Example
    -------
    >>> class_counts([{"emo": "sad"}, {"emo": "sad"}], ["neu", "sad"])
    {'neu': 0, 'sad': 2}
    """
    counts = dict.fromkeys(classes, 0)
    for row in rows:
        counts[row["emo"]] = counts.get(row["emo"], 0) + 1
    return counts


def check_training_classes(train_csv, classes, exclude_ids=()):
    """Counts the training rows per class and warns about classes without any.

    A class absent from the training data cannot be learned: training goes on
    (the classifier keeps an output for it that no target ever rewards, so it is
    practically never predicted), its test utterances count as errors, and UA
    stays the mean recall over the classes present in the test set. The absent
    classes are logged here and listed in the fold's ``metrics.json``.

    Arguments
    ---------
    train_csv : str
        The training manifest.
    classes : list of str
        The class set.
    exclude_ids : collection of str
        Utterances left out of training.

    Returns
    -------
    counts : dict
        Class -> number of training rows.
    absent : list of str
        Classes with no training row.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> _ = open(path, "w").write("ID,emo\\na,neu\\nb,neu\\n")
    >>> check_training_classes(path, ["neu", "sad"])
    ({'neu': 2, 'sad': 0}, ['sad'])
    """
    rows = read_manifest(train_csv, required_columns=DATASET_COLUMNS)
    exclude_ids = set(exclude_ids)
    counts = class_counts(
        [row for row in rows if row["ID"] not in exclude_ids], classes
    )
    absent = [label for label in classes if counts[label] == 0]
    if absent:
        logger.warning(
            "The training data %s has no utterance of the class(es) %s (counts: %s): "
            "they cannot be learned and are practically never predicted; their test "
            "utterances count as errors (UA averages over the test classes)",
            train_csv,
            absent,
            counts,
        )
    return counts, absent


def dataio_prep(hparams, skipped_audio=None):
    """Builds the fold's datasets from the hparams of either stage.

    Reads ``train_csv``, ``valid_csv``, ``test_csv``, ``feature_folder``, ``classes``,
    ``feature_dim`` (the channels per cached frame the model reads, checked against
    the cache), ``max_frames``,
    ``oversample_ratio`` (0 = off), ``train_labelled`` (False for stage 1, whose
    training set may hold utterances of any label), ``train_sampler`` (a builder called with the
    training lengths, e.g. ``!name:ser_lib.sampling.PoolSortedBatchSampler``; None
    for random batches of ``train_dataloader_opts``) and ``seed``. ``skipped_audio``
    ({ID: reason}, from :func:`ser_lib.recipe.prepare_data`) lists utterances too
    short or silent to use: they are left out of every split.

    Returns
    -------
    dict
        ``train``, ``valid`` (None when the valid CSV is empty: model selection is the
        last epoch), ``test``, ``label_encoder``, ``train_class_counts`` (class ->
        training utterances), ``absent_train_classes`` (classes without any, see
        :func:`check_training_classes`), ``skipped_audio`` (the utterances of the
        fold's manifests left out, ID -> reason) and ``train_batch_sampler`` (see
        :func:`train_batch_sampler`; None for random batches).

    Raises
    ------
    ValueError
        If the training manifest is empty, a label is outside ``classes``, or the
        cached features do not have ``feature_dim`` channels.
    """
    cache = FeatureCache(hparams["feature_folder"])
    if len(cache) > 0 and cache.feature_dim != hparams["feature_dim"]:
        raise ValueError(
            f"The features in {cache.cache_dir} have {cache.feature_dim} channels but "
            f"the model reads {hparams['feature_dim']} (feature_dim): set input_dim "
            "(and input_layers, or the baseline's layer_dim and cached_layers) to the "
            f"encoder's output (the cache was built by {cache.fingerprint})"
        )
    label_encoder = build_label_encoder(hparams["classes"])
    skipped_audio = skipped_audio or {}
    datasets = {"label_encoder": label_encoder, "skipped_audio": {}}
    for split in ("train", "valid", "test"):
        training = split == "train"
        rows = read_manifest(hparams[f"{split}_csv"], DATASET_COLUMNS)
        for row in rows:
            if row["ID"] in skipped_audio:
                datasets["skipped_audio"][row["ID"]] = skipped_audio[row["ID"]]
        if not [row for row in rows if row["ID"] not in skipped_audio]:
            datasets[split] = None
            continue
        datasets[split] = feature_dataset(
            hparams[f"{split}_csv"],
            cache,
            label_encoder,
            max_frames=hparams["max_frames"],
            random_crop=training,
            oversample_ratio=hparams["oversample_ratio"] if training else 0.0,
            seed=hparams["seed"],
            labelled=hparams["train_labelled"] or not training,
            exclude_ids=skipped_audio,
        )
    if datasets["train"] is None:
        raise ValueError(f"The training manifest {hparams['train_csv']} is empty")
    counts, absent = {}, []
    if hparams["train_labelled"]:
        counts, absent = check_training_classes(
            hparams["train_csv"], hparams["classes"], exclude_ids=skipped_audio
        )
    datasets["train_class_counts"] = counts
    datasets["absent_train_classes"] = absent
    datasets["train_batch_sampler"] = train_batch_sampler(
        datasets["train"], cache, hparams["max_frames"], hparams["train_sampler"]
    )
    return datasets


def train_batch_sampler(dataset, cache, max_frames, builder):
    """The training batch sampler over ``dataset``, or None for random batches.

    Arguments
    ---------
    dataset : DynamicItemDataset
        A :func:`feature_dataset` (copies included).
    cache : FeatureCache
        Gives each utterance's number of frames.
    max_frames : int
        Training crops longer utterances to this many frames.
    builder : callable or None
        Called as ``builder(lengths=...)`` with the (cropped) frames of every
        example: the YAML's ``train_sampler``, e.g.
        :class:`ser_lib.sampling.PoolSortedBatchSampler` (the recipes' default,
        batches of exactly ``batch_size``) or :func:`ser_lib.sampling.bucketed_sampler`.
        None keeps random batches (returns None).

    Returns
    -------
    torch.utils.data.Sampler or None
        A batch sampler with ``set_epoch`` (the Brain reshuffles it every epoch).
    """
    if builder is None:
        return None
    lengths = [
        min(cache.num_frames(dataset.data[data_id]["source_id"]), max_frames)
        for data_id in dataset.data_ids
    ]
    return builder(lengths=lengths)
