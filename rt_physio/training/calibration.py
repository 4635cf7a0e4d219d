"""Per-person calibration: a rest baseline at the start, then features centred on it.

A subject's (a live session's) first ``seconds`` of rest are its baseline. Windows that end within it are
**calibration windows**: they are never scored and never used as training examples. Every later window of that
subject has each present modality block of its features centred on the mean of that block over the calibration
windows where the block was present; a block the baseline never saw (e.g. an ECG lead that was noise during rest)
is centred on a population fallback instead (the mean over training subjects of their baseline means).

* :func:`baseline_mask` — which windows of a :class:`~rt_physio.training.datasets.windows.WindowDataset` are
  calibration windows.
* :func:`baseline_statistics` — the baseline mean per feature and which modality blocks it covers.
* :func:`center_features` — centre features on a baseline (or the fallback); the engine's own function
  (:mod:`rt_physio.nn.calibration`), so training, evaluation and live sessions centre identically.
* :func:`center_by_subject` — the three above for every subject of a dataset at once.
* :func:`population_fallback` — the fallback: the mean over subjects of their baseline means.

Modalities are indexed as in the presence flags: 0 = EEG, 1 = ECG. ``feature_modality[f]`` says which block
feature ``f`` belongs to; ``-1`` marks features that are never centred.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from rt_physio.nn.calibration import center_features

__all__ = [
    "REST_CONDITIONS",
    "baseline_mask",
    "baseline_statistics",
    "center_by_subject",
    "center_features",
    "population_fallback",
]

#: Recording conditions whose start serves as a baseline.
REST_CONDITIONS: tuple[str, ...] = ("rest",)


class _Windows(Protocol):
    """What :func:`baseline_mask` reads from a WindowDataset."""

    starts: NDArray[np.float64]
    conditions: NDArray[np.object_]
    n_patches: int


def baseline_mask(windows: _Windows, seconds: float, *, window_s: float | None = None,
                  conditions: Sequence[str] = REST_CONDITIONS) -> NDArray[np.bool_]:
    """Mark the calibration windows: those of a rest recording that end within its first ``seconds``.

    Parameters
    ----------
    windows : WindowDataset
        Needs ``starts`` (s from the start of the recording), ``conditions`` and ``n_patches``.
    seconds : float
        Length of the baseline (>= 0; 0 marks nothing).
    window_s : float | None
        Window length in seconds (default: ``windows.n_patches`` 1-s patches).
    conditions : sequence of str
        Recording conditions that count as rest.

    Returns
    -------
    ndarray of bool, shape (n_windows,)
        True for a calibration window (``condition in conditions`` and ``start + window_s <= seconds``).
    """
    if not np.isfinite(seconds) or seconds < 0:
        raise ValueError(f"The 'seconds' parameter must be a non-negative number, got {seconds!r}.")
    length = float(windows.n_patches) if window_s is None else float(window_s)
    rest = np.isin(windows.conditions.astype(str), list(conditions))
    # a tolerance for float window starts: a window ending exactly at the boundary belongs to the baseline
    ends_inside = windows.starts + length <= seconds + 1e-9
    return np.asarray(rest & ends_inside, dtype=bool)


def baseline_statistics(feats: NDArray[np.floating], present: NDArray[np.floating] | NDArray[np.bool_],
                        feature_modality: NDArray[np.integer]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Mean of each feature over the calibration windows where its modality block is present.

    Parameters
    ----------
    feats : ndarray, shape (n, F)
        Features of the calibration windows only.
    present : ndarray, shape (n, 2)
        Presence flags (eeg, ecg) of those windows.
    feature_modality : ndarray of int, shape (F,)
        Block of each feature (0 EEG, 1 ECG, -1 never centred).

    Returns
    -------
    mean : ndarray of float64, shape (F,)
        Baseline mean (0 for features of a block without any present window, and for ``-1`` features).
    has : ndarray of bool, shape (2,)
        Whether the baseline has at least one window with each block present.
    """
    feats, flags, modality = _check(feats, present, feature_modality)
    mean = np.zeros(feats.shape[1], dtype=np.float64)
    has = np.asarray(flags.any(axis=0), dtype=bool)
    for m in range(flags.shape[1]):
        cols = modality == m
        if has[m]:
            mean[cols] = feats[flags[:, m]][:, cols].mean(axis=0)
    return mean, has


def center_by_subject(feats: NDArray[np.floating], present: NDArray[np.floating] | NDArray[np.bool_],
                      subjects: NDArray[np.object_] | Sequence[str], is_baseline: NDArray[np.bool_],
                      feature_modality: NDArray[np.integer], fallback: NDArray[np.floating] | None = None
                      ) -> tuple[NDArray[np.float64], dict[str, tuple[NDArray[np.float64], NDArray[np.bool_]]]]:
    """Centre every subject's windows on that subject's own calibration windows.

    Parameters
    ----------
    feats, present :
        ``(n, F)`` features and ``(n, 2)`` presence flags of every window.
    subjects : sequence of str, shape (n,)
        Subject of each window.
    is_baseline : ndarray of bool, shape (n,)
        Calibration windows (:func:`baseline_mask`); only these make a subject's baseline.
    feature_modality : ndarray of int, shape (F,)
        Block of each feature.
    fallback : ndarray, shape (F,), or None
        Reference for a block a subject's baseline lacks (None: zeros, i.e. that block is left as is).

    Returns
    -------
    centred : ndarray of float64, shape (n, F)
        Centred features (rows of calibration windows are centred too, but must not be scored or trained on).
    baselines : dict
        Subject -> (baseline mean (F,), has (2,)), e.g. to build a population fallback with
        :func:`population_fallback`.
    """
    x, flags, modality = _check(feats, present, feature_modality)
    subj = np.asarray(subjects, dtype=object)
    mask = np.asarray(is_baseline, dtype=bool)
    if subj.shape != (x.shape[0],) or mask.shape != (x.shape[0],):
        raise ValueError(f"subjects and is_baseline need one entry per window ({x.shape[0]}), got {subj.shape} and "
                         f"{mask.shape}.")
    ref_pop = np.zeros(x.shape[1]) if fallback is None else np.asarray(fallback, dtype=np.float64)
    out = np.empty_like(x)
    baselines: dict[str, tuple[NDArray[np.float64], NDArray[np.bool_]]] = {}
    for s in sorted(set(subj.tolist())):
        rows = subj == s
        base = rows & mask
        mean, has = baseline_statistics(x[base], flags[base], modality)
        baselines[str(s)] = (mean, has)
        out[rows] = center_features(x[rows], flags[rows], modality, mean, has, ref_pop)
    return out, baselines


def population_fallback(baselines: dict[str, tuple[NDArray[np.float64], NDArray[np.bool_]]],
                        feature_modality: NDArray[np.integer]) -> NDArray[np.float64]:
    """Mean over subjects of their baseline means, per block over the subjects whose baseline has that block."""
    modality = np.asarray(feature_modality)
    out = np.zeros(modality.shape[0], dtype=np.float64)
    if not baselines:
        return out
    means = np.stack([m for m, _ in baselines.values()])
    has = np.stack([h for _, h in baselines.values()])
    for m in range(has.shape[1]):
        cols = modality == m
        if has[:, m].any():
            out[cols] = means[has[:, m]][:, cols].mean(axis=0)
    return out


def _check(feats: NDArray[np.floating], present: NDArray[np.floating] | NDArray[np.bool_],
           feature_modality: NDArray[np.integer]) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.int64]]:
    x = np.asarray(feats, dtype=np.float64)
    flags = np.asarray(present) > 0
    modality = np.asarray(feature_modality, dtype=np.int64)
    if x.ndim != 2 or flags.ndim != 2 or flags.shape[0] != x.shape[0] or modality.shape != (x.shape[1],):
        raise ValueError(f"feats must be (n, F), present (n, 2) and feature_modality (F,); got {x.shape}, "
                         f"{flags.shape} and {modality.shape}.")
    if modality.size and (modality.min() < -1 or modality.max() >= flags.shape[1]):
        raise ValueError(f"feature_modality values must be -1 or a modality index < {flags.shape[1]}, got "
                         f"{sorted(set(modality.tolist()))}.")
    return x, flags, modality
