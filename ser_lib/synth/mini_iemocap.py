"""A synthetic, miniature IEMOCAP corpus in the exact ``IEMOCAP_full_release`` layout.

The real IEMOCAP cannot be redistributed, so tests, CI and the offline demo run on this
stand-in. It mirrors what data preparation has to cope with:

* ``IEMOCAP_full_release/Session{1..5}/sentences/wav/<dialog>/<UTT_ID>.wav`` (16 kHz mono
  16-bit PCM) and ``Session{s}/dialog/EmoEvaluation/<dialog>.txt`` in the release's
  format (tab-separated header line per utterance, evaluator lines, blank line between
  blocks), plus the ``Categorical/``, ``Attribute/`` and ``Self-evaluation/`` sub-folders
  (other formats; a preparer must skip directories) and
  ``Session{s}/dialog/transcriptions/<dialog>.txt``;
* dialog names such as ``Ses01F_impro01``, ``Ses01M_impro05a``, ``Ses01F_script01_1b``;
  utterance IDs ``<dialog>_<F|M><NNN>`` whose letter is the speaker's gender, so the
  speaker is the session plus the first letter of the last ``_`` field;
* the four kept emotions (neu, hap, exc, ang, sad; hap and exc are merged later) and
  labels that preparation drops (fru, sur, xxx, fea, oth, dis), about 15 %;
* optional AppleDouble junk (``._*`` files) next to wavs and annotation files.

Speech is rendered by eSpeak NG (:mod:`ser_lib.synth.espeak`): each session has a female
and a male voice variant; emotions change rate, pitch, pitch range and volume (plus SSML
emphasis) on top of a per-speaker baseline, with per-utterance jitter and coloured
background noise at a random SNR, so the task is learnable from prosody but not trivial.
Sentence texts are independent of the emotion.

Determinism: every random choice comes from ``numpy.random.Generator`` streams derived
from ``seed``; each dialog is synthesized in a freshly started process (eSpeak NG keeps
state between calls, see :mod:`ser_lib.synth.espeak`), so the same arguments give
byte-identical files whatever the number of workers.

Authors
 * ser_lib contributors
"""

import math
import os
import shutil
import wave
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from speechbrain.utils.logger import get_logger

from ser_lib.data.manifest import prep_options_match, save_prep_options
from ser_lib.synth.espeak import (
    PITCH_RANGE,
    PITCH_RANGE_RANGE,
    RATE_RANGE,
    VOLUME_RANGE,
    SynthesisRequest,
    emphasize_word,
    synthesize_in_fresh_process,
)

logger = get_logger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the generator's output changes for the same arguments."""

RELEASE_DIR = "IEMOCAP_full_release"
MARKER_FILE = "mini_iemocap.json"
"""Settings marker, written last inside the release folder before it is moved in place."""

SENTENCES = (
    "I left the keys on the kitchen table.",
    "We should talk about this tomorrow.",
    "The train leaves at half past seven.",
    "Did you see the letter from the bank?",
    "She moved to a new apartment last week.",
    "I need to finish this report tonight.",
    "They changed the schedule again.",
    "Can you pass me the blue folder?",
    "My brother is coming over on Sunday.",
    "The meeting was moved to the third floor.",
    "I really thought you would call me.",
    "It is raining outside right now.",
    "We have been waiting for an hour.",
    "Where did you put the old photos?",
    "He said the store closes at nine.",
    "I got the job at the museum.",
    "You never told me about the trip.",
    "The car is parked behind the house.",
    "Let me check my calendar first.",
    "I know exactly what you mean.",
    "That was the last bus of the day.",
    "We are going to the beach next month.",
    "Nobody answered the phone this morning.",
    "I have to go back to the office.",
    "The package arrived this afternoon.",
    "Why are you telling me this now?",
    "She found the ring under the sofa.",
    "I cannot do this any more.",
    "Please sit down for a minute.",
    "The dog ran out of the yard.",
    "Our flight was cancelled last night.",
    "I made dinner for both of us.",
    "You can keep the rest of the money.",
    "He forgot his coat at the restaurant.",
    "We will need a bigger table.",
    "I was not expecting you so early.",
    "The kids are asleep upstairs.",
    "It took me three days to fix it.",
    "Just tell me what happened.",
    "The window in the hallway is open.",
    "I saw your sister at the market.",
    "This is the best news all year.",
    "They are selling the house in June.",
    "I will wait for you outside.",
    "The water is still too cold.",
    "You have to sign these papers.",
    "I lost my wallet on the way home.",
    "We did everything we could.",
)
"""Short English sentences spoken by the synthetic actors."""

KEPT_LABELS = ("neu", "hap", "exc", "ang", "sad")
DROPPED_LABELS = ("fru", "sur", "xxx", "fea", "oth", "dis")

DEFAULT_LABEL_PROBS = {
    "neu": 0.26,
    "hap": 0.10,
    "exc": 0.15,
    "ang": 0.16,
    "sad": 0.18,
    "fru": 0.05,
    "xxx": 0.04,
    "sur": 0.02,
    "fea": 0.015,
    "oth": 0.01,
    "dis": 0.015,
}
"""Label shares of the corpus (kept 85 %, dropped 15 %)."""

CATEGORY_NAMES = {
    "neu": "Neutral",
    "hap": "Happiness",
    "exc": "Excited",
    "ang": "Anger",
    "sad": "Sadness",
    "fru": "Frustration",
    "sur": "Surprise",
    "fea": "Fear",
    "dis": "Disgust",
    "oth": "Other",
}
"""Evaluator category names used in the EmoEvaluation files (``xxx`` = no agreement)."""

DEFAULT_VOICES = (
    ("en-us+f3", "en+m2"),
    ("en+f2", "en-us+m3"),
    ("en-us+f4", "en+m4"),
    ("en+f1", "en-us+m6"),
    ("en-us+f5", "en+m7"),
)
"""(female, male) eSpeak NG voice per session; the number of pairs is the number of sessions."""

IMPRO_DIALOGS = (
    "impro01",
    "impro05a",
    "impro02",
    "impro08b",
    "impro03",
    "impro04",
    "impro05b",
    "impro06",
    "impro07",
    "impro08a",
)
SCRIPT_DIALOGS = (
    "script01_1b",
    "script02_2",
    "script01_3",
    "script03_1",
    "script02_1",
    "script03_2",
    "script01_2",
)


@dataclass(frozen=True)
class Prosody:
    """eSpeak NG prosody values (or offsets, or standard deviations of them).

    Arguments
    ---------
    rate : float
        Words per minute.
    pitch : float
        Base pitch, 0-100 scale.
    pitch_range : float
        Pitch variation, 0-100 scale.
    volume : float
        Amplitude, percent.

    Example
    -------
    >>> Prosody(175, 50, 50, 100).rate
    175
    """

    rate: float
    pitch: float
    pitch_range: float
    volume: float


DEFAULT_BASE_PROSODY = Prosody(rate=170, pitch=50, pitch_range=50, volume=100)
DEFAULT_SPEAKER_SPREAD = Prosody(rate=8, pitch=6, pitch_range=6, volume=8)
DEFAULT_JITTER = Prosody(rate=12, pitch=5, pitch_range=8, volume=12)
DEFAULT_EMOTION_OFFSETS = {
    "neu": Prosody(0, 0, -5, 0),
    "hap": Prosody(15, 12, 20, 15),
    "exc": Prosody(30, 16, 28, 30),
    "ang": Prosody(25, 6, 12, 55),
    "sad": Prosody(-45, -12, -25, -35),
    "fru": Prosody(10, 2, 5, 25),
    "sur": Prosody(10, 20, 35, 20),
    "fea": Prosody(30, 15, -10, -15),
    "dis": Prosody(-20, -6, 5, 5),
    "oth": Prosody(0, 4, 10, 0),
    "xxx": Prosody(5, 3, 5, 5),
}
"""Per-emotion prosody offsets added to the speaker baseline."""

DEFAULT_EMPHASIS_PROBS = {"ang": 0.6, "exc": 0.4, "fru": 0.4, "sur": 0.3, "hap": 0.2}
"""Probability that one word of an utterance gets SSML ``<emphasis>`` (0 if absent)."""

DEFAULT_VAD_MEANS = {
    "neu": (3.0, 2.5, 2.5),
    "hap": (4.0, 3.0, 3.0),
    "exc": (4.0, 3.5, 3.0),
    "ang": (1.5, 4.0, 4.0),
    "sad": (2.0, 2.0, 2.0),
    "fru": (2.0, 3.5, 3.5),
    "sur": (3.5, 3.5, 2.5),
    "fea": (2.0, 3.5, 2.0),
    "dis": (2.0, 3.0, 3.5),
    "oth": (2.5, 3.0, 3.0),
    "xxx": (2.5, 3.0, 3.0),
}
"""Mean (valence, activation, dominance) per label, on IEMOCAP's 1-5 scale."""

EVALUATOR_NOTES = ("", "", "", "", "curious", "annoyed", "tired", "sarcastic")
"""Free-text notes in evaluator lines (mostly empty, as in the release)."""

EVALUATORS = ("E1", "E2", "E3", "E4", "E5", "E6")
"""External evaluators; two of them rate each utterance."""

DISSENT_PROB = 0.5
"""Probability that one of the three categorical ratings disagrees with the label."""

ATTRIBUTE_RATING_SD = 0.7
"""Spread of an evaluator's integer V/A/D ratings around the utterance's values."""

MAX_SEED = 2**31 - 1
"""Exclusive upper bound of the per-utterance eSpeak NG and noise seeds."""

_APPLE_DOUBLE = (
    b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x01"
    + b"\x00\x00\x00\x02\x00\x00\x00\x26\x00\x00\x0f\xb0"
    + b"\x00" * 4042
)
"""Bytes of a typical AppleDouble ``._*`` resource-fork file (4 KiB)."""


@dataclass(frozen=True)
class _Utterance:
    """Everything planned for one utterance before synthesis."""

    session: int
    dialog: str
    utt_id: str
    gender: str
    style: str
    label: str
    text: str
    request: SynthesisRequest
    snr_db: float
    noise_seed: int
    lead_s: float
    trail_s: float
    gap_s: float
    vad: tuple
    evaluations: tuple


def _largest_remainder_counts(probs, total):
    """Splits ``total`` items into integer counts proportional to ``probs`` (dict order)."""
    labels = list(probs)
    p = np.array([probs[k] for k in labels], dtype=np.float64)
    if total < 0 or np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"Invalid label probabilities {probs} or total {total}.")
    exact = p / p.sum() * total
    counts = np.floor(exact).astype(int)
    # Stable sort: ties go to the label listed first.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return dict(zip(labels, counts.tolist(), strict=True))


def _dialog_names(session, num_impro, num_script):
    """Dialog names of one session, alternating the F/M lead like the release."""
    if num_impro > len(IMPRO_DIALOGS) or num_script > len(SCRIPT_DIALOGS):
        raise ValueError(
            f"At most {len(IMPRO_DIALOGS)} improvised and {len(SCRIPT_DIALOGS)} scripted "
            f"dialogs per session, got {num_impro} and {num_script}."
        )
    names = []
    for catalog, count, style in (
        (IMPRO_DIALOGS, num_impro, "impro"),
        (SCRIPT_DIALOGS, num_script, "script"),
    ):
        for i in range(count):
            lead = "FM"[(i + session - 1) % 2]
            names.append((f"Ses{session:02d}{lead}_{catalog[i]}", style))
    return names


def _clip(value, bounds):
    return int(round(min(max(value, bounds[0]), bounds[1])))


def _perturb(rng, base, offset, spread):
    """Returns ``base + offset + N(0, spread)`` field by field, as a Prosody."""
    fields = zip(
        asdict(base).values(),
        asdict(offset).values(),
        asdict(spread).values(),
        strict=True,
    )
    return Prosody(*(b + o + rng.normal(0, sd) for b, o, sd in fields))


def _turns(rng, num_turns, switch_prob):
    """Speaker genders of the turns of one dialog ("F"/"M"), starting at random."""
    genders = [str(rng.choice(["F", "M"]))]
    for _ in range(num_turns - 1):
        other = "M" if genders[-1] == "F" else "F"
        genders.append(other if rng.random() < switch_prob else genders[-1])
    return genders


def _session_labels(rng, label_probs, per_session, num_sessions):
    """Labels of each session: corpus-level quotas dealt round-robin, then shuffled.

    Every session gets the same share of each label (up to one utterance).
    """
    counts = _largest_remainder_counts(label_probs, per_session * num_sessions)
    pooled = [label for label, n in counts.items() for _ in range(n)]
    sessions = [pooled[i::num_sessions] for i in range(num_sessions)]
    for labels in sessions:
        rng.shuffle(labels)
    return sessions


def _draw_vad(rng, means, spread):
    """(valence, activation, dominance) around ``means``, rounded to 0.5 in [1, 5]."""
    return tuple(
        float(np.clip(np.round(2 * (m + rng.normal(0, spread))) / 2, 1.0, 5.0))
        for m in means
    )


def _evaluations(rng, label, gender, vad):
    """Evaluator lines (categorical ``C-`` and attribute ``A-``) of one utterance.

    Two external evaluators and the speaker's self-evaluation (``F1``/``M1``); all agree
    on the label except, with probability ``DISSENT_PROB``, one; ``xxx`` gets three
    different categories (no majority).
    """
    named = [k for k in CATEGORY_NAMES if k != "oth"]
    self_rater = f"{gender}1"
    raters = [str(e) for e in sorted(rng.choice(EVALUATORS, 2, replace=False))]
    raters.append(self_rater)
    if label == "xxx":
        cats = [CATEGORY_NAMES[k] for k in rng.choice(named, 3, replace=False)]
    else:
        cats = [CATEGORY_NAMES[label]] * 3
        dissent = CATEGORY_NAMES[str(rng.choice(named))]
        if rng.random() < DISSENT_PROB:
            cats[int(rng.integers(0, 3))] = dissent
    lines = []
    for rater, cat in zip(raters, cats, strict=True):
        note = EVALUATOR_NOTES[int(rng.integers(0, len(EVALUATOR_NOTES)))]
        lines.append(f"C-{rater}:\t{cat};\t({note})")
    for rater in (raters[1], self_rater):
        v, a, d = (
            int(np.clip(round(x + rng.normal(0, ATTRIBUTE_RATING_SD)), 1, 5))
            for x in vad
        )
        lines.append(f"A-{rater}:\tval {v}; act {a}; dom  {d};\t()")
    return tuple(lines)


def _plan(rng, voices, dialogs_per_style, utterances_per_dialog, **knobs):
    """Draws the corpus's random choices from ``rng``.

    ``knobs`` are the prosody, label, V/A/D, noise and timing arguments of
    :func:`make_mini_iemocap`. Returns a list of dialogs, each a list of ``_Utterance``.
    """
    label_probs = knobs["label_probs"]
    unknown = set(label_probs) - set(CATEGORY_NAMES) - {"xxx"}
    if unknown:
        raise ValueError(
            f"Unknown labels {sorted(unknown)}; known: {sorted(CATEGORY_NAMES)}, xxx."
        )
    for table in ("emotion_offsets", "vad_means"):
        missing = set(label_probs) - set(knobs[table])
        if missing:
            raise ValueError(f"Labels {sorted(missing)} are missing from {table}.")
    num_sessions = len(voices)
    no_offset = Prosody(0, 0, 0, 0)
    speakers = {
        (s, g): _perturb(rng, knobs["base_prosody"], no_offset, knobs["speaker_spread"])
        for s in range(1, num_sessions + 1)
        for g in "FM"
    }
    # A script has the same text in every session, as in the release.
    scripts = {}
    for name in SCRIPT_DIALOGS:
        scripts.setdefault(name.split("_")[0], rng.permutation(len(SENTENCES)))
    dialogs = [
        (s, name, style, _turns(rng, utterances_per_dialog, knobs["turn_switch_prob"]))
        for s in range(1, num_sessions + 1)
        for name, style in _dialog_names(s, *dialogs_per_style)
    ]
    per_session = sum(dialogs_per_style) * utterances_per_dialog
    labels = [
        iter(x) for x in _session_labels(rng, label_probs, per_session, num_sessions)
    ]

    plan = []
    for s, name, style, genders in dialogs:
        numbering = Counter()
        if style == "script":
            order = scripts[name.split("_")[1]]
            part = int(name.split("_")[-1][0])  # "1b" -> 1
            texts = [
                SENTENCES[order[((part - 1) * len(genders) + k) % len(SENTENCES)]]
                for k in range(len(genders))
            ]
        else:
            texts = [
                SENTENCES[i] for i in rng.integers(0, len(SENTENCES), len(genders))
            ]
        utterances = []
        for gender, text in zip(genders, texts, strict=True):
            label = next(labels[s - 1])
            utt_id = f"{name}_{gender}{numbering[gender]:03d}"
            numbering[gender] += 1
            prosody = _perturb(
                rng,
                speakers[s, gender],
                knobs["emotion_offsets"][label],
                knobs["jitter"],
            )
            ssml = bool(rng.random() < knobs["emphasis_probs"].get(label, 0.0))
            word = int(rng.integers(0, len(text.split())))
            request = SynthesisRequest(
                text=emphasize_word(text, word) if ssml else text,
                voice=voices[s - 1]["FM".index(gender)],
                rate=_clip(prosody.rate, RATE_RANGE),
                pitch=_clip(prosody.pitch, PITCH_RANGE),
                pitch_range=_clip(prosody.pitch_range, PITCH_RANGE_RANGE),
                volume=_clip(prosody.volume, VOLUME_RANGE),
                ssml=ssml,
                rand_seed=int(rng.integers(0, MAX_SEED)),
            )
            vad = _draw_vad(rng, knobs["vad_means"][label], knobs["vad_jitter"])
            utterances.append(
                _Utterance(
                    session=s,
                    dialog=name,
                    utt_id=utt_id,
                    gender=gender,
                    style=style,
                    label=label,
                    text=text,
                    request=request,
                    snr_db=float(rng.uniform(*knobs["snr_db_range"])),
                    noise_seed=int(rng.integers(0, MAX_SEED)),
                    lead_s=float(rng.uniform(*knobs["silence_range_s"])),
                    trail_s=float(rng.uniform(*knobs["silence_range_s"])),
                    gap_s=float(rng.uniform(*knobs["turn_gap_range_s"])),
                    vad=vad,
                    evaluations=_evaluations(rng, label, gender, vad),
                )
            )
        plan.append(utterances)
    return plan


def _smooth_length(n):
    """Smallest integer >= n with no prime factor above 5 (a fast FFT size)."""
    n = max(int(n), 1)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _colored_noise(rng, num_samples, exponent):
    """Unit-RMS noise with a 1/f**exponent power spectrum (0 = white, 2 = brown)."""
    size = _smooth_length(max(num_samples, 2))
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=size)[:num_samples]
    return noise / max(np.sqrt(np.mean(noise**2)), 1e-12)


def _resample(wav, source_rate, sample_rate):
    """Band-limited resampling of a whole signal in the frequency domain.

    Truncating (or zero-padding) the spectrum is the ideal low-pass resampler for a
    periodic signal; the signal is zero-padded to a length whose FFT is fast and maps to
    a whole number of output samples, then cropped. Synthesized speech ends in silence,
    so the implied wrap-around is harmless.
    """
    step = source_rate // math.gcd(source_rate, sample_rate)
    out_step = sample_rate // math.gcd(source_rate, sample_rate)
    num_out = int(round(wav.size * sample_rate / source_rate))
    if wav.size == 0 or source_rate == sample_rate:
        return wav.astype(np.float64)
    blocks = _smooth_length(-(-wav.size // step))
    padded = np.zeros(blocks * step)
    padded[: wav.size] = wav
    resampled = np.fft.irfft(np.fft.rfft(padded), n=blocks * out_step)
    return resampled[:num_out] * (out_step / step)


def _render(utt, wav, source_rate, sample_rate, noise_exponent, speech_gain):
    """Resamples, pads, adds noise at the planned SNR; returns int16 samples."""
    speech = _resample(wav, source_rate, sample_rate) * speech_gain
    lead = np.zeros(int(round(utt.lead_s * sample_rate)))
    trail = np.zeros(int(round(utt.trail_s * sample_rate)))
    signal = np.concatenate([lead, speech, trail])
    power = np.mean(speech**2) if speech.size else 0.0
    rng = np.random.default_rng(utt.noise_seed)
    noise = _colored_noise(rng, signal.size, noise_exponent)
    signal = signal + noise * np.sqrt(power / 10 ** (utt.snr_db / 10))
    return np.round(np.clip(signal, -1.0, 1.0) * 32767).astype(np.int16)


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


def _write_apple_double(root, rng, prob):
    """Drops ``._*`` AppleDouble files next to a random share of wavs and annotations."""
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


def _write_corpus(
    plan,
    root,
    rng,
    num_workers,
    noise_exponent_range,
    dialog_start_range_s,
    speech_gain,
    sample_rate,
):
    """Synthesizes the planned dialogs and writes wavs and annotations under ``root``."""
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
                samples = _render(
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


def _summary(plan, release_dir, regenerated):
    utterances = [u for dialog in plan for u in dialog]
    return {
        "path": release_dir,
        "regenerated": regenerated,
        "num_utterances": len(utterances),
        "num_dialogs": len(plan),
        "labels": dict(sorted(Counter(u.label for u in utterances).items())),
        "sessions": {
            f"Session{s}": n
            for s, n in sorted(Counter(u.session for u in utterances).items())
        },
        "styles": {
            name: sum(u.style == style for u in utterances)
            for style, name in (("impro", "improvised"), ("script", "scripted"))
        },
    }


def make_mini_iemocap(
    out_dir,
    seed=0,
    improvised_per_session=2,
    scripted_per_session=2,
    utterances_per_dialog=24,
    apple_double=False,
    num_workers=2,
    voices=DEFAULT_VOICES,
    label_probs=DEFAULT_LABEL_PROBS,
    base_prosody=DEFAULT_BASE_PROSODY,
    speaker_spread=DEFAULT_SPEAKER_SPREAD,
    emotion_offsets=DEFAULT_EMOTION_OFFSETS,
    jitter=DEFAULT_JITTER,
    emphasis_probs=DEFAULT_EMPHASIS_PROBS,
    vad_means=DEFAULT_VAD_MEANS,
    vad_jitter=0.4,
    snr_db_range=(10.0, 30.0),
    noise_exponent_range=(0.0, 1.5),
    silence_range_s=(0.05, 0.25),
    turn_gap_range_s=(0.2, 1.5),
    dialog_start_range_s=(2.0, 8.0),
    turn_switch_prob=0.8,
    speech_gain=0.7,
    sample_rate=16000,
    apple_double_prob=0.2,
):
    """Writes a synthetic corpus in the ``IEMOCAP_full_release`` layout under ``out_dir``.

    Generation is skipped when ``out_dir/IEMOCAP_full_release`` holds a finished corpus
    made with the same settings (its ``mini_iemocap.json`` marker). Otherwise the corpus
    is built in ``IEMOCAP_full_release.partial``, the marker is written last, and the
    folder is renamed into place, so an interrupted run leaves no complete-looking corpus
    and is redone. An existing ``IEMOCAP_full_release`` without the marker (e.g. the real
    corpus) is never deleted: an error is raised instead.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Output folder; the corpus goes to ``out_dir/IEMOCAP_full_release``.
    seed : int
        Seed of the ``numpy.random.Generator`` streams behind every random choice.
    improvised_per_session : int
        Improvised dialogs per session (at most 10).
    scripted_per_session : int
        Scripted dialogs per session (at most 7).
    utterances_per_dialog : int
        Utterances (turns) per dialog.
    apple_double : bool
        Also drop AppleDouble ``._*`` junk files (does not change any other file).
    num_workers : int
        Processes that synthesize dialogs in parallel (does not change the output).
    voices : sequence of (str, str)
        (female, male) eSpeak NG voice of each session; its length (1-9) is the number
        of sessions.
    label_probs : dict
        Share of each label in the corpus; counts are exact up to rounding.
    base_prosody : Prosody
        Mean speaker baseline (rate, pitch, pitch range, volume).
    speaker_spread : Prosody
        Standard deviations of the speaker baselines around ``base_prosody``.
    emotion_offsets : dict
        Label -> Prosody offset added to the speaker baseline.
    jitter : Prosody
        Standard deviations of the per-utterance random variation.
    emphasis_probs : dict
        Label -> probability of an SSML-emphasised word.
    vad_means : dict
        Label -> mean (valence, activation, dominance) written to EmoEvaluation.
    vad_jitter : float
        Standard deviation of the V/A/D values (rounded to 0.5 in [1, 5]).
    snr_db_range : tuple of float
        Uniform range of the per-utterance signal-to-noise ratio (dB).
    noise_exponent_range : tuple of float
        Uniform range of each session's noise colour (1/f**x power spectrum).
    silence_range_s : tuple of float
        Uniform range of the silence added before and after the speech (s).
    turn_gap_range_s : tuple of float
        Uniform range of the gap between turns in the annotation times (s).
    dialog_start_range_s : tuple of float
        Uniform range of the first turn's start time (s).
    turn_switch_prob : float
        Probability that the next turn is by the other speaker.
    speech_gain : float
        Gain applied to the synthesized speech (headroom for the noise).
    sample_rate : int
        Sample rate of the written wavs (Hz).
    apple_double_prob : float
        Share of wavs, annotation files and dialog folders that get a ``._*`` twin.

    Returns
    -------
    dict
        ``path`` (the release folder), ``regenerated`` (False when skipped),
        ``num_utterances``, ``num_dialogs`` and counts per ``labels``, ``sessions``
        and ``styles`` (``improvised``, ``scripted``).

    Example
    -------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> summary = make_mini_iemocap(out, improvised_per_session=1,
    ...     scripted_per_session=0, utterances_per_dialog=2, num_workers=1)
    >>> summary["num_utterances"], summary["regenerated"], sorted(summary["sessions"])[0]
    (10, True, 'Session1')
    >>> os.path.isfile(os.path.join(
    ...     out, "IEMOCAP_full_release", "Session1", "dialog", "EmoEvaluation",
    ...     "Ses01F_impro01.txt"))
    True
    >>> make_mini_iemocap(out, improvised_per_session=1, scripted_per_session=0,
    ...     utterances_per_dialog=2, num_workers=1)["regenerated"]
    False
    """
    if not 1 <= len(voices) <= 9:
        raise ValueError(f"Need 1-9 (female, male) voice pairs, got {len(voices)}.")
    if utterances_per_dialog < 1 or improvised_per_session + scripted_per_session < 1:
        raise ValueError(
            "Need at least one dialog per session and one utterance per dialog."
        )
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}.")
    settings = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "improvised_per_session": improvised_per_session,
        "scripted_per_session": scripted_per_session,
        "utterances_per_dialog": utterances_per_dialog,
        "apple_double": apple_double,
        "voices": [list(v) for v in voices],
        "label_probs": dict(label_probs),
        "base_prosody": asdict(base_prosody),
        "speaker_spread": asdict(speaker_spread),
        "emotion_offsets": {k: asdict(v) for k, v in emotion_offsets.items()},
        "jitter": asdict(jitter),
        "emphasis_probs": dict(emphasis_probs),
        "vad_means": {k: list(v) for k, v in vad_means.items()},
        "vad_jitter": vad_jitter,
        "snr_db_range": list(snr_db_range),
        "noise_exponent_range": list(noise_exponent_range),
        "silence_range_s": list(silence_range_s),
        "turn_gap_range_s": list(turn_gap_range_s),
        "dialog_start_range_s": list(dialog_start_range_s),
        "turn_switch_prob": turn_switch_prob,
        "speech_gain": speech_gain,
        "sample_rate": sample_rate,
        "apple_double_prob": apple_double_prob,
    }
    seeds = np.random.SeedSequence(seed).spawn(3)
    plan_rng, layout_rng, junk_rng = (np.random.default_rng(s) for s in seeds)
    plan = _plan(
        plan_rng,
        voices,
        (improvised_per_session, scripted_per_session),
        utterances_per_dialog,
        label_probs=label_probs,
        base_prosody=base_prosody,
        speaker_spread=speaker_spread,
        emotion_offsets=emotion_offsets,
        jitter=jitter,
        emphasis_probs=emphasis_probs,
        vad_means=vad_means,
        vad_jitter=vad_jitter,
        snr_db_range=snr_db_range,
        silence_range_s=silence_range_s,
        turn_gap_range_s=turn_gap_range_s,
        turn_switch_prob=turn_switch_prob,
    )
    out_dir = os.path.abspath(os.fspath(out_dir))
    release_dir = os.path.join(out_dir, RELEASE_DIR)
    if prep_options_match(release_dir, settings, filename=MARKER_FILE):
        logger.info(
            "Mini IEMOCAP already at %s with the same settings; skipping.", release_dir
        )
        return _summary(plan, release_dir, regenerated=False)
    if os.path.exists(release_dir):
        if not os.path.isfile(os.path.join(release_dir, MARKER_FILE)):
            raise RuntimeError(
                f"{release_dir} exists but has no {MARKER_FILE} marker: it was not made "
                "by make_mini_iemocap (or is the real corpus). Remove it or pick another "
                "out_dir."
            )
        logger.info("Settings changed: regenerating %s.", release_dir)
        shutil.rmtree(release_dir)
    partial_dir = release_dir + ".partial"
    if os.path.exists(partial_dir):
        logger.info("Removing %s left by an interrupted run.", partial_dir)
        shutil.rmtree(partial_dir)

    _write_corpus(
        plan,
        partial_dir,
        layout_rng,
        num_workers,
        noise_exponent_range,
        dialog_start_range_s,
        speech_gain,
        sample_rate,
    )
    if apple_double:
        written = _write_apple_double(partial_dir, junk_rng, apple_double_prob)
        logger.info("Wrote %d AppleDouble ._* files.", written)
    save_prep_options(partial_dir, settings, filename=MARKER_FILE)
    os.replace(partial_dir, release_dir)
    return _summary(plan, release_dir, regenerated=True)
