"""Classical signal features of one window: EEG band powers and ECG R peaks, heart rate / HRV.

Pure numpy / scipy functions (no state), used by the classical model (:mod:`rt_physio.nn.classical`) at run time
and by its training, so both compute exactly the same numbers; :mod:`rt_physio.dsp.summary_features` builds its
montage-agnostic statistics on the same R peaks.

* :func:`band_powers` — Welch band powers (δ θ α β γ ≤ 45 Hz) per channel, absolute and relative.
* :func:`detect_r_peaks` — a Pan-Tompkins-style R-peak detector that works on either polarity.
* :func:`detect_qrs` — the same R peaks and the 5-20 Hz band-passed lead they were found on.
* :func:`hrv` — heart rate, SDNN and RMSSD of one window, or None when the detected beats are implausible.
* :func:`channel_features` — the per-channel feature vector of one window ``[EEG block, ECG block]`` and its
  presence flags (fixed montage: one block of band powers per EEG channel).

Units do not matter for the EEG relative powers and the ECG features; the absolute powers are in (input unit)²
(model units², i.e. (µV / ``scale_uv``)², when called on model inputs), on a log10 scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from rt_physio.checks import check_positive

__all__ = [
    "BANDS",
    "ECG_FEATURES",
    "MAX_RR_CV",
    "MAX_RR_RATIO",
    "MIN_R_PROMINENCE",
    "POWER_FLOOR",
    "band_powers",
    "channel_features",
    "detect_qrs",
    "detect_r_peaks",
    "eeg_feature_count",
    "hrv",
]

#: EEG bands (name, low Hz, high Hz); the relative power is over [first low, last high].
BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 45.0),
)
#: Names of the ECG block: heart rate (bpm), ln(1 + SDNN ms), ln(1 + RMSSD ms).
ECG_FEATURES: tuple[str, ...] = ("hr_bpm", "log_sdnn_ms", "log_rmssd_ms")
#: Added to absolute band powers before log10 (a flat channel must not give -inf).
POWER_FLOOR = 1e-10
#: Longest / shortest RR interval above which a window's beats are rejected as a detection failure.
MAX_RR_RATIO = 2.5
#: Largest coefficient of variation of the RR intervals (SDNN / mean RR) of a plausible window. On EEGMAT's 5-s
#: windows of usable ECG it is below 0.2 (all but a handful below 0.15); on its three noise leads detections give
#: 0.2-0.4, and this limit rejects 83 of their 84 windows.
MAX_RR_CV = 0.2
#: Smallest median |R| of the detections, in robust standard deviations (1.4826 MAD) of the 5-20 Hz band-passed
#: lead. QRS complexes stand out of an ECG (EEGMAT's usable windows: about 11 typically, 3.1 at the lowest, at 124 bpm
#: in Subject01_2; none is rejected by this limit); detections on white noise give 2.4-3.4, and with this limit 0.3 %
#: of white-noise windows pass every check (1.8 % without it).
MIN_R_PROMINENCE = 3.0
#: Plausible heart rates (bpm).
HR_RANGE = (30.0, 220.0)
_REFRACTORY_S = 0.25
_MIN_BEATS = 3


def eeg_feature_count(n_channels: int, n_bands: int = len(BANDS)) -> int:
    """Length of the EEG block: per channel, ``n_bands`` log absolute powers then ``n_bands`` relative powers."""
    return n_channels * n_bands * 2


def band_powers(x: NDArray[np.floating], sfreq: float,
                bands: Sequence[tuple[str, float, float]] = BANDS) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Absolute and relative power per channel and band (Welch, 2-s Hann segments, 50 % overlap).

    Parameters
    ----------
    x : ndarray, shape (channels, samples)
        Signal in any unit; at least 2 s long (shorter signals use one segment of their own length).
    sfreq : float
        Sampling rate in Hz.
    bands : sequence of (name, low, high)
        Bands in Hz; a frequency bin ``f`` belongs to a band when ``low <= f < high``.

    Returns
    -------
    absolute : ndarray of float64, shape (channels, n_bands)
        Band power (unit² — the integral of the PSD over the band).
    relative : ndarray of float64, shape (channels, n_bands)
        Band power divided by the power over ``[bands[0].low, bands[-1].high)``; 0 for a flat channel.
    """
    from scipy.signal import welch

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"The 'x' parameter must be (channels, samples), got shape {x.shape}.")
    check_positive("sfreq", sfreq)
    nperseg = min(x.shape[1], round(2.0 * sfreq))
    freqs, psd = welch(x, fs=sfreq, window="hann", nperseg=nperseg, noverlap=nperseg // 2, axis=-1)
    df = freqs[1] - freqs[0]
    absolute = np.stack([psd[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) * df for _, lo, hi in bands], axis=1)
    in_total = (freqs >= bands[0][1]) & (freqs < bands[-1][2])
    total = psd[:, in_total].sum(axis=1, keepdims=True) * df
    relative = np.divide(absolute, total, out=np.zeros_like(absolute), where=total > 0)
    return absolute, relative


def detect_r_peaks(ecg: NDArray[np.floating], sfreq: float) -> NDArray[np.int64]:
    """R-peak sample indices of one ECG lead (either polarity, noisy signals tolerated): :func:`detect_qrs`'s peaks.

    Returns
    -------
    ndarray of int64
        Sorted peak indices (empty when the signal is flat or too short).
    """
    return detect_qrs(ecg, sfreq)[0]


def detect_qrs(ecg: NDArray[np.floating], sfreq: float) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """R peaks of one ECG lead and the 5-20 Hz band-passed lead they were found on.

    Pan-Tompkins-style: band-pass 5-20 Hz (QRS energy), squared derivative, 150-ms moving integration, a threshold
    between the noise level (median) and the signal level (a high percentile) of the integrated signal, a 250-ms
    refractory period, then each detection is moved to the extreme of the band-passed ECG within ±100 ms, on the
    window's dominant QRS polarity (the sign of the larger deflections), so inverted leads give their R (or QS)
    peaks too.

    Parameters
    ----------
    ecg : ndarray, shape (samples,)
        One lead, any unit.
    sfreq : float
        Sampling rate in Hz (at least 50 Hz).

    Returns
    -------
    peaks : ndarray of int64
        Sorted peak indices (empty when the signal is flat or too short).
    filtered : ndarray of float64, shape (samples,)
        The zero-phase 5-20 Hz band-passed lead (the input itself when it is flat, too short or non-finite).
    """
    from scipy.signal import find_peaks, sosfiltfilt

    x = np.asarray(ecg, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"The 'ecg' parameter must be one lead (samples,), got shape {x.shape}.")
    if not sfreq >= 50:
        raise ValueError(f"The 'sfreq' parameter must be at least 50 Hz for R-peak detection, got {sfreq!r}.")
    none = np.zeros(0, dtype=np.int64)
    if x.size < round(sfreq) or not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return none, x
    y = sosfiltfilt(_qrs_sos(float(sfreq)), x - x.mean())
    energy = np.gradient(y) ** 2
    width = max(1, round(0.15 * sfreq))
    integrated = np.convolve(energy, np.ones(width) / width, mode="same")
    noise, signal = np.median(integrated), np.percentile(integrated, 98)
    if signal <= noise:
        return none, y
    refractory = max(1, round(_REFRACTORY_S * sfreq))
    candidates, _ = find_peaks(integrated, height=noise + 0.3 * (signal - noise), distance=refractory)
    if candidates.size == 0:
        return none, y
    half = max(1, round(0.1 * sfreq))
    segments = [(max(0, c - half), min(x.size, c + half + 1)) for c in candidates]
    extremes = np.array([y[a:b][np.argmax(np.abs(y[a:b]))] for a, b in segments])
    polarity = 1.0 if np.sum(extremes[extremes > 0]) >= -np.sum(extremes[extremes < 0]) else -1.0
    peaks = np.array([a + int(np.argmax(polarity * y[a:b])) for a, b in segments], dtype=np.int64)
    # refinement can pull two detections onto one beat or closer than the refractory period: keep the larger
    kept: list[int] = []
    for p in np.unique(peaks):
        if kept and p - kept[-1] < refractory:
            if polarity * y[p] > polarity * y[kept[-1]]:
                kept[-1] = int(p)
            continue
        kept.append(int(p))
    return np.asarray(kept, dtype=np.int64), y


@lru_cache(maxsize=8)
def _qrs_sos(sfreq: float) -> NDArray[np.float64]:
    from scipy.signal import butter

    sos: NDArray[np.float64] = butter(2, [5.0, min(20.0, 0.45 * sfreq)], btype="bandpass", fs=sfreq, output="sos")
    return sos


def hrv(ecg: NDArray[np.floating], sfreq: float) -> tuple[float, float, float] | None:
    """Heart rate and short-term HRV of one window, or None when its beats are implausible.

    Parameters
    ----------
    ecg : ndarray, shape (samples,) or (leads, samples)
        ECG in any unit. With several leads, the first lead giving a plausible result is used.
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    (hr_bpm, sdnn_ms, rmssd_ms) or None
        Mean heart rate (60 / mean RR), SDNN (sample standard deviation of RR) and RMSSD. None when fewer than 3
        beats were found, the R peaks do not stand out of the lead (:data:`MIN_R_PROMINENCE`), the heart rate is
        outside 30-220 bpm, the longest RR interval exceeds :data:`MAX_RR_RATIO` times the shortest, or the RR
        intervals vary more than :data:`MAX_RR_CV` (missed or spurious beats: the window's ECG is noise or
        artefact).
    """
    x = np.asarray(ecg, dtype=np.float64)
    leads = x[None, :] if x.ndim == 1 else x
    if leads.ndim != 2:
        raise ValueError(f"The 'ecg' parameter must be (samples,) or (leads, samples), got shape {x.shape}.")
    for lead in leads:
        peaks, y = detect_qrs(lead, sfreq)
        if peaks.size < _MIN_BEATS:
            continue
        sigma = 1.4826 * np.median(np.abs(y - np.median(y)))  # robust spread of the band-passed lead
        if not np.median(np.abs(y[peaks])) >= MIN_R_PROMINENCE * sigma:
            continue
        rr = np.diff(peaks) / sfreq  # seconds
        hr = 60.0 / float(rr.mean())
        if (not HR_RANGE[0] <= hr <= HR_RANGE[1] or rr.max() > MAX_RR_RATIO * rr.min()
                or rr.std(ddof=1) > MAX_RR_CV * rr.mean()):
            continue
        sdnn = float(rr.std(ddof=1)) * 1e3
        rmssd = float(np.sqrt(np.mean(np.diff(rr) ** 2))) * 1e3
        return hr, sdnn, rmssd
    return None


def channel_features(eeg: NDArray[np.floating] | None, ecg: NDArray[np.floating] | None,
                    sfreq: float = 200.0, *, n_eeg_channels: int | None = None,
                    bands: Sequence[tuple[str, float, float]] = BANDS
                    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Per-channel feature vector of one window and which of its blocks are present.

    Parameters
    ----------
    eeg : ndarray, shape (C, N, P) or (C, samples), or None
        EEG window (model units: µV / ``scale_uv``); ``(C, N, 200)`` patches are joined back into time.
    ecg : ndarray, shape (L, N, P) or (L, samples), or None
        ECG window, same conventions.
    sfreq : float
        Sampling rate in Hz.
    n_eeg_channels : int | None
        Size of the EEG block when ``eeg`` is None (default: the channels of ``eeg``; 0 when both are None).
    bands : sequence of (name, low, high)
        EEG bands.

    Returns
    -------
    features : ndarray of float32, shape (C * n_bands * 2 + 3,)
        ``[per EEG channel: log10(abs power + POWER_FLOOR) per band, relative power per band ; hr_bpm,
        ln(1 + SDNN ms), ln(1 + RMSSD ms)]``; an absent block is zeros.
    present : ndarray of float32, shape (2,)
        ``[eeg present, ecg present]`` (0/1). EEG is absent when not given, non-finite or flat (zero power in every
        channel); ECG is absent when not given or when :func:`hrv` finds no plausible beats.
    """
    n_ch = n_eeg_channels if n_eeg_channels is not None else (0 if eeg is None else int(np.shape(eeg)[0]))
    eeg_block = np.zeros(eeg_feature_count(n_ch, len(bands)), dtype=np.float32)
    ecg_block = np.zeros(len(ECG_FEATURES), dtype=np.float32)
    present = np.zeros(2, dtype=np.float32)
    if eeg is not None:
        x = _as_time(eeg, "eeg")
        if x.shape[0] != n_ch:
            raise ValueError(f"The 'eeg' window has {x.shape[0]} channels, expected {n_ch}.")
        if np.all(np.isfinite(x)):
            absolute, relative = band_powers(x, sfreq, bands)
            if np.any(absolute.sum(axis=1) > 0):
                # (C, n_bands) + (C, n_bands) -> (C, 2 * n_bands) -> (C * 2 * n_bands,)
                eeg_block = np.concatenate([np.log10(absolute + POWER_FLOOR), relative], axis=1).ravel()
                eeg_block = eeg_block.astype(np.float32)
                present[0] = 1.0
    if ecg is not None:
        y = _as_time(ecg, "ecg")
        result = hrv(y, sfreq) if np.all(np.isfinite(y)) else None
        if result is not None:
            hr, sdnn, rmssd = result
            ecg_block = np.array([hr, math.log1p(sdnn), math.log1p(rmssd)], dtype=np.float32)
            present[1] = 1.0
    return np.concatenate([eeg_block, ecg_block]), present


def _as_time(x: NDArray[np.floating], name: str) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 3:
        return arr.reshape(arr.shape[0], -1)  # (C, N, P) -> (C, N * P): patches are consecutive in time
    if arr.ndim == 2:
        return arr
    raise ValueError(f"The '{name}' window must be (channels, patches, samples) or (channels, samples), "
                     f"got shape {arr.shape}.")
