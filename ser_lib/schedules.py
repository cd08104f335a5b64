"""Schedules that follow training progress (a fraction of training in [0, 1]).

Progress is derived from the epoch counter and the in-epoch step, both of which the
checkpointer restores, so a schedule holds no state of its own and a resumed run picks
up exactly where it stopped.
"""

import math


class CosineSchedule:
    """Half-cosine from ``start`` at progress 0 to ``end`` at progress 1.

    Used for the learning rate (paper: cosine schedule) and for the loss weight λ of
    eqn 6, which ramps down from 1.0 to 0.5 over training.

    Arguments
    ---------
    start : float
        Value at the start of training.
    end : float
        Value at the end of training.

    Example
    -------
    >>> ramp = CosineSchedule(start=1.0, end=0.5)
    >>> ramp(0.0), ramp(0.5), ramp(1.0)
    (1.0, 0.75, 0.5)
    >>> ramp(2.0)  # clamped outside [0, 1]
    0.5
    """

    def __init__(self, start, end):
        self.start = float(start)
        self.end = float(end)

    def __call__(self, progress):
        """Returns the value at ``progress`` (clamped to [0, 1])."""
        progress = min(max(float(progress), 0.0), 1.0)
        weight = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.end + (self.start - self.end) * weight

    def __repr__(self):
        return f"{type(self).__name__}(start={self.start}, end={self.end})"


class WarmupLinearSchedule:
    """Linear warm-up from 0 to ``peak``, then linear decay to ``end``.

    Arguments
    ---------
    peak : float
        Value at the end of the warm-up.
    warmup : float
        Fraction of training spent warming up, in [0, 1).
    end : float
        Value at the end of training.

    Example
    -------
    >>> schedule = WarmupLinearSchedule(peak=1.0, warmup=0.1, end=0.0)
    >>> schedule(0.0), schedule(0.05), schedule(0.1), round(schedule(0.55), 6), schedule(1.0)
    (0.0, 0.5, 1.0, 0.5, 0.0)
    """

    def __init__(self, peak, warmup=0.05, end=0.0):
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup must be in [0, 1), not {warmup}")
        self.peak = float(peak)
        self.warmup = float(warmup)
        self.end = float(end)

    def __call__(self, progress):
        """Returns the value at ``progress`` (clamped to [0, 1])."""
        progress = min(max(float(progress), 0.0), 1.0)
        if progress < self.warmup:
            return self.peak * progress / self.warmup
        decay = (progress - self.warmup) / (1.0 - self.warmup)
        return self.peak + (self.end - self.peak) * decay

    def __repr__(self):
        return (
            f"{type(self).__name__}(peak={self.peak}, warmup={self.warmup}, "
            f"end={self.end})"
        )
