"""Filter design: second-order-section (SOS) arrays for the stateful filters, designed by :mod:`scipy.signal`.

Every function returns a float64 array of shape (sections, 6), rows ``[b0, b1, b2, 1, a1, a2]``, ready for
:class:`~rt_physio.dsp.SosFilter` or :class:`~rt_physio.dsp.FilterChain` (stack several with ``np.vstack``).
"""

from __future__ import annotations

import numpy as np
import scipy.signal
from numpy.typing import NDArray

from rt_physio.checks import check_int, check_positive

__all__ = ["design_bandpass", "design_highpass", "design_lowpass", "design_notch"]


def _check_below_nyquist(name: str, freq: float, fs: float) -> None:
    if freq >= fs / 2:
        raise ValueError(f"The '{name}' parameter must be below the Nyquist frequency fs/2 = {fs / 2:g} Hz, "
                         f"got {freq:g} Hz.")


def _as_sos(sos: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.ascontiguousarray(sos, dtype=np.float64)
    out /= out[:, 3:4]  # a0 = 1 exactly (scipy's sosfilt requires it, our kernels assume it)
    return out


def design_bandpass(low: float, high: float, fs: float, order: int = 4) -> NDArray[np.float64]:
    """Design a Butterworth band-pass filter.

    Parameters
    ----------
    low, high : float
        Pass-band edges in Hz, ``0 < low < high < fs / 2``.
    fs : float
        Sampling rate in Hz.
    order : int
        Butterworth order of the low-pass prototype; the band-pass has ``order`` sections.

    Returns
    -------
    sos : ndarray of float64, shape (order, 6)
        Second-order sections.
    """
    fs = check_positive("fs", fs)
    low, high = check_positive("low", low), check_positive("high", high)
    order = check_int("order", order)
    _check_below_nyquist("high", high, fs)
    if low >= high:
        raise ValueError(f"The 'low' parameter must be below 'high' ({high:g} Hz), got {low:g} Hz.")
    return _as_sos(scipy.signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos"))


def design_highpass(cutoff: float, fs: float, order: int = 4) -> NDArray[np.float64]:
    """Design a Butterworth high-pass filter.

    Parameters
    ----------
    cutoff : float
        -3 dB frequency in Hz, ``0 < cutoff < fs / 2``.
    fs : float
        Sampling rate in Hz.
    order : int
        Filter order.

    Returns
    -------
    sos : ndarray of float64, shape (ceil(order / 2), 6)
        Second-order sections.
    """
    return _butter_one_edge("highpass", cutoff, fs, order)


def design_lowpass(cutoff: float, fs: float, order: int = 4) -> NDArray[np.float64]:
    """Design a Butterworth low-pass filter.

    Parameters
    ----------
    cutoff : float
        -3 dB frequency in Hz, ``0 < cutoff < fs / 2``.
    fs : float
        Sampling rate in Hz.
    order : int
        Filter order.

    Returns
    -------
    sos : ndarray of float64, shape (ceil(order / 2), 6)
        Second-order sections.
    """
    return _butter_one_edge("lowpass", cutoff, fs, order)


def _butter_one_edge(btype: str, cutoff: float, fs: float, order: int) -> NDArray[np.float64]:
    fs, cutoff, order = check_positive("fs", fs), check_positive("cutoff", cutoff), check_int("order", order)
    _check_below_nyquist("cutoff", cutoff, fs)
    return _as_sos(scipy.signal.butter(order, cutoff, btype=btype, fs=fs, output="sos"))


def design_notch(freq: float, fs: float, q: float = 30.0) -> NDArray[np.float64]:
    """Design a second-order IIR notch (power-line interference).

    Parameters
    ----------
    freq : float
        Notch frequency in Hz, ``0 < freq < fs / 2``.
    fs : float
        Sampling rate in Hz.
    q : float
        Quality factor: the -3 dB width of the notch is ``freq / q``.

    Returns
    -------
    sos : ndarray of float64, shape (1, 6)
        One second-order section.
    """
    fs, freq, q = check_positive("fs", fs), check_positive("freq", freq), check_positive("q", q)
    _check_below_nyquist("freq", freq, fs)
    b, a = scipy.signal.iirnotch(freq, q, fs=fs)
    return _as_sos(scipy.signal.tf2sos(b, a))
