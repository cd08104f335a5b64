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

Modules: :mod:`~ser_lib.features.cache` (the layout, the fingerprint check, atomic
writes and :class:`FeatureCache`) and :mod:`~ser_lib.features.extraction` (filling a
cache with an encoder). Every public name is importable from ``ser_lib.features``.
"""

# Old paths kept: ``ser_lib.inloop.pseudo_labels`` imports the cache layout and its
# private writers from here, tests/test_features.py ``_duration_batches``.
from ser_lib.features.cache import (
    FEATS_DIR,  # noqa: F401
    FINGERPRINT_FILE,  # noqa: F401
    INDEX_FILE,  # noqa: F401
    TEMP_SUFFIX,  # noqa: F401
    CacheMismatchError,
    FeatureCache,
    _atomic_write,  # noqa: F401
    _prepare_cache_dir,  # noqa: F401
    _write_index,  # noqa: F401
)
from ser_lib.features.extraction import (
    ExtractionSummary,
    _duration_batches,  # noqa: F401
    extract_features,
    prepare_features,
    run_feature_extraction,
)

__all__ = [
    "CacheMismatchError",
    "ExtractionSummary",
    "FeatureCache",
    "extract_features",
    "prepare_features",
    "run_feature_extraction",
]
