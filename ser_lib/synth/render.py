"""Rendering a planned utterance: eSpeak NG output to the corpus's 16-bit samples.

Band-limited resampling to the corpus rate, the planned leading and trailing silence,
and coloured background noise at the planned signal-to-noise ratio.

Authors
 * ser_lib contributors
"""

import math

import numpy as np


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


def render_utterance(utt, wav, source_rate, sample_rate, noise_exponent, speech_gain):
    """Resamples, pads, adds noise at the planned SNR; returns int16 samples.

    Arguments
    ---------
    utt : ser_lib.synth.plan.PlannedUtterance
        Gives the silences, the SNR and the noise seed.
    wav : numpy.ndarray
        eSpeak NG's float waveform at ``source_rate``.
    source_rate, sample_rate : int
        eSpeak NG's rate and the corpus rate (Hz).
    noise_exponent : float
        Noise colour (1/f**x power spectrum).
    speech_gain : float
        Gain of the speech (headroom for the noise).

    Returns
    -------
    numpy.ndarray
        int16 samples at ``sample_rate``.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> utt = SimpleNamespace(lead_s=0.1, trail_s=0.1, snr_db=20.0, noise_seed=0)
    >>> tone = np.sin(np.linspace(0, 200 * np.pi, 2205))
    >>> out = render_utterance(utt, tone, 22050, 16000, 1.0, 0.7)
    >>> out.dtype, out.size
    (dtype('int16'), 4800)
    """
    speech = _resample(wav, source_rate, sample_rate) * speech_gain
    lead = np.zeros(int(round(utt.lead_s * sample_rate)))
    trail = np.zeros(int(round(utt.trail_s * sample_rate)))
    signal = np.concatenate([lead, speech, trail])
    power = np.mean(speech**2) if speech.size else 0.0
    rng = np.random.default_rng(utt.noise_seed)
    noise = _colored_noise(rng, signal.size, noise_exponent)
    signal = signal + noise * np.sqrt(power / 10 ** (utt.snr_db / 10))
    return np.round(np.clip(signal, -1.0, 1.0) * 32767).astype(np.int16)
