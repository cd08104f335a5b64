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

The work is split by job: :mod:`ser_lib.synth.design` (what the corpus is made of),
:mod:`ser_lib.synth.plan` (every random draw), :mod:`ser_lib.synth.render` (audio) and
:mod:`ser_lib.synth.layout` (the release's files); this module chains them and keeps a
finished corpus from being made twice.

Authors
 * ser_lib contributors
"""

import os
import shutil
from collections import Counter
from dataclasses import asdict

import numpy as np
from speechbrain.utils.logger import get_logger

from ser_lib.data.manifest import prep_options_match, save_prep_options
from ser_lib.synth.design import (
    DEFAULT_BASE_PROSODY,
    DEFAULT_EMOTION_OFFSETS,
    DEFAULT_EMPHASIS_PROBS,
    DEFAULT_JITTER,
    DEFAULT_LABEL_PROBS,
    DEFAULT_SPEAKER_SPREAD,
    DEFAULT_VAD_MEANS,
    DEFAULT_VOICES,
    DROPPED_LABELS,
    KEPT_LABELS,
    Prosody,
)
from ser_lib.synth.layout import write_apple_double, write_corpus
from ser_lib.synth.plan import plan_corpus

__all__ = [
    "DROPPED_LABELS",
    "GENERATOR_VERSION",
    "KEPT_LABELS",
    "MARKER_FILE",
    "RELEASE_DIR",
    "Prosody",
    "make_mini_iemocap",
]

logger = get_logger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the generator's output changes for the same arguments."""

RELEASE_DIR = "IEMOCAP_full_release"
MARKER_FILE = "mini_iemocap.json"
"""Settings marker, written last inside the release folder before it is moved in place."""


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
    plan = plan_corpus(
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

    write_corpus(
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
        written = write_apple_double(partial_dir, junk_rng, apple_double_prob)
        logger.info("Wrote %d AppleDouble ._* files.", written)
    save_prep_options(partial_dir, settings, filename=MARKER_FILE)
    os.replace(partial_dir, release_dir)
    return _summary(plan, release_dir, regenerated=True)
