"""A model folder exported before ``ser_lib.inference`` became a package still loads.

``tests/data/exported_model_v1`` was written by ``export_model`` of the single-module
``ser_lib/inference.py`` (a tiny fbank model trained as in ``test_inference.py``);
``exported_model_v1_expected.json`` holds the probabilities that code's
``EmotionRecognizer.classify_file`` gave on seeded noise files.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_lib.inference import EmotionRecognizer

DATA = Path(__file__).resolve().parent / "data"
OLD_EXPORT = DATA / "exported_model_v1"
EXPECTED = json.loads((DATA / "exported_model_v1_expected.json").read_text())
SAMPLE_RATE = 16000


def noise_file(folder, name):
    seconds, seed = name.split("s_seed")
    rng = np.random.default_rng(int(seed))
    path = folder / f"{name}.wav"
    sf.write(
        path,
        0.1 * rng.standard_normal(round(float(seconds) * SAMPLE_RATE)),
        SAMPLE_RATE,
    )
    return path


@pytest.fixture(scope="module")
def old_model(tmp_path_factory):
    # Copied elsewhere: the folder is self-contained.
    folder = tmp_path_factory.mktemp("old") / "model"
    shutil.copytree(OLD_EXPORT, folder)
    return EmotionRecognizer.from_hparams(folder)


@pytest.mark.parametrize("name", sorted(EXPECTED["probabilities"]))
def test_old_export_predicts_the_same(old_model, name, tmp_path):
    expected = EXPECTED["probabilities"][name]
    result = old_model.classify_file(noise_file(tmp_path, name))
    assert old_model.classes == list(expected) == ["neu", "hap", "ang", "sad"]
    np.testing.assert_allclose(
        [result.probabilities[c] for c in expected],
        list(expected.values()),
        atol=1e-6,
        rtol=0,
    )
    assert result.label == max(expected, key=expected.get)
