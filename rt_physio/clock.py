"""The engine clock and mapping of other clocks onto it.

The engine clock is ``pylsl.local_clock()``: seconds on a monotonic clock shared by every LSL application on
this machine, so timestamps from LSL streams (after ``time_correction``) are directly comparable with it.
"""

from __future__ import annotations

import time

import numpy as np
import pylsl
from numpy.typing import NDArray

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
        self.resets = 0
        self._started = False
        self._reset_sums()

    def _reset_sums(self) -> None:
        # Sums over the weighted samples of x = index − index of the newest sample and y = stamp − _t_ref.
        self._s0 = self._sx = self._sxx = self._sy = self._sxy = 0.0
        self._t_ref = 0.0

    def reset(self) -> None:
        """Forget the fit (the next sample starts a new one)."""
        self._started = False
        self._reset_sums()

    @property
    def period(self) -> float:
        """The fitted sampling period, seconds (the nominal one before the first sample)."""
        return self._line()[1] if self._started else self._period

    def _line(self) -> tuple[float, float]:
        """Return (intercept at x = 0 relative to _t_ref, slope) of the regularised weighted fit."""
        s0, sx, sxx, sy, sxy = self._s0, self._sx, self._sxx, self._sy, self._sxy
        # minimise Σw(y − a − b·x)² + prior·(b − period)²
        det = s0 * (sxx + self._prior) - sx * sx
        b = (s0 * (sxy + self._prior * self._period) - sx * sy) / det
        a = (sy - b * sx) / s0
        return a, b

    def process(self, timestamps: NDArray[np.float64]) -> NDArray[np.float64]:
        """Return the dejittered timestamps of the next samples (one per element of ``timestamps``).

        Parameters
        ----------
        timestamps : ndarray of float64, shape (n,)
            Stamps of consecutive samples, in order (no sample missing in between).

        Returns
        -------
        ndarray of float64, shape (n,)
            The fitted line evaluated at each sample's index, using every sample up to and including it.
        """
        out = np.empty(len(timestamps), dtype=np.float64)
        if len(timestamps) == 0:
            return out
        start = 0
        while start < len(timestamps):
            if not self._started:
                self._started = True
                self._t_ref = float(timestamps[start])
                self._add(timestamps[start:start + 1])
                out[start] = timestamps[start]
                start += 1
                continue
            a, b = self._line()
            first_residual = float(timestamps[start]) - (self._t_ref + a + b)
            if abs(first_residual) > self.reset_after:
                self.resets += 1
                self.reset()
                continue
            # fit block by block so that no sample's fitted time uses stamps that came after it by much
            stop = min(len(timestamps), start + max(1, round(0.05 * self.sfreq)))
            block = timestamps[start:stop]
            self._add(block)
            a, b = self._line()
            m = len(block)
            out[start:stop] = self._t_ref + a + b * np.arange(-(m - 1), 1, dtype=np.float64)
            start = stop
        return out

    def _add(self, block: NDArray[np.float64]) -> None:
        """Add consecutive samples; re-centre the sums on the newest one."""
        m = len(block)
        # shift existing x by −m (their distance to the new newest sample) and decay them by decay**m
        shift = float(m)
        decay = self._decay ** m
        s0, sx, sxx = self._s0, self._sx, self._sxx
        sy, sxy = self._sy, self._sxy
        sxx = sxx - 2 * shift * sx + shift * shift * s0
        sxy = sxy - shift * sy
        sx = sx - shift * s0
        x = np.arange(-(m - 1), 1, dtype=np.float64)
        w = self._decay ** (-x)  # newest weight 1
        y = block - self._t_ref
        self._s0 = decay * s0 + float(w.sum())
        self._sx = decay * sx + float(w @ x)
        self._sxx = decay * sxx + float(w @ (x * x))
        self._sy = decay * sy + float(w @ y)
        self._sxy = decay * sxy + float(w @ (x * y))
        # move the time reference to the current fitted value at x = 0 to keep y small
        a, _ = self._line()
        self._sy -= a * self._s0
        self._sxy -= a * self._sx
        self._t_ref += a
