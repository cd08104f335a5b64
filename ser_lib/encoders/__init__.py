"""Frozen speech encoders that turn waveforms into frame-level features.

Both encoders share one interface (:class:`FrozenEncoder`): ``forward(wavs, wav_lens)``
maps a padded batch of waveforms ``[batch, samples]`` with SpeechBrain relative
lengths to padded features ``[batch, frames, output_dim]`` with relative lengths, and
``num_frames(num_samples)`` gives the exact frame count of an unpadded input, which the
feature cache uses to trim each utterance. The encoders never train: their parameters
do not require gradients and ``train()`` keeps them in eval mode.

* :class:`HFEncoder` wraps a Hugging Face speech SSL model (HuBERT, wav2vec 2.0,
  WavLM) and returns one hidden layer, the average of several, or all of them.
* :class:`WhisperEncoder` wraps the encoder of a Hugging Face ``WhisperModel``
  (log-Mel input, 30-s windows; ``pad30`` or ``native`` input mode), with the same
  layer choice.
* :class:`FbankEncoder` computes SpeechBrain log-Mel filterbanks and stacks
  consecutive frames to the 50 Hz rate of the SSL models; it needs no weights.

Layer choice (``layers`` of :class:`HFEncoder` and :class:`WhisperEncoder`): an int
index into the model's hidden states (``num_states = num_layers + 1`` entries: entry 0
is the input of the first transformer layer, entry ``-1`` the model's final output
``last_hidden_state``), a list of indices whose states are averaged, or the string
``"all"`` (:data:`ALL_LAYERS`).

**"All layers" feature layout.** With ``layers="all"`` every hidden state is kept for
a later learnable weighted sum: output frame ``t`` is the concatenation
``[h_0(t), h_1(t), ..., h_{S-1}(t)]`` of the ``S = num_states`` states, so
``output_dim = S * D`` (``D`` = the model's hidden size) and state ``s`` occupies
columns ``s * D`` to ``(s + 1) * D - 1``, in state order (0 = input of the first
layer, ``S - 1`` = ``last_hidden_state``). A feature cache built this way stores
``[frames, S * D]`` float16 arrays like any other and its ``fingerprint.json`` says
``"layers": "all"``, ``"num_states": S`` and ``"state_dim": D``;
:func:`split_hidden_states` turns ``[..., S * D]`` back into ``[..., S, D]`` (a view).

Modules: :mod:`~ser_lib.encoders.base` (the :class:`FrozenEncoder` interface and
:func:`load_encoder`), :mod:`~ser_lib.encoders.layers` (layer choice and length
helpers), :mod:`~ser_lib.encoders.hf`, :mod:`~ser_lib.encoders.whisper` and
:mod:`~ser_lib.encoders.fbank` (one encoder each). Every public name is importable
from ``ser_lib.encoders``.
"""

from ser_lib.encoders.base import FrozenEncoder, load_encoder
from ser_lib.encoders.fbank import FbankEncoder
from ser_lib.encoders.hf import HFEncoder
from ser_lib.encoders.layers import (
    ALL_LAYERS,
    absolute_lengths,
    resolve_layers,
    select_hidden_states,
    split_hidden_states,
)
from ser_lib.encoders.whisper import WHISPER_INPUT_MODES, WhisperEncoder

__all__ = [
    "ALL_LAYERS",
    "WHISPER_INPUT_MODES",
    "FbankEncoder",
    "FrozenEncoder",
    "HFEncoder",
    "WhisperEncoder",
    "absolute_lengths",
    "load_encoder",
    "resolve_layers",
    "select_hidden_states",
    "split_hidden_states",
]
