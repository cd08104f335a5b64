"""The on-disk feature cache: frozen-encoder outputs computed once per utterance.

Layout of a cache directory::

    cache_dir/fingerprint.json   # encoder.fingerprint(): what produced the features
    cache_dir/index.csv          # ID,num_frames,feat_path (path relative to cache_dir)
    cache_dir/feats/<ID>.npy     # float16 array [num_frames, feature_dim]

:func:`extract_features` fills a cache from SpeechBrain CSV manifests and returns a
:class:`FeatureCache` that reads it. Every file is written atomically (a temporary file
renamed into place), so a killed run leaves only complete arrays and the next run
resumes where it stopped. A cache is only ever reused by an encoder with the same
fingerprint; anything else raises :class:`CacheMismatchError`. One process at a time
may write to a cache directory.
"""

import csv
import json
import os
import shutil
import time
import uuid
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
from ser_lib.disk_space import reporting_disk_full
from ser_lib.encoders import absolute_lengths, load_encoder
from ser_lib.locking import FolderLock

__all__ = [
    "CacheMismatchError",
    "ExtractionSummary",
    "FeatureCache",
    "extract_features",
    "prepare_features",
    "run_feature_extraction",
]

logger = get_logger(__name__)

FEATS_DIR = "feats"
INDEX_FILE = "index.csv"
FINGERPRINT_FILE = "fingerprint.json"
TEMP_SUFFIX = ".tmp"
_MISMATCH_CURE = (
    "Use another cache directory (in a recipe: another feature_folder or "
    "encoder_name) or rebuild this one (overwrite=True, --overwrite)."
)


class CacheMismatchError(ValueError):
    """A cache directory holds features of another encoder or other settings."""


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


class FeatureCache:
    """Read access to a feature cache written by :func:`extract_features`.

    Arrays are memory-mapped (read-only), so opening a cache and loading an
    utterance cost almost nothing until the frames are used.

    Arguments
    ---------
    cache_dir : str or os.PathLike
        The cache directory.

    Example
    -------
    >>> cache_dir = getfixture("tmp_path")
    >>> (cache_dir / FEATS_DIR).mkdir()
    >>> np.save(cache_dir / FEATS_DIR / "utt1.npy", np.ones((7, 4), dtype=np.float16))
    >>> _ = (cache_dir / FINGERPRINT_FILE).write_text('{"class": "Demo"}')
    >>> _ = (cache_dir / INDEX_FILE).write_text(
    ...     "ID,num_frames,feat_path\\nutt1,7,feats/utt1.npy\\n")
    >>> cache = FeatureCache(cache_dir)
    >>> cache.ids, cache.num_frames("utt1"), cache.feature_dim, cache.fingerprint
    (['utt1'], 7, 4, {'class': 'Demo'})
    >>> feats = cache.load("utt1")
    >>> feats.shape, feats.dtype, len(cache), "utt2" in cache
    ((7, 4), dtype('float16'), 1, False)
    >>> cache.feature_path("utt1") == cache_dir / "feats" / "utt1.npy"
    True
    """

    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir)
        fingerprint_path = self.cache_dir / FINGERPRINT_FILE
        index_path = self.cache_dir / INDEX_FILE
        for path in (fingerprint_path, index_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{self.cache_dir} is not a complete feature cache: {path.name} "
                    "is missing (run extract_features to build it)"
                )
        with open(fingerprint_path, encoding="utf-8") as f:
            self._fingerprint = json.load(f)
        self._entries = {}  # ID -> (num_frames, absolute path)
        with open(index_path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                self._entries[row["ID"]] = (
                    int(row["num_frames"]),
                    self.cache_dir / row["feat_path"],
                )

    @property
    def ids(self):
        """The cached utterance IDs (list of str)."""
        return list(self._entries)

    @property
    def fingerprint(self):
        """The fingerprint of the encoder that wrote the cache (a dict copy)."""
        return dict(self._fingerprint)

    @property
    def feature_dim(self):
        """The feature dimension (int), read from the first cached array."""
        if not self._entries:
            raise ValueError(f"Feature cache {self.cache_dir} is empty")
        return int(self.load(next(iter(self._entries))).shape[1])

    def __len__(self):
        return len(self._entries)

    def __contains__(self, utt_id):
        return utt_id in self._entries

    def _entry(self, utt_id):
        try:
            return self._entries[utt_id]
        except KeyError:
            raise KeyError(
                f"Utterance {utt_id!r} is not in the feature cache {self.cache_dir} "
                f"({len(self._entries)} utterances); extract features for the CSV "
                "that lists it"
            ) from None

    def num_frames(self, utt_id):
        """Returns the number of frames of utterance ``utt_id`` (int)."""
        return self._entry(utt_id)[0]

    def feature_path(self, utt_id):
        """Returns the path of the ``.npy`` file of ``utt_id`` (pathlib.Path)."""
        return self._entry(utt_id)[1]

    def load(self, utt_id):
        """Returns the features of ``utt_id``: read-only memmap [frames, dim], float16.

        A missing or unreadable file raises ``ValueError`` naming it and the cure:
        delete it and run the extraction again (only missing files are extracted).
        """
        path = self._entry(utt_id)[1]
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(
                f"Cannot read the cached features of {utt_id!r} at {path} ({err}); "
                "delete the file and run the extraction again (only missing "
                "features are extracted)"
            ) from err


def _atomic_write(path, write, binary=True):
    """Writes ``path`` through ``write(file)`` into a temporary file, then renames it.

    ``file`` is opened in binary mode, or as UTF-8 text with ``newline=""`` (as the
    csv module wants) when ``binary`` is False.

    A process killed mid-write leaves at most a ``.<name>.*.tmp`` file beside ``path``,
    never a truncated ``path``.
    """
    path = Path(path)
    # A unique name opened with "x" (not mkstemp, which would make the file private).
    tmp_path = path.with_name(
        f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
    )
    try:
        text = {"newline": "", "encoding": "utf-8"}
        with reporting_disk_full(path):
            with open(tmp_path, "xb") if binary else open(tmp_path, "x", **text) as f:
                write(f)
            os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _json_normalised(fingerprint):
    """The fingerprint as it reads back from JSON (tuples become lists...)."""
    return json.loads(json.dumps(fingerprint, sort_keys=True))


def _prepare_cache_dir(cache_dir, fingerprint, overwrite):
    """Checks or (re)writes the fingerprint, wiping the cache when ``overwrite``."""
    cache_dir = Path(cache_dir)
    fingerprint_path = cache_dir / FINGERPRINT_FILE
    feats_dir = cache_dir / FEATS_DIR
    fingerprint = _json_normalised(fingerprint)
    if overwrite:
        if feats_dir.exists() or fingerprint_path.exists():
            logger.info("Overwriting the feature cache %s", cache_dir)
        shutil.rmtree(feats_dir, ignore_errors=True)
        for name in (INDEX_FILE, FINGERPRINT_FILE):
            (cache_dir / name).unlink(missing_ok=True)
    elif fingerprint_path.exists():
        with open(fingerprint_path, encoding="utf-8") as f:
            cached = json.load(f)
        if cached != fingerprint:
            differing = sorted(
                key
                for key in set(cached) | set(fingerprint)
                if cached.get(key) != fingerprint.get(key)
            )
            details = "; ".join(
                f"{key}: cache={cached.get(key)!r}, encoder={fingerprint.get(key)!r}"
                for key in differing
            )
            raise CacheMismatchError(
                f"The feature cache {cache_dir} was built by another encoder or other "
                f"settings ({details}). {_MISMATCH_CURE}"
            )
    elif feats_dir.exists() and any(feats_dir.glob("*.npy")):
        raise CacheMismatchError(
            f"The feature cache {cache_dir} holds features but no {FINGERPRINT_FILE}, "
            f"so their origin is unknown. {_MISMATCH_CURE}"
        )
    feats_dir.mkdir(parents=True, exist_ok=True)
    for folder in (cache_dir, feats_dir):
        for stale in folder.glob(f".*{TEMP_SUFFIX}"):
            logger.info("Removing %s, left by an interrupted run", stale)
            stale.unlink()
    _atomic_write(
        fingerprint_path,
        lambda f: json.dump(fingerprint, f, indent=2, sort_keys=True),
        binary=False,
    )


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


def _write_index(cache_dir):
    """Writes index.csv listing every array in ``cache_dir/feats``."""
    cache_dir = Path(cache_dir)
    rows = []
    for path in sorted((cache_dir / FEATS_DIR).glob("*.npy")):
        if path.name.startswith("."):
            continue
        num_frames = np.load(path, mmap_mode="r").shape[0]
        rows.append((path.stem, num_frames, f"{FEATS_DIR}/{path.name}"))

    def write(f):
        writer = csv.writer(f)
        writer.writerow(["ID", "num_frames", "feat_path"])
        writer.writerows(rows)

    _atomic_write(cache_dir / INDEX_FILE, write, binary=False)
    return len(rows)


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
    encoder = load_encoder(encoder_hparams, encoder_overrides)
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
