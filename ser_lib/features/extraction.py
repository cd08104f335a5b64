"""Filling a feature cache: frozen-encoder outputs computed once per utterance."""

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataio import load_data_csv
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from ser_lib.audio import AudioError, check_audio_files, read_audio
from ser_lib.encoders import absolute_lengths, load_encoder
from ser_lib.features.cache import (
    FEATS_DIR,
    FeatureCache,
    _atomic_write,
    _prepare_cache_dir,
    _write_index,
)
from ser_lib.locking import FolderLock

logger = get_logger(__name__)


@dataclass
class ExtractionSummary:
    """What one :func:`run_feature_extraction` call did.

    Attributes
    ----------
    cache_dir : str
        The cache directory.
    num_extracted : int
        Utterances encoded in this call.
    num_skipped : int
        Requested utterances that were already cached.
    seconds : float
        Wall-clock time of the call.
    """

    cache_dir: str
    num_extracted: int
    num_skipped: int
    seconds: float


def _read_manifests(csv_files, data_root):
    """Reads SpeechBrain CSVs into {ID: {"wav": path, "duration": seconds}}.

    An ID may appear in several CSVs if it names the same wav file every time.
    """
    replacements = {} if data_root is None else {"data_root": str(data_root)}
    utterances, origin = {}, {}
    for csv_file in csv_files:
        try:
            rows = load_data_csv(csv_file, replacements=replacements)
        except (KeyError, ValueError) as err:  # duplicate ID, no ID column, ...
            raise ValueError(f"Manifest {csv_file}: {err}") from err
        for utt_id, row in rows.items():
            missing = {"wav", "duration"} - set(row)
            if missing:
                raise ValueError(
                    f"{csv_file}: row {utt_id!r} lacks column(s) {sorted(missing)}"
                )
            if (
                not utt_id
                or utt_id.startswith(".")
                or any(sep in utt_id for sep in ("/", "\\"))
            ):
                raise ValueError(
                    f"{csv_file}: ID {utt_id!r} cannot be used as a file name"
                )
            entry = {"wav": row["wav"], "duration": float(row["duration"])}
            if utt_id in utterances and utterances[utt_id]["wav"] != entry["wav"]:
                raise ValueError(
                    f"ID {utt_id!r} names {utterances[utt_id]['wav']} in "
                    f"{origin[utt_id]} but {entry['wav']} in {csv_file}"
                )
            utterances[utt_id] = entry
            origin[utt_id] = csv_file
    return utterances


def _duration_batches(durations, batch_seconds):
    """Groups indices, longest first, so that ``size * longest <= batch_seconds``.

    A single utterance longer than ``batch_seconds`` forms its own batch.
    """
    order = sorted(range(len(durations)), key=lambda i: -durations[i])
    batches, current = [], []
    for index in order:
        # Sorted longest first: the first item of a batch sets its padded length.
        if current and (len(current) + 1) * durations[current[0]] > batch_seconds:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def run_feature_extraction(
    encoder,
    csv_files,
    cache_dir,
    data_root=None,
    batch_seconds=60.0,
    device="cpu",
    overwrite=False,
    num_workers=0,
    progress=True,
    skip_ids=(),
):
    """Encodes every utterance of ``csv_files`` not yet in ``cache_dir``.

    Utterances are sorted by duration (longest first) and grouped into batches of at
    most ``batch_seconds`` of padded audio. Audio goes through
    :func:`ser_lib.audio.read_audio` (mono, resampled to ``encoder.sample_rate``);
    each output is trimmed to ``encoder.num_frames`` of its unpadded length and
    saved as float16.

    Arguments
    ---------
    encoder : ser_lib.encoders.FrozenEncoder
        The encoder; it is moved to ``device``.
    csv_files : str or list of str
        SpeechBrain CSV manifests with at least the columns ID, wav, duration. IDs
        listed in several CSVs are encoded once.
    cache_dir : str or os.PathLike
        The cache directory (created if needed).
    data_root : str or None
        Replaces ``$data_root`` in the CSVs.
    batch_seconds : float
        Maximum padded audio per batch (batch size times longest duration), s.
    device : str or torch.device
        Where the encoder runs.
    overwrite : bool
        Delete the cache (features, index, fingerprint) and rebuild it; without it,
        a cache built with another fingerprint raises :class:`CacheMismatchError`.
    num_workers : int
        DataLoader workers reading audio.
    progress : bool
        Show a tqdm progress bar.
    skip_ids : collection of str
        Utterances not to encode (too short or silent, see
        :mod:`ser_lib.audio_levels`).

    Returns
    -------
    ExtractionSummary
        Counts and time of this call.

    Raises
    ------
    ser_lib.audio.AudioError
        Before any encoding, listing every file still to extract that is missing,
        unreadable, empty or truncated; during encoding, for an utterance too short
        to give one frame (naming it and its file).
    CacheMismatchError
        If ``cache_dir`` holds features of another encoder or other settings.
    ValueError
        If a manifest lacks a column or repeats an ID (naming the CSV), or if the
        encoder output of an utterance is not finite (naming it and its file).

    Example
    -------
    >>> import soundfile as sf
    >>> from ser_lib.encoders import FbankEncoder
    >>> root = getfixture("tmp_path")
    >>> sf.write(root / "a.wav", np.random.randn(16000) * 0.1, 16000)
    >>> _ = (root / "all.csv").write_text("ID,duration,wav\\na,1.0,$data_root/a.wav\\n")
    >>> encoder = FbankEncoder()
    >>> kwargs = dict(data_root=root, progress=False)
    >>> run_feature_extraction(  # doctest: +ELLIPSIS
    ...     encoder, root / "all.csv", root / "cache", **kwargs)
    ExtractionSummary(cache_dir=..., num_extracted=1, num_skipped=0, seconds=...)
    >>> run_feature_extraction(  # doctest: +ELLIPSIS
    ...     encoder, root / "all.csv", root / "cache", **kwargs)
    ExtractionSummary(cache_dir=..., num_extracted=0, num_skipped=1, seconds=...)
    """
    start = time.perf_counter()
    if isinstance(csv_files, (str, os.PathLike)):
        csv_files = [csv_files]
    utterances = _read_manifests(csv_files, data_root)
    skip_ids = set(skip_ids)
    utterances = {k: v for k, v in utterances.items() if k not in skip_ids}
    cache_dir = Path(cache_dir)
    # One writer at a time; other runs (e.g. folds run as separate jobs) wait.
    with FolderLock(cache_dir, "extracting features", wait=True):
        return _fill_cache(
            encoder,
            utterances,
            cache_dir,
            batch_seconds,
            device,
            overwrite,
            num_workers,
            progress,
            start,
        )


def _fill_cache(
    encoder,
    utterances,
    cache_dir,
    batch_seconds,
    device,
    overwrite,
    num_workers,
    progress,
    start,
):
    """The body of :func:`run_feature_extraction`, run under the cache's lock."""
    _prepare_cache_dir(cache_dir, encoder.fingerprint(), overwrite)
    feats_dir = cache_dir / FEATS_DIR
    todo = {
        utt_id: entry
        for utt_id, entry in utterances.items()
        if not (feats_dir / f"{utt_id}.npy").exists()
    }
    num_skipped = len(utterances) - len(todo)
    logger.info(
        "Feature cache %s: %d utterances to extract, %d already cached",
        cache_dir,
        len(todo),
        num_skipped,
    )

    if todo:
        # Every unusable file is reported before any work starts.
        check_audio_files([entry["wav"] for entry in todo.values()])
        encoder.to(device)
        dataset = DynamicItemDataset(todo)
        dataset.add_dynamic_item(
            partial(read_audio, sample_rate=encoder.sample_rate),
            takes="wav",
            provides="sig",
        )
        dataset.set_output_keys(["id", "wav", "sig"])
        durations = [entry["duration"] for entry in todo.values()]
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=_duration_batches(durations, batch_seconds),
            collate_fn=PaddedBatch,
            num_workers=num_workers,
        )
        with (
            tqdm(
                total=len(todo),
                unit="utt",
                desc="Extracting features",
                dynamic_ncols=True,
                disable=not progress,
            ) as bar,
            torch.inference_mode(),
        ):
            for batch in loader:
                _encode_batch(encoder, batch, feats_dir, device)
                bar.update(len(batch.id))

    num_cached = _write_index(cache_dir)
    seconds = time.perf_counter() - start
    logger.info(
        "Feature cache %s: extracted %d, skipped %d, %d cached in all, %.1f s",
        cache_dir,
        len(todo),
        num_skipped,
        num_cached,
        seconds,
    )
    return ExtractionSummary(str(cache_dir), len(todo), num_skipped, seconds)


def _encode_batch(encoder, batch, feats_dir, device):
    """Encodes one PaddedBatch and saves each utterance's valid frames."""
    wavs, wav_lens = batch.sig  # [B, S], [B] relative
    lens = absolute_lengths(wav_lens, wavs.shape[1]).tolist()
    counts = [encoder.num_frames(length) for length in lens]
    for utt_id, wav_path, length, count in zip(
        batch.id, batch.wav, lens, counts, strict=True
    ):
        if count < 1:
            raise AudioError(
                f"Utterance {utt_id} ({wav_path}) is too short for the encoder: "
                f"{length} samples give no frame"
            )
    feats, _ = encoder(wavs.to(device), wav_lens.to(device))  # [B, T, D]
    feats = feats.to(device="cpu", dtype=torch.float16).numpy()
    for utt_id, wav_path, utt_feats, count in zip(
        batch.id, batch.wav, feats, counts, strict=True
    ):
        if not np.isfinite(utt_feats[:count]).all():
            raise ValueError(
                f"Utterance {utt_id} ({wav_path}): the encoder output is not finite "
                f"in float16 (NaN, or beyond +-{np.finfo(np.float16).max:.0f})"
            )
        _atomic_write(
            feats_dir / f"{utt_id}.npy",
            partial(np.save, arr=np.ascontiguousarray(utt_feats[:count])),
        )


def extract_features(
    encoder,
    csv_files,
    cache_dir,
    data_root=None,
    batch_seconds=60.0,
    device="cpu",
    overwrite=False,
    num_workers=0,
    progress=True,
    skip_ids=(),
):
    """Fills the feature cache for ``csv_files`` and returns it (see
    :func:`run_feature_extraction` for the arguments).

    Returns
    -------
    FeatureCache
        The cache, covering at least every ID of ``csv_files``.

    Example
    -------
    >>> import soundfile as sf
    >>> from ser_lib.encoders import FbankEncoder
    >>> root = getfixture("tmp_path")
    >>> sf.write(root / "a.wav", np.random.randn(8000) * 0.1, 16000)
    >>> _ = (root / "all.csv").write_text("ID,duration,wav\\na,0.5,$data_root/a.wav\\n")
    >>> cache = extract_features(
    ...     FbankEncoder(n_mels=40), root / "all.csv", root / "cache",
    ...     data_root=root, progress=False)
    >>> cache.ids, cache.load("a").shape, cache.load("a").dtype
    (['a'], (25, 80), dtype('float16'))
    """
    run_feature_extraction(
        encoder,
        csv_files,
        cache_dir,
        data_root=data_root,
        batch_seconds=batch_seconds,
        device=device,
        overwrite=overwrite,
        num_workers=num_workers,
        progress=progress,
        skip_ids=skip_ids,
    )
    return FeatureCache(cache_dir)


def prepare_features(
    encoder_hparams,
    csv_files,
    cache_dir,
    data_root=None,
    encoder_overrides=None,
    batch_seconds=60.0,
    device="cpu",
    overwrite=False,
    num_workers=0,
    progress=True,
    skip_ids=(),
):
    """Builds the encoder of an encoder hparams file and fills the cache with it.

    The recipes' entry point: ``encoder_hparams`` is a HyperPyYAML file defining
    ``encoder`` (see :func:`ser_lib.encoders.load_encoder`); the other arguments are
    those of :func:`run_feature_extraction`.

    Arguments
    ---------
    encoder_hparams : str or os.PathLike
        E.g. ``recipes/IEMOCAP/hparams/encoder/hubert_large.yaml``.
    csv_files : str or list of str
        SpeechBrain CSV manifests (ID, duration, wav).
    cache_dir : str or os.PathLike
        The cache directory.
    data_root : str or None
        Replaces ``$data_root`` in the CSVs.
    encoder_overrides : dict or str or None
        Overrides of the encoder hparams file (e.g. ``{"encoder_source": path}``).
    batch_seconds : float
        Maximum padded audio per batch, s.
    device : str or torch.device
        Where the encoder runs.
    overwrite : bool
        Delete the cache and rebuild it.
    num_workers : int
        DataLoader workers reading audio.
    progress : bool
        Show a tqdm progress bar.
    skip_ids : collection of str
        Utterances not to encode.

    Returns
    -------
    FeatureCache
        The cache.

    Example
    -------
    >>> import soundfile as sf
    >>> root = getfixture("tmp_path")
    >>> sf.write(root / "a.wav", np.random.randn(16000) * 0.1, 16000)
    >>> _ = (root / "all.csv").write_text("ID,duration,wav\\na,1.0,$data_root/a.wav\\n")
    >>> _ = (root / "enc.yaml").write_text(
    ...     "n_mels: 80\\nencoder: !new:ser_lib.encoders.FbankEncoder\\n"
    ...     "    n_mels: !ref <n_mels>\\n")
    >>> cache = prepare_features(
    ...     root / "enc.yaml", root / "all.csv", root / "cache", data_root=root,
    ...     encoder_overrides={"n_mels": 40}, progress=False)
    >>> cache.feature_dim, cache.num_frames("a")
    (80, 50)
    """
    return extract_features(
        load_encoder(encoder_hparams, encoder_overrides),
        csv_files,
        cache_dir,
        data_root=data_root,
        batch_seconds=batch_seconds,
        device=device,
        overwrite=overwrite,
        num_workers=num_workers,
        progress=progress,
        skip_ids=skip_ids,
    )
