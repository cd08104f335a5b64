"""A small ctypes driver of the eSpeak NG library bundled in the ``espeakng-loader`` wheel.

Only the shared library and voice data shipped inside the wheel are used (their paths come
from ``espeakng_loader.get_library_path()`` and ``espeakng_loader.get_data_path()``); a
system ``espeak``/``espeak-ng`` installation is never looked up.

Process model
-------------
eSpeak NG is a C library with process-global state. It is initialised **once per process**
(lazily, by the first :class:`EspeakSynthesizer`), and every synthesis call runs under a
module-level lock, so concurrent threads are serialised. Several synthesizer objects share
that single engine; voice and prosody are set on each call.

The library keeps some internal state between calls (glottal phase, flutter index, echo
buffer), so the waveform of an utterance depends on what the same process synthesized
before it. Its noise generator is re-seeded on every call (``rand_seed``), so a fixed
*sequence* of requests in a *fresh* process gives byte-identical audio:
:func:`synthesize_in_fresh_process` runs :func:`synthesize_requests` in a new Python
interpreter (``python -c``, so no ``__main__`` module is re-imported as with
``multiprocessing``). This module imports only the standard library and numpy so that such
processes start fast.

Authors
 * ser_lib contributors
"""

import ctypes
import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from xml.sax.saxutils import escape

import numpy as np

# eSpeak NG constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SSML = 0x10
_EE_OK = 0
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_INT16_SCALE = 32768.0

# Valid parameter ranges documented in speak_lib.h (inclusive).
RATE_RANGE = (80, 450)  # words per minute
VOLUME_RANGE = (0, 200)  # percent, 100 = default
PITCH_RANGE = (0, 100)  # base pitch, 50 = voice default
PITCH_RANGE_RANGE = (0, 100)  # pitch variation, 50 = voice default

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_LOCK = threading.Lock()
_ENGINE = None


class _Engine:
    """The process-wide eSpeak NG handle (created once, under ``_LOCK``)."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as err:
            raise RuntimeError(
                "The 'espeakng-loader' wheel is required to synthesize speech "
                "(pip install espeakng-loader==0.2.4); it bundles libespeak-ng and its data."
            ) from err
        lib_path = espeakng_loader.get_library_path()
        try:
            data_path = espeakng_loader.get_data_path()
        except RuntimeError as err:
            raise RuntimeError(
                f"The espeak-ng data folder of the espeakng-loader wheel is missing: {err}"
            ) from err
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as err:
            raise RuntimeError(
                f"Cannot load libespeak-ng from the espeakng-loader wheel at '{lib_path}': {err}"
            ) from err
        try:
            lib.espeak_Initialize.argtypes = [
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
            ]
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
            lib.espeak_SetSynthCallback.restype = None
            lib.espeak_SetParameter.argtypes = [
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_int,
            ]
            lib.espeak_SetParameter.restype = ctypes.c_int
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetVoiceByName.restype = ctypes.c_int
            lib.espeak_Synth.argtypes = [
                ctypes.c_char_p,
                ctypes.c_size_t,
                ctypes.c_uint,
                ctypes.c_int,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_void_p,
                ctypes.c_void_p,
            ]
            lib.espeak_Synth.restype = ctypes.c_int
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            lib.espeak_ng_SetRandSeed.restype = None
        except AttributeError as err:
            raise RuntimeError(
                f"libespeak-ng at '{lib_path}' lacks a required symbol ({err}); "
                "install espeakng-loader==0.2.4."
            ) from err
        sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT
        )
        if sample_rate <= 0:
            raise RuntimeError(
                f"espeak_Initialize failed (returned {sample_rate}) with data path '{data_path}'."
            )
        self.lib = lib
        self.sample_rate = sample_rate
        self._chunks = []
        # Keep a reference: ctypes callbacks must outlive their registration.
        self._callback = _SYNTH_CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples, events):
        """Synth callback: copy the int16 block (NULL or empty at the end)."""
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0 = continue synthesis

    def _check(self, code, what):
        if code != _EE_OK:
            raise RuntimeError(f"eSpeak NG {what} failed with error code {code}.")

    def synthesize(
        self, text, voice, rate, pitch, pitch_range, volume, ssml, rand_seed
    ):
        """Synthesizes one utterance; the caller holds ``_LOCK``."""
        code = self.lib.espeak_SetVoiceByName(voice.encode())
        if code != _EE_OK:
            raise ValueError(
                f"Unknown eSpeak NG voice '{voice}' (error code {code}); "
                "use e.g. 'en-us', 'en-us+f3' or 'en+m2'."
            )
        for param, value in (
            (_PARAM_RATE, rate),
            (_PARAM_VOLUME, volume),
            (_PARAM_PITCH, pitch),
            (_PARAM_RANGE, pitch_range),
        ):
            self._check(
                self.lib.espeak_SetParameter(param, int(value), 0), "SetParameter"
            )
        self.lib.espeak_ng_SetRandSeed(int(rand_seed))
        data = text.encode("utf-8") + b"\0"
        flags = _CHARS_UTF8 | (_SSML if ssml else 0)
        self._chunks = []
        self._check(
            self.lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, flags, None, None
            ),
            "Synth",
        )
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(chunks).astype(np.float32) / _INT16_SCALE).astype(
            np.float32
        )


def _get_engine():
    """Returns the process-wide engine, initialising eSpeak NG on first use."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        return _ENGINE


def _check_range(name, value, bounds):
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name}={value} is outside eSpeak NG's range {bounds}.")


def emphasize_word(text, word_index):
    """Returns an SSML document of ``text`` with one word wrapped in ``<emphasis>``.

    Arguments
    ---------
    text : str
        Plain text; it is XML-escaped.
    word_index : int
        Index of the whitespace-separated word to emphasise (taken modulo the number of words).

    Returns
    -------
    str
        ``<speak>...</speak>`` SSML, to synthesize with ``ssml=True``.

    Example
    -------
    >>> emphasize_word("Tom & I agree", 2)
    '<speak>Tom &amp; <emphasis>I</emphasis> agree</speak>'
    """
    words = text.split()
    if not words:
        raise ValueError("Cannot emphasise a word of an empty text.")
    index = word_index % len(words)
    words = [escape(w) for w in words]
    words[index] = f"<emphasis>{words[index]}</emphasis>"
    return "<speak>" + " ".join(words) + "</speak>"


class EspeakSynthesizer:
    """Text-to-speech with eSpeak NG voices and explicit prosody controls.

    All instances in a process share one eSpeak NG engine (initialised on first
    construction, see the module docstring); calls are serialised by a lock.

    Arguments
    ---------
    default_voice : str
        Voice used when :meth:`synthesize` gets none: a language with an optional
        variant, e.g. ``"en-us"``, ``"en-us+f3"`` (female 3), ``"en+m2"`` (male 2).

    Example
    -------
    >>> tts = EspeakSynthesizer()
    >>> tts.sample_rate
    22050
    >>> wav = tts.synthesize("Hello there.", voice="en-us+f3", rate=175)
    >>> wav.dtype, wav.ndim, 0.3 < len(wav) / tts.sample_rate < 3.0
    (dtype('float32'), 1, True)
    >>> slow = tts.synthesize("Hello there.", voice="en-us+f3", rate=100)
    >>> len(slow) > len(wav)
    True
    """

    def __init__(self, default_voice="en-us"):
        self._engine = _get_engine()
        self.default_voice = default_voice
        self.sample_rate = self._engine.sample_rate

    def synthesize(
        self,
        text,
        voice=None,
        rate=175,
        pitch=50,
        pitch_range=50,
        volume=100,
        ssml=False,
        rand_seed=0,
    ):
        """Synthesizes ``text`` and returns the waveform.

        Arguments
        ---------
        text : str
            Text to speak (an SSML document when ``ssml`` is True, see
            :func:`emphasize_word`).
        voice : str, optional
            eSpeak NG voice name with optional ``+variant``; default ``default_voice``.
        rate : int
            Speaking rate in words per minute (80-450).
        pitch : int
            Base pitch, 0-100 (50 = the voice's normal pitch).
        pitch_range : int
            Pitch variation (intonation range), 0-100 (0 = monotone, 50 = normal).
        volume : int
            Amplitude in percent, 0-200 (100 = normal; above 100 may compress/clip).
        ssml : bool
            Interpret ``text`` as SSML (enables ``<emphasis>`` and friends).
        rand_seed : int
            Seed of eSpeak NG's noise generator (breathiness), set before synthesis.

        Returns
        -------
        numpy.ndarray
            float32 waveform in [-1, 1] of shape [time], at ``self.sample_rate``.

        Example
        -------
        >>> tts = EspeakSynthesizer()
        >>> text = emphasize_word("I said no.", 1)
        >>> loud = tts.synthesize(text, "en+m2", volume=180, ssml=True)
        >>> soft = tts.synthesize(text, "en+m2", volume=40, ssml=True)
        >>> float(np.sqrt((loud**2).mean())) > 2 * float(np.sqrt((soft**2).mean()))
        True
        """
        voice = self.default_voice if voice is None else voice
        _check_range("rate", rate, RATE_RANGE)
        _check_range("pitch", pitch, PITCH_RANGE)
        _check_range("pitch_range", pitch_range, PITCH_RANGE_RANGE)
        _check_range("volume", volume, VOLUME_RANGE)
        with _LOCK:
            return self._engine.synthesize(
                text, voice, rate, pitch, pitch_range, volume, ssml, rand_seed
            )


@dataclass(frozen=True)
class SynthesisRequest:
    """One call of :meth:`EspeakSynthesizer.synthesize` (picklable, for worker processes).

    Example
    -------
    >>> SynthesisRequest("Hi.", "en+m2", 175, 50, 50, 100).ssml
    False
    """

    text: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    volume: int
    ssml: bool = False
    rand_seed: int = 0


def synthesize_requests(requests):
    """Synthesizes a sequence of requests in order in this process.

    Run it in a freshly started process (see the module docstring) to get
    byte-identical audio for the same sequence of requests.

    Arguments
    ---------
    requests : Sequence[SynthesisRequest]
        The utterances, synthesized in order.

    Returns
    -------
    waveforms : list of numpy.ndarray
        One float32 [time] waveform per request.
    sample_rate : int
        Their sample rate (Hz).

    Example
    -------
    >>> reqs = [SynthesisRequest("Yes.", "en-us+f3", 175, 50, 50, 100)] * 2
    >>> wavs, sr = synthesize_requests(reqs)
    >>> len(wavs), sr, wavs[0].shape == wavs[1].shape
    (2, 22050, True)
    """
    tts = EspeakSynthesizer()
    waveforms = [
        tts.synthesize(
            r.text,
            r.voice,
            r.rate,
            r.pitch,
            r.pitch_range,
            r.volume,
            r.ssml,
            r.rand_seed,
        )
        for r in requests
    ]
    return waveforms, tts.sample_rate


def serve_requests(stdin=None, stdout=None):
    """Worker entry point: unpickles requests from ``stdin``, pickles the result to ``stdout``.

    Reads a list of :class:`SynthesisRequest` and writes ``(waveforms, sample_rate)`` as
    returned by :func:`synthesize_requests`. Only meant for the trusted pipe opened by
    :func:`synthesize_in_fresh_process`.

    Arguments
    ---------
    stdin : binary file, optional
        Where to read the pickled requests (default ``sys.stdin.buffer``).
    stdout : binary file, optional
        Where to write the pickled result (default ``sys.stdout.buffer``).

    Example
    -------
    >>> import io
    >>> reqs = [SynthesisRequest("Yes.", "en-us+f3", 175, 50, 50, 100)]
    >>> out = io.BytesIO()
    >>> serve_requests(io.BytesIO(pickle.dumps(reqs)), out)
    >>> wavs, sr = pickle.loads(out.getvalue())
    >>> len(wavs), sr
    (1, 22050)
    """
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout.buffer if stdout is None else stdout
    requests = pickle.load(stdin)
    pickle.dump(synthesize_requests(requests), stdout, protocol=pickle.HIGHEST_PROTOCOL)
    stdout.flush()


def synthesize_in_fresh_process(requests, python=sys.executable):
    """Synthesizes requests in order in a new Python process (byte-reproducible).

    Arguments
    ---------
    requests : Sequence[SynthesisRequest]
        The utterances, synthesized in order.
    python : str
        The Python interpreter to start (default: the current one).

    Returns
    -------
    waveforms : list of numpy.ndarray
        One float32 [time] waveform per request.
    sample_rate : int
        Their sample rate (Hz).

    Example
    -------
    >>> reqs = [SynthesisRequest("Well, maybe.", "en+m2", 175, 50, 50, 100)] * 2
    >>> (a, b), sr = synthesize_in_fresh_process(reqs)
    >>> (c, d), _ = synthesize_in_fresh_process(reqs)
    >>> bool(np.array_equal(a, c) and np.array_equal(b, d)), sr
    (True, 22050)
    """
    package_root = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [
            python,
            "-c",
            "from ser_lib.synth.espeak import serve_requests; serve_requests()",
        ],
        input=pickle.dumps(list(requests), protocol=pickle.HIGHEST_PROTOCOL),
        capture_output=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"eSpeak NG worker process ({python}) failed with exit code {proc.returncode}:\n"
            + proc.stderr.decode(errors="replace")[-2000:]
        )
    return pickle.loads(proc.stdout)
