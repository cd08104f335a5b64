"""Audio that cannot carry emotion: too short or silent files.

An all-zero wav gives constant features (the log floor) and a 0.05 s wav three
frames; both pass every format check, so without this screen they are trained and
tested on without a word. :func:`measure_manifest` measures the duration and RMS level
of every wav of a manifest once (kept in ``audio_levels.csv`` next to it, re-measured
only for new or changed rows); :class:`AudioScreen` holds the recipe's thresholds
(``min_duration``, ``min_rms_dbfs``) and what to do with a file below them
(``unusable_audio``: ``skip``, counted and logged at WARNING and listed in the fold's
``metrics.json``, or ``error``, which stops the run listing every such file).
"""

import csv
import logging
import math
import os
from dataclasses import dataclass

import numpy as np
from speechbrain.dataio.dataio import load_data_csv

from ser_lib.audio import AudioError, audio_info, check_audio_files, read_audio
from ser_lib.data.manifest import _atomic_write_text

logger = logging.getLogger(__name__)

LEVELS_FILE = "audio_levels.csv"
"""Name of the measurements file, written next to the measured manifest."""

POLICIES = ("skip", "error")
"""Values of ``unusable_audio``."""

_LEVELS_COLUMNS = ["ID", "wav", "duration", "rms_dbfs"]


@dataclass(frozen=True)
class AudioLevel:
    """Duration and level of one audio file.

    Attributes
    ----------
    duration : float
        Seconds.
    rms_dbfs : float
        RMS of the mono mix in dB relative to full scale (``-inf`` for all zeros).
    """

    duration: float
    rms_dbfs: float


def measure_audio(path):
    """Measures the duration and RMS level (dBFS) of an audio file.

    Example
    -------
    >>> import soundfile as sf
    >>> path = getfixture("tmp_path") / "half.wav"
    >>> sf.write(path, np.full(8000, 0.5), 16000, subtype="FLOAT")
    >>> level = measure_audio(path)
    >>> level.duration, round(level.rms_dbfs, 2)
    (0.5, -6.02)
    """
    rate = audio_info(path).sample_rate
    wav = read_audio(path, sample_rate=rate).double().numpy()  # no resampling
    rms = float(np.sqrt(np.mean(np.square(wav))))
    rms_dbfs = 20.0 * math.log10(rms) if rms > 0 else -math.inf
    return AudioLevel(duration=len(wav) / rate, rms_dbfs=rms_dbfs)


def levels_path(csv_file):
    """The measurements file of ``csv_file`` (``audio_levels.csv`` next to it)."""
    return os.path.join(os.path.dirname(os.path.abspath(csv_file)), LEVELS_FILE)


def _read_levels(path):
    """Reads a measurements file into {ID: (wav, AudioLevel)} ({} if absent)."""
    if not os.path.isfile(path):
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {
            row["ID"]: (
                row["wav"],
                AudioLevel(float(row["duration"]), float(row["rms_dbfs"])),
            )
            for row in csv.DictReader(f)
        }


def measure_manifest(csv_file, data_root=None):
    """Measures every wav of ``csv_file``; returns {ID: AudioLevel}.

    The measurements are kept in :func:`levels_path` (``ID,wav,duration,rms_dbfs``,
    the wav as written in the manifest): a re-run measures only the rows that are new
    or name another wav. Unusable files are all listed at once (see
    :func:`ser_lib.audio.check_audio_files`).

    Arguments
    ---------
    csv_file : str or os.PathLike
        SpeechBrain CSV with ``ID`` and ``wav`` columns.
    data_root : str or None
        Replaces ``$data_root`` in the wav paths.

    Example
    -------
    >>> import soundfile as sf
    >>> root = getfixture("tmp_path")
    >>> sf.write(root / "a.wav", np.zeros(800), 16000)
    >>> _ = (root / "all.csv").write_text("ID,wav\\na,$data_root/a.wav\\n")
    >>> measure_manifest(root / "all.csv", data_root=root)
    {'a': AudioLevel(duration=0.05, rms_dbfs=-inf)}
    >>> (root / "audio_levels.csv").read_text().splitlines()[1]
    'a,$data_root/a.wav,0.05,-inf'
    """
    replacements = {} if data_root is None else {"data_root": str(data_root)}
    with open(csv_file, newline="", encoding="utf-8") as f:
        raw = {row["ID"]: row["wav"] for row in csv.DictReader(f)}
    resolved = load_data_csv(csv_file, replacements=replacements)
    path = levels_path(csv_file)
    known = _read_levels(path)
    todo = [utt_id for utt_id, wav in raw.items() if known.get(utt_id, ("",))[0] != wav]
    if todo:
        check_audio_files([resolved[utt_id]["wav"] for utt_id in todo])
        logger.info("Measuring duration and level of %d audio files", len(todo))
    levels = {utt_id: known[utt_id][1] for utt_id in raw if utt_id not in set(todo)}
    for utt_id in todo:
        levels[utt_id] = measure_audio(resolved[utt_id]["wav"])
    lines = [",".join(_LEVELS_COLUMNS)]
    for utt_id in sorted(levels):
        level = levels[utt_id]
        lines.append(f"{utt_id},{raw[utt_id]},{level.duration!r},{level.rms_dbfs!r}")
    if todo or len(known) != len(levels):
        _atomic_write_text(path, "\n".join(lines) + "\n")
    return dict(sorted(levels.items()))


class AudioScreen:
    """The thresholds below which an audio file cannot carry emotion.

    Arguments
    ---------
    min_duration : float
        Shorter files are unusable, s.
    min_rms_dbfs : float
        Files whose RMS level is lower (all-zero files included) are silent, dBFS.
    policy : str
        ``skip`` (leave such files out, with a warning) or ``error`` (stop).

    Example
    -------
    >>> screen = AudioScreen(min_duration=0.08, min_rms_dbfs=-60, policy="skip")
    >>> screen.reason(AudioLevel(0.05, -20.0))
    'too short: 0.050 s, below min_duration 0.08 s'
    >>> screen.reason(AudioLevel(1.0, -math.inf))
    'silent: RMS -inf dBFS, below min_rms_dbfs -60 dBFS'
    >>> screen.reason(AudioLevel(1.0, -20.0)) is None
    True
    """

    def __init__(self, min_duration, min_rms_dbfs, policy):
        if policy not in POLICIES:
            raise ValueError(
                f"unusable_audio must be one of {POLICIES}, not {policy!r}"
            )
        self.min_duration = min_duration
        self.min_rms_dbfs = min_rms_dbfs
        self.policy = policy

    def reason(self, level):
        """Why a file with ``level`` is unusable, or None if it is usable."""
        if level.duration < self.min_duration:
            return (
                f"too short: {level.duration:.3f} s, below min_duration "
                f"{self.min_duration} s"
            )
        if level.rms_dbfs < self.min_rms_dbfs:
            return (
                f"silent: RMS {level.rms_dbfs:.1f} dBFS, below min_rms_dbfs "
                f"{self.min_rms_dbfs} dBFS"
            )
        return None

    def screen(self, levels, source, max_listed=20):
        """Applies the policy to {ID: AudioLevel}; returns {ID: reason} to skip.

        The message lists the first ``max_listed`` files (``metrics.json`` lists
        every skipped one).

        Raises
        ------
        AudioError
            With ``policy="error"``, listing every unusable file.
        """
        unusable = {
            utt_id: reason
            for utt_id, level in levels.items()
            if (reason := self.reason(level)) is not None
        }
        if not unusable:
            return {}
        lines = [f"{utt_id}: {why}" for utt_id, why in unusable.items()]
        more = len(lines) - max_listed
        listed = "\n  ".join(lines[:max_listed]) + (
            f"\n  ... and {more} more" if more > 0 else ""
        )
        summary = (
            f"{len(unusable)} of {len(levels)} utterances of {source} are too short "
            f"or silent to carry emotion:\n  {listed}"
        )
        if self.policy == "error":
            raise AudioError(
                summary + "\n(set unusable_audio: skip to leave them out, or lower "
                "min_duration / min_rms_dbfs)"
            )
        logger.warning(
            "%s\nThey are skipped in training and testing and listed in metrics.json "
            "(unusable_audio_skipped)",
            summary,
        )
        return unusable
