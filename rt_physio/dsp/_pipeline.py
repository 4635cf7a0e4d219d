"""The stream processor's fused kernel: hygiene → filters → resampler → rings, one compiled call per chunk.

Numba caches each kernel against its own file only: after editing a kernel this one calls (hygiene, filters,
resample, ring), delete ``rt_physio/dsp/__pycache__`` so that this module is recompiled too.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

from rt_physio.dsp import hygiene
from rt_physio.dsp.filters import sos_step
from rt_physio.dsp.resample import polyphase
from rt_physio.dsp.ring import ring_append, ring_mark_break

__all__ = ["push_kernel"]

# fstate / istate / counters layout of the fused kernel (small arrays: one argument each instead of many scalars)
F_PERIOD, F_MAX_FILL, F_BACK_TOL, F_LAST_T, F_LAST_OUT_T = range(5)
I_STUCK_RUN, I_UP, I_DOWN, I_FRESH, I_PHASE = 0, 1, 2, 3, 4  # I_PHASE, I_PHASE + 1: the resampler phase
N_EXTRA = 3  # counters after hygiene's: chunks, samples in, samples out


@njit(cache=True, nogil=True)
def push_kernel(x: NDArray[np.floating], ts: NDArray[np.float64], fstate: NDArray[np.float64],
                 istate: NDArray[np.int64], last_x: NDArray[np.float64], prev_out: NDArray[np.float64],
                 run_len: NDArray[np.int64], counters: NDArray[np.int64], rows: NDArray[np.float64],
                 rows_ts: NDArray[np.float64], flags: NDArray[np.uint8], y: NDArray[np.float64],
                 pos: NDArray[np.float64], out_ts: NDArray[np.float64], aux: NDArray[np.uint8],
                 cum: NDArray[np.int64], sos: NDArray[np.float64], filt: NDArray[np.float64],
                 zi_unit: NDArray[np.float64], taps: NDArray[np.float64], work: NDArray[np.float64],
                 ring_store: NDArray[np.float32], ring_ts: NDArray[np.float64], ring_idx: NDArray[np.int64],
                 ring_last: NDArray[np.float64], aux_store: NDArray[np.uint8], aux_ts: NDArray[np.float64],
                 aux_idx: NDArray[np.int64], aux_last: NDArray[np.float64]) -> tuple[int, bool]:  # pragma: no cover
    """Hygiene → filters → resampler → rings for one chunk, in one call; returns (outputs, any hygiene event)."""
    n_hyg = hygiene.N_COUNTERS
    events_before = 0
    for j in range(n_hyg):
        events_before += counters[j]
    start = 0
    total = 0
    while start < x.shape[0]:
        start, n_rows, brk = hygiene.clean_chunk(
            x, ts, start, fstate[F_PERIOD], fstate[F_MAX_FILL], fstate[F_BACK_TOL], istate[I_STUCK_RUN], last_x,
            prev_out, run_len, fstate[F_LAST_T:F_LAST_T + 1], rows, rows_ts, flags, counters)
        if n_rows > 0:
            block = rows[:n_rows]
            if sos.shape[0] > 0:
                if istate[I_FRESH]:  # start at the steady state of the first sample: no DC step transient
                    for s in range(sos.shape[0]):
                        for k in range(2):
                            for c in range(block.shape[1]):
                                filt[s, k, c] = zi_unit[s, k] * block[0, c]
                sos_step(sos, filt, block, block)
            istate[I_FRESH] = 0
            n_out = polyphase(taps, istate[I_UP], istate[I_DOWN], work, block, y, pos, istate[I_PHASE:I_PHASE + 2])
            _emit(pos, n_out, rows_ts, n_rows, flags, fstate[F_PERIOD], fstate[F_LAST_OUT_T:F_LAST_OUT_T + 1], cum,
                  out_ts, aux)
            if n_out > 0:
                ok = ring_append(ring_store, ring_ts, ring_idx, ring_last, y[:n_out], out_ts[:n_out])
                ok = ok and ring_append(aux_store, aux_ts, aux_idx, aux_last, aux[:n_out], out_ts[:n_out])
                if not ok:
                    raise RuntimeError("rt_physio bug: output timestamps went backwards")
            total += n_out
        if brk:
            ring_mark_break(ring_idx, ring_last)
            ring_mark_break(aux_idx, aux_last)
            fstate[F_LAST_T] = np.nan
            fstate[F_LAST_OUT_T] = -np.inf
            istate[I_FRESH] = 1
            istate[I_PHASE] = 0
            istate[I_PHASE + 1] = 0
            work[:] = 0.0
    counters[n_hyg] += 1
    counters[n_hyg + 1] += x.shape[0]
    counters[n_hyg + 2] += total
    events_after = 0
    for j in range(n_hyg):
        events_after += counters[j]
    return total, events_after != events_before


@njit(cache=True, nogil=True)
def _emit(pos: NDArray[np.float64], n_out: int, ts_rows: NDArray[np.float64], n_rows: int,
          flags: NDArray[np.uint8], period: float, last_t: NDArray[np.float64], cum: NDArray[np.int64],
          out_ts: NDArray[np.float64], aux: NDArray[np.uint8]) -> None:  # pragma: no cover - compiled
    """Causal timestamps of the outputs, and the hygiene counts of the inputs each output completed.

    ``cum`` = [non-finite per channel, filled, stuck per channel, inputs] counts of the inputs since the previous
    output, up to this output's newest input; ``aux[k]`` receives them (< 255: the processor checks the rates)
    and ``cum`` restarts. Inputs after the last output of a block stay in ``cum`` for the next one.
    """
    n_channels = flags.shape[1]
    j = 0
    for k in range(n_out):
        idx = math.floor(pos[k])
        t = ts_rows[idx] + (pos[k] - idx) * period
        if t < last_t[0]:
            t = last_t[0]
        last_t[0] = t
        out_ts[k] = t
        while j <= idx:
            _accumulate(flags, j, n_channels, cum)
            j += 1
        for a in range(cum.shape[0]):
            aux[k, a] = cum[a]
            cum[a] = 0
    while j < n_rows:
        _accumulate(flags, j, n_channels, cum)
        j += 1


@njit(cache=True, nogil=True, inline="always")
def _accumulate(flags: NDArray[np.uint8], j: int, n_channels: int,
                cum: NDArray[np.int64]) -> None:  # pragma: no cover - compiled
    """Add input row ``j``'s flags to the counts."""
    for c in range(n_channels):
        f = flags[j, c]
        if f & hygiene.FLAG_NONFINITE:
            cum[c] += 1
        if f & hygiene.FLAG_STUCK:
            cum[n_channels + 1 + c] += 1
    if flags[j, 0] & hygiene.FLAG_FILLED:
        cum[n_channels] += 1
    cum[2 * n_channels + 1] += 1
