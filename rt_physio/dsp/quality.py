"""Signal quality of one window: per-channel flat line, clipping, line noise and non-finite data → a 0..1 score.

The windower calls :func:`assess` with the processed window (µV, at the output rate, as the model sees it) and,
when it has them, the raw-domain :class:`WindowCounts` that :meth:`StreamProcessor.window_counts
<rt_physio.dsp.StreamProcessor.window_counts>` returns for the same window: clipping and non-finite samples are
properties of the raw stream (a band-pass turns a railed flat segment into a decaying wave), so they are counted
on the raw input as it arrives and only summed per window here.

Definitions, per channel ``c`` (all fractions in 0..1):

* ``nonfinite[c]``: fraction of the window's input samples that were not measured: non-finite values replaced by
  the last good value, plus samples filled across a timestamp gap.
* ``clipped[c]``: fraction of input samples inside a run of identical raw values long enough to be a rail or a
  dead channel (:func:`~rt_physio.dsp.hygiene.stuck_run_length`).
* ``flat[c]``: the processed window's standard deviation is below ``flat_uv`` (dead or disconnected channel).
* ``line_ratio[c]``: share of the window's power (above 1 Hz) within ±1 Hz of the line frequencies (50 and 60 Hz
  by default): residual mains after the notch, the interference the model actually sees.

Channel score ``= 0`` if flat, else ``max(0, 1 - nonfinite - clipped) * (1 - line_ratio)``: the share of the
window that is measured, varying, non-mains signal. The modality score is the mean channel score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rt_physio.checks import check_positive

__all__ = ["QualityReport", "WindowCounts", "assess", "flat_channels", "line_noise_ratio"]


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Raw-domain hygiene counts over a window's span (from the stream processor).

    Attributes
    ----------
    nonfinite : ndarray of float64, shape (channels,)
        Fraction of input samples whose value was non-finite and replaced.
    filled : float
        Fraction of input samples synthesised across timestamp gaps (all channels).
    stuck : ndarray of float64, shape (channels,)
        Fraction of input samples in long runs of identical raw values (flat line or rail).
    n_input : int
        Input samples that arrived within the window's span.
    """

    nonfinite: NDArray[np.float64]
    filled: float
    stuck: NDArray[np.float64]
    n_input: int

    @property
    def replaced(self) -> NDArray[np.float64]:
        """Fraction of input samples per channel that were not measured (non-finite or gap-filled)."""
        return np.minimum(1.0, self.nonfinite + self.filled)


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Quality of one window of one modality.

    Attributes
    ----------
    score : float
        Modality score in 0..1 (mean of :attr:`channel_scores`).
    channel_scores : ndarray of float64, shape (channels,)
        Per-channel score in 0..1.
    flat, clipped, line_ratio, nonfinite : ndarray, shape (channels,)
        The components (see the module docstring); ``flat`` is boolean.
    """

    score: float
    channel_scores: NDArray[np.float64]
    flat: NDArray[np.bool_]
    clipped: NDArray[np.float64]
    line_ratio: NDArray[np.float64]
    nonfinite: NDArray[np.float64]


def _check_window(window: object) -> NDArray[np.float64]:
    if not isinstance(window, np.ndarray) or window.ndim != 2 or window.shape[0] < 2:
        shape = getattr(window, "shape", type(window).__name__)
        raise ValueError(f"The 'window' parameter must be an array of shape (samples >= 2, channels), got {shape}.")
    return np.asarray(window, dtype=np.float64)


def flat_channels(window: NDArray[np.floating], flat_uv: float = 0.5) -> NDArray[np.bool_]:
    """Channels whose standard deviation over the window is below ``flat_uv`` µV.

    Parameters
    ----------
    window : ndarray, shape (samples, channels)
        Signal in µV; non-finite values make a channel count as flat.
    flat_uv : float
        Threshold in µV.

    Returns
    -------
    ndarray of bool, shape (channels,)
    """
    x = _check_window(window)
    std = x.std(axis=0)
    return np.asarray(~(std >= check_positive("flat_uv", flat_uv)), dtype=np.bool_)


def line_noise_ratio(window: NDArray[np.floating], fs: float,
                     line_freqs: Sequence[float] = (50.0, 60.0)) -> NDArray[np.float64]:
    """Share of each channel's power (above 1 Hz) within ±1 Hz of the line frequencies.

    Parameters
    ----------
    window : ndarray, shape (samples, channels)
        Signal (any unit).
    fs : float
        Sampling rate in Hz.
    line_freqs : sequence of float
        Mains frequencies to look at; those at or above ``fs / 2`` are ignored.

    Returns
    -------
    ndarray of float64, shape (channels,)
        0 for a channel with no power above 1 Hz.
    """
    x = _check_window(window)
    fs = check_positive("fs", fs)
    spectrum = np.fft.rfft((x - x.mean(axis=0)) * np.hanning(x.shape[0])[:, None], axis=0)
    power = spectrum.real**2 + spectrum.imag**2
    freqs = np.fft.rfftfreq(x.shape[0], 1.0 / fs)
    above = freqs >= 1.0
    line = np.zeros(freqs.shape, dtype=bool)
    for f in line_freqs:
        if 0 < f < fs / 2:
            line |= np.abs(freqs - f) <= 1.0
    total = power[above].sum(axis=0)
    mains = power[above & line].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(total > 0, mains / total, 0.0)
    return np.asarray(np.nan_to_num(ratio, nan=0.0), dtype=np.float64)


def assess(window: NDArray[np.floating], fs: float, counts: WindowCounts | None = None, *,
           line_freqs: Sequence[float] = (50.0, 60.0), flat_uv: float = 0.5) -> QualityReport:
    """Score one window of one modality.

    Parameters
    ----------
    window : ndarray, shape (samples, channels)
        Processed signal in µV at rate ``fs`` (e.g. what :meth:`StreamProcessor.read_until
        <rt_physio.dsp.StreamProcessor.read_until>` returns).
    fs : float
        Sampling rate of ``window`` in Hz.
    counts : WindowCounts, optional
        Raw-domain counts for the same span; without them clipping and non-finite fractions are taken as 0.
    line_freqs : sequence of float
        Mains frequencies.
    flat_uv : float
        Flat-line threshold in µV.

    Returns
    -------
    QualityReport
        Components, per-channel scores and the modality score.
    """
    x = _check_window(window)
    n_channels = x.shape[1]
    flat = flat_channels(x, flat_uv)
    line = line_noise_ratio(x, fs, line_freqs)
    if counts is None:
        nonfinite = np.zeros(n_channels)
        clipped = np.zeros(n_channels)
    else:
        if counts.nonfinite.shape != (n_channels,):
            raise ValueError(f"The 'counts' parameter must describe {n_channels} channels, got "
                             f"{counts.nonfinite.shape[0]}.")
        nonfinite = counts.replaced
        clipped = counts.stuck
    scores = np.where(flat, 0.0, np.clip(1.0 - nonfinite - clipped, 0.0, 1.0) * (1.0 - line))
    return QualityReport(score=float(scores.mean()), channel_scores=scores, flat=flat, clipped=clipped,
                         line_ratio=line, nonfinite=nonfinite)
