"""Reading audio files as mono waveforms at a fixed sample rate.

Feature extraction and inference both read audio through :func:`read_audio`, so a
file gives the same waveform wherever it is used. :func:`audio_info` checks a file
from its header alone (cheap), so that data preparation and feature extraction can
list every unusable file before any work starts.
"""

import os
import re
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torchaudio

__all__ = [
    "AudioError",
    "AudioInfo",
    "EmptyAudioError",
    "audio_info",
    "bad_wavs_error",
    "check_audio_files",
    "read_audio",
]

# libsndfile's header log reports a WAV whose data chunk is cut short as
# "data : <declared bytes> (should be <bytes present>)".
_SHORT_DATA_RE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be\s*(\d+)\)", re.MULTILINE)


class AudioError(ValueError):
    """An audio file that cannot be used: unreadable, empty, truncated or malformed.

    The message always names the file.
    """


class EmptyAudioError(AudioError):
    """An audio file that holds no samples (some preparations drop these)."""


@dataclass
class AudioInfo:
    """What the header of an audio file says.

    Attributes
    ----------
    frames : int
        Samples per channel that the file holds.
    sample_rate : int
        Sample rate, Hz.
    channels : int
        Number of channels.
    subtype : str
        Sample format (``PCM_16``, ``PCM_24``, ``FLOAT``...).
    """

    frames: int
    sample_rate: int
    channels: int
    subtype: str

    @property
    def duration(self):
        """Duration in seconds (float)."""
        return self.frames / self.sample_rate


def audio_info(path):
    """Reads the header of an audio file and checks that the file is usable.

    Arguments
    ---------
    path : str or os.PathLike
        The audio file.

    Returns
    -------
    AudioInfo
        Frames, sample rate, channels and sample format.

    Raises
    ------
    AudioError
        If the file is missing (or a broken symbolic link) or unreadable, holds no
        samples, or is a WAV whose data chunk is shorter than its header declares
        (a truncated copy).

    Example
    -------
    >>> path = getfixture("tmp_path") / "a.wav"
    >>> sf.write(path, np.zeros((8000, 2)), 8000, subtype="PCM_24")
    >>> info = audio_info(path)
    >>> info.frames, info.sample_rate, info.channels, info.subtype, info.duration
    (8000, 8000, 2, 'PCM_24', 1.0)
    >>> _ = path.write_bytes(path.read_bytes()[:-3000])  # cut the file short
    >>> audio_info(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser_lib.audio.AudioError: Audio file .../a.wav is truncated: ...
    """
    if os.path.islink(path) and not os.path.exists(path):
        raise AudioError(
            f"Audio file {path} is a broken symbolic link: it points to "
            f"{os.readlink(path)}, which does not exist"
        )
    if not os.path.isfile(path):
        raise AudioError(f"Audio file {path} does not exist")
    try:
        info = sf.info(path)
    except (RuntimeError, OSError) as err:
        raise AudioError(f"Cannot read audio file {path}: {err}") from err
    short = _SHORT_DATA_RE.search(info.extra_info or "")
    if short is not None and int(short.group(1)) > int(short.group(2)):
        raise AudioError(
            f"Audio file {path} is truncated: its header declares "
            f"{short.group(1)} bytes of samples but the file holds "
            f"{short.group(2)} (copy it again, or re-encode it)"
        )
    if info.frames <= 0:
        raise EmptyAudioError(f"Audio file {path} holds no samples")
    return AudioInfo(
        frames=int(info.frames),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        subtype=str(info.subtype),
    )


def bad_wavs_error(missing, problems, total, corpus, data_folder, max_listed=5):
    """One error listing every bad wav of a preparation, missing and unusable alike.

    Arguments
    ---------
    missing : list of str
        Expected wavs that do not exist (broken links are ``problems``).
    problems : list of str
        One message per unusable wav (unreadable, truncated, broken link...).
    total : int
        How many wavs were checked.
    corpus : str
        Corpus name for the message (empty: none).
    data_folder : str
        The corpus folder.
    max_listed : int
        How many of each kind the message lists.

    Returns
    -------
    FileNotFoundError or AudioError
        ``FileNotFoundError`` when wavs are missing (the unusable ones listed after
        them), otherwise ``AudioError``.

    Example
    -------
    >>> print(bad_wavs_error(["/c/a.wav"], ["Cannot read audio file /c/b.wav: ..."],
    ...                      3, "demo", "/c"))
    demo: 1 labelled utterance(s) have no wav under /c; first expected paths:
      /c/a.wav
    and 1 other wav(s) cannot be used:
      Cannot read audio file /c/b.wav: ...
    """
    prefix = f"{corpus}: " if corpus else ""

    def listing(items):
        more = len(items) - max_listed
        return "\n  ".join(items[:max_listed]) + (
            f"\n  ... and {more} more" if more > 0 else ""
        )

    if not missing:
        return AudioError(
            f"{prefix}{len(problems)} of {total} audio files cannot be used:\n  "
            f"{listing(problems)}"
        )
    message = (
        f"{prefix}{len(missing)} labelled utterance(s) have no wav under "
        f"{data_folder}; first expected paths:\n  {listing(missing)}"
    )
    if problems:
        message += (
            f"\nand {len(problems)} other wav(s) cannot be used:\n  {listing(problems)}"
        )
    return FileNotFoundError(message)


def check_audio_files(paths, max_listed=10):
    """Checks many audio files with :func:`audio_info`, reporting every bad one at once.

    Arguments
    ---------
    paths : sequence of str or os.PathLike
        The audio files.
    max_listed : int
        How many unusable files the error message lists.

    Returns
    -------
    list of AudioInfo
        One per path, in order.

    Raises
    ------
    AudioError
        If any file is missing, unreadable, empty or truncated; the message gives
        their number and lists the first ``max_listed`` with the reason.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> sf.write(folder / "ok.wav", np.zeros(1600), 16000)
    >>> [info.frames for info in check_audio_files([folder / "ok.wav"])]
    [1600]
    >>> _ = (folder / "bad.wav").write_bytes(b"not audio")
    >>> paths = [folder / "ok.wav", folder / "bad.wav", folder / "gone.wav"]
    >>> check_audio_files(paths)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser_lib.audio.AudioError: 2 of 3 audio files cannot be used:
      Cannot read audio file .../bad.wav: ...
      Audio file .../gone.wav does not exist
    """
    infos, problems = [], []
    for path in paths:
        try:
            infos.append(audio_info(path))
        except AudioError as err:
            problems.append(str(err))
    if problems:
        listed = "\n  ".join(problems[:max_listed])
        more = len(problems) - max_listed
        raise AudioError(
            f"{len(problems)} of {len(infos) + len(problems)} audio files cannot "
            f"be used:\n  {listed}" + (f"\n  ... and {more} more" if more > 0 else "")
        )
    return infos


def read_audio(path, sample_rate=16000):
    """Reads an audio file as a mono float32 waveform at ``sample_rate``.

    Any format that ``soundfile`` reads is accepted (8/16/24/32-bit PCM and float
    WAV, FLAC, ...). Several channels are mixed to mono by averaging them; a file at
    another rate is resampled with ``torchaudio.functional.resample``. The file is
    first checked with :func:`audio_info`.

    Arguments
    ---------
    path : str or os.PathLike
        The audio file.
    sample_rate : int
        The sample rate of the returned waveform, in Hz.

    Returns
    -------
    torch.Tensor
        The waveform, shape [samples], dtype float32, values in [-1, 1] for PCM.

    Raises
    ------
    AudioError
        If the file cannot be read, holds no samples, is truncated, or holds NaN
        or infinite samples (float formats).

    Example
    -------
    >>> import soundfile as sf
    >>> stereo = np.stack([np.full(8000, 0.5), np.zeros(8000)], axis=1)  # 1 s at 8 kHz
    >>> path = getfixture("tmp_path") / "stereo.wav"
    >>> sf.write(path, stereo, 8000, subtype="PCM_16")
    >>> wav = read_audio(path, sample_rate=16000)
    >>> wav.shape, wav.dtype
    (torch.Size([16000]), torch.float32)
    >>> round(float(wav[4000:12000].mean()), 3)  # mean of the two channels
    0.25
    """
    audio_info(path)
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:
        raise AudioError(f"Cannot read audio file {path}: {err}") from err
    if data.shape[0] == 0:
        raise AudioError(f"Audio file {path} holds no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"Audio file {path} holds NaN or infinite samples")
    # data: [samples, channels] -> mono [samples]
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if file_rate != sample_rate:
        wav = torchaudio.functional.resample(
            wav, orig_freq=file_rate, new_freq=sample_rate
        )
    return wav
