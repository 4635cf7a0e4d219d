"""One stream's DSP path: hygiene → band-pass + notch → resampler → ring buffer, with causal timestamps.

Timestamp convention. An output sample carries the time at which it became computable: the input timestamp
interpolated at its fractional input position ``k * down / up`` (the input it was computed from, plus the
fraction of a nominal input period). That is its content position plus the resampler's group delay
:attr:`StreamProcessor.delay_s`; the IIR filters add their own (frequency-dependent) group delay to the content,
as any causal filter does. So a window ending at ``t`` can be cut the instant the raw sample stamped ``t``
arrives, and windows of several streams cut at the same ``t`` were all computable at ``t``.

Thread model: one thread calls :meth:`~StreamProcessor.push`, others read under a lock the caller holds around
both; the kernels release the GIL, so several streams' processors run in parallel on several cores.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.signal
from numpy.typing import NDArray

from rt_physio.checks import as_chunk, as_timestamps, check_int, check_positive
from rt_physio.dsp import hygiene
from rt_physio.dsp._pipeline import F_LAST_OUT_T, F_LAST_T, I_FRESH, I_PHASE, N_EXTRA, push_kernel
from rt_physio.dsp.design import design_bandpass, design_notch
from rt_physio.dsp.filters import FilterChain
from rt_physio.dsp.quality import QualityReport, WindowCounts, assess
from rt_physio.dsp.resample import StreamResampler
from rt_physio.dsp.ring import RingBuffer

__all__ = ["ProcessorStats", "StreamProcessor"]

log = logging.getLogger(__name__)

_BLOCK = 4096  # input rows cleaned, filtered and resampled per kernel round (bounded scratch memory)


@dataclass(frozen=True, slots=True)
class ProcessorStats:
    """A snapshot of one stream processor's counters.

    Attributes
    ----------
    chunks, samples_in, samples_out : int
        Chunks pushed, input samples received, output samples written to the ring.
    nonfinite_replaced : int
        Channel-samples that were NaN/inf and replaced by the channel's last finite value.
    gaps, samples_filled : int
        Timestamp gaps over 1.5 periods, and input samples synthesised to fill the short ones.
    backwards : int
        Timestamps that went backwards or were not finite (repaired, or a break for a clock jump).
    breaks : int
        Discontinuities (long gap or clock jump): filters and resampler restarted, new ring segment.
    overwritten : int
        Output samples pushed out of the ring.
    """

    chunks: int = 0
    samples_in: int = 0
    samples_out: int = 0
    nonfinite_replaced: int = 0
    gaps: int = 0
    samples_filled: int = 0
    backwards: int = 0
    breaks: int = 0
    overwritten: int = 0


class StreamProcessor:
    """Hygiene, filtering, resampling and buffering of one stream, fed chunk by chunk.

    Parameters
    ----------
    fs_in : float
        Nominal input rate in Hz (a measured non-integer rate such as 255.98 is fine).
    n_channels : int
        Number of channels.
    bandpass : (float, float) or None
        Band-pass edges in Hz (Butterworth order 4, four sections). The upper edge is clipped to 0.9 × the input
        Nyquist frequency (logged).
    notch : float or None
        Mains notch frequency in Hz (one section, Q = 30), skipped (logged) when at or above the input Nyquist.
    fs_out : float
        Output rate in Hz.
    capacity_s : float
        Seconds of output kept in the ring.
    max_fill_s : float
        Longest timestamp gap filled by interpolation; a longer one (or a backward clock jump over
        ``max_backstep_s``) is a break. See :mod:`rt_physio.dsp.hygiene` for the whole policy.
    max_backstep_s : float, optional
        Largest backward timestamp step treated as jitter (clamped); default 1.5 input periods.
    adjust_log_level : int
        Level at which a clipped band edge or a skipped notch is logged (``logging.DEBUG`` where many recordings
        are processed in a row and the adjustment is expected).

    Notes
    -----
    A push is one compiled call (hygiene, filters, resampler and ring writes fused), so small chunks cost a few
    microseconds. The kernel is compiled (or loaded from numba's cache) by the constructor, not by the first push.
    The filters start at the steady state of the first sample (and again after a break).
    """

    def __init__(self, fs_in: float, n_channels: int, *, bandpass: tuple[float, float] | None,
                 notch: float | None, fs_out: float = 200.0, capacity_s: float = 30.0, max_fill_s: float = 1.0,
                 max_backstep_s: float | None = None, adjust_log_level: int = logging.WARNING) -> None:
        self._fs_in = check_positive("fs_in", fs_in)
        self._n_channels = n_channels = check_int("n_channels", n_channels)
        period = 1.0 / self._fs_in
        max_fill = check_positive("max_fill_s", max_fill_s)
        back_tol = check_positive("max_backstep_s", 1.5 * period if max_backstep_s is None else max_backstep_s,
                                  allow_zero=True)
        self._filter = self._design(bandpass, notch, adjust_log_level)
        self._resampler = StreamResampler(self._fs_in, check_positive("fs_out", fs_out), n_channels)
        capacity = math.ceil(check_positive("capacity_s", capacity_s) * self._resampler.fs_out_effective) + 1
        self._ring = RingBuffer(n_channels, capacity)
        self._n_aux = 2 * n_channels + 2
        # per output sample: how many of the inputs it completed were non-finite / filled / stuck (and how many)
        self._aux = RingBuffer(self._n_aux, capacity, dtype=np.uint8)
        if self._fs_in / self._resampler.fs_out_effective >= 255:
            raise ValueError(f"The 'fs_in' parameter ({self._fs_in:g} Hz) must be below 255 × 'fs_out'.")

        self._fstate = np.array([period, max_fill, back_tol, np.nan, -np.inf])
        self._istate = np.array([hygiene.stuck_run_length(self._fs_in), self._resampler.up, self._resampler.down,
                                 1, 0, 0], dtype=np.int64)
        self._counters = np.zeros(hygiene.N_COUNTERS + N_EXTRA, dtype=np.int64)
        n_rows = _BLOCK + math.ceil(max_fill * self._fs_in) + 2
        self._rows = np.empty((n_rows, n_channels))
        self._rows_ts = np.empty(n_rows)
        self._flags = np.zeros((n_rows, n_channels), dtype=np.uint8)
        n_out = self._resampler.max_output(n_rows)
        self._y = np.empty((n_out, n_channels))
        self._pos = np.empty(n_out)
        self._out_ts = np.empty(n_out)
        self._out_aux = np.empty((n_out, self._n_aux), dtype=np.uint8)
        taps = self._resampler._taps
        self._taps = taps
        self._work = np.zeros((taps.shape[1] - 1 + n_rows, n_channels))
        if self._filter is None:
            self._sos, self._filt, self._zi_unit = np.zeros((0, 6)), np.zeros((0, 2, n_channels)), np.zeros((0, 2))
        else:
            self._sos, self._filt = self._filter._sos, self._filter._state
            self._zi_unit = np.ascontiguousarray(scipy.signal.sosfilt_zi(self._sos), dtype=np.float64)
        self._last_x = np.full(n_channels, np.nan)
        self._prev_out = np.zeros(n_channels)
        self._run_len = np.zeros(n_channels, dtype=np.int64)
        self._cum = np.zeros(self._n_aux, dtype=np.int64)
        self._overwritten_base = 0
        self._logged = np.zeros(hygiene.N_COUNTERS, dtype=np.int64)
        # every array the kernel touches, bound once: they are never reallocated (reset fills them in place)
        self._kernel_args: tuple[Any, ...] = (
            self._fstate, self._istate, self._last_x, self._prev_out, self._run_len, self._counters, self._rows,
            self._rows_ts, self._flags, self._y, self._pos, self._out_ts, self._out_aux, self._cum, self._sos,
            self._filt, self._zi_unit, self._taps, self._work, self._ring._store, self._ring._ts, self._ring._idx,
            self._ring._last, self._aux._store, self._aux._ts, self._aux._idx, self._aux._last)
        # Compile (first run on a machine, seconds) or load from numba's cache now, at set-up, not on the first
        # live chunk: an empty float32 chunk changes nothing but the chunk counter, which is zeroed again.
        push_kernel(np.zeros((0, n_channels), np.float32), np.zeros(0), *self._kernel_args)
        self._counters.fill(0)

    def _design(self, bandpass: tuple[float, float] | None, notch: float | None,
                level: int) -> FilterChain | None:
        nyquist = self._fs_in / 2
        stages = []
        if bandpass is not None:
            low, high = bandpass
            if high > 0.9 * nyquist:
                log.log(level, "band-pass upper edge %g Hz is too close to the input Nyquist (%g Hz): using %g Hz",
                        high, nyquist, 0.9 * nyquist)
                high = 0.9 * nyquist
            stages.append(design_bandpass(low, high, self._fs_in))
        if notch is not None:
            if check_positive("notch", notch) >= nyquist:
                log.log(level, "notch at %g Hz is at or above the input Nyquist (%g Hz): skipped", notch, nyquist)
            else:
                stages.append(design_notch(notch, self._fs_in))
        return FilterChain(stages, self._n_channels) if stages else None

    # -- properties -------------------------------------------------------------------------------------------
    @property
    def fs_in(self) -> float:
        """Nominal input rate in Hz."""
        return self._fs_in

    @property
    def fs_out(self) -> float:
        """Output rate in Hz (the exact rate ``fs_in * up / down`` of the resampler)."""
        return self._resampler.fs_out_effective

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return self._n_channels

    @property
    def delay_s(self) -> float:
        """Resampler group delay in seconds: output content is centred this long before its timestamp."""
        return self._resampler.delay_s

    @property
    def sos(self) -> NDArray[np.float64] | None:
        """The filter cascade (band-pass then notch) as SOS rows, or None when there is no filter."""
        return None if self._filter is None else self._filter.sos

    @property
    def resampler(self) -> StreamResampler:
        """The resampler's design (rates, delay, polyphase factors); the processor keeps its own state."""
        return self._resampler

    @property
    def ring(self) -> RingBuffer:
        """Output ring: float32 µV at :attr:`fs_out`, with causal timestamps."""
        return self._ring

    @property
    def newest_timestamp(self) -> float:
        """Timestamp of the newest output sample (nan when none since the last break)."""
        return self._ring.newest_timestamp

    @property
    def stats(self) -> ProcessorStats:
        """A snapshot of the counters (they keep counting across :meth:`reset`)."""
        c = [int(v) for v in self._counters]
        h = hygiene.N_COUNTERS
        return ProcessorStats(chunks=c[h], samples_in=c[h + 1], samples_out=c[h + 2],
                              nonfinite_replaced=c[hygiene.C_NONFINITE], gaps=c[hygiene.C_GAPS],
                              samples_filled=c[hygiene.C_FILLED], backwards=c[hygiene.C_BACKWARDS],
                              breaks=c[hygiene.C_BREAKS],
                              overwritten=self._overwritten_base + self._ring.n_overwritten)

    # -- feeding ----------------------------------------------------------------------------------------------
    def push(self, data: NDArray[np.floating], timestamps: NDArray[np.float64]) -> int:
        """Process one chunk; returns the number of output samples written to :attr:`ring`.

        Parameters
        ----------
        data : ndarray of float32 (or float64), shape (samples, channels)
            Signal in µV.
        timestamps : ndarray of float64, shape (samples,)
            Engine-clock time of each sample.
        """
        x = as_chunk("data", data, self._n_channels)
        ts = as_timestamps("timestamps", timestamps, x.shape[0])
        written, events = push_kernel(x, ts, *self._kernel_args)
        if events:
            self._log_events()
        return int(written)

    def _log_events(self) -> None:
        before = self._logged
        self._logged = self._counters[: hygiene.N_COUNTERS].copy()
        names = {hygiene.C_NONFINITE: "nonfinite_replaced", hygiene.C_FILLED: "samples_filled",
                 hygiene.C_GAPS: "gaps", hygiene.C_BACKWARDS: "backwards", hygiene.C_BREAKS: "breaks"}
        for index, name in names.items():
            total = int(self._counters[index])
            added = total - int(before[index])
            if added:
                # First occurrence visible, repeats at debug level. Short gaps are filled and routine on wireless
                # links (BrainFlow's synthetic board shows a few), so they are only informational.
                loud = logging.INFO if index in (hygiene.C_FILLED, hygiene.C_GAPS) else logging.WARNING
                level = loud if total == added else logging.DEBUG
                log.log(level, "stream %d ch @ %g Hz: %s +%d (total %d)", self._n_channels, self._fs_in, name,
                        added, total)

    def reset(self) -> None:
        """Forget all signal state and buffered output (counters in :attr:`stats` keep counting)."""
        self._overwritten_base += self._ring.n_overwritten
        self._ring.clear()
        self._aux.clear()
        self._fstate[F_LAST_T] = np.nan
        self._fstate[F_LAST_OUT_T] = -np.inf
        self._istate[I_FRESH] = 1
        self._istate[I_PHASE:] = 0
        self._work.fill(0.0)
        self._last_x.fill(np.nan)
        self._prev_out.fill(0.0)
        self._run_len.fill(0)
        self._cum.fill(0)

    # -- reading ----------------------------------------------------------------------------------------------
    def read_until(self, t_end: float, n: int) -> tuple[NDArray[np.float32], NDArray[np.float64]] | None:
        """Return the ``n`` newest output samples with timestamp ``<= t_end``, as contiguous read-only views.

        Returns
        -------
        (data, timestamps) or None
            Views of shape (n, channels) float32 µV and (n,) float64, valid until the next :meth:`push`;
            None when fewer than ``n`` such samples exist since the last break.
        """
        return self._ring.until(t_end, n)

    def window_counts(self, t_end: float, n: int) -> WindowCounts | None:
        """Raw-domain hygiene counts (non-finite, filled, stuck) over the span of :meth:`read_until`'s window.

        The counts cover the input samples that arrived within the window's span: after the output sample before
        the window, up to its last output sample. Returns None when :meth:`read_until` would.
        """
        stop = self._ring.index_until(t_end)
        start = stop - check_int("n", n)
        if start < max(self._ring.oldest, self._ring.segment_start):
            return None
        counts = self._aux.slice(start, stop)[0].sum(axis=0, dtype=np.int64)
        c = self._n_channels
        n_in = int(counts[2 * c + 1])
        scale = 1.0 / n_in if n_in > 0 else 0.0
        return WindowCounts(nonfinite=counts[:c] * scale, filled=float(counts[c]) * scale,
                            stuck=counts[c + 1: 2 * c + 1] * scale, n_input=n_in)

    def quality(self, t_end: float, n: int, *, line_freqs: tuple[float, ...] = (50.0, 60.0),
                flat_uv: float = 0.5) -> QualityReport | None:
        """:func:`~rt_physio.dsp.quality.assess` of the window :meth:`read_until` returns, with its raw counts."""
        window = self._ring.until(t_end, n)
        counts = self.window_counts(t_end, n)
        if window is None or counts is None:
            return None
        return assess(window[0], self.fs_out, counts, line_freqs=line_freqs, flat_uv=flat_uv)
