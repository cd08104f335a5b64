"""Trainable Hugging Face speech encoders for recipes that fine-tune in the loop.

The frozen extractor (:class:`ser_lib.encoders.HFEncoder`) fills a feature cache once;
the classes here are ``torch.nn.Module`` s whose weights are trained by a Brain:

* :class:`TrainableHFEncoder`: HuBERT, wav2vec 2.0 and WavLM (``transformers``
  ``AutoModel``), waveform input, standardised over the valid samples only (as the
  frozen extractor does), explicit dropout / LayerDrop / SpecAugment settings, the
  convolutional feature encoder frozen by default, non-reentrant gradient
  checkpointing, and ``mask_time_indices`` (frames replaced by the model's learned mask
  embedding) for masked prediction.
* :class:`TrainableWhisperEncoder`: the encoder of a Whisper checkpoint (log-Mel
  input padded to 30 s, as Whisper was trained, or ``input_mode="native"``: the real
  length, as the frozen extractor's native mode). Whisper has no mask embedding: the
  stand-in is a learned log-Mel vector written into the input frames of every masked
  output frame (:attr:`TrainableWhisperEncoder.mask_embedding`).

Both export with ``save_pretrained`` (:meth:`export`), so a fine-tuned encoder can be
loaded again by these classes or by the frozen extractor.

Modules: :mod:`~ser_lib.inloop.encoder.hf`, :mod:`~ser_lib.inloop.encoder.whisper`
(one encoder each) and :mod:`~ser_lib.inloop.encoder.common` (what they share); both
classes are importable from ``ser_lib.inloop.encoder``.
"""

from ser_lib.inloop.encoder.hf import TrainableHFEncoder
from ser_lib.inloop.encoder.whisper import TrainableWhisperEncoder

__all__ = ["TrainableHFEncoder", "TrainableWhisperEncoder"]
