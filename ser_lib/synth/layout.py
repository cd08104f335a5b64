"""Writing the synthetic mini IEMOCAP in the ``IEMOCAP_full_release`` layout.

Synthesizes the planned dialogs (:mod:`ser_lib.synth.espeak`, one fresh process per
dialog), renders them (:mod:`ser_lib.synth.render`) and writes
``Session{s}/sentences/wav/<dialog>/<UTT_ID>.wav``, the EmoEvaluation files (and their
``Categorical/``, ``Attribute/``, ``Self-evaluation/`` sub-folders), the transcriptions,
and optional AppleDouble ``._*`` junk.

Authors
 * ser_lib contributors
"""

import os
import wave
from concurrent.futures import ThreadPoolExecutor

from speechbrain.utils.logger import get_logger

from ser_lib.synth.espeak import synthesize_in_fresh_process
from ser_lib.synth.render import render_utterance

logger = get_logger(__name__)

_APPLE_DOUBLE = (
    b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x01"
    + b"\x00\x00\x00\x02\x00\x00\x00\x26\x00\x00\x0f\xb0"
    + b"\x00" * 4042
)
"""Bytes of a typical AppleDouble ``._*`` resource-fork file (4 KiB)."""


def _write_wav(path, samples, sample_rate):
    with wave.open(path, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(samples.astype("<i2").tobytes())


def _write_text(path, text):
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _write_annotations(session_dir, dialog, utterances, times):
    """Writes EmoEvaluation (+ its sub-folders) and transcription files of one dialog."""
    emo_dir = os.path.join(session_dir, "dialog", "EmoEvaluation")
    blocks = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"]
    cat_lines, attr_lines, self_lines, trans_lines = [], [], [], []
    for utt, (start, end) in zip(utterances, times, strict=True):
        v, a, d = utt.vad
        header = (
            f"[{start:.4f} - {end:.4f}]\t{utt.utt_id}\t{utt.label}\t"
            f"[{v:.4f}, {a:.4f}, {d:.4f}]"
        )
        blocks.append("\n".join((header, *utt.evaluations)) + "\n\n")
        # Evaluator lines are "C-E2:\tNeutral;\t(note)" and "A-E3:\tval 3; ...;\t()".
        fields = [line.split("\t") for line in utt.evaluations]
        categories = [f[1] for f in fields if f[0].startswith("C-")]
        attributes = [f[1] for f in fields if f[0].startswith("A-")]
        cat_lines.append(f"{utt.utt_id} :{' '.join(categories)} ()\n")
        attr_lines.append(f"{utt.utt_id} :{attributes[0]} ()\n")
        self_lines.append(
            f'  <utterance id="{utt.utt_id}" category="{categories[-1][:-1]}"/>\n'
        )
        trans_lines.append(f"{utt.utt_id} [{start:08.4f}-{end:08.4f}]: {utt.text}\n")
    _write_text(os.path.join(emo_dir, f"{dialog}.txt"), "".join(blocks))
    _write_text(
        os.path.join(emo_dir, "Categorical", f"{dialog}_cat.txt"), "".join(cat_lines)
    )
    _write_text(
        os.path.join(emo_dir, "Attribute", f"{dialog}_atr.txt"), "".join(attr_lines)
    )
    _write_text(
        os.path.join(emo_dir, "Self-evaluation", f"{dialog}.anvil"),
        f'<?xml version="1.0"?>\n<annotation dialog="{dialog}">\n'
        + "".join(self_lines)
        + "</annotation>\n",
    )
    _write_text(
        os.path.join(session_dir, "dialog", "transcriptions", f"{dialog}.txt"),
        "".join(trans_lines),
    )


def write_apple_double(root, rng, prob):
    """Drops ``._*`` AppleDouble files next to a random share of wavs and annotations.

    Arguments
    ---------
    root : str
        The release folder.
    rng : numpy.random.Generator
        Chooses the files.
    prob : float
        Share of wavs, annotation files and dialog folders that get a ``._*`` twin.

    Returns
    -------
    int
        How many files were written.
    """
    candidates = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        in_wav_root = os.path.basename(folder) == "wav"
        names = sorted(f for f in files if f.endswith((".wav", ".txt")))
        names += sorted(dirs) if in_wav_root else []
        candidates += [os.path.join(folder, name) for name in names]
    written = 0
    for path in candidates:
        if rng.random() < prob:
            folder, name = os.path.split(path)
            with open(os.path.join(folder, "._" + name), "wb") as handle:
                handle.write(_APPLE_DOUBLE)
            written += 1
    return written


def write_corpus(
    plan,
    root,
    rng,
    num_workers,
    noise_exponent_range,
    dialog_start_range_s,
    speech_gain,
    sample_rate,
):
    """Synthesizes the planned dialogs and writes wavs and annotations under ``root``.

    Arguments
    ---------
    plan : list of list of ser_lib.synth.plan.PlannedUtterance
        The dialogs (:func:`ser_lib.synth.plan.plan_corpus`).
    root : str
        The release folder (its session folders are created).
    rng : numpy.random.Generator
        Draws each session's noise colour and each dialog's start time.
    num_workers : int
        Dialogs synthesized in parallel (does not change the output).
    noise_exponent_range, dialog_start_range_s : tuple of float
        Uniform ranges of the noise colour and of the first turn's start (s).
    speech_gain : float
        Gain of the speech.
    sample_rate : int
        Rate of the written wavs (Hz).
    """
    sessions = sorted({dialog[0].session for dialog in plan})
    noise_exponents = dict(
        zip(sessions, rng.uniform(*noise_exponent_range, len(sessions)), strict=True)
    )
    for s in sessions:
        emo_dir = os.path.join(root, f"Session{s}", "dialog", "EmoEvaluation")
        for sub in ("Categorical", "Attribute", "Self-evaluation"):
            os.makedirs(os.path.join(emo_dir, sub))
        os.makedirs(os.path.join(root, f"Session{s}", "dialog", "transcriptions"))
    logger.info(
        "Synthesizing %d utterances in %d dialogs with %d worker(s) into %s",
        sum(map(len, plan)),
        len(plan),
        num_workers,
        root,
    )
    # A fresh process per dialog: eSpeak NG output depends on the process's history.
    # Threads only wait on the subprocesses; results come back in dialog order.
    requests = [[u.request for u in dialog] for dialog in plan]
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        results = pool.map(synthesize_in_fresh_process, requests)
        for dialog, (wavs, source_rate) in zip(plan, results, strict=True):
            session, name = dialog[0].session, dialog[0].dialog
            session_dir = os.path.join(root, f"Session{session}")
            wav_dir = os.path.join(session_dir, "sentences", "wav", name)
            os.makedirs(wav_dir)
            t = float(rng.uniform(*dialog_start_range_s))
            times = []
            for utt, wav in zip(dialog, wavs, strict=True):
                samples = render_utterance(
                    utt,
                    wav,
                    source_rate,
                    sample_rate,
                    noise_exponents[session],
                    speech_gain,
                )
                path = os.path.join(wav_dir, utt.utt_id + ".wav")
                _write_wav(path, samples, sample_rate)
                start = t + utt.gap_s
                t = start + samples.size / sample_rate
                times.append((start, t))
            _write_annotations(session_dir, name, dialog, times)
