"""Checking that a rebuilt encoder is the one a model was trained on."""

import json

from speechbrain.utils.logger import get_logger

from ser_lib.inference.layout import ModelFolderError

__all__ = ["SOURCE_INDEPENDENT_KEYS", "check_encoder_fingerprint"]

logger = get_logger(__name__)

SOURCE_INDEPENDENT_KEYS = ("source",)
"""Fingerprint keys that may differ between training and inference (where the
encoder weights are found, e.g. a hub id then a local copy)."""


def check_encoder_fingerprint(encoder, expected, origin):
    """Raises when an encoder differs from the one a model was trained on.

    Every key of the fingerprints must agree except those of
    :data:`SOURCE_INDEPENDENT_KEYS` (where the weights are found: a hub id in
    training, a local copy at inference), whose differences are only logged.

    Arguments
    ---------
    encoder : ser_lib.encoders.FrozenEncoder
        The rebuilt encoder.
    expected : dict
        The fingerprint of training (the feature cache's ``fingerprint.json``).
    origin : str
        The model, named in the error.

    Raises
    ------
    ModelFolderError
        Naming every differing setting.

    Example
    -------
    >>> from ser_lib.encoders import FbankEncoder
    >>> trained_with = FbankEncoder(n_mels=40).fingerprint()
    >>> check_encoder_fingerprint(FbankEncoder(n_mels=40), trained_with, "model")
    >>> check_encoder_fingerprint(FbankEncoder(n_mels=40, stack=3), trained_with, "model")
    Traceback (most recent call last):
    ...
    ser_lib.inference.layout.ModelFolderError: The encoder rebuilt for model differs from the one the model was trained on (output_dim: training=80, now=120; stack: training=2, now=3)
    """
    actual = json.loads(json.dumps(encoder.fingerprint(), sort_keys=True))
    expected = json.loads(json.dumps(expected, sort_keys=True))
    keys = sorted(set(actual) | set(expected))
    differing = [
        key
        for key in keys
        if actual.get(key) != expected.get(key) and key not in SOURCE_INDEPENDENT_KEYS
    ]
    if differing:
        details = "; ".join(
            f"{key}: training={expected.get(key)!r}, now={actual.get(key)!r}"
            for key in differing
        )
        raise ModelFolderError(
            f"The encoder rebuilt for {origin} differs from the one the model was "
            f"trained on ({details})"
        )
    for key in SOURCE_INDEPENDENT_KEYS:
        if actual.get(key) != expected.get(key):
            logger.info(
                "Encoder %s: %r (training used %r)",
                key,
                actual.get(key),
                expected.get(key),
            )
