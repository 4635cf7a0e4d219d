"""A mirrored ring buffer: every window of the newest samples is one contiguous view, with no copy.

Each sample is written twice, at ``p`` and ``p + capacity`` of a ``2 * capacity`` storage. The ``k ≤ capacity``
samples ending at any position are therefore contiguous in memory, so reading a window is slicing: O(1), no copy,
no ``np.roll`` (MNE-LSL rolls its whole buffer on every chunk, O(buffer)). A write costs O(chunk) at any capacity.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import DTypeLike, NDArray

from rt_physio.checks import check_int

__all__ = ["RingBuffer"]


# Ring state lives in two small arrays so that compiled callers (the stream processor's fused kernel) can append
# without a Python round trip: idx = [n_written, segment_start, n_never_stored], last = [newest timestamp].
I_WRITTEN, I_SEGMENT, I_NEVER = 0, 1, 2


@njit(cache=True, nogil=True)
def ring_append(store: NDArray[Any], ts_store: NDArray[np.float64], idx: NDArray[np.int64],
                last: NDArray[np.float64], data: NDArray[Any], ts: NDArray[np.float64]) -> bool:  # pragma: no cover
    """Append ``data`` mirrored; returns False, writing nothing, if the timestamps would decrease."""
    cap = ts_store.shape[0] // 2
    n = data.shape[0]
    prev = last[0]
    for i in range(n):
        if not ts[i] >= prev:  # also catches NaN
            return False
        prev = ts[i]
    start = n - cap if n > cap else 0
    p = (idx[I_WRITTEN] + start) % cap
    for i in range(start, n):
        for c in range(data.shape[1]):
            store[p, c] = data[i, c]
            store[p + cap, c] = data[i, c]
        ts_store[p] = ts[i]
        ts_store[p + cap] = ts[i]
        p += 1
        if p == cap:
            p = 0
    if n > 0:
        idx[I_NEVER] += start
        idx[I_WRITTEN] += n
        last[0] = ts[n - 1]
    return True


@njit(cache=True, nogil=True)
def ring_mark_break(idx: NDArray[np.int64], last: NDArray[np.float64]) -> None:  # pragma: no cover - compiled
    """Start a new segment at the current write position."""
    idx[I_SEGMENT] = idx[I_WRITTEN]
    last[0] = -np.inf


class RingBuffer:
    """Fixed-capacity (samples, channels) buffer with timestamps; reads return contiguous read-only views.

    Parameters
    ----------
    n_channels : int
        Number of channels.
    capacity : int
        Number of samples kept; older samples are overwritten (and counted).
    dtype : dtype
        Storage type of the samples (float32 by default; any float or integer type); timestamps are float64
        seconds.

    Notes
    -----
    Sample indices are absolute: the first sample ever written is 0, :attr:`n_written` is one past the newest.
    Timestamps must be non-decreasing within a *segment*; :meth:`mark_break` starts a new segment (after a long
    gap or a clock jump), and every read except :meth:`slice` stays inside the current segment, so a window never
    spans a discontinuity. A returned view stays valid until the next :meth:`write`; copy it to keep it longer.
    """

    def __init__(self, n_channels: int, capacity: int, dtype: DTypeLike = np.float32) -> None:
        self._n_channels = check_int("n_channels", n_channels)
        self._capacity = check_int("capacity", capacity)
        self._dtype = np.dtype(dtype)
        if self._dtype.kind not in "fiu":
            raise ValueError(f"The 'dtype' parameter must be a numeric (float or integer) type, got {self._dtype}.")
        self._store = np.zeros((2 * self._capacity, self._n_channels), dtype=self._dtype)
        self._ts = np.zeros(2 * self._capacity, dtype=np.float64)
        self._store_ro = self._store.view()
        self._store_ro.setflags(write=False)
        self._ts_ro = self._ts.view()
        self._ts_ro.setflags(write=False)
        self._idx = np.zeros(3, dtype=np.int64)
        self._last = np.full(1, -math.inf)

    # -- properties -------------------------------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return self._n_channels

    @property
    def capacity(self) -> int:
        """Number of samples the buffer holds."""
        return self._capacity

    @property
    def dtype(self) -> np.dtype[Any]:
        """Sample storage type."""
        return self._dtype

    @property
    def n_written(self) -> int:
        """Total samples written since creation (or :meth:`clear`); the absolute index one past the newest."""
        return int(self._idx[I_WRITTEN])

    @property
    def n_overwritten(self) -> int:
        """Samples pushed out of the buffer so far (including those of oversized writes that never landed)."""
        return max(0, int(self._idx[I_WRITTEN]) - self._capacity)

    @property
    def n_never_stored(self) -> int:
        """Samples of writes larger than the capacity that were dropped before they could ever be read."""
        return int(self._idx[I_NEVER])

    @property
    def segment_start(self) -> int:
        """Absolute index of the first sample of the current segment (see :meth:`mark_break`)."""
        return int(self._idx[I_SEGMENT])

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still stored (any segment)."""
        return max(0, int(self._idx[I_WRITTEN]) - self._capacity)

    def _bounds(self) -> tuple[int, int]:
        """First readable absolute index of the current segment, and one past the newest."""
        written, segment, _ = self._idx.tolist()
        return max(written - self._capacity, segment), written

    @property
    def n_available(self) -> int:
        """Samples readable in the current segment."""
        lo, hi = self._bounds()
        return hi - lo

    @property
    def newest_timestamp(self) -> float:
        """Timestamp of the newest sample of the current segment (nan when it is empty)."""
        return float(self._last[0]) if self.n_available > 0 else math.nan

    # -- writing ----------------------------------------------------------------------------------------------
    def write(self, data: NDArray[Any], timestamps: NDArray[np.float64]) -> None:
        """Append samples (any count; only the newest ``capacity`` of an oversized write are kept).

        Parameters
        ----------
        data : ndarray, shape (samples, channels)
            Samples, cast to the storage dtype.
        timestamps : ndarray of float64, shape (samples,)
            Non-decreasing, and not older than the newest timestamp of the current segment.
        """
        if data.ndim != 2 or data.shape[1] != self._n_channels:
            raise ValueError(f"The 'data' parameter must have shape (samples, {self._n_channels}), got {data.shape}.")
        if timestamps.shape != (data.shape[0],) or timestamps.dtype != np.float64:
            raise ValueError(f"The 'timestamps' parameter must be float64 of shape ({data.shape[0]},), got "
                             f"{timestamps.dtype} {timestamps.shape}.")
        if not ring_append(self._store, self._ts, self._idx, self._last, data, timestamps):
            raise ValueError(f"The 'timestamps' parameter must be non-decreasing and not older than the newest "
                             f"stored timestamp {float(self._last[0])!r} (call mark_break() to start a new "
                             f"segment).")

    def mark_break(self) -> None:
        """Start a new segment: later reads never reach back past this point, and time may restart."""
        ring_mark_break(self._idx, self._last)

    def clear(self) -> None:
        """Forget all samples and counters."""
        self._idx.fill(0)
        self._last[0] = -math.inf

    # -- reading ----------------------------------------------------------------------------------------------
    def _view(self, start: int, stop: int) -> tuple[NDArray[Any], NDArray[np.float64]]:
        p = start % self._capacity
        q = p + (stop - start)
        return self._store_ro[p:q], self._ts_ro[p:q]

    def _stop_until(self, t_end: float, lo: int, hi: int) -> int:
        if lo == hi or t_end >= self._last[0]:  # the common case: the reader asks up to now
            return hi
        p = lo % self._capacity
        return lo + int(np.searchsorted(self._ts[p:p + hi - lo], t_end, side="right"))

    def slice(self, start: int, stop: int) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """Return the samples with absolute indices ``start <= i < stop`` (they must still be stored).

        Returns
        -------
        data : ndarray, shape (stop - start, channels)
            Read-only contiguous view.
        timestamps : ndarray of float64, shape (stop - start,)
            Read-only contiguous view.
        """
        written = int(self._idx[I_WRITTEN])
        if not max(0, written - self._capacity) <= start <= stop <= written:
            raise ValueError(f"The sample range [{start}, {stop}) must lie within the stored samples "
                             f"[{self.oldest}, {written}).")
        return self._view(start, stop)

    def latest(self, n: int) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """Return the newest ``min(n, n_available)`` samples of the current segment, as views (see :meth:`slice`)."""
        if type(n) is not int or n < 0:
            n = check_int("n", n, minimum=0)
        lo, hi = self._bounds()
        return self._view(max(lo, hi - n), hi)

    def index_until(self, t_end: float) -> int:
        """Absolute index one past the newest sample of the current segment with timestamp ``<= t_end``."""
        lo, hi = self._bounds()
        return self._stop_until(t_end, lo, hi)

    def until(self, t_end: float, n: int) -> tuple[NDArray[Any], NDArray[np.float64]] | None:
        """Return the ``n`` newest samples with timestamp ``<= t_end``, or None if the current segment has fewer.

        Returns
        -------
        (data, timestamps) or None
            Contiguous read-only views of shape (n, channels) and (n,).
        """
        if type(n) is not int or n < 1:
            n = check_int("n", n)
        lo, hi = self._bounds()
        stop = self._stop_until(t_end, lo, hi)
        if stop - n < lo:
            return None
        return self._view(stop - n, stop)

    def window(self, t_start: float, t_end: float) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """Return the samples of the current segment with ``t_start < timestamp <= t_end``, as views.

        The interval is half-open so that consecutive windows tile time without sharing a sample.

        Returns
        -------
        data : ndarray, shape (samples, channels)
            Read-only contiguous view.
        timestamps : ndarray of float64, shape (samples,)
            Read-only contiguous view.
        """
        lo, hi = self._bounds()
        stop = self._stop_until(t_end, lo, hi)
        _, ts = self._view(lo, stop)
        start = lo + int(np.searchsorted(ts, t_start, side="right"))
        return self._view(min(start, stop), stop)
