"""Reading audio files as mono waveforms at a fixed sample rate.

Feature extraction and inference both read audio through :func:`read_audio`, so a
file gives the same waveform wherever it is used.
"""

import numpy as np
import soundfile as sf
import torch
import torchaudio

__all__ = ["AudioError", "read_audio"]


class AudioError(ValueError):
    """An audio file that cannot be used: unreadable, empty or malformed.

    The message always names the file.
    """


def read_audio(path, sample_rate=16000):
    """Reads an audio file as a mono float32 waveform at ``sample_rate``.

    Any format that ``soundfile`` reads is accepted (8/16/24/32-bit PCM and float
    WAV, FLAC, ...). Several channels are mixed to mono by averaging them; a file at
    another rate is resampled with ``torchaudio.functional.resample``.

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
        If the file cannot be read or holds no samples.

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
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:
        raise AudioError(f"Cannot read audio file {path}: {err}") from err
    if data.shape[0] == 0:
        raise AudioError(f"Audio file {path} holds no samples")
    # data: [samples, channels] -> mono [samples]
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if file_rate != sample_rate:
        wav = torchaudio.functional.resample(
            wav, orig_freq=file_rate, new_freq=sample_rate
        )
    return wav
