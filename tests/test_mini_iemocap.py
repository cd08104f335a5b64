"""Tests of the synthetic mini-IEMOCAP generator (layout, labels, audio, determinism)."""

import os
import re
import wave
from collections import defaultdict

import numpy as np
import pytest

from ser_lib.synth.mini_iemocap import (
    DROPPED_LABELS,
    KEPT_LABELS,
    MARKER_FILE,
    make_mini_iemocap,
)

HEADER = re.compile(r"^\[(\d+\.\d+) - (\d+\.\d+)\]\t(\S+)\t(\S+)\t\[")
VAD = re.compile(r"\t\[(\d\.\d{4}), (\d\.\d{4}), (\d\.\d{4})\]$")
SMALL = dict(improvised_per_session=1, scripted_per_session=1, utterances_per_dialog=4)


def read_wav(path):
    """Returns (float samples, sample rate, channels, sample width) of a PCM wav."""
    with wave.open(path) as handle:
        frames = handle.readframes(handle.getnframes())
        info = (handle.getframerate(), handle.getnchannels(), handle.getsampwidth())
    return (np.frombuffer(frames, "<i2").astype(np.float64) / 32768, *info)


def median_f0(x, sample_rate, fmin=60, fmax=400, frame=640, hop=320):
    """Median autocorrelation pitch (Hz) over the loud frames of a waveform."""
    lags = np.arange(sample_rate // fmax, sample_rate // fmin + 1)
    frames = [x[i : i + frame] for i in range(0, len(x) - frame, hop)]
    energy = np.array([np.mean(f**2) for f in frames])
    pitches = []
    for f in (
        f for f, e in zip(frames, energy, strict=True) if e >= 0.3 * energy.max()
    ):
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[frame - 1 :]
        pitches.append(sample_rate / lags[np.argmax(ac[lags])])
    return float(np.median(pitches))


def corpus_files(release):
    """{relative path: bytes} of every file except the marker and AppleDouble junk."""
    files = {}
    for folder, _, names in os.walk(release):
        for name in names:
            if name == MARKER_FILE or name.startswith("._"):
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, release)] = handle.read()
    return files


def parse_corpus(release):
    """Rows (session, dialog, utt_id, label, start, end) from the EmoEvaluation files."""
    rows = []
    for s in range(1, 6):
        emo_dir = os.path.join(release, f"Session{s}", "dialog", "EmoEvaluation")
        for name in sorted(os.listdir(emo_dir)):
            path = os.path.join(emo_dir, name)
            if os.path.isdir(path) or name.startswith("._"):
                continue
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            blocks = text.split("\n\n")
            assert blocks[0] == "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
            assert blocks[-1] == "", f"{path} must end with a blank line"
            for block in blocks[1:-1]:
                header, *evaluations = block.split("\n")
                match = HEADER.match(header)
                assert match, f"bad header line {header!r} in {path}"
                assert VAD.search(header), header
                assert evaluations and all(
                    re.match(r"^[CA]-[EFM]\d:\t.*;\t\(.*\)$", line)
                    for line in evaluations
                ), block
                start, end, utt_id, label = match.groups()
                rows.append((s, name[:-4], utt_id, label, float(start), float(end)))
    return rows


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Seed 0, seed 0 with AppleDouble junk, seed 1: small corpora."""
    out = {}
    for key, seed, junk in (("a", 0, False), ("b", 0, True), ("c", 1, False)):
        folder = tmp_path_factory.mktemp(key)
        summary = make_mini_iemocap(folder, seed=seed, apple_double=junk, **SMALL)
        out[key] = (folder, summary)
    return out


def test_layout_and_annotations(corpora):
    folder, summary = corpora["a"]
    release = os.path.join(folder, "IEMOCAP_full_release")
    assert summary["path"] == release and summary["regenerated"]
    assert sorted(d for d in os.listdir(release) if d.startswith("Session")) == [
        f"Session{s}" for s in range(1, 6)
    ]
    rows = parse_corpus(release)
    assert len(rows) == summary["num_utterances"] == 5 * 2 * 4
    assert summary["styles"] == {"improvised": 20, "scripted": 20}
    dialogs = set()
    for s, dialog, utt_id, _, start, end in rows:
        dialogs.add(dialog)
        assert re.fullmatch(rf"Ses0{s}[FM]_(impro\d\d[ab]?|script\d\d_\d[ab]?)", dialog)
        assert utt_id.rsplit("_", 1)[0] == dialog
        assert re.fullmatch(r"[FM]\d{3}", utt_id.rsplit("_", 1)[1])
        wav = os.path.join(
            release, f"Session{s}", "sentences", "wav", dialog, utt_id + ".wav"
        )
        x, rate, channels, width = read_wav(wav)
        assert (rate, channels, width) == (16000, 1, 2)
        assert 0.8 < x.size / rate < 6.0, f"{wav}: {x.size / rate:.2f} s"
        assert abs((end - start) - x.size / rate) < 1e-3
    # Every wav is listed, the release's sub-folders exist and hold other formats.
    wavs = {
        os.path.basename(p)[:-4]
        for p, _ in corpus_files(release).items()
        if p.endswith(".wav")
    }
    assert wavs == {r[2] for r in rows}
    emo_dir = os.path.join(release, "Session1", "dialog", "EmoEvaluation")
    for sub in ("Categorical", "Attribute", "Self-evaluation"):
        assert os.listdir(os.path.join(emo_dir, sub)), sub
    assert {"Ses01F_impro01", "Ses01F_script01_1b"} <= dialogs


def test_labels_kept_and_dropped(corpora):
    _, summary = corpora["a"]
    labels = summary["labels"]
    assert set(KEPT_LABELS) <= set(labels)
    assert set(labels) & set(DROPPED_LABELS)
    dropped = sum(n for k, n in labels.items() if k in DROPPED_LABELS)
    assert 0.05 < dropped / summary["num_utterances"] < 0.3
    assert set(summary["sessions"].values()) == {8}


def test_audio_carries_gender_and_emotion(corpora):
    folder, _ = corpora["a"]
    release = os.path.join(folder, "IEMOCAP_full_release")
    rms, pitch = defaultdict(list), defaultdict(list)
    for s, dialog, utt_id, label, _, _ in parse_corpus(release):
        wav = os.path.join(
            release, f"Session{s}", "sentences", "wav", dialog, utt_id + ".wav"
        )
        x, rate, _, _ = read_wav(wav)
        rms[label].append(np.sqrt(np.mean(x**2)))
        pitch[s, utt_id.rsplit("_", 1)[1][0]].append(median_f0(x, rate))
    # Female voices are clearly higher overall, and within every session.
    female = [f for (_, g), v in pitch.items() if g == "F" for f in v]
    male = [f for (_, g), v in pitch.items() if g == "M" for f in v]
    assert np.mean(female) > 1.4 * np.mean(male), (np.mean(female), np.mean(male))
    for s in range(1, 6):
        assert np.mean(pitch[s, "F"]) > np.mean(pitch[s, "M"]), s
    assert np.mean(rms["ang"]) > 1.5 * np.mean(rms["sad"])
    assert np.mean(rms["neu"]) > np.mean(rms["sad"])


def test_determinism_and_apple_double(corpora):
    files_a = corpus_files(os.path.join(corpora["a"][0], "IEMOCAP_full_release"))
    release_b = os.path.join(corpora["b"][0], "IEMOCAP_full_release")
    assert corpus_files(release_b) == files_a  # junk files change nothing else
    junk = [
        os.path.join(folder, n)
        for folder, _, names in os.walk(release_b)
        for n in names
        if n.startswith("._")
    ]
    assert any(p.endswith(".wav") for p in junk)
    assert any(p.endswith(".txt") for p in junk)
    assert not any(
        n.startswith("._")
        for _, _, names in os.walk(
            os.path.join(corpora["a"][0], "IEMOCAP_full_release")
        )
        for n in names
    )
    files_c = corpus_files(os.path.join(corpora["c"][0], "IEMOCAP_full_release"))
    common = [p for p in files_a if p.endswith(".wav") and p in files_c]
    assert common
    assert sum(files_a[p] != files_c[p] for p in common) == len(common)


def test_skip_marker_and_interrupted_runs(tmp_path):
    tiny = dict(
        improvised_per_session=1, scripted_per_session=0, utterances_per_dialog=1
    )
    release = tmp_path / "IEMOCAP_full_release"
    # Leftover of a killed run: removed, corpus generated.
    (tmp_path / "IEMOCAP_full_release.partial" / "Session1").mkdir(parents=True)
    assert make_mini_iemocap(tmp_path, seed=3, **tiny)["regenerated"]
    assert not (tmp_path / "IEMOCAP_full_release.partial").exists()
    assert (release / MARKER_FILE).is_file()
    wav = next(release.glob("Session1/sentences/wav/*/*.wav"))
    stamp = wav.stat().st_mtime_ns
    # Same settings: skipped, files untouched.
    assert not make_mini_iemocap(tmp_path, seed=3, **tiny)["regenerated"]
    assert wav.stat().st_mtime_ns == stamp
    # Other settings: regenerated.
    assert make_mini_iemocap(tmp_path, seed=4, **tiny)["regenerated"]
    # A corpus without the marker (e.g. the real one) is never deleted.
    (release / MARKER_FILE).unlink()
    with pytest.raises(RuntimeError, match="marker"):
        make_mini_iemocap(tmp_path, seed=3, **tiny)
    assert wav.parent.exists()
