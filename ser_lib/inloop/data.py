"""Waveform datasets for in-the-loop training: manifests -> signals and labels.

* :func:`waveform_dataset`: a ``DynamicItemDataset`` over a SpeechBrain manifest
  giving ``sig`` (mono, resampled, optionally randomly cropped), one encoded label per
  named column (``emo_encoded``, ``gender_encoded``, ...) and optionally frame-level
  labels cropped jointly with the audio.
* :func:`crop_with_frame_labels`: the joint crop. The crop starts on a multiple of
  the encoder's ``samples_per_frame``, so frame ``j`` of the crop is frame
  ``start / samples_per_frame + j`` of the whole utterance.
* :func:`duration_batch_sampler`: duration-bucketed batches (the project's
  :func:`ser_lib.sampling.bucketed_batch_sampler` with lengths in samples).

Inputs shorter than the encoder's receptive field (``min_samples``) are zero-padded
at the end to it when loading, so every utterance has at least one frame; the
frame-label cache is computed from the same padded signal.
"""

import numpy as np
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes
from speechbrain.utils.logger import get_logger

from ser_lib.audio import read_audio
from ser_lib.data.manifest import read_manifest
from ser_lib.sampling import bucketed_batch_sampler

logger = get_logger(__name__)


def label_encoders(label_classes):
    """One fixed-order ``CategoricalEncoder`` per manifest column.

    Arguments
    ---------
    label_classes : dict
        Column -> list of classes in index order (``{"emo": [...], "gender": [F, M]}``).

    Returns
    -------
    dict
        Column -> ``CategoricalEncoder``.

    Example
    -------
    >>> encoders = label_encoders({"gender": ["F", "M"]})
    >>> encoders["gender"].encode_label("M")
    1
    """
    encoders = {}
    for column, classes in label_classes.items():
        encoder = CategoricalEncoder()
        encoder.update_from_iterable(list(classes))
        encoders[column] = encoder
    return encoders


def pad_to_min_samples(sig, min_samples):
    """Zero-pads ``sig`` [S] at the end to ``min_samples`` samples.

    Example
    -------
    >>> pad_to_min_samples(torch.ones(3), 5).tolist()
    [1.0, 1.0, 1.0, 0.0, 0.0]
    """
    if sig.shape[0] >= min_samples:
        return sig
    return torch.nn.functional.pad(sig, (0, min_samples - sig.shape[0]))


def crop_with_frame_labels(
    sig, labels, max_samples, samples_per_frame, num_frames, generator=None
):
    """Random crop of at most ``max_samples`` samples, with its frame labels.

    The crop start is a multiple of ``samples_per_frame``; the labels of the crop are
    ``labels[start // samples_per_frame :][: num_frames(crop length)]``.

    Arguments
    ---------
    sig : torch.Tensor
        Waveform [S].
    labels : torch.Tensor or None
        Frame labels [T, ...] of the whole ``sig`` (T = ``num_frames(S)``).
    max_samples : int or None
        Crop length; None or a longer limit keeps the whole signal.
    samples_per_frame : int
        The encoder's total stride.
    num_frames : callable
        Samples -> frames of the encoder.
    generator : torch.Generator, optional
        Draws the start.

    Returns
    -------
    tuple
        The cropped signal and labels (labels None when ``labels`` is None).

    Example
    -------
    >>> sig = torch.arange(4000.0)
    >>> labels = torch.arange(12)  # 12 frames of 320 samples (receptive field 400)
    >>> frames = lambda n: (n - 400) // 320 + 1
    >>> crop, crop_labels = crop_with_frame_labels(sig, labels, 1000, 320, frames)
    >>> int(crop[0]) % 320, crop_labels.tolist() == list(range(int(crop[0]) // 320,
    ...     int(crop[0]) // 320 + frames(1000)))
    (0, True)
    """
    total = sig.shape[0]
    if max_samples is None or total <= max_samples:
        return sig, labels
    max_start = (total - max_samples) // samples_per_frame
    start_frame = int(torch.randint(0, max_start + 1, (1,), generator=generator))
    start = start_frame * samples_per_frame
    crop = sig[start : start + max_samples]
    if labels is None:
        return crop, None
    crop_labels = labels[start_frame : start_frame + num_frames(crop.shape[0])]
    return crop, crop_labels


def waveform_dataset(
    csv_path,
    data_root,
    encoders,
    sample_rate=16000,
    min_samples=400,
    max_seconds=None,
    random_crop=False,
    frame_labels=None,
    samples_per_frame=320,
    num_frames=None,
):
    """A ``DynamicItemDataset`` of waveforms and labels for one manifest.

    Arguments
    ---------
    csv_path : str
        SpeechBrain CSV with ``ID``, ``duration``, ``wav`` and every column of
        ``encoders``.
    data_root : str
        Value of ``$data_root`` in the ``wav`` column.
    encoders : dict
        Column -> ``CategoricalEncoder`` (:func:`label_encoders`); gives
        ``<column>_encoded`` ([1] long). A value outside the classes (e.g. gender
        ``U``) gives -1, which the losses ignore.
    sample_rate : int
        Waveforms are resampled to this rate.
    min_samples : int
        Shorter waveforms are zero-padded to this length (the receptive field).
    max_seconds : float, optional
        With ``random_crop``, longer utterances are cropped to a random window.
    random_crop : bool
        Training (crop) or evaluation (whole utterances).
    frame_labels : ser_lib.features.FeatureCache, optional
        Frame-level labels ``[T, ...]`` per ID (e.g. the pseudo-label cache); gives
        ``frame_labels`` cropped jointly with ``sig``.
    samples_per_frame : int
        The encoder's stride (crop grid).
    num_frames : callable, optional
        Samples -> frames; needed with ``frame_labels``.

    Returns
    -------
    DynamicItemDataset
        Keys ``id``, ``duration``, ``sig``, ``<column>_encoded`` and, with
        ``frame_labels``, ``frame_labels``.
    """
    columns = list(encoders)
    rows = read_manifest(csv_path, required_columns=["ID", "duration", "wav", *columns])
    if frame_labels is not None:
        missing = [row["ID"] for row in rows if row["ID"] not in frame_labels]
        if missing:
            raise KeyError(
                f"{len(missing)} utterances of {csv_path} have no frame labels in "
                f"{frame_labels.cache_dir} (first: {missing[:3]})"
            )
        if num_frames is None:
            raise ValueError("waveform_dataset: frame_labels needs num_frames")
    data = {
        row["ID"]: {
            "wav": row["wav"].replace("$data_root", str(data_root)),
            "duration": float(row["duration"]),
            **{column: row[column] for column in columns},
        }
        for row in rows
    }
    max_samples = None
    if random_crop and max_seconds is not None:
        max_samples = int(max_seconds * sample_rate)
    short = [
        utt for utt, row in data.items() if row["duration"] * sample_rate < min_samples
    ]
    if short:
        logger.warning(
            "%d utterances of %s are shorter than %d samples and are zero-padded to "
            "it (first: %s)",
            len(short),
            csv_path,
            min_samples,
            short[:3],
        )

    @takes("id", "wav")
    @provides("sig", "frame_labels")
    def audio_pipeline(utt_id, wav):
        sig = pad_to_min_samples(read_audio(wav, sample_rate), min_samples)
        labels = None
        if frame_labels is not None:
            labels = torch.from_numpy(
                np.array(frame_labels.load(utt_id), dtype=np.int64)
            )
            expected = num_frames(sig.shape[0])
            if labels.shape[0] != expected:
                raise ValueError(
                    f"The frame labels of {utt_id} have {labels.shape[0]} frames but "
                    f"its audio gives {expected}: the label cache "
                    f"{frame_labels.cache_dir} was built from other audio or another "
                    "encoder; delete it and run the pseudo-label step again"
                )
        sig, labels = crop_with_frame_labels(
            sig, labels, max_samples, samples_per_frame, num_frames
        )
        yield sig
        yield labels

    dynamic_items = [audio_pipeline]
    for column in columns:
        dynamic_items.append(_label_pipeline(column, encoders[column]))
    output_keys = ["id", "duration", "sig", *[f"{c}_encoded" for c in columns]]
    if frame_labels is not None:
        output_keys.append("frame_labels")
    return DynamicItemDataset(
        data, dynamic_items=dynamic_items, output_keys=output_keys
    )


def _label_pipeline(column, encoder):
    """``<column>`` -> ``<column>_encoded`` ([1] long, -1 when not a known class)."""

    @takes(column)
    @provides(f"{column}_encoded")
    def pipeline(value):
        index = encoder.lab2ind.get(value, -1)
        return torch.tensor([index], dtype=torch.long)

    return pipeline


def duration_batch_sampler(
    dataset, batch_size, num_buckets, seed, max_seconds=None, shuffle=True
):
    """Duration-bucketed batches of about ``batch_size`` mean-length utterances.

    Arguments
    ---------
    dataset : DynamicItemDataset
        A :func:`waveform_dataset`.
    batch_size : int
        Average utterances per batch.
    num_buckets : int
        Quantile buckets of duration.
    seed : int
        Shuffling seed (the Brain calls ``set_epoch``).
    max_seconds : float, optional
        Training crop (lengths are capped at it).
    shuffle : bool
        False: batches sorted by duration (evaluation).

    Returns
    -------
    speechbrain.dataio.sampler.DynamicBatchSampler
    """
    centis = []
    for data_id in dataset.data_ids:
        duration = dataset.data[data_id]["duration"]
        if max_seconds is not None:
            duration = min(duration, max_seconds)
        centis.append(max(int(round(100 * duration)), 1))
    batch_length = max(int(round(batch_size * float(np.mean(centis)))), max(centis))
    return bucketed_batch_sampler(
        dataset,
        centis,
        batch_length,
        num_buckets=num_buckets,
        shuffle=shuffle,
        seed=seed,
    )


def inloop_dataio(hparams):
    """The fold's waveform datasets from a recipe's hparams (``dataio`` of the YAML).

    Reads ``train_csv``, ``valid_csv``, ``test_csv``, ``data_folder``,
    ``label_classes`` (column -> classes; ``emo`` first), ``encoder`` (its
    ``min_samples``, ``samples_per_frame``, ``num_frames``), ``sample_rate``,
    ``train_max_seconds``, ``frame_label_folder`` (None, or a pseudo-label cache for
    the training set, checked with ``check_frame_labels``), ``batch_size``,
    ``num_buckets`` and ``seed``.

    Returns
    -------
    dict
        ``train``, ``valid`` (None when empty), ``test`` (None when not needed or
        empty), ``label_encoder`` (emotion), ``train_class_counts``,
        ``train_batch_sampler``.
    """
    from ser_lib.dataio import check_training_classes
    from ser_lib.features import FeatureCache

    encoder = hparams["encoder"]
    encoders = label_encoders(hparams["label_classes"])
    frame_labels = None
    if hparams["frame_label_folder"] is not None:
        frame_labels = FeatureCache(hparams["frame_label_folder"])
        hparams["check_frame_labels"](frame_labels)
    common = {
        "data_root": hparams["data_folder"],
        "encoders": encoders,
        "sample_rate": hparams["sample_rate"],
        "min_samples": encoder.min_samples,
        "samples_per_frame": encoder.samples_per_frame,
        "num_frames": encoder.num_frames,
    }
    datasets = {"label_encoder": encoders["emo"]}
    datasets["train"] = waveform_dataset(
        hparams["train_csv"],
        max_seconds=hparams["train_max_seconds"],
        random_crop=True,
        frame_labels=frame_labels,
        **common,
    )
    if len(datasets["train"]) == 0:
        raise ValueError(f"The training manifest {hparams['train_csv']} is empty")
    for split in ("valid", "test"):
        csv_path = hparams[f"{split}_csv"]
        if frame_labels is not None or not read_manifest(csv_path, ["ID"]):
            datasets[split] = None  # frame-label stages neither validate nor test
            continue
        datasets[split] = waveform_dataset(csv_path, **common)
    counts, _ = check_training_classes(
        hparams["train_csv"], hparams["label_classes"]["emo"]
    )
    datasets["train_class_counts"] = counts
    _warn_missing_classes(hparams["train_csv"], hparams["label_classes"])
    datasets["train_batch_sampler"] = duration_batch_sampler(
        datasets["train"],
        batch_size=hparams["batch_size"],
        num_buckets=hparams["num_buckets"],
        seed=hparams["seed"],
        max_seconds=hparams["train_max_seconds"],
    )
    return datasets


def _warn_missing_classes(csv_path, label_classes):
    """Warns about auxiliary classes (e.g. one gender) absent from training."""
    rows = read_manifest(csv_path, list(label_classes))
    for column, classes in label_classes.items():
        if column == "emo":
            continue  # check_training_classes reports emotions
        present = {row[column] for row in rows}
        absent = [c for c in classes if c not in present]
        if absent:
            logger.warning(
                "%s: no training utterance has %s %s; that output is trained as a "
                "never-seen class (its loss term only pushes it down)",
                csv_path,
                column,
                absent,
            )
