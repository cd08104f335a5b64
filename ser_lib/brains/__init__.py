"""The Brains of the two stages and of the frozen-encoder baseline (corpus-independent)."""

from ser_lib.brains.adapter import AdapterBrain
from ser_lib.brains.baseline import BaselineBrain
from ser_lib.brains.classifier import UtteranceClassifierBrain
from ser_lib.brains.finetune import FinetuneBrain

__all__ = ["AdapterBrain", "BaselineBrain", "FinetuneBrain", "UtteranceClassifierBrain"]
