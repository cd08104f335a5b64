"""Multi-scale k-means pseudo-labels of frames (GMP-TL's GMPs).

One frozen pass of a fine-tuned encoder (``layer`` of its hidden states) over the
fold's *training* utterances only; one mini-batch k-means per scale (e.g. K = 64,
512, 4096) on those frames; every training utterance gets an int16 array
``[T, n_scales]`` of nearest-centre indices, with T = the encoder's frames of the
whole (unpadded) utterance. The labels are written in the feature-cache layout
(``fingerprint.json``, ``index.csv``, ``feats/<ID>.npy``), so
:class:`ser_lib.features.FeatureCache` reads them; the centres are ``.npy``
arrays (no pickles, independent of the scikit-learn version); ``kmeans_stats.json``
holds per scale the inertia, the cluster-usage perplexity and the NMI of the frame
labels with the utterance emotion and gender.

The fingerprint holds a digest of the encoder's weights, the layer, the scales, the
k-means settings, the seed and a digest of the training IDs. A cache written for
other settings is an error (:class:`ser_lib.features.CacheMismatchError`) both when
the labels are made and when a stage reads them (:func:`check_label_cache`).
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.logger import get_logger

from ser_lib.brains.inloop import DONE_FILE, write_done
from ser_lib.data.manifest import read_manifest
from ser_lib.features import (
    FEATS_DIR,
    CacheMismatchError,
    _atomic_write,
    _prepare_cache_dir,
    _write_index,
)
from ser_lib.inloop.data import waveform_dataset

logger = get_logger(__name__)

STATS_FILE = "kmeans_stats.json"


def folder_digest(folder):
    """SHA-256 of the weight and config files of a ``save_pretrained`` folder.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> _ = (folder / "config.json").write_text("{}")
    >>> len(folder_digest(folder))
    64
    """
    digest = hashlib.sha256()
    files = sorted(
        path
        for path in Path(folder).iterdir()
        if path.suffix in (".safetensors", ".bin") or path.name == "config.json"
    )
    if not files:
        raise FileNotFoundError(f"{folder} holds no model weights")
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def ids_digest(csv_path):
    """SHA-256 of the sorted utterance IDs of a manifest."""
    ids = sorted(row["ID"] for row in read_manifest(csv_path, ["ID"]))
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def label_fingerprint(
    encoder_folder, layer, label_scales, kmeans, seed, train_csv, max_fit_frames
):
    """What determines a pseudo-label cache (JSON-serialisable)."""
    return {
        "class": "PseudoLabels",
        "encoder_digest": folder_digest(encoder_folder),
        "layer": int(layer),
        "label_scales": [int(k) for k in label_scales],
        "kmeans": dict(kmeans),
        "seed": int(seed),
        "max_fit_frames": max_fit_frames,
        "train_ids_digest": ids_digest(train_csv),
    }


def check_label_cache(cache, encoder_folder, label_scales, train_csv):
    """Checks that a label cache was made from this encoder, scales and training set.

    Arguments
    ---------
    cache : ser_lib.features.FeatureCache
        The pseudo-label cache.
    encoder_folder : str
        The exported encoder the labels must come from (the fold's stage A).
    label_scales : sequence of int
        The cluster counts the stage expects.
    train_csv : str
        The stage's training manifest.

    Raises
    ------
    CacheMismatchError
        Naming what differs and the cure.
    """
    found = cache.fingerprint
    expected = {
        "encoder_digest": folder_digest(encoder_folder),
        "label_scales": [int(k) for k in label_scales],
        "train_ids_digest": ids_digest(train_csv),
    }
    differing = [key for key, value in expected.items() if found.get(key) != value]
    if differing:
        raise CacheMismatchError(
            f"The pseudo-label cache {cache.cache_dir} was made from another model or "
            f"for other settings ({', '.join(differing)} differ from {encoder_folder}, "
            f"scales {list(label_scales)} and {train_csv}). Delete it and run the "
            "pseudo-label step of this fold again."
        )


def fit_multiscale_kmeans(frames, label_scales, kmeans, seed):
    """One mini-batch k-means per scale on ``frames`` [N, D] (float32).

    Arguments
    ---------
    frames : np.ndarray
        The fitting frames.
    label_scales : sequence of int
        Cluster counts.
    kmeans : dict
        Further ``sklearn.cluster.MiniBatchKMeans`` arguments.
    seed : int
        ``random_state``.

    Returns
    -------
    list of np.ndarray
        Centres [K, D] (float32) per scale.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> frames = np.concatenate([rng.normal(c, 0.1, (50, 2)) for c in (0, 10)])
    >>> centres = fit_multiscale_kmeans(frames.astype(np.float32), [2], {}, seed=0)
    >>> sorted(int(round(float(c))) for c in centres[0][:, 0])
    [0, 10]
    """
    from sklearn.cluster import MiniBatchKMeans

    centres = []
    for k in label_scales:
        if frames.shape[0] < k:
            raise ValueError(
                f"k-means with K={k} needs at least {k} frames but the training set "
                f"gives {frames.shape[0]}; use smaller label_scales or more data"
            )
        model = MiniBatchKMeans(n_clusters=int(k), random_state=seed, **kmeans)
        model.fit(frames)
        centres.append(model.cluster_centers_.astype(np.float32))
        logger.info(
            "k-means K=%d: inertia %.4g over %d frames",
            k,
            model.inertia_,
            frames.shape[0],
        )
    return centres


def assign_labels(frames, centres, chunk=8192):
    """Nearest centre of every frame for every scale: [T, n_scales] int64.

    Example
    -------
    >>> frames = torch.tensor([[0.0], [9.0], [1.0]])
    >>> assign_labels(frames, [torch.tensor([[0.0], [10.0]])]).tolist()
    [[0], [1], [0]]
    """
    columns = []
    for scale_centres in centres:
        parts = [
            torch.cdist(frames[i : i + chunk], scale_centres).argmin(dim=1)
            for i in range(0, frames.shape[0], chunk)
        ]
        columns.append(torch.cat(parts))
    return torch.stack(columns, dim=1)


def usage_perplexity(labels, k):
    """exp(entropy) of the cluster usage (k = all clusters used equally).

    Example
    -------
    >>> round(usage_perplexity(np.array([0, 1, 0, 1]), 4), 3)
    2.0
    """
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


@torch.no_grad()
def encode_utterances(encoder, dataset, device):
    """The encoder's frames of every utterance of ``dataset``: ID -> [T, D] float32."""
    encoder.eval().to(device)
    frames = {}
    for index in range(len(dataset)):
        item = dataset[index]
        sig = item["sig"][None].to(device)
        feats, _ = encoder(sig, torch.ones(1, device=device))
        frames[item["id"]] = feats[0].float().cpu()
    return frames


def make_pseudo_labels(hparams, device="cpu"):
    """The pseudo-label step of one fold (see the module docstring).

    Hparams: ``encoder`` (a trainable encoder of the stage-A export, all frozen,
    ``layers`` = the k-means layer), ``encoder_folder``, ``kmeans_layer``,
    ``label_scales``, ``kmeans`` (MiniBatchKMeans arguments), ``seed``,
    ``max_fit_frames`` (None = every frame; else a random subset fits the centres),
    ``assign_chunk``, ``train_csv``, ``data_folder``, ``sample_rate``,
    ``label_classes`` (for the NMI diagnostics), ``output_folder`` (the cache).

    Returns
    -------
    dict
        The statistics written to ``kmeans_stats.json``.
    """
    from sklearn.metrics import normalized_mutual_info_score

    folder = Path(hparams["output_folder"])
    fingerprint = label_fingerprint(
        hparams["encoder_folder"],
        hparams["kmeans_layer"],
        hparams["label_scales"],
        hparams["kmeans"],
        hparams["seed"],
        hparams["train_csv"],
        hparams["max_fit_frames"],
    )
    _prepare_cache_dir(folder, fingerprint, overwrite=False)
    if (folder / DONE_FILE).is_file():
        logger.info("Pseudo-labels already made in %s", folder)
        with open(folder / STATS_FILE, encoding="utf-8") as f:
            return json.load(f)
    encoder = hparams["encoder"]
    columns = [c for c in ("emo", "gender") if c in hparams["label_classes"]]
    dataset = waveform_dataset(
        hparams["train_csv"],
        hparams["data_folder"],
        encoders={},
        sample_rate=hparams["sample_rate"],
        min_samples=encoder.min_samples,
    )
    frames = encode_utterances(encoder, dataset, device)
    ids = list(frames)
    stacked = torch.cat([frames[i] for i in ids])
    fit = stacked.numpy()
    if (
        hparams["max_fit_frames"] is not None
        and fit.shape[0] > hparams["max_fit_frames"]
    ):
        rng = np.random.default_rng(hparams["seed"])
        keep = rng.choice(fit.shape[0], hparams["max_fit_frames"], replace=False)
        fit = fit[np.sort(keep)]
    centres = fit_multiscale_kmeans(
        fit, hparams["label_scales"], hparams["kmeans"], hparams["seed"]
    )
    for k, scale_centres in zip(hparams["label_scales"], centres, strict=True):
        _atomic_write(
            folder / f"centres_K{k}.npy", lambda f, c=scale_centres: np.save(f, c)
        )
    labels = assign_labels(
        stacked, [torch.from_numpy(c) for c in centres], hparams["assign_chunk"]
    )
    offset = 0
    for utt in ids:
        count = frames[utt].shape[0]
        array = labels[offset : offset + count].numpy().astype(np.int16)
        _atomic_write(
            folder / FEATS_DIR / f"{utt}.npy", lambda f, a=array: np.save(f, a)
        )
        offset += count
    _write_index(folder)

    rows = {
        row["ID"]: row for row in read_manifest(hparams["train_csv"], ["ID", *columns])
    }
    stats = {
        "n_utterances": len(ids),
        "n_frames": int(stacked.shape[0]),
        "n_fit_frames": int(fit.shape[0]),
        "scales": {},
    }
    for scale, (k, scale_centres) in enumerate(
        zip(hparams["label_scales"], centres, strict=True)
    ):
        assigned = labels[:, scale].numpy()
        distances = (stacked - torch.from_numpy(scale_centres)[labels[:, scale]]) ** 2
        entry = {
            "inertia_per_frame": float(distances.sum(dim=1).mean()),
            "usage_perplexity": usage_perplexity(assigned, k),
        }
        for column in columns:
            frame_values = [
                rows[u][column] for u in ids for _ in range(frames[u].shape[0])
            ]
            entry[f"nmi_{column}"] = float(
                normalized_mutual_info_score(frame_values, assigned)
            )
        stats["scales"][str(k)] = entry
    _atomic_write(
        folder / STATS_FILE,
        lambda f: f.write(json.dumps(stats, indent=2)),
        binary=False,
    )
    write_done(folder, {"step": "pseudo_labels", **stats})
    logger.info("Pseudo-labels of %d utterances in %s: %s", len(ids), folder, stats)
    return stats


def pseudo_label_main(argv):
    """``python make_pseudo_labels.py hparams/pseudo_labels.yaml [--key=value ...]``."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    os.makedirs(hparams["output_folder"], exist_ok=True)
    device = run_opts["device"] or sb.utils.distributed.infer_device()
    return make_pseudo_labels(hparams, device=device)


if __name__ == "__main__":
    pseudo_label_main(sys.argv[1:])
