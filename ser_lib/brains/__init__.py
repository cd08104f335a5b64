"""The Brains of the two stages (corpus-independent)."""

from ser_lib.brains.adapter import AdapterBrain
from ser_lib.brains.finetune import FinetuneBrain

__all__ = ["AdapterBrain", "FinetuneBrain"]
