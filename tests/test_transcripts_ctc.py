"""Tests of the ASR side of two-stage fine-tuning: transcripts, vocabulary, CTC, WER."""

import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_module
from speechbrain.dataio.batch import PaddedBatch

from ser_lib.data.manifest import read_manifest
from ser_lib.synth.design import SENTENCES
from ser_lib.synth.mini_iemocap import make_mini_iemocap
from ser_lib.text.ctc import (
    BLANK_INDEX,
    ctc_loss_fp32,
    encode_transcript,
    greedy_transcripts,
    load_or_build_char_encoder,
    word_error_rate,
)
from ser_lib.text.transcripts import (
    GERMAN_ALPHABET,
    TEXT_COLUMN,
    attach_transcripts,
    normalize_transcript,
    read_emodb_texts,
    read_iemocap_transcripts,
    write_transcribed_manifest,
)

REPO = Path(__file__).resolve().parents[1]
PREPARE_PATH = REPO / "recipes" / "IEMOCAP" / "iemocap_prepare.py"
# The prepare script imports iemocap_annotations from its own folder.
if str(PREPARE_PATH.parent) not in sys.path:
    sys.path.insert(0, str(PREPARE_PATH.parent))
iemocap_prepare = load_module(PREPARE_PATH, "iemocap_prepare_for_transcripts")


@pytest.fixture(scope="module")
def mini_iemocap(tmp_path_factory):
    """A small synthetic IEMOCAP (with AppleDouble junk) and its prepared manifests."""
    root = tmp_path_factory.mktemp("mini")
    summary = make_mini_iemocap(
        root,
        seed=0,
        apple_double=True,
        improvised_per_session=1,
        scripted_per_session=1,
        utterances_per_dialog=4,
    )
    save = root / "prepared"
    iemocap_prepare.prepare_iemocap(summary["path"], str(save))
    return summary["path"], save


def test_iemocap_transcripts_cover_every_utterance(mini_iemocap):
    release, save = mini_iemocap
    transcripts = read_iemocap_transcripts(release)
    rows = read_manifest(save / "all.csv")
    kept, skipped = attach_transcripts(rows, transcripts, missing="error")
    assert skipped == [] and len(kept) == len(rows) > 0
    # Every synthetic utterance speaks one of the generator's sentences.
    allowed = {normalize_transcript(sentence) for sentence in SENTENCES}
    assert {row[TEXT_COLUMN] for row in kept} <= allowed
    assert all(row[TEXT_COLUMN] == row[TEXT_COLUMN].upper() for row in kept)
    # The transcript of a row is the text written on its own line of its dialog file.
    row = kept[0]
    path = os.path.join(
        release,
        f"Session{row['session']}",
        "dialog",
        "transcriptions",
        f"{row['dialog']}.txt",
    )
    with open(path, encoding="utf-8") as handle:
        line = next(line for line in handle if line.startswith(row["ID"] + " "))
    assert normalize_transcript(line.split("]: ", 1)[1]) == row[TEXT_COLUMN]


def test_missing_transcript_is_error_or_counted_skip(mini_iemocap, tmp_path):
    release, save = mini_iemocap
    transcripts = read_iemocap_transcripts(release)
    source = save / "fold1" / "train.csv"
    rows = read_manifest(source)
    dropped = rows[0]["ID"]
    del transcripts[dropped]
    with pytest.raises(ValueError, match="1 of .* utterances have no transcript"):
        write_transcribed_manifest(source, tmp_path / "a.csv", transcripts)
    skipped = write_transcribed_manifest(
        source, tmp_path / "b.csv", transcripts, missing="skip"
    )
    out = read_manifest(tmp_path / "b.csv", required_columns=["ID", TEXT_COLUMN])
    assert skipped == 1 and len(out) == len(rows) - 1
    assert dropped not in {row["ID"] for row in out}
    with pytest.raises(ValueError, match="missing must be one of"):
        attach_transcripts(rows, transcripts, missing="ignore")


def test_transcript_parser_real_release_lines(tmp_path):
    folder = tmp_path / "Session2" / "dialog" / "transcriptions"
    folder.mkdir(parents=True)
    (folder / "Ses02F_script01_1.txt").write_text(
        "Ses02F_script01_1_F000 [006.2901-008.2357]: Oh-- [LAUGHTER] That's it, Bob!\n"
        "M: [BREATHING]\n"
        "\n"
        "Ses02F_script01_1_M001 [009.0000-010.5000]: [GARBAGE]\n"
        "Ses02F_script01_1_MXX0 [011.0000-012.0000]: Uh-huh.\n",
        encoding="utf-8",
    )
    (folder / "._Ses02F_script01_1.txt").write_bytes(b"\x00\x05\x16\x07\xff\xfe")
    transcripts = read_iemocap_transcripts(tmp_path)
    assert sorted(transcripts) == [
        "Ses02F_script01_1_F000",
        "Ses02F_script01_1_M001",
        "Ses02F_script01_1_MXX0",
    ]
    normalised = {key: normalize_transcript(text) for key, text in transcripts.items()}
    assert normalised["Ses02F_script01_1_F000"] == "OH THAT'S IT BOB"
    assert normalised["Ses02F_script01_1_M001"] == ""
    assert normalised["Ses02F_script01_1_MXX0"] == "UH HUH"
    (folder / "other.txt").write_text(
        "Ses02F_script01_1_F000 [006.2901-008.2357]: Something else.\n"
    )
    with pytest.raises(ValueError, match="two transcripts"):
        read_iemocap_transcripts(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_iemocap_transcripts(tmp_path / "nothing")


def test_emodb_texts_join_on_text_code(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text(
        "code,text\na04,Heute abend könnte ich es ihm sagen.\n"
        'b01,"Was sind denn das für Tüten, die da unter dem Tisch stehen?"\n',
        encoding="utf-8",
    )
    texts = read_emodb_texts(path)
    rows = [
        {"ID": "03a04Fd", "dialog": "a04"},
        {"ID": "16b01Wb", "dialog": "b01"},
    ]
    kept, _ = attach_transcripts(rows, texts, key="dialog", alphabet=GERMAN_ALPHABET)
    assert [row[TEXT_COLUMN] for row in kept] == [
        "HEUTE ABEND KÖNNTE ICH ES IHM SAGEN",
        "WAS SIND DENN DAS FÜR TÜTEN DIE DA UNTER DEM TISCH STEHEN",
    ]
    path.write_text("code,sentence\na04,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'code' and 'text'"):
        read_emodb_texts(path)


def test_vocabulary_is_sorted_saved_and_reloaded(tmp_path):
    path = tmp_path / "sub" / "chars.txt"
    encoder = load_or_build_char_encoder(str(path), ["HELLO WORLD", "IT'S"])
    labels = [encoder.ind2lab[i] for i in range(len(encoder))]
    assert labels[BLANK_INDEX] == "<blank>"
    assert labels[1:] == sorted(set("HELLO WORLDIT'S"))
    # A second build with other texts loads the saved vocabulary unchanged.
    again = load_or_build_char_encoder(str(path), ["XYZ"])
    assert again.lab2ind == encoder.lab2ind
    tokens = encode_transcript(encoder, "HOWZY")  # Z and Y are unknown
    assert encoder.decode_ndim(tokens.tolist()) == list("HOW")
    with pytest.raises(ValueError, match="No character"):
        load_or_build_char_encoder(str(tmp_path / "empty.txt"), ["", ""])


def test_greedy_decode_and_wer_on_known_string(tmp_path):
    encoder = load_or_build_char_encoder(str(tmp_path / "c.txt"), ["THE CAT SAT"])
    target = "THE CAT SAT"
    # One frame per character with blanks between doubled characters and at the ends.
    frames = [BLANK_INDEX]
    for char in target:
        index = encoder.lab2ind[char]
        frames += [index, index, BLANK_INDEX]
    logits = torch.full((2, len(frames) + 4, len(encoder)), -5.0)
    logits[0, torch.arange(len(frames)), torch.tensor(frames)] = 5.0
    logits[1, torch.arange(len(frames)), torch.tensor(frames)] = 5.0
    logits[:, len(frames) :, encoder.lab2ind["A"]] = 10.0  # padding frames
    lengths = torch.tensor([1.0, len(frames) / (len(frames) + 4)])
    hyps = greedy_transcripts(logits, lengths, encoder)
    assert hyps[1] == target
    assert hyps[0] == target + "A"  # the padded frames of row 0 count: "SATA"
    assert word_error_rate([hyps[1]], [target]) == 0.0
    assert word_error_rate(hyps, [target, target]) == pytest.approx(100 * 1 / 6)
    assert word_error_rate(["THE DOG"], [target]) == pytest.approx(100 * 2 / 3)


def test_ctc_loss_finite_on_tiny_wav2vec2(tmp_path):
    from conftest import TINY_HUBERT_SETTINGS
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        feat_extract_norm="layer", do_stable_layer_norm=True, **TINY_HUBERT_SETTINGS
    )
    model = Wav2Vec2Model(config)
    encoder = load_or_build_char_encoder(str(tmp_path / "c.txt"), ["HELLO", "OK"])
    head = torch.nn.Linear(config.hidden_size, len(encoder))
    texts = ["HELLO", ""]  # an empty transcript (pure laughter) keeps target length 0
    batch = PaddedBatch(
        [
            {"tokens": encode_transcript(encoder, text), "wav": torch.randn(n)}
            for text, n in zip(texts, (16000, 9600), strict=True)
        ]
    )
    wav, wav_lens = batch.wav
    tokens, token_lens = batch.tokens
    mask = torch.arange(wav.shape[1])[None] < (wav_lens * wav.shape[1])[:, None]
    hidden = model(wav, attention_mask=mask.long()).last_hidden_state
    frames = model._get_feat_extract_output_lengths(mask.sum(-1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(hidden)
    assert logits.dtype == torch.bfloat16
    loss = ctc_loss_fp32(logits, tokens, frames / frames.max(), token_lens)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0
    assert model.encoder.layers[0].attention.q_proj.weight.grad.abs().sum() > 0


def test_prepare_transcribed_copies_every_fold_manifest(mini_iemocap, tmp_path):
    from ser_lib.text.data import (
        add_transcript_items,
        fold_char_encoder,
        prepare_transcribed,
    )

    release, _ = mini_iemocap
    plain, text = tmp_path / "plain", tmp_path / "text"
    skipped = prepare_transcribed(
        iemocap_prepare.prepare_iemocap,
        {"data_folder": release, "save_folder": str(plain)},
        read_iemocap_transcripts,
        release,
        str(text),
    )
    assert "all.csv" in skipped and "fold3/train.csv" in skipped
    assert set(skipped.values()) == {0}
    for relative in skipped:
        rows = read_manifest(plain / relative)
        transcribed = read_manifest(text / relative, required_columns=[TEXT_COLUMN])
        assert [r["ID"] for r in transcribed] == [r["ID"] for r in rows]
        assert all(r[TEXT_COLUMN] for r in transcribed)  # every synthetic line speaks
    train = text / "fold1" / "train.csv"
    encoder = fold_char_encoder(train, str(tmp_path / "chars.txt"))
    from speechbrain.dataio.dataset import DynamicItemDataset

    dataset = DynamicItemDataset.from_csv(
        str(train), replacements={"data_root": release}
    )
    dataset.set_output_keys(["id"])
    item = add_transcript_items(dataset, train, encoder)[0]
    assert "".join(encoder.decode_ndim(item["tokens"].tolist())) == item[TEXT_COLUMN]
