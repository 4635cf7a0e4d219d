"""Streaming polyphase resampling, exact under any chunking.

The FIR is the one :func:`scipy.signal.resample_poly` designs (Kaiser-windowed sinc, β = 5, ``10 * max(up, down)``
taps per side, gain ``up``), run causally: output ``k`` is the upsampled-by-``up`` signal filtered and taken at
upsampled index ``k * down``, so it depends only on inputs up to ``floor(k * down / up)`` and is emitted as soon as
that input arrives. Each output is summed in a fixed order from a history buffer, so the output does not depend on
how the input is chunked, bit for bit.

Delay. The filter is zero-padded in front so that its centre falls on an output sample: stream output
``k + delay_out`` equals ``resample_poly(x, up, down)[k]`` (to rounding), i.e. the content lags by
``delay_s = delay_out / fs_out`` seconds (50 ms for 250/360/500/1000 → 200 Hz, 80 ms for 128 → 200 Hz).

Rates that are not small rationals (a measured 255.98 Hz). The ratio ``fs_out / fs_in`` is replaced by the
fraction ``up / down`` with the smallest ``down`` whose relative error is within ``tolerance`` (default 10 ppm:
255.98 → 200 uses 368/471, +6.8 ppm), and the resampler reports the true output rate :attr:`fs_out_effective`.
Timestamps, interpolated from the input timestamps by :class:`~rt_physio.dsp.StreamProcessor`, carry the truth, so
the few-ppm rate error never accumulates into a time error (it is smaller than the clock drift of real devices).
Rates such as 128, 250, 256, 360, 500 and 1000 Hz → 200 Hz are exact ratios and use exact polyphase filters.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.signal
from numba import njit
from numpy.typing import NDArray

from rt_physio.checks import as_chunk, check_int, check_positive

__all__ = ["StreamResampler", "rate_ratio", "resample_filter"]


def rate_ratio(fs_in: float, fs_out: float, tolerance: float = 1e-5) -> tuple[int, int, bool]:
    """Choose the polyphase factors ``up / down`` for resampling ``fs_in`` to ``fs_out``.

    Parameters
    ----------
    fs_in, fs_out : float
        Input and output rates in Hz.
    tolerance : float
        Largest relative rate error accepted when the ratio is not an exact fraction with ``down <= 10000``.

    Returns
    -------
    up, down : int
        Coprime factors.
    exact : bool
        True when ``fs_in * up / down == fs_out`` to float precision.
    """
    fs_in, fs_out = check_positive("fs_in", fs_in), check_positive("fs_out", fs_out)
    tolerance = check_positive("tolerance", tolerance)
    ratio = fs_out / fs_in
    best = Fraction(ratio).limit_denominator(10000)
    if best > 0 and abs(float(best) - ratio) <= 1e-12 * ratio:
        return best.numerator, best.denominator, True
    for down in range(1, 100001):
        up = round(ratio * down)
        if up > 0 and abs(up / down - ratio) <= tolerance * ratio:
            frac = Fraction(up, down)
            return frac.numerator, frac.denominator, False
    raise ValueError(f"No ratio up/down with down <= 100000 resamples {fs_in:g} Hz to {fs_out:g} Hz within "
                     f"'tolerance'={tolerance:g}; use a larger tolerance.")


def resample_filter(up: int, down: int, half_width: int = 10) -> tuple[NDArray[np.float64], int]:
    """Design the anti-aliasing FIR of :func:`scipy.signal.resample_poly`, padded so its centre is an output.

    Parameters
    ----------
    up, down : int
        Coprime polyphase factors.
    half_width : int
        Zero crossings of the sinc per side in units of ``max(up, down)`` (``resample_poly`` uses 10); smaller
        means less delay and a softer stop band.

    Returns
    -------
    h : ndarray of float64
        Taps at the upsampled rate, front-padded with zeros.
    delay_up : int
        Delay of the filter centre in upsampled samples, a multiple of ``down``.
    """
    up, down, half_width = check_int("up", up), check_int("down", down), check_int("half_width", half_width)
    if up == down == 1:
        return np.ones(1), 0
    max_rate = max(up, down)
    half_len = half_width * max_rate
    h = scipy.signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
    n_pre = (-half_len) % down
    return np.concatenate((np.zeros(n_pre), h)).astype(np.float64), half_len + n_pre


@njit(cache=True, nogil=True)
def polyphase(taps: NDArray[np.float64], up: int, down: int, work: NDArray[np.float64], x: NDArray[np.floating],
               y: NDArray[np.float64], pos: NDArray[np.float64], phase: NDArray[np.int64]) -> int:  # pragma: no cover
    """Resample one chunk; returns the number of outputs written to ``y`` and ``pos``.

    ``taps[p, m] = h[p + m * up]``; ``work`` holds the last ``n_hist = taps.shape[1] - 1`` inputs in its first rows
    (updated in place); ``phase = [r, p]``: the next output's newest input, relative to this chunk, and its phase.
    ``pos`` receives each output's fractional input position relative to the chunk's first sample.
    """
    n, n_channels = x.shape
    n_taps = taps.shape[1]
    n_hist = n_taps - 1
    for i in range(n):
        for c in range(n_channels):
            work[n_hist + i, c] = x[i, c]
    r = phase[0]
    p = phase[1]
    k = 0
    while r < n:
        row = r + n_hist
        for c in range(n_channels):
            y[k, c] = 0.0
        for m in range(n_taps):
            w = taps[p, m]
            src = work[row - m]
            for c in range(n_channels):
                y[k, c] += w * src[c]
        pos[k] = r + p / up
        k += 1
        p += down
        r += p // up
        p = p % up
    for j in range(n_hist):  # forward copy is safe: the source row n + j is never below the target row j
        for c in range(n_channels):
            work[j, c] = work[n + j, c]
    phase[0] = r - n
    phase[1] = p
    return k


class StreamResampler:
    """Stateful polyphase resampler from ``fs_in`` to (about) ``fs_out``; output independent of chunking.

    Parameters
    ----------
    fs_in, fs_out : float
        Input and output rates in Hz.
    n_channels : int
        Number of channels.
    half_width : int
        Filter length in sinc zero crossings per side (see :func:`resample_filter`; 10 as ``resample_poly``).
    tolerance : float
        Rate error accepted for ratios that are not small fractions (see :func:`rate_ratio`).

    Notes
    -----
    Output ``k`` is available as soon as input ``floor(k * down / up)`` is; its content is centred
    ``delay_s`` earlier. :meth:`process_positions` reports, for every output, its fractional input position
    ``k * down / up`` relative to the chunk's first sample, from which causal timestamps are interpolated.
    """

    def __init__(self, fs_in: float, fs_out: float, n_channels: int, *, half_width: int = 10,
                 tolerance: float = 1e-5) -> None:
        self._fs_in = check_positive("fs_in", fs_in)
        self._fs_out = check_positive("fs_out", fs_out)
        self._n_channels = check_int("n_channels", n_channels)
        self._up, self._down, self._exact = rate_ratio(self._fs_in, self._fs_out, tolerance)
        h, delay_up = resample_filter(self._up, self._down, half_width)
        n_taps = -(-h.size // self._up)
        padded = np.zeros(n_taps * self._up)
        padded[: h.size] = h
        self._taps = np.ascontiguousarray(padded.reshape(n_taps, self._up).T)  # taps[p, m] = h[p + m * up]
        self._delay_out = delay_up // self._down
        self._work = np.zeros((n_taps - 1 + 256, self._n_channels))
        self._phase = np.zeros(2, dtype=np.int64)

    @property
    def up(self) -> int:
        """Upsampling factor."""
        return self._up

    @property
    def down(self) -> int:
        """Downsampling factor."""
        return self._down

    @property
    def exact(self) -> bool:
        """True when ``up / down`` is exactly ``fs_out / fs_in``."""
        return self._exact

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return self._n_channels

    @property
    def fs_in(self) -> float:
        """Input rate in Hz."""
        return self._fs_in

    @property
    def fs_out_effective(self) -> float:
        """True output rate ``fs_in * up / down`` (equal to the requested rate when :attr:`exact`)."""
        return self._fs_in * self._up / self._down

    @property
    def delay_out(self) -> int:
        """Group delay in output samples: stream output ``k + delay_out`` matches ``resample_poly`` output ``k``."""
        return self._delay_out

    @property
    def delay_s(self) -> float:
        """Group delay in seconds (content lags the moment an output becomes available by this much)."""
        return self._delay_out / self.fs_out_effective

    @property
    def n_taps(self) -> int:
        """Taps per polyphase branch (inputs each output depends on)."""
        return int(self._taps.shape[1])

    def reset(self) -> None:
        """Forget the history (zeros) and restart the output phase at the next input."""
        self._work.fill(0.0)
        self._phase.fill(0)

    def max_output(self, n_samples: int) -> int:
        """Largest number of outputs an input chunk of ``n_samples`` can produce."""
        return (n_samples * self._up) // self._down + 1

    def _ensure_work(self, n_samples: int) -> None:
        n_hist = self._taps.shape[1] - 1
        if self._work.shape[0] < n_hist + n_samples:
            grown = np.zeros((n_hist + max(n_samples, 2 * (self._work.shape[0] - n_hist)), self._n_channels))
            grown[:n_hist] = self._work[:n_hist]
            self._work = grown

    def process_into(self, chunk: NDArray[np.floating], out: NDArray[np.float64],
                     positions: NDArray[np.float64]) -> int:
        """Resample one chunk into preallocated arrays.

        Parameters
        ----------
        chunk : ndarray of float32 or float64, shape (samples, channels)
            The next input samples.
        out : ndarray of float64, shape (>= max_output(samples), channels)
            Receives the outputs in its first rows.
        positions : ndarray of float64, shape (>= max_output(samples),)
            Receives each output's fractional input position relative to ``chunk[0]``.

        Returns
        -------
        int
            Number of outputs written.
        """
        x = as_chunk("chunk", chunk, self._n_channels)
        need = self.max_output(x.shape[0])
        if out.shape[0] < need or out.shape[1:] != (self._n_channels,) or out.dtype != np.float64:
            raise ValueError(f"The 'out' parameter must be float64 with at least {need} rows and {self._n_channels} "
                             f"columns, got {out.dtype} {out.shape}.")
        if positions.shape[0] < need or positions.dtype != np.float64:
            raise ValueError(f"The 'positions' parameter must be float64 with at least {need} entries, got "
                             f"{positions.dtype} {positions.shape}.")
        self._ensure_work(x.shape[0])
        return int(polyphase(self._taps, self._up, self._down, self._work, x, out, positions, self._phase))

    def process_positions(self, chunk: NDArray[np.floating]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Resample one chunk; also return each output's fractional input position relative to ``chunk[0]``.

        Returns
        -------
        out : ndarray of float64, shape (outputs, channels)
        positions : ndarray of float64, shape (outputs,)
        """
        x = as_chunk("chunk", chunk, self._n_channels)
        need = (x.shape[0] * self._up) // self._down + 1
        out = np.empty((need, self._n_channels))
        positions = np.empty(need)
        self._ensure_work(x.shape[0])
        k = polyphase(self._taps, self._up, self._down, self._work, x, out, positions, self._phase)
        return out[:k], positions[:k]

    def process(self, chunk: NDArray[np.floating]) -> NDArray[np.float64]:
        """Resample one chunk and return the outputs it completes, shape (outputs, channels), float64."""
        return self.process_positions(chunk)[0]
