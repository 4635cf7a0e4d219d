"""Input hygiene kernels: non-finite values, timestamp gaps and backward steps, stuck (flat or railed) samples.

Policy (applied per input sample, in order; every event is counted by :class:`~rt_physio.dsp.StreamProcessor`):

* **Non-finite value** (NaN, ±inf) in a channel: replaced by that channel's last finite value (0 before the
  first one) and flagged, so a NaN burst can never reach, and poison, the filter state.
* **Timestamp not finite**: replaced by the previous timestamp plus one nominal period (counted as *backwards*;
  a sample with no previous timestamp to go by is dropped).
* **Backward step** of at most ``back_tol`` seconds (jitter): the timestamp is clamped to the previous one
  (counted). A larger backward step is a clock jump: a *break* (below).
* **Gap** (``dt > 1.5`` nominal periods): counted. If ``dt <= max_fill`` seconds, the ``round(dt * fs) - 1``
  missing samples are filled by linear interpolation between the last sample and the new one, on timestamps
  spread evenly over the gap, and flagged *filled*: filters and resampler then see a continuous signal whose
  sample count matches the elapsed time, and windows stay on a regular grid. A longer gap is a *break*.
* **Break** (gap longer than ``max_fill`` or backward clock jump): the kernel stops before the sample; the caller
  ends the segment (its ring segment, filter and resampler state) and restarts from that sample.
* **Stuck** sample: part of a run of at least ``stuck_run`` identical raw values (a flat line or an amplifier
  rail); flagged for :mod:`rt_physio.dsp.quality`. Quantised signals repeat values for a few samples, so a run must
  be long (see :func:`stuck_run_length`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["FLAG_FILLED", "FLAG_NONFINITE", "FLAG_STUCK", "N_COUNTERS", "clean_chunk", "stuck_run_length"]

FLAG_NONFINITE = 1
FLAG_FILLED = 2
FLAG_STUCK = 4

# counters[...] indices
C_NONFINITE, C_FILLED, C_GAPS, C_BACKWARDS, C_BREAKS = 0, 1, 2, 3, 4
N_COUNTERS = 5


def stuck_run_length(fs: float) -> int:
    """Minimum run of identical raw values flagged as stuck: 25 ms of samples, at least 8.

    On MIT-BIH 100 (11-bit, 360 Hz) no run of 10 identical values occurs; on EEGMAT only zero-padded parts do.
    """
    return max(8, math.ceil(0.025 * fs))


@njit(cache=True, nogil=True)
def clean_chunk(x: NDArray[np.floating], ts: NDArray[np.float64], start: int, period: float, max_fill: float,
                back_tol: float, stuck_run: int, last_x: NDArray[np.float64], prev_out: NDArray[np.float64],
                run_len: NDArray[np.int64], last_t: NDArray[np.float64], out: NDArray[np.float64],
                out_ts: NDArray[np.float64], flags: NDArray[np.uint8],
                counters: NDArray[np.int64]) -> tuple[int, int, bool]:  # pragma: no cover - compiled
    """Clean ``x[start:]`` into ``out`` rows (with fills); returns (next input index, rows written, break).

    State arrays, updated in place: ``last_x`` (channels,) last finite value per channel (NaN = none yet),
    ``prev_out`` (channels,) last cleaned row (the start of a gap fill), ``run_len`` (channels,) length of the
    current run of identical values, ``last_t[0]`` last accepted timestamp (NaN = none: no gap check).
    Stops early, without consuming the sample, when ``out`` lacks room for it and its gap fill, or on a break.
    """
    n, n_channels = x.shape
    capacity = out.shape[0]
    rows = 0
    gap_tol = 1.5 * period
    for i in range(start, n):
        t = ts[i]
        t_prev = last_t[0]
        fill = 0
        repaired = False
        if math.isnan(t_prev):
            if not math.isfinite(t):
                counters[C_BACKWARDS] += 1  # no reference yet: drop the sample rather than invent a clock
                continue
        else:
            if not math.isfinite(t):
                t = t_prev + period
                repaired = True
            dt = t - t_prev
            if dt < 0.0:
                if -dt > back_tol:
                    counters[C_BACKWARDS] += 1
                    counters[C_BREAKS] += 1
                    return i, rows, True
                t = t_prev
                repaired = True
            elif dt > gap_tol:
                if dt > max_fill:
                    counters[C_GAPS] += 1
                    counters[C_BREAKS] += 1
                    return i, rows, True
                fill = round(dt / period) - 1
        if rows + fill + 1 > capacity:
            return i, rows, False
        if repaired:
            counters[C_BACKWARDS] += 1
        if fill > 0:
            counters[C_GAPS] += 1
        row = rows + fill
        for c in range(n_channels):
            v = x[i, c]
            f = np.uint8(0)
            if math.isfinite(v):
                if v == last_x[c]:
                    run_len[c] += 1
                else:
                    run_len[c] = 1
                last_x[c] = v
                if run_len[c] >= stuck_run:
                    f = np.uint8(FLAG_STUCK)
                out[row, c] = v
            else:
                counters[C_NONFINITE] += 1
                f = np.uint8(FLAG_NONFINITE)
                out[row, c] = 0.0 if math.isnan(last_x[c]) else last_x[c]
            flags[row, c] = f
        if fill > 0:
            counters[C_FILLED] += fill
            step = (t - t_prev) / (fill + 1)
            for j in range(fill):
                frac = (j + 1) / (fill + 1)
                out_ts[rows + j] = t_prev + (j + 1) * step
                for c in range(n_channels):
                    out[rows + j, c] = prev_out[c] + frac * (out[row, c] - prev_out[c])
                    flags[rows + j, c] = np.uint8(FLAG_FILLED)
        for c in range(n_channels):
            prev_out[c] = out[row, c]
        out_ts[row] = t
        last_t[0] = t
        rows = row + 1
    return n, rows, False
