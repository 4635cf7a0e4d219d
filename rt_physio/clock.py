"""The engine clock and mapping of other clocks onto it.

The engine clock is ``pylsl.local_clock()``: seconds on a monotonic clock shared by every LSL application on
this machine, so timestamps from LSL streams (after ``time_correction``) are directly comparable with it.
"""

from __future__ import annotations

import time

import pylsl

__all__ = ["WallClockMap", "local_clock"]


def local_clock() -> float:
    """Return the engine clock in seconds (``pylsl.local_clock``)."""
    return float(pylsl.local_clock())


class WallClockMap:
    """Map wall-clock (Unix) timestamps onto the engine clock.

    The offset ``wall - local`` is measured as the midpoint of a tight bracket of engine-clock reads around a
    wall-clock read, keeping the narrowest of a few tries. :meth:`refresh` re-measures it so slow drift between
    the two clocks (NTP slewing) is tracked.
    """

    def __init__(self) -> None:
        self.offset = self._measure()

    @staticmethod
    def _measure(tries: int = 5) -> float:
        best_width = float("inf")
        best_offset = 0.0
        for _ in range(tries):
            before = local_clock()
            wall = time.time()
            after = local_clock()
            if after - before < best_width:
                best_width = after - before
                best_offset = wall - 0.5 * (before + after)
        return best_offset

    def refresh(self) -> float:
        """Re-measure the offset and return the change in seconds."""
        new = self._measure()
        change = new - self.offset
        self.offset = new
        return change

    def to_local(self, wall: float) -> float:
        """Convert one wall-clock timestamp to the engine clock."""
        return wall - self.offset
