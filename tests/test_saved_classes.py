"""A trained folder whose saved ``classes`` is a tagged node (EmoDB's YAMLs).

EmoDB's hparams define ``classes`` as ``!apply:`` of the selected class map;
SpeechBrain's saved ``hyperparams.yaml`` keeps that tag (with YAML anchors), so the
class list must be built through HyperPyYAML, not read as text. The report's t-SNE
pass (``embed_test_session``), export and ``ser-predict`` all go through
``read_trained_model``.
"""

import numpy as np
import pytest
import torch

from ser_lib.dataio import build_label_encoder
from ser_lib.inference import ModelFolderError, read_trained_model
from ser_lib.models import StatisticalAttentivePooling, WAPTransformer
from ser_lib.report.tsne import embed_test_session

EMODB_CLASSES = ["neu", "hap", "ang", "sad", "fea", "dis", "bor"]

# As SpeechBrain saves recipes/EmoDB/hparams/finetune.yaml (anchors, comments and
# the !apply: nodes kept).
EMODB_STYLE_HEAD = """\
# Generated 2026-12-06 from:
# /nowhere/recipes/EmoDB/hparams/finetune.yaml
# yamllint disable
seed: 1986
class_set: full            # 4class: neu, hap, ang, sad | full: the 7 emotions
class_maps: &id001         # raw emotion (from the file name) -> class; null drops it
  4class: {neutral: neu, happy: hap, angry: ang, sad: sad, fearful: null,
      disgust: null, boredom: null}
  full: {neutral: neu, happy: hap, angry: ang, sad: sad, fearful: fea, disgust:
      dis, boredom: bor}
class_map: &id002 !apply:ser_lib.data.class_map.select_class_map [*id001, full]
classes: &id003 !apply:ser_lib.data.class_map.class_names [*id002]
n_classes: &id004 !apply:len [*id003]
encoder_hparams: hparams/encoder/whisper_base.yaml
"""


def emodb_style_folder(root, classes_line=None):
    """A stage-2 folder with an EmoDB-style saved hyperparams.yaml, a feature cache
    of 14 utterances (8-d) and random weights."""
    cache = root / "cache"
    (cache / "feats").mkdir(parents=True)
    rows, tests = ["ID,num_frames,feat_path"], ["ID,emo"]
    for i in range(14):
        feats = np.random.default_rng(i).normal(size=(5 + i % 4, 8))
        np.save(cache / "feats" / f"u{i}.npy", feats.astype(np.float16))
        rows.append(f"u{i},{5 + i % 4},feats/u{i}.npy")
        tests.append(f"u{i},{EMODB_CLASSES[i % 7]}")
    (cache / "index.csv").write_text("\n".join(rows) + "\n")
    (cache / "fingerprint.json").write_text("{}")
    (root / "test.csv").write_text("\n".join(tests) + "\n")
    run = root / "fold1" / "finetune"
    checkpoint = run / "save" / "CKPT+x"
    checkpoint.mkdir(parents=True)
    (checkpoint / "CKPT.yaml").write_text("unixtime: 1.0\n")
    modules = {
        "backbone": WAPTransformer(input_dim=8, d_model=8, num_layers=1, nhead=2),
        "sap": StatisticalAttentivePooling(8, num_heads=1),
        "classifier": torch.nn.Linear(16, 7),
    }
    for name, module in modules.items():
        torch.save(module.state_dict(), checkpoint / f"{name}.ckpt")
    head = EMODB_STYLE_HEAD
    if classes_line is not None:
        head = head.replace(
            "classes: &id003 !apply:ser_lib.data.class_map.class_names [*id002]",
            classes_line,
        )
    (run / "hyperparams.yaml").write_text(
        head + f"feature_folder: {cache}\ntest_csv: {root}/test.csv\n"
        "backbone: !new:ser_lib.models.WAPTransformer\n"
        "  {input_dim: 8, d_model: 8, num_layers: 1, nhead: 2}\n"
        "sap: !new:ser_lib.models.StatisticalAttentivePooling\n"
        "  {input_dim: 8, num_heads: 1}\n"
        "classifier: !new:torch.nn.Linear [16, 7]\n"
    )
    build_label_encoder(EMODB_CLASSES).save(run / "label_encoder.txt")
    return run


def test_tagged_classes_are_built_not_read_as_text(tmp_path):
    run = emodb_style_folder(tmp_path)
    model = read_trained_model(run, find_encoder=False)
    assert model.classes == EMODB_CLASSES


def test_report_embeddings_of_an_emodb_style_fold(tmp_path):
    """The t-SNE pass of the report failed here: the label encoder's classes were
    compared with the unresolved text of the ``!apply:`` node."""
    run = emodb_style_folder(tmp_path)
    session = embed_test_session(run, batch_size=4)
    assert session.classes == EMODB_CLASSES
    assert session.labels.tolist() == [i % 7 for i in range(14)]
    assert session.encoder.shape == (14, 8) and session.adapter.shape == (14, 16)


def test_classes_that_are_not_a_list_are_a_clear_error(tmp_path):
    run = emodb_style_folder(
        tmp_path, classes_line="classes: &id003 !apply:len [*id002]"
    )
    with pytest.raises(ModelFolderError, match="not a list of class labels"):
        read_trained_model(run, find_encoder=False)


def test_label_encoder_in_another_order_is_still_refused(tmp_path):
    """The fix builds the classes; it does not paper over a real mismatch."""
    run = emodb_style_folder(tmp_path)
    build_label_encoder(EMODB_CLASSES[::-1]).save(run / "label_encoder.txt")
    with pytest.raises(ModelFolderError, match="lists"):
        embed_test_session(run, batch_size=4)
