"""Montage-agnostic classical features of one window: EEG spectral summaries over channels, ECG heart rate / HRV.

Pure numpy / scipy (no state), used by :class:`rt_physio.nn.hybrid.HybridModel` at run time and by its training
(:mod:`rt_physio.training.hybrid`), so both compute the same numbers. Unlike :mod:`rt_physio.dsp.features`
(features per channel, so a fixed montage), every EEG feature here is a statistic **over channels** (mean and
standard deviation), so the block has the same length and meaning for 20 EEGMAT channels, a 14-channel headset
or a 4-channel band.

EEG block (:data:`EEG_FEATURES`, 26 values), from Welch spectra (2-s Hann segments, 50 % overlap) of each
channel:

* mean and SD over channels of log10 absolute band power, δ θ α β γ (1-4-8-13-30-45 Hz): 10
* mean and SD over channels of log10 relative band power (band / 1-45 Hz): 10
* mean and SD of the normalised spectral entropy over 1-45 Hz: 2
* mean Hjorth mobility and complexity: 2
* mean peak alpha frequency (7-14 Hz): 1
* mean absolute correlation between channel pairs: 1

ECG block (:data:`ECG_FEATURES`, 5 values), from the R peaks of :func:`rt_physio.dsp.features.hrv`'s
plausible lead: heart rate (bpm), ln(1 + SDNN ms), ln(1 + RMSSD ms), log10 of the median |R| amplitude of the
5-20 Hz band-passed lead (model units), and its coefficient of variation over the window's beats.

Presence follows :func:`rt_physio.dsp.features.channel_features`: EEG is absent when not given, non-finite or
flat; ECG is absent when not given or without plausible beats.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from rt_physio.dsp.features import BANDS, POWER_FLOOR, detect_qrs, hrv

__all__ = ["ECG_FEATURES", "EEG_FEATURES", "N_FEATURES", "ecg_features", "eeg_features", "summary_features"]

_BAND_NAMES = tuple(name for name, _, _ in BANDS)
#: Names of the EEG block, in order.
EEG_FEATURES: tuple[str, ...] = (
    *(f"logpow_{b}_mean" for b in _BAND_NAMES), *(f"logpow_{b}_sd" for b in _BAND_NAMES),
    *(f"logrel_{b}_mean" for b in _BAND_NAMES), *(f"logrel_{b}_sd" for b in _BAND_NAMES),
    "entropy_mean", "entropy_sd", "hjorth_mobility", "hjorth_complexity", "alpha_peak_hz", "abs_corr_mean",
)
#: Names of the ECG block, in order.
ECG_FEATURES: tuple[str, ...] = ("hr_bpm", "log_sdnn_ms", "log_rmssd_ms", "log_r_amplitude", "r_amplitude_cv")
#: Length of the feature vector ``[EEG block, ECG block]``.
N_FEATURES = len(EEG_FEATURES) + len(ECG_FEATURES)
_REL_FLOOR = 1e-6


def eeg_features(x: NDArray[np.floating], sfreq: float) -> NDArray[np.float64] | None:
    """Compute the EEG block of one window ``(channels, samples)``, or None when it is non-finite or flat."""
    from scipy.signal import welch

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or not np.all(np.isfinite(x)):
        return None
    x = x - x.mean(axis=1, keepdims=True)
    live = x.std(axis=1) > 0
    if not live.any():
        return None
    x = x[live]
    nperseg = min(x.shape[1], round(2.0 * sfreq))
    freqs, psd = welch(x, fs=sfreq, window="hann", nperseg=nperseg, noverlap=nperseg // 2, axis=-1)
    df = freqs[1] - freqs[0]
    absolute = np.stack([psd[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) * df for _, lo, hi in BANDS], axis=1)
    in_total = (freqs >= BANDS[0][1]) & (freqs < BANDS[-1][2])
    total = psd[:, in_total].sum(axis=1) * df  # (C,)
    logpow = np.log10(absolute + POWER_FLOOR)  # (C, 5)
    logrel = np.log10(absolute / np.maximum(total, POWER_FLOOR)[:, None] + _REL_FLOOR)
    p = psd[:, in_total] / np.maximum(psd[:, in_total].sum(axis=1, keepdims=True), 1e-30)
    entropy = -(p * np.log(p + 1e-30)).sum(axis=1) / math.log(max(2, int(in_total.sum())))  # (C,) in [0, 1]
    d1 = np.diff(x, axis=1)
    d2 = np.diff(d1, axis=1)
    v0, v1, v2 = x.var(axis=1), d1.var(axis=1), d2.var(axis=1)
    mobility = np.sqrt(v1 / np.maximum(v0, 1e-30))
    complexity = np.sqrt(v2 / np.maximum(v1, 1e-30)) / np.maximum(mobility, 1e-30)
    in_alpha = (freqs >= 7.0) & (freqs <= 14.0)
    alpha_peak = freqs[in_alpha][np.argmax(psd[:, in_alpha], axis=1)]
    if x.shape[0] > 1:
        corr = np.corrcoef(x)
        abs_corr = float(np.abs(corr[np.triu_indices(x.shape[0], k=1)]).mean())
    else:
        abs_corr = 1.0
    sd = (lambda a: a.std(axis=0)) if x.shape[0] > 1 else (lambda a: np.zeros(a.shape[1:]))
    return np.concatenate([
        logpow.mean(axis=0), sd(logpow), logrel.mean(axis=0), sd(logrel),
        [entropy.mean(), float(sd(entropy[:, None])[0]), mobility.mean(), complexity.mean(), alpha_peak.mean(),
         abs_corr],
    ])


def ecg_features(x: NDArray[np.floating], sfreq: float) -> NDArray[np.float64] | None:
    """Compute the ECG block of one window ``(leads, samples)``, or None without plausible beats (see ``hrv``)."""
    leads = np.asarray(x, dtype=np.float64)
    leads = leads[None, :] if leads.ndim == 1 else leads
    if leads.ndim != 2 or not np.all(np.isfinite(leads)):
        return None
    for lead in leads:
        result = hrv(lead, sfreq)
        if result is None:
            continue
        hr, sdnn, rmssd = result
        peaks, y = detect_qrs(lead, sfreq)
        amp = np.abs(y[peaks])
        med = float(np.median(amp))
        return np.array([hr, math.log1p(sdnn), math.log1p(rmssd), math.log10(med + POWER_FLOOR),
                         float(amp.std()) / max(med, 1e-12)])
    return None


def summary_features(eeg: NDArray[np.floating] | None, ecg: NDArray[np.floating] | None,
                     sfreq: float = 200.0) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Feature vector ``(N_FEATURES,)`` of one window and its presence flags ``(2,)`` (eeg, ecg).

    Parameters
    ----------
    eeg, ecg : ndarray, shape (C, N, P) or (C, samples), or None
        Windows in model units; ``(C, N, 200)`` patches are joined back into time.
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    features : ndarray of float32, shape (N_FEATURES,)
        ``[EEG block, ECG block]``; an absent block is zeros.
    present : ndarray of float32, shape (2,)
        0/1 flags.
    """
    out = np.zeros(N_FEATURES, dtype=np.float32)
    present = np.zeros(2, dtype=np.float32)
    if eeg is not None:
        block = eeg_features(_as_time(eeg), sfreq)
        if block is not None and np.all(np.isfinite(block)):
            out[:len(EEG_FEATURES)] = block
            present[0] = 1.0
    if ecg is not None:
        block = ecg_features(_as_time(ecg), sfreq)
        if block is not None and np.all(np.isfinite(block)):
            out[len(EEG_FEATURES):] = block
            present[1] = 1.0
    return out, present


def _as_time(x: NDArray[np.floating]) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    return arr.reshape(arr.shape[0], -1) if arr.ndim == 3 else arr
