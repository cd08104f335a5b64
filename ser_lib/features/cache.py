"""The feature cache on disk: its layout, fingerprint check, atomic writes and reader.

See :mod:`ser_lib.features` for the layout of a cache directory.
"""

import csv
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from speechbrain.utils.logger import get_logger

from ser_lib.disk_space import reporting_disk_full

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
