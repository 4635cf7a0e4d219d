"""The engine clock and mapping of other clocks onto it.

The engine clock is ``pylsl.local_clock()``: seconds on a monotonic clock shared by every LSL application on
this machine, so timestamps from LSL streams (after ``time_correction``) are directly comparable with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pylsl
from numpy.typing import NDArray

from rt_physio.checks import check_positive
from rt_physio.dsp import _dejitter_kernel as _kernel

__all__ = ["ClockGuard", "Dejitter", "WallClockMap", "local_clock"]


def local_clock() -> float:
    """Return the engine clock in seconds (``pylsl.local_clock``)."""
    return float(pylsl.local_clock())


class WallClockMap:
    """Map wall-clock (Unix) timestamps onto the engine clock, following the wall clock without tearing the grid.

    The offset ``wall - local`` is measured as the midpoint of a tight bracket of engine-clock reads around a
    wall-clock read, keeping the narrowest of a few tries. :meth:`refresh` re-measures it: a small change (the
    wall clock being slewed by NTP, or our measurement's own noise) is *slewed* into the applied offset at no
    more than ``max_slew`` seconds per second, so consecutive samples never jump; a change larger than
    ``step_after`` is a step of the wall clock itself (an NTP step, a suspended laptop, a manual change) and is
    applied at once, because the device's wall-clock stamps stepped with it. :meth:`step` re-measures and
    applies at once (the caller saw stamps that contradict their arrival time).

    Parameters
    ----------
    max_slew : float
        Largest rate of change of the applied offset, seconds per second (default 1 ms/s: NTP slews at most
        0.5 ms/s, so the map keeps up with any slew).
    step_after : float
        A measured change larger than this (seconds) is applied at once and counted in :attr:`steps`.
    wall : callable, optional
        The wall clock (default ``time.time``).
    """

    def __init__(self, *, max_slew: float = 1e-3, step_after: float = 0.1,
                 wall: Callable[[], float] = time.time) -> None:
        self.max_slew = check_positive("max_slew", max_slew)
        self.step_after = check_positive("step_after", step_after)
        self._wall = wall
        self.offset = self._measure()
        self.target = self.offset
        self._slewed_at = local_clock()
        self.steps = 0

    def _measure(self, tries: int = 5) -> float:
        best_width = float("inf")
        best_offset = 0.0
        for _ in range(tries):
            before = local_clock()
            wall = self._wall()
            after = local_clock()
            if after - before < best_width:
                best_width = after - before
                best_offset = wall - 0.5 * (before + after)
        return best_offset

    def refresh(self) -> float:
        """Re-measure the offset; return the change from the applied one (stepped at once past ``step_after``)."""
        self.advance(local_clock())
        self.target = self._measure()
        change = self.target - self.offset
        if abs(change) > self.step_after:
            self.offset = self.target
            self.steps += 1
        return change

    def step(self) -> float:
        """Re-measure and apply the offset at once; return the change."""
        self.advance(local_clock())
        self.target = self._measure()
        change = self.target - self.offset
        self.offset = self.target
        if abs(change) > self.step_after:
            self.steps += 1
        return change

    def advance(self, now: float) -> None:
        """Slew the applied offset towards the last measurement, by at most ``max_slew`` per second since last time."""
        room = self.max_slew * max(0.0, now - self._slewed_at)
        self._slewed_at = now
        gap = self.target - self.offset
        if gap:
            self.offset += max(-room, min(room, gap))

class ClockGuard:
    """Keep one stream's timestamps on the engine clock when the stream's own clock jumps.

    A sample cannot arrive before it was taken, and a stream's samples do not go back in time: stamps more than
    ``jump_after`` seconds *after* their arrival, or more than ``jump_after`` seconds *before* the stream's previous
    stamps, mean the sender's clock (or its mapping onto ours) jumped. The stream is then re-anchored: an offset
    is added to this and every later stamp so that the newest sample lands where the stream's usual delivery lag
    puts it, and the windows of the session go on (without it, a backward jump of Δ gave no windows for Δ, and a
    huge forward jump left the window grid Δ behind). Each re-anchoring is counted in :attr:`jumps`.

    Parameters
    ----------
    jump_after : float
        Seconds of inconsistency treated as a jump (a few hops: smaller steps are gaps or jitter, which the
        stream processor handles).
    """

    def __init__(self, jump_after: float) -> None:
        self.jump_after = check_positive("jump_after", jump_after, unit="seconds")
        self.offset = 0.0
        self.jumps = 0
        self.last_jump = 0.0  # the stream's clock step of the newest jump, seconds (+ forward, - backward)
        self._newest = math.nan
        self._lag = math.nan  # smoothed arrival - newest stamp
        self._step = 0.0  # spacing of the latest chunk's samples, seconds

    def process(self, timestamps: NDArray[np.float64], received: float) -> NDArray[np.float64]:
        """Return the stamps on the engine clock (``timestamps`` itself when nothing is added).

        A jump inside a chunk (a step back of more than ``jump_after`` between two of its samples, or forward to
        stamps more than ``jump_after`` after the chunk's arrival) re-anchors the samples after the step only: those
        before it are consistent with the stream's past. Without that, a chunk whose first sample came before a
        forward jump kept the whole stream in the future, counted as a new jump at every later chunk.
        """
        ts = timestamps if self.offset == 0.0 else timestamps + self.offset
        n = ts.shape[0]
        if n == 0:
            return ts
        first, last = float(ts[0]), float(ts[-1])
        split = 0  # the first sample after a jump inside the chunk (0: none inside)
        if n > 1:
            span = last - first
            # a step inside the chunk shows in its ends: stamps in the future, or a span shorter than its samples'
            if last > received + self.jump_after or span < (n - 1) * self._step - self.jump_after:
                steps = np.diff(ts)
                j = int(np.argmax(np.abs(steps)))
                jumped = float(steps[j])
                # backwards, or forwards into the future (a forward step that ends in the past is a data gap)
                if jumped < -self.jump_after or (jumped > self.jump_after and last > received + self.jump_after):
                    split = j + 1
                    span -= jumped
            if split == 0 or n > 2:
                self._step = span / (n - 1 - (split > 0))
        if split or first < self._newest - self.jump_after or last > received + self.jump_after:
            lag = self._lag if self._lag >= 0.0 else 0.0
            delta = (received - lag) - last
            # the lag is an average: a chunk that came early would land before the samples already taken in,
            # which the stream processor must treat as time going backwards (a break: a window with a hole)
            before = float(ts[split - 1]) if split else self._newest
            overlap = (before + self._step) - (float(ts[split]) + delta)
            if overlap > 0.0:
                delta += overlap
            ts = timestamps + self.offset  # a copy: the samples before a jump inside the chunk keep the old offset
            ts[split:] += delta
            self.offset += delta
            self.last_jump = -delta
            self.jumps += 1
            last = float(ts[-1])
        self._newest = last
        lag_now = received - last
        self._lag = lag_now if math.isnan(self._lag) else self._lag + 0.1 * (lag_now - self._lag)
        return ts


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
