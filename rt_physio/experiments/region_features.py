"""EEG features per scalp region, found by 10-20 channel names: an experiment beside the montage-agnostic block.

The classical block (:mod:`rt_physio.dsp.summary_features`) summarises EEG over **all** channels, so it cannot see
where on the scalp a change happens (frontal-midline theta and parietal alpha are the classic workload markers).
These features group channels by their 10-20 / 10-10 names (:func:`site_regions`) and work for any headset: a
region the headset lacks takes the value over all its scalp channels instead, and is flagged absent.

Per window (:func:`region_features`, names in :data:`REGION_FEATURES`, 42 values), from Welch spectra (2-s Hann
segments, 50 % overlap, as the classical block) of each scalp channel:

* per region (:data:`REGIONS`: frontal, central, parietal, temporal, occipital, midline) and band (θ α β), the mean
  over its channels of log10 absolute band power and of log10 relative band power (band / 1-45 Hz): 36
* frontal-midline theta (Fz, FCz, AFz; else the frontal region): log10 absolute and relative θ: 2
* frontal and parietal theta / alpha ratios, log10 (the mean over the region of per-channel log θ − log α): 2
* alpha asymmetry, log10 α right − left, frontal (F4 − F3) and parietal (P4 − P3); a missing pair falls back to the
  region's right-hemisphere mean minus its left-hemisphere mean, and to 0 without both hemispheres: 2

:data:`COMPACT_FEATURES` names the 6 marker features (the last 6 above), for a smaller variant.

Reference sites (A1/A2, M1/M2) and bipolar or non-10-20 labels (``A2-A1``, ``ECG``) belong to no region and are
left out of every value here, including the fallbacks.
"""

from __future__ import annotations

import re

import numpy as np
from numpy.typing import NDArray

from rt_physio.dsp.features import BANDS, POWER_FLOOR
from rt_physio.io.channels import EEG_SITE, label_key

__all__ = ["COMPACT_FEATURES", "REGIONS", "REGION_BANDS", "REGION_FEATURES", "region_features", "site_regions"]

#: Scalp regions, in feature order.
REGIONS: tuple[str, ...] = ("frontal", "central", "parietal", "temporal", "occipital", "midline")
#: Bands (names of :data:`rt_physio.dsp.features.BANDS`) summarised per region.
REGION_BANDS: tuple[str, ...] = ("theta", "alpha", "beta")
#: Names of :func:`region_features`' vector, in order.
REGION_FEATURES: tuple[str, ...] = (
    *(f"{r}_logpow_{b}" for r in REGIONS for b in REGION_BANDS),
    *(f"{r}_logrel_{b}" for r in REGIONS for b in REGION_BANDS),
    "fm_theta_logpow", "fm_theta_logrel", "frontal_theta_alpha", "parietal_theta_alpha",
    "alpha_asym_frontal", "alpha_asym_parietal",
)
#: The marker features alone (frontal-midline theta, theta / alpha ratios, alpha asymmetry).
COMPACT_FEATURES: tuple[str, ...] = REGION_FEATURES[-6:]

# The lobe of a site's letter prefix; "z" sites are also midline. Sites between two lobes go to the later one
# (FC -> central, CP -> parietal, PO -> occipital), temporal sites of the old nomenclature (T3-T6) stay temporal.
_PREFIX_REGION: dict[str, str] = {
    "n": "frontal", "fp": "frontal", "af": "frontal", "f": "frontal",
    "fc": "central", "c": "central",
    "cp": "parietal", "p": "parietal",
    "ft": "temporal", "t": "temporal", "tp": "temporal",
    "po": "occipital", "o": "occipital", "i": "occipital",
}
_SITE_PARTS = re.compile(r"^([a-z]+?)(z|\d+)?$")
_REFERENCE = re.compile(r"^(a|m)[12]$")
_FM_SITES = ("fz", "fcz", "afz")
_ASYM_PAIRS = {"frontal": ("f3", "f4"), "parietal": ("p3", "p4")}
_REL_FLOOR = 1e-6  # as the classical block: a band without power must not give -inf


def site_regions(label: str) -> frozenset[str]:
    """Return the regions of one channel label (``"EEG Fz"`` -> frontal and midline); empty for non-scalp labels.

    Parameters
    ----------
    label : str
        A channel label as a file or stream gives it (type prefix and case are ignored).

    Returns
    -------
    frozenset of str
        Members of :data:`REGIONS`; empty for reference sites (A1/A2, M1/M2), bipolar and non-10-20 labels.
    """
    key = label_key(label)
    if not EEG_SITE.match(key) or _REFERENCE.match(key):
        return frozenset()
    match = _SITE_PARTS.match(key)
    if match is None:
        return frozenset()
    prefix, suffix = match.group(1), match.group(2) or ""
    region = _PREFIX_REGION.get(prefix)
    if region is None:
        return frozenset()
    return frozenset({region, "midline"} if suffix == "z" else {region})


def _band_logs(x: NDArray[np.float64], sfreq: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per channel, log10 absolute and relative power of :data:`REGION_BANDS`: two ``(C, 3)`` arrays."""
    from scipy.signal import welch

    nperseg = min(x.shape[1], round(2.0 * sfreq))
    freqs, psd = welch(x, fs=sfreq, window="hann", nperseg=nperseg, noverlap=nperseg // 2, axis=-1)
    df = freqs[1] - freqs[0]
    bands = {name: (lo, hi) for name, lo, hi in BANDS}
    absolute = np.stack([psd[:, (freqs >= bands[b][0]) & (freqs < bands[b][1])].sum(axis=1) * df
                         for b in REGION_BANDS], axis=1)  # (C, 3)
    total = psd[:, (freqs >= BANDS[0][1]) & (freqs < BANDS[-1][2])].sum(axis=1) * df  # (C,)
    logpow = np.log10(absolute + POWER_FLOOR)
    logrel = np.log10(absolute / np.maximum(total, POWER_FLOOR)[:, None] + _REL_FLOOR)
    return logpow, logrel


def region_features(x: NDArray[np.floating], channel_names: list[str] | tuple[str, ...], sfreq: float
                    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]] | None:
    """Compute the region block of one EEG window ``(channels, samples)``.

    Parameters
    ----------
    x : ndarray, shape (C, samples)
        One window in model units.
    channel_names : sequence of str, length C
        The label of each row of ``x`` (10-20 / 10-10 names; others are ignored).
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    (features, present) or None
        ``features`` (len(:data:`REGION_FEATURES`),) and ``present`` (len(:data:`REGIONS`),): whether the headset
        has a live channel in each region (an absent region's values are those over all scalp channels). None when
        no scalp channel is live (none named, all flat or non-finite).

    Raises
    ------
    ValueError
        ``x`` is not 2-D or ``channel_names`` does not give one label per channel.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != len(channel_names):
        raise ValueError(f"The 'x' parameter must be (channels, samples) with one of the {len(channel_names)} "
                         f"channel_names per row, got shape {arr.shape}.")
    regions = [site_regions(name) for name in channel_names]
    keys = [label_key(name) for name in channel_names]
    live = np.array([bool(r) for r in regions]) & np.all(np.isfinite(arr), axis=1)
    live[live] = arr[live].std(axis=1) > 0
    if not live.any():
        return None
    idx = np.flatnonzero(live)
    logpow, logrel = _band_logs(arr[idx] - arr[idx].mean(axis=1, keepdims=True), sfreq)  # (L, 3) each
    member = {r: np.array([r in regions[i] for i in idx]) for r in REGIONS}
    present = np.array([member[r].any() for r in REGIONS])

    def mean_over(values: NDArray[np.float64], rows: NDArray[np.bool_]) -> NDArray[np.float64]:
        return np.asarray(values[rows].mean(axis=0) if rows.any() else values.mean(axis=0))

    everywhere = np.ones(len(idx), dtype=bool)
    pow_r = {r: mean_over(logpow, member[r]) for r in REGIONS}
    rel_r = {r: mean_over(logrel, member[r]) for r in REGIONS}
    fm = np.array([keys[i] in _FM_SITES for i in idx])
    fm_rows = fm if fm.any() else (member["frontal"] if member["frontal"].any() else everywhere)
    theta, alpha = REGION_BANDS.index("theta"), REGION_BANDS.index("alpha")
    ratio = logpow[:, theta] - logpow[:, alpha]  # (L,)
    pos = {keys[i]: k for k, i in enumerate(idx)}
    side = np.array([_hemisphere(keys[i]) for i in idx])
    asym = []
    for region, (left, right) in _ASYM_PAIRS.items():
        if left in pos and right in pos:
            asym.append(logpow[pos[right], alpha] - logpow[pos[left], alpha])
            continue
        lrows, rrows = member[region] & (side == "left"), member[region] & (side == "right")
        asym.append(float(logpow[rrows, alpha].mean() - logpow[lrows, alpha].mean())
                    if lrows.any() and rrows.any() else 0.0)
    ratios = [float(mean_over(ratio[:, None], member[r])[0]) for r in ("frontal", "parietal")]
    out = np.concatenate([
        *(pow_r[r] for r in REGIONS), *(rel_r[r] for r in REGIONS),
        [logpow[fm_rows, theta].mean(), logrel[fm_rows, theta].mean(), *ratios, *asym],
    ])
    return out, present


def _hemisphere(key: str) -> str:
    """``left`` for odd-numbered sites, ``right`` for even ones, ``midline`` otherwise."""
    digits = re.search(r"(\d+)$", key)
    if digits is None:
        return "midline"
    return "left" if int(digits.group(1)) % 2 else "right"
