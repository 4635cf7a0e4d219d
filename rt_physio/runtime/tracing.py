"""Per-window latency tracing: engine-clock marks at each stage, reported in milliseconds.

Stages (all on the engine clock, :func:`rt_physio.clock.local_clock`):

``acquire``  newest raw sample's timestamp → its chunk obtained by the acquisition thread (transport + device
             buffering)
``dsp``      chunk obtained → filtered, resampled and written to the ring
``window``   ring written → window cut and handed to the executor (waiting for the slowest modality)
``queue``    handed to the executor → inference started
``infer``    model forward pass (and copy of the inputs to the device)
``publish``  inference done → message serialised for the publishers
``total``    newest raw sample's timestamp → message serialised

``batch_size`` (not a duration) is reported alongside: how many windows shared the forward pass.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["STAGES", "SampleLog", "Trace"]

STAGES = ("acquire", "dsp", "window", "queue", "infer", "publish")


@dataclass(slots=True)
class Trace:
    """Engine-clock marks of one window's path through the engine (seconds; NaN until reached)."""

    sample: float = float("nan")
    received: float = float("nan")
    dsp_done: float = float("nan")
    cut: float = float("nan")
    infer_start: float = float("nan")
    infer_end: float = float("nan")
    serialised: float = float("nan")
    batch_size: int = 1

    def to_ms(self) -> dict[str, float]:
        """Return the stage durations and the total in milliseconds (rounded to µs), and the batch size."""
        marks = (self.sample, self.received, self.dsp_done, self.cut, self.infer_start, self.infer_end,
                 self.serialised)
        out = {stage: round(1e3 * (b - a), 3) for stage, a, b in zip(STAGES, marks[:-1], marks[1:], strict=True)}
        out["total"] = round(1e3 * (self.serialised - self.sample), 3)
        out["batch_size"] = self.batch_size
        return out


class SampleLog:
    """The last ``capacity`` values of a per-window figure, in one preallocated float64 ring (no growth, ever).

    A deque of Python floats of the same length costs ~32 bytes per value and keeps growing for hours before its
    bound is reached; this costs 8 bytes per value from the start. An append costs ~0.28 us against a deque's
    ~0.08 us (an ``array.array``; a NumPy ring cost ~0.38 us), a few per cent of the publish step it follows.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"SampleLog capacity must be at least 1, got {capacity}")
        self._values = array("d", bytes(8 * capacity))
        self._capacity = capacity
        self._count = 0  # values ever appended

    def append(self, value: float) -> None:
        """Keep ``value`` (the oldest goes once the log is full)."""
        self._values[self._count % self._capacity] = value
        self._count += 1

    def __len__(self) -> int:
        return min(self._count, self._capacity)

    def values(self) -> NDArray[np.float64]:
        """Return a copy of the kept values, oldest first."""
        ring = np.frombuffer(self._values, dtype=np.float64)
        if self._count <= self._capacity:
            return ring[:self._count].copy()
        start = self._count % self._capacity
        return np.concatenate([ring[start:], ring[:start]])
