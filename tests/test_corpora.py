"""The other corpora: RAVDESS, CREMA-D, EmoDB, MSP-Podcast, a generic CSV; cross-corpus.

Each corpus is prepared from a tiny tree in its documented layout
(``fixtures_corpora``) and checked for labels, speakers, genders and
speaker-independent folds; each trains end to end (both stages, tiny model, fbank
features); the generic recipe runs through ``cross_validate.py`` as a user does, and
``tools/cross_corpus.py``'s entry point trains on IEMOCAP and tests on CREMA-D.
"""

import doctest
import json
import logging
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import load_module
from fixtures_corpora import (
    FOUR_CLASS,
    GENERIC_SPEAKERS,
    make_cremad_fixture,
    make_emodb_fixture,
    make_generic_fixture,
    make_msp_podcast_fixture,
    make_ravdess_fixture,
)

from ser_lib.cross_corpus import cross_corpus_main, load_recipe_hparams, recipe_context
from ser_lib.data.class_map import read_class_maps, select_class_map
from ser_lib.data.manifest import MANIFEST_COLUMNS, read_manifest
from ser_lib.data.speaker_folds import assign_folds, balanced_speaker_folds
from ser_lib.recipe import train_main

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
SPLITS = ("train", "valid", "test")

PREPARE_MODULES = {
    "RAVDESS": "ravdess_prepare",
    "CREMA-D": "cremad_prepare",
    "EmoDB": "emodb_prepare",
    "MSP-Podcast": "msp_podcast_prepare",
    "generic": "generic_prepare",
}
FULL_CLASSES = {
    "RAVDESS": ["neu", "hap", "ang", "sad", "cal", "fea", "dis", "sur"],
    "CREMA-D": ["neu", "hap", "ang", "sad", "fea", "dis"],
    "EmoDB": ["neu", "hap", "ang", "sad", "fea", "dis", "bor"],
    "MSP-Podcast": ["neu", "hap", "ang", "sad", "sur", "fea", "dis", "con"],
}

# A tiny model and one epoch per stage: only the plumbing is under test here.
TINY = {
    "encoder_name": "fbank",
    "encoder_hparams": "../IEMOCAP/hparams/encoder/fbank.yaml",
    "input_dim": 160,
    "d_model": 32,
    "nhead": 2,
    "num_layers": 2,
    "batch_size": 8,
    "lr": 0.001,
}
ADAPTER = {"number_of_epochs": 1, "num_prototypes": 8, "reseed_after": 3}
FINETUNE = {"number_of_epochs": 1}


def load_prepare(recipe):
    """Imports a recipe's prepare script under a test-only module name."""
    name = PREPARE_MODULES[recipe]
    return load_module(RECIPES / recipe / f"{name}.py", f"{name}_under_test")


def class_map(recipe, class_set="4class"):
    """The recipe's class map, read from its YAML (the only place it is written)."""
    maps = read_class_maps(RECIPES / recipe / "hparams" / "finetune.yaml")
    return select_class_map(maps, class_set)


def ids(path):
    return sorted(row["ID"] for row in read_manifest(path))


def check_rows(save, expected):
    """all.csv has exactly the expected utterances, with their columns."""
    with open(save / "all.csv") as handle:
        assert handle.readline().strip().split(",") == MANIFEST_COLUMNS
    rows = {row["ID"]: row for row in read_manifest(save / "all.csv")}
    assert sorted(rows) == sorted(expected)
    for utt_id, utt in expected.items():
        row = rows[utt_id]
        assert row["emo"] == utt["emo"], utt_id
        assert row["spk_id"] == utt["spk_id"], utt_id
        assert row["gender"] == utt["gender"], utt_id
        assert row["wav"] == f"$data_root/{utt['wav']}"
        assert float(row["duration"]) == pytest.approx(utt["duration"])
        for key in ("style", "dialog"):
            if key in utt:
                assert row[key] == utt[key], (utt_id, key)
    return rows


def check_speaker_folds(save, n_folds):
    """Folds 1..n partition all.csv; no speaker is in train/valid and test of a fold."""
    all_ids = ids(save / "all.csv")
    tested = []
    for fold in range(1, n_folds + 1):
        parts = {s: read_manifest(save / f"fold{fold}" / f"{s}.csv") for s in SPLITS}
        assert parts["test"], f"fold {fold} has an empty test set"
        test_speakers = {row["spk_id"] for row in parts["test"]}
        seen_speakers = {row["spk_id"] for row in parts["train"] + parts["valid"]}
        assert not test_speakers & seen_speakers, f"fold {fold} shares speakers"
        assert {row["session"] for row in parts["test"]} == {str(fold)}
        fold_ids = [row["ID"] for s in SPLITS for row in parts[s]]
        assert sorted(fold_ids) == all_ids
        tested += [row["ID"] for row in parts["test"]]
    assert sorted(tested) == all_ids
    assert not (save / f"fold{n_folds + 1}").exists()


def mapped(utterances, class_map_, keep=lambda utt: True):
    """Expected kept utterances (ID -> utt with emo), computed from the fixture."""
    return {
        u["ID"]: {**u, "emo": class_map_[u["label"]]}
        for u in utterances
        if keep(u) and class_map_.get(u["label"]) is not None
    }


# ---------------------------------------------------------------- the YAML files


@pytest.mark.parametrize("recipe", list(PREPARE_MODULES))
def test_yaml_class_sets_and_stages_agree(recipe):
    small = {"data_folder": "/data", "input_dim": 8, "d_model": 8, "nhead": 2}
    stages = {
        stage: load_recipe_hparams(RECIPES / recipe, f"hparams/{stage}.yaml", small)
        for stage in ("adapter", "finetune")
    }
    finetune = stages["finetune"]
    assert finetune["classes"] == ["neu", "hap", "ang", "sad"]
    assert finetune["n_classes"] == 4
    assert stages["adapter"]["classes"] == finetune["classes"]
    # Both stages prepare the data identically (same folder, same options).
    assert stages["adapter"]["prepare_kwargs"] == finetune["prepare_kwargs"]
    assert finetune["prepare_kwargs"]["class_map"] == class_map(recipe)
    assert finetune["prepare"].__module__ == PREPARE_MODULES[recipe]
    if recipe in FULL_CLASSES:
        full = load_recipe_hparams(
            RECIPES / recipe, "hparams/finetune.yaml", {**small, "class_set": "full"}
        )
        assert full["classes"] == FULL_CLASSES[recipe]
        assert full["n_classes"] == len(FULL_CLASSES[recipe])
        assert full["prep_folder"] != finetune["prep_folder"]


CORPUS_SPECIFIC_KEYS = ("encoder_hparams:", "experiment_name:", "n_classes:")
"""Lines below the data section that may differ from IEMOCAP's (see the YAMLs)."""


@pytest.mark.parametrize("recipe", list(PREPARE_MODULES))
@pytest.mark.parametrize("stage", ["adapter", "finetune"])
def test_yaml_matches_iemocap_outside_the_data_section(recipe, stage):
    """Only the data section is the corpus's: the rest must stay IEMOCAP's."""

    def model_part(path):
        text = path.read_text().split("# ---------------- Frozen encoder")[1]
        return [
            line
            for line in text.splitlines()
            if not line.startswith(CORPUS_SPECIFIC_KEYS)
        ]

    reference = model_part(RECIPES / "IEMOCAP" / "hparams" / f"{stage}.yaml")
    assert model_part(RECIPES / recipe / "hparams" / f"{stage}.yaml") == reference


@pytest.mark.parametrize("recipe", list(PREPARE_MODULES))
def test_prepare_script_doctests(recipe):
    module = load_prepare(recipe)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5
    assert result.failed == 0


# ---------------------------------------------------------------- RAVDESS


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory):
    return make_ravdess_fixture(tmp_path_factory.mktemp("ravdess"))


def test_ravdess_speech_4class(ravdess, tmp_path):
    module = load_prepare("RAVDESS")
    module.prepare_ravdess(ravdess["data_folder"], tmp_path, class_map("RAVDESS"))
    expected = mapped(
        ravdess["utterances"],
        FOUR_CLASS,
        keep=lambda u: u["vocal_channel"] == "speech",
    )
    rows = check_rows(tmp_path, expected)
    # 6 actors x (neutral, happy, sad, angry x2 intensities); odd actors are male.
    assert Counter(r["emo"] for r in rows.values()) == {
        "neu": 6,
        "hap": 6,
        "sad": 6,
        "ang": 12,
    }
    assert rows["03-01-05-02-02-01-03"]["gender"] == "M"
    assert rows["03-01-05-02-02-01-04"]["gender"] == "F"
    check_speaker_folds(tmp_path, 5)
    # 6 actors in 5 balanced groups: sizes 2,1,1,1,1 actors; genders spread.
    sessions = Counter(r["session"] for r in rows.values())
    assert sorted(sessions.values()) == [5, 5, 5, 5, 10]


def test_ravdess_song_and_full_set(ravdess, tmp_path):
    module = load_prepare("RAVDESS")
    full = class_map("RAVDESS", "full")
    module.prepare_ravdess(
        ravdess["data_folder"],
        tmp_path,
        full,
        vocal_channel="all",
        fold_mode="leave_one_speaker_out",
    )
    rows = check_rows(tmp_path, mapped(ravdess["utterances"], full))
    assert {r["style"] for r in rows.values()} == {
        "speech_normal",
        "speech_strong",
        "song_normal",
    }
    assert Counter(r["emo"] for r in rows.values())["cal"] == 6
    check_speaker_folds(tmp_path, 6)


def test_ravdess_errors_name_the_file(ravdess, tmp_path):
    module = load_prepare("RAVDESS")
    with pytest.raises(FileNotFoundError, match="No Actor_XX folder in the RAVDESS"):
        module.prepare_ravdess(tmp_path, tmp_path / "out", class_map("RAVDESS"))
    bad = Path(ravdess["data_folder"]).parent / "bad"
    (bad / "Actor_01").mkdir(parents=True)
    (bad / "Actor_01" / "03-01-05-01-01-01-02.wav").touch()
    with pytest.raises(
        ValueError, match=r"03-01-05-01-01-01-02.wav: actor 02 .* Actor_01"
    ):
        module.prepare_ravdess(bad, tmp_path / "out", class_map("RAVDESS"))
    (bad / "Actor_01" / "03-01-05-01-01-01-02.wav").rename(
        bad / "Actor_01" / "03-01-5-01-01-01-01.wav"
    )
    with pytest.raises(ValueError, match=r"03-01-5-01-01-01-01.wav: the name must be"):
        module.prepare_ravdess(bad, tmp_path / "out", class_map("RAVDESS"))


# ---------------------------------------------------------------- CREMA-D


@pytest.fixture(scope="module")
def cremad(tmp_path_factory):
    return make_cremad_fixture(tmp_path_factory.mktemp("cremad"))


def test_cremad_labels_genders_and_folds(cremad, tmp_path):
    module = load_prepare("CREMA-D")
    module.prepare_cremad(
        cremad["data_folder"], tmp_path, class_map("CREMA-D"), n_folds=3
    )
    rows = check_rows(tmp_path, mapped(cremad["utterances"], FOUR_CLASS))
    assert len(rows) == 6 * 2 * 4
    check_speaker_folds(tmp_path, 3)
    # 3 women and 3 men in 3 groups: one of each per fold.
    for fold in (1, 2, 3):
        test = read_manifest(tmp_path / f"fold{fold}" / "test.csv")
        genders = {row["spk_id"]: row["gender"] for row in test}
        assert sorted(genders.values()) == ["F", "M"]


def test_cremad_errors(cremad, tmp_path):
    module = load_prepare("CREMA-D")
    root = Path(cremad["data_folder"])
    with pytest.raises(FileNotFoundError, match="CREMA-D audio folder not found"):
        module.prepare_cremad(tmp_path, tmp_path / "out", class_map("CREMA-D"))
    broken = tmp_path / "broken"
    (broken / "AudioWAV").mkdir(parents=True)
    (broken / "AudioWAV" / "1007_DFA_ANG_XX.wav").touch()
    with pytest.raises(FileNotFoundError, match="VideoDemographics.csv"):
        module.prepare_cremad(broken, tmp_path / "out", class_map("CREMA-D"))
    (broken / "VideoDemographics.csv").write_text(
        (root / "VideoDemographics.csv").read_text()
    )
    with pytest.raises(ValueError, match="1007_DFA_ANG_XX.wav: actor 1007 is not in"):
        module.prepare_cremad(broken, tmp_path / "out", class_map("CREMA-D"))
    (broken / "AudioWAV" / "1007_DFA_ANG_XX.wav").rename(
        broken / "AudioWAV" / "1001_DFA_ANGRY_XX.wav"
    )
    with pytest.raises(ValueError, match="1001_DFA_ANGRY_XX.wav: the name must be"):
        module.prepare_cremad(broken, tmp_path / "out", class_map("CREMA-D"))


# ---------------------------------------------------------------- EmoDB


@pytest.fixture(scope="module")
def emodb(tmp_path_factory):
    return make_emodb_fixture(tmp_path_factory.mktemp("emodb"))


def test_emodb_leave_one_speaker_out(emodb, tmp_path):
    module = load_prepare("EmoDB")
    module.prepare_emodb(emodb["data_folder"], tmp_path, class_map("EmoDB", "full"))
    rows = check_rows(tmp_path, mapped(emodb["utterances"], class_map("EmoDB", "full")))
    assert len(rows) == 70
    check_speaker_folds(tmp_path, 10)
    speakers = ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    for fold, speaker in enumerate(speakers, start=1):
        test = read_manifest(tmp_path / f"fold{fold}" / "test.csv")
        assert {row["spk_id"] for row in test} == {speaker}


def test_emodb_4class_and_errors(emodb, tmp_path):
    module = load_prepare("EmoDB")
    module.prepare_emodb(
        emodb["data_folder"], tmp_path, class_map("EmoDB"), fold_mode="speaker_kfold"
    )
    check_rows(tmp_path, mapped(emodb["utterances"], FOUR_CLASS))
    check_speaker_folds(tmp_path, 5)
    with pytest.raises(FileNotFoundError, match="EmoDB audio folder not found: .*wav"):
        module.prepare_emodb(tmp_path, tmp_path / "out", class_map("EmoDB"))
    (tmp_path / "bad" / "wav").mkdir(parents=True)
    (tmp_path / "bad" / "wav" / "03a01Xa.wav").touch()
    with pytest.raises(ValueError, match="03a01Xa.wav: unknown emotion 'X'"):
        module.prepare_emodb(tmp_path / "bad", tmp_path / "out", class_map("EmoDB"))


def test_unmapped_label_is_an_error_or_dropped_and_counted(emodb, tmp_path, caplog):
    module = load_prepare("EmoDB")
    partial_map = {"neutral": "neu", "angry": "ang", "sad": "sad", "happy": "hap"}
    with pytest.raises(ValueError, match="03a01Aa has label 'fearful', which is not"):
        module.prepare_emodb(emodb["data_folder"], tmp_path, partial_map)
    with caplog.at_level("WARNING"):
        module.prepare_emodb(
            emodb["data_folder"], tmp_path, partial_map, unmapped="drop"
        )
    assert "'boredom'=10" in caplog.text
    assert len(read_manifest(tmp_path / "all.csv")) == 40


# ---------------------------------------------------------------- MSP-Podcast


@pytest.fixture(scope="module")
def msp(tmp_path_factory):
    return make_msp_podcast_fixture(tmp_path_factory.mktemp("msp"))


def test_msp_podcast_official_split(msp, tmp_path):
    module = load_prepare("MSP-Podcast")
    module.prepare_msp_podcast(msp["data_folder"], tmp_path, class_map("MSP-Podcast"))
    roles = {"Train": "train", "Development": "valid", "Test1": "test"}
    expected = mapped(msp["utterances"], FOUR_CLASS, keep=lambda u: u["split"] in roles)
    rows = check_rows(tmp_path, expected)
    assert {r["session"] for r in rows.values()} == set(roles)
    for split, part in roles.items():
        want = sorted(i for i, u in expected.items() if u["split"] == split)
        assert ids(tmp_path / "fold1" / f"{part}.csv") == want
    test_speakers = {r["spk_id"] for r in read_manifest(tmp_path / "fold1/test.csv")}
    assert test_speakers == {"301", "302"}
    assert rows["MSP-PODCAST_0005_0001"]["spk_id"] == "Unknown"
    assert rows["MSP-PODCAST_0005_0001"]["gender"] == "U"
    assert not (tmp_path / "fold2").exists()


def test_msp_podcast_options_and_errors(msp, tmp_path):
    module = load_prepare("MSP-Podcast")
    full = class_map("MSP-Podcast", "full")
    module.prepare_msp_podcast(
        msp["data_folder"], tmp_path, full, test_set="Test2", use_development=False
    )
    assert ids(tmp_path / "fold1" / "valid.csv") == []
    test = read_manifest(tmp_path / "fold1" / "test.csv")
    assert {r["session"] for r in test} == {"Test2"}
    emos = Counter(r["emo"] for r in read_manifest(tmp_path / "all.csv"))
    assert emos["sur"] == 4 and emos["con"] == 4 and "oth" not in emos
    with pytest.raises(
        ValueError,
        match=r"line 60: MSP-PODCAST_0011_0001 of split Test3 has no EmoClass",
    ):
        module.prepare_msp_podcast(msp["data_folder"], tmp_path, full, test_set="Test3")
    with pytest.raises(ValueError, match=r"no row of Split_Set \['Test9'\]"):
        module.prepare_msp_podcast(msp["data_folder"], tmp_path, full, test_set="Test9")
    bad = tmp_path / "bad"
    (bad / "Audios").mkdir(parents=True)
    (bad / "Labels").mkdir()
    labels = bad / "Labels" / "labels_consensus.csv"
    labels.write_text(
        "FileName,EmoClass,SpkrID,Gender,Split_Set\na.wav,Q,1,Male,Train\n"
    )
    with pytest.raises(ValueError, match=r"line 2: unknown EmoClass 'Q' for a.wav"):
        module.prepare_msp_podcast(bad, tmp_path / "out", full)
    labels.write_text("FileName,EmoClass,Gender,Split_Set\na.wav,N,Male,Train\n")
    with pytest.raises(ValueError, match=r"lacks the columns \['SpkrID'\]"):
        module.prepare_msp_podcast(bad, tmp_path / "out", full)


# ---------------------------------------------------------------- generic CSV


@pytest.fixture(scope="module")
def generic(tmp_path_factory):
    return make_generic_fixture(tmp_path_factory.mktemp("generic"))


def test_generic_speaker_kfold_drops_unmapped(generic, tmp_path, caplog):
    module = load_prepare("generic")
    with caplog.at_level("WARNING"):
        module.prepare_generic(
            generic["csv_file"],
            generic["data_folder"],
            tmp_path,
            class_map("generic"),
            n_folds=3,
        )
    assert "'frustrated'=12" in caplog.text
    rows = check_rows(tmp_path, mapped(generic["utterances"], FOUR_CLASS))
    assert len(rows) == 6 * 2 * 4
    check_speaker_folds(tmp_path, 3)
    for fold in (1, 2, 3):  # one woman and one man per fold
        test = read_manifest(tmp_path / f"fold{fold}" / "test.csv")
        assert sorted({r["spk_id"]: r["gender"] for r in test}.values()) == ["F", "M"]


def test_generic_leave_one_group_out_and_redo(generic, tmp_path):
    module = load_prepare("generic")
    args = (generic["csv_file"], generic["data_folder"], tmp_path, class_map("generic"))
    module.prepare_generic(*args, fold_mode="leave_one_group_out", valid_mode="speaker")
    check_speaker_folds(tmp_path, 3)
    for fold, room in enumerate(("roomA", "roomB", "roomC"), start=1):
        test = read_manifest(tmp_path / f"fold{fold}" / "test.csv")
        want = {s for s, (_, r) in GENERIC_SPEAKERS.items() if r == room}
        assert {r["spk_id"] for r in test} == want
        assert (
            len(
                {r["spk_id"] for r in read_manifest(tmp_path / f"fold{fold}/valid.csv")}
            )
            == 1
        )
    # Same options and CSV: skipped. An edited CSV: prepared again.
    before = (tmp_path / "all.csv").stat().st_mtime_ns
    module.prepare_generic(*args, fold_mode="leave_one_group_out", valid_mode="speaker")
    assert (tmp_path / "all.csv").stat().st_mtime_ns == before
    csv_file = Path(generic["csv_file"])
    edited = tmp_path / "edited.csv"
    lines = csv_file.read_text().splitlines()
    edited.write_text("\n".join(lines[:-5]) + "\n")
    module.prepare_generic(
        edited,
        generic["data_folder"],
        tmp_path,
        class_map("generic"),
        fold_mode="leave_one_group_out",
        valid_mode="speaker",
    )
    assert len(read_manifest(tmp_path / "all.csv")) == 6 * 2 * 4 - 4


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "../outside.wav,happy,zed,F,roomA,",
            "row 61: wav ../outside.wav is not under",
        ),
        ("audio/zed/missing.wav,happy,zed,F,roomA,", "have no wav under"),
        (
            "audio/anna/0_1.wav,sad,anna,F,roomA,",
            "row 61: ID 'audio_anna_0_1' is already",
        ),
        ("audio/zed/0.wav,happy,,F,roomA,", "row 61: empty spk_id"),
        (
            "audio/anna/extra.wav,sad,anna,F,roomB,",
            "Speaker 'anna' has utterances in several",
        ),
    ],
)
def test_generic_errors_name_the_row(generic, tmp_path, line, message):
    module = load_prepare("generic")
    bad = tmp_path / "labels.csv"
    bad.write_text(Path(generic["csv_file"]).read_text() + line + "\n")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        module.prepare_generic(
            bad,
            generic["data_folder"],
            tmp_path / "out",
            class_map("generic"),
            fold_mode="leave_one_group_out",
        )


def test_prepare_command_line(generic, tmp_path):
    module = load_prepare("generic")
    module.main(
        [
            "--csv_file",
            generic["csv_file"],
            "--data_folder",
            generic["data_folder"],
            "--save_folder",
            str(tmp_path),
            "--fold_mode",
            "leave_one_speaker_out",
        ]
    )
    check_speaker_folds(tmp_path, 6)


# ---------------------------------------------------------------- speaker folds


def test_balanced_speaker_folds_is_deterministic_and_balanced():
    rows = [
        {"spk_id": f"s{i}", "gender": "FM"[i % 2]}
        for i in range(11)
        for _ in range(3 + i % 4)
    ]
    groups = balanced_speaker_folds(rows, 4)
    assert groups == balanced_speaker_folds(list(reversed(rows)), 4)
    assert sorted(set(groups.values())) == [1, 2, 3, 4]
    assert groups["s0"] == 1
    sizes = Counter(groups[row["spk_id"]] for row in rows)
    assert max(sizes.values()) - min(sizes.values()) <= 6  # the largest speaker
    for fold in range(1, 5):
        genders = {row["gender"] for row in rows if groups[row["spk_id"]] == fold}
        assert genders == {"F", "M"}
    with pytest.raises(ValueError, match="n_folds=12 speaker folds need at least 12"):
        balanced_speaker_folds(rows, 12)
    with pytest.raises(ValueError, match="fold_mode must be one of"):
        assign_folds(rows, "kfold")


# ---------------------------------------------------------------- end to end


def train_in_process(recipe, stage, overrides):
    """``python train.py hparams/<stage>.yaml --key=value ...`` inside the test process.

    SpeechBrain's experiment setup reconfigures the root logger and the excepthook;
    both are restored afterwards so that later tests are not affected.
    """
    recipe_dir = RECIPES / recipe
    argv = [str(recipe_dir / "hparams" / f"{stage}.yaml")]
    argv += [f"--{key}={value}" for key, value in overrides.items()]
    root = logging.getLogger()
    handlers, level, excepthook = list(root.handlers), root.level, sys.excepthook
    try:
        with recipe_context(recipe_dir):
            train_main(argv, str(recipe_dir))
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        sys.excepthook = excepthook


@pytest.mark.parametrize(
    "recipe, make",
    [
        ("RAVDESS", make_ravdess_fixture),
        ("CREMA-D", make_cremad_fixture),
        ("EmoDB", make_emodb_fixture),
        ("MSP-Podcast", make_msp_podcast_fixture),
        ("generic", make_generic_fixture),
    ],
)
def test_corpus_trains_end_to_end(recipe, make, tmp_path):
    corpus = make(tmp_path / "raw")
    out = tmp_path / "results"
    common = {**TINY, "data_folder": corpus["data_folder"], "output_root": out}
    train_in_process(recipe, "adapter", {**common, **ADAPTER})
    train_in_process(recipe, "finetune", {**common, **FINETUNE})
    (prep,) = out.glob("prepared_*")
    (finetune,) = out.glob("fbank_*/fold1/finetune")
    metrics = json.loads((finetune / "metrics.json").read_text())
    assert metrics["classes"] == ["neu", "hap", "ang", "sad"]
    test_ids = ids(prep / "fold1" / "test.csv")
    assert metrics["n_test"] == len(test_ids)
    predictions = pd.read_csv(finetune / "predictions.csv", dtype={"ID": str})
    assert sorted(predictions["ID"]) == test_ids
    assert (finetune.parent / "adapter" / "model" / "teacher.ckpt").is_file()
    # The recipe's cross_validate.py finds the finished fold and aggregates it.
    cross_validate = load_module(
        RECIPES / recipe / "cross_validate.py", f"cross_validate_{recipe}"
    )
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"common": TINY}))
    argv = ["--data_folder", corpus["data_folder"], "--output_folder", str(out)]
    argv += ["--config", str(config), "--aggregate_only", "--no_report"]
    results = cross_validate.main(argv)
    assert results["folds"][0]["fold"] == 1
    assert results["folds"][0]["UA"] == pytest.approx(metrics["UA"])
    assert results.get("missing_folds", []) == cross_validate.FOLDS[1:]


def test_cross_corpus_generic_to_cremad(tmp_path):
    """tools/cross_corpus.py: train.py on all of a CSV corpus, test on CREMA-D."""
    generic = make_generic_fixture(tmp_path / "generic")
    cremad = make_cremad_fixture(tmp_path / "cremad")
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps({"common": TINY, "adapter": ADAPTER, "finetune": FINETUNE})
    )
    out = tmp_path / "generic_to_cremad"
    argv = [
        "--train_recipe",
        str(RECIPES / "generic"),
        "--train_data_folder",
        generic["data_folder"],
        "--test_recipe",
        str(RECIPES / "CREMA-D"),
        "--test_data_folder",
        cremad["data_folder"],
        "--output_folder",
        str(out),
        "--config",
        str(config),
    ]
    results = cross_corpus_main(argv)
    # The model was trained on every kept utterance of the CSV corpus...
    generic_all = ids(out / "generic" / "prepared_4class" / "all.csv")
    assert len(generic_all) == 48
    fit = json.loads((out / "train" / "finetune" / "metrics.json").read_text())
    assert fit["n_test"] == len(generic_all)
    assert (out / "train" / "adapter" / "model" / "teacher.ckpt").is_file()
    # ... and tested on all of CREMA-D's 4 shared emotions, with the same encoder.
    cremad_ids = sorted(mapped(cremad["utterances"], FOUR_CLASS))
    metrics = json.loads((out / "test" / "metrics.json").read_text())
    assert metrics["n_test"] == len(cremad_ids) == 48
    assert metrics["classes"] == ["neu", "hap", "ang", "sad"]
    predictions = pd.read_csv(out / "test" / "predictions.csv")
    assert sorted(predictions["ID"]) == cremad_ids
    wa = 100.0 * (predictions["true"] == predictions["predicted"]).mean()
    assert metrics["WA"] == pytest.approx(wa)
    assert (out / "CREMA-D" / "features_fbank" / "index.csv").is_file()
    saved = json.loads((out / "cv_results.json").read_text())
    assert saved["folds"][0]["UA"] == pytest.approx(metrics["UA"])
    assert results["mean"]["UA"] == pytest.approx(metrics["UA"])
    assert saved["test_corpus"] == "CREMA-D" and saved["train_corpus"] == "generic"
    assert "tested on CREMA-D" in (out / "cv_results.md").read_text()
    # Again with CREMA-D's full class set: training is reused, fear/disgust refused.
    before = (out / "train" / "finetune" / "metrics.json").stat().st_mtime_ns
    with pytest.raises(ValueError, match=r"labels \['dis', 'fea'\] that the model"):
        cross_corpus_main(argv + ["--test_overrides", "{class_set: full}"])
    assert (out / "train" / "finetune" / "metrics.json").stat().st_mtime_ns == before
