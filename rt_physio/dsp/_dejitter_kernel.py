"""Compiled kernel of :class:`rt_physio.clock.Dejitter` (one call per chunk on the acquisition thread).

The fit used to be ~30 small NumPy operations per chunk: 41 µs in a hot loop but ~210 µs live, where the
acquisition thread wakes every few tens of milliseconds with cold caches (``benchmarks/bench_cold_path.py``). One
compiled call does the same arithmetic.

State vector ``st`` (float64): ``[started, t_ref, s0, sx, sxx, sy, sxy, resets]``. Sums are over the weighted
samples of ``x`` = index − index of the newest sample and ``y`` = stamp − ``t_ref``.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

STARTED, T_REF, S0, SX, SXX, SY, SXY, RESETS = range(8)
STATE_SIZE = 8


@njit(cache=True, nogil=True)
def line(st: NDArray[np.float64], prior: float, period: float) -> tuple[float, float]:  # pragma: no cover - numba
    """(intercept at x = 0 relative to t_ref, slope) minimising Σw(y − a − b·x)² + prior·(b − period)²."""
    s0, sx, sxx, sy, sxy = st[S0], st[SX], st[SXX], st[SY], st[SXY]
    det = s0 * (sxx + prior) - sx * sx
    b = (s0 * (sxy + prior * period) - sx * sy) / det
    a = (sy - b * sx) / s0
    return a, b


@njit(cache=True, nogil=True)
def _add(st: NDArray[np.float64], ts: NDArray[np.float64], lo: int, hi: int, decay: float, prior: float,
         period: float) -> None:  # pragma: no cover - numba
    """Add samples ``ts[lo:hi]``, re-centre the sums on the newest one, move t_ref to the fitted line."""
    m = hi - lo
    shift = float(m)
    dm = decay ** m
    s0, sx, sxx, sy, sxy = st[S0], st[SX], st[SXX], st[SY], st[SXY]
    sxx = sxx - 2.0 * shift * sx + shift * shift * s0
    sxy = sxy - shift * sy
    sx = sx - shift * s0
    ws = wx = wxx = wy = wxy = 0.0
    for i in range(m):
        x = float(i - (m - 1))
        w = decay ** (-x)  # newest weight 1
        y = ts[lo + i] - st[T_REF]
        ws += w
        wx += w * x
        wxx += w * x * x
        wy += w * y
        wxy += w * x * y
    st[S0] = dm * s0 + ws
    st[SX] = dm * sx + wx
    st[SXX] = dm * sxx + wxx
    st[SY] = dm * sy + wy
    st[SXY] = dm * sxy + wxy
    a, _ = line(st, prior, period)
    st[SY] -= a * st[S0]
    st[SXY] -= a * st[SX]
    st[T_REF] += a


@njit(cache=True, nogil=True)
def dejitter(ts: NDArray[np.float64], out: NDArray[np.float64], st: NDArray[np.float64], decay: float,
             prior: float, period: float, reset_after: float, block: int) -> None:  # pragma: no cover - numba
    """Write the fitted time of every sample of ``ts`` to ``out``, updating the state ``st``."""
    n = ts.shape[0]
    start = 0
    while start < n:
        if st[STARTED] == 0.0:
            st[STARTED] = 1.0
            for k in range(T_REF, RESETS):
                st[k] = 0.0
            st[T_REF] = ts[start]
            _add(st, ts, start, start + 1, decay, prior, period)
            out[start] = ts[start]
            start += 1
            continue
        a, b = line(st, prior, period)
        if abs(ts[start] - (st[T_REF] + a + b)) > reset_after:
            st[RESETS] += 1.0
            st[STARTED] = 0.0  # restart the fit from this sample
            continue
        # fit block by block so that no sample's fitted time uses stamps that came after it by much
        stop = min(n, start + block)
        _add(st, ts, start, stop, decay, prior, period)
        a, b = line(st, prior, period)
        m = stop - start
        for i in range(m):
            out[start + i] = st[T_REF] + a + b * float(i - (m - 1))
        start = stop
