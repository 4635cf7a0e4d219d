"""The engine clock and mapping of other clocks onto it.

The engine clock is ``pylsl.local_clock()``: seconds on a monotonic clock shared by every LSL application on
this machine, so timestamps from LSL streams (after ``time_correction``) are directly comparable with it.
"""

from __future__ import annotations

import time

import numpy as np
import pylsl
from numpy.typing import NDArray

from rt_physio import _dejitter_kernel as _kernel

__all__ = ["Dejitter", "WallClockMap", "local_clock"]


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


class Dejitter:
    """Online least-squares fit of sample timestamps against sample index, over a sliding horizon.

    Device timestamps carry transport jitter (a Bluetooth bridge stamping chunks when they arrive, a USB poll
    period); the samples themselves were taken on a regular clock. The fit ``t ≈ a + b·k`` over the recent
    samples recovers that clock, and the fitted times replace the stamps. Each sample's weight decays with
    ``0.5 ** (age / halflife)`` (an exponentially sliding horizon: old clock offsets are forgotten), and the
    slope is anchored to the nominal period by a prior worth about one second of data, so the fit is usable
    from the first chunk and settles within a few seconds (LSL's own dejitter uses a 90 s half-life and no
    prior). The sums are kept centred on the newest sample, so the arithmetic stays exact for days.

    A timestamp that is off the fitted line by more than ``reset_after`` seconds (the stream stopped and came
    back, or a clock jumped) restarts the fit from that sample; :attr:`resets` counts those restarts.

    Parameters
    ----------
    sfreq : float
        Nominal sampling rate, Hz.
    halflife : float
        Half-life of a sample's weight, seconds of data.
    reset_after : float
        Largest distance from the fitted line still treated as jitter, seconds.
    """

    def __init__(self, sfreq: float, *, halflife: float = 10.0, reset_after: float = 0.5) -> None:
        for name, value in (("sfreq", sfreq), ("halflife", halflife), ("reset_after", reset_after)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"The {name!r} parameter must be a positive number, got {value!r}.")
        self.sfreq = float(sfreq)
        self.halflife = float(halflife)
        self.reset_after = float(reset_after)
        self._period = 1.0 / self.sfreq
        self._decay = 0.5 ** (1.0 / (self.halflife * self.sfreq))  # per sample
        n_prior = self.sfreq  # one second's worth of samples spread over one second
        self._prior = n_prior * n_prior * n_prior / 12.0  # their Σ(k - mean)², the prior's weight on the slope
        self._block = max(1, round(0.05 * self.sfreq))  # samples fitted together (see process)
        self._state = np.zeros(_kernel.STATE_SIZE, dtype=np.float64)

    @property
    def resets(self) -> int:
        """How many times the fit restarted (a stamp off the line by more than ``reset_after``)."""
        return int(self._state[_kernel.RESETS])

    def reset(self) -> None:
        """Forget the fit (the next sample starts a new one)."""
        self._state[_kernel.STARTED] = 0.0

    @property
    def period(self) -> float:
        """The fitted sampling period, seconds (the nominal one before the first sample)."""
        if not self._state[_kernel.STARTED]:
            return self._period
        return float(_kernel.line(self._state, self._prior, self._period)[1])

    def process(self, timestamps: NDArray[np.float64]) -> NDArray[np.float64]:
        """Return the dejittered timestamps of the next samples (one per element of ``timestamps``).

        Parameters
        ----------
        timestamps : ndarray of float64, shape (n,)
            Stamps of consecutive samples, in order (no sample missing in between).

        Returns
        -------
        ndarray of float64, shape (n,)
            The fitted line evaluated at each sample's index, using every sample up to and including it (fitted
            in blocks of 50 ms of samples, so a sample's fitted time uses at most that much later data).
        """
        ts = np.ascontiguousarray(timestamps, dtype=np.float64)
        out = np.empty(ts.shape[0], dtype=np.float64)
        if ts.shape[0]:
            _kernel.dejitter(ts, out, self._state, self._decay, self._prior, self._period, self.reset_after,
                             self._block)
        return out
