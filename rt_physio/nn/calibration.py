"""Per-person calibration: centre a model's features on that person's own rest baseline.

Between-person differences (resting heart rate, skull thickness, electrode contact) dominate what a model sees
across people; each live session can measure them in its first seconds. A calibratable model splits into
``features(eeg, ecg) -> (features (B, F), present (B, 2))`` and ``classify(features, present, calibrated)``;
:class:`Baseline` collects the features of a person's calibration windows, and :func:`center_features` subtracts
their mean from later windows before the calibrated head reads them. Training (``rt-physio train ... --calibrate
S``), evaluation (``rt-physio evaluate --calibrate S``) and the engine (``rt-physio run --calibrate S``) all use
these two pieces, so a model sees the same transformation everywhere.

Centring is per modality block: ``feature_modality[j]`` says which modality (0 EEG, 1 ECG) feature ``j``
belongs to (-1: never centred, e.g. a flag). A block is centred only on windows where its modality is present,
with the baseline mean over the calibration windows where it was present; a modality with no baseline
windows falls back to the model's ``calibration_fallback`` (the mean of the training people's baselines).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = ["Baseline", "Calibratable", "as_numpy", "center_features", "is_calibratable"]

#: Presence-flag columns, in the order of ``present``.
N_MODALITIES = 2


@runtime_checkable
class Calibratable(Protocol):
    """What a model offers to be calibrated (``FusionModel`` and ``ClassicalModel`` both do)."""

    @property
    def feature_modality(self) -> Tensor:
        """``(F,)`` long: 0 EEG, 1 ECG, -1 never centred."""
        ...

    def features(self, eeg: Tensor | None = None, ecg: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(B, F)`` float features and ``(B, 2)`` float presence flags (eeg, ecg)."""
        ...

    def classify(self, features: Tensor, present: Tensor, calibrated: bool = False) -> Tensor:
        """``(B, n_outputs)`` logits."""
        ...


def is_calibratable(module: object) -> bool:
    """Whether ``module`` splits into features and a head, with a calibrated head to use."""
    return isinstance(module, Calibratable) and isinstance(getattr(module, "calibration_fallback", None), Tensor)


def center_features(features: NDArray[np.floating], present: NDArray[np.floating],
                    feature_modality: NDArray[np.integer], baseline_mean: NDArray[np.floating],
                    baseline_has: NDArray[np.bool_] | Sequence[bool],
                    fallback: NDArray[np.floating]) -> NDArray[np.floating]:
    """Subtract a person's baseline from their windows' features.

    Parameters
    ----------
    features : ndarray
        ``(B, F)`` features of the windows to centre.
    present : ndarray
        ``(B, 2)`` presence flags (eeg, ecg) of those windows.
    feature_modality : ndarray
        ``(F,)`` modality of each feature (0, 1; -1: never centred).
    baseline_mean : ndarray
        ``(F,)`` mean features over the person's calibration windows (per block, over windows with it present).
    baseline_has : ndarray
        ``(2,)`` bool: whether the baseline saw each modality; where not, ``fallback`` stands in.
    fallback : ndarray
        ``(F,)`` population baseline.

    Returns
    -------
    ndarray
        ``(B, F)``, float32 for float32 features (float64 for float64): ``features - baseline`` on the blocks
        present in each window, unchanged elsewhere (absent blocks stay as the model fills them, usually zeros).

    Raises
    ------
    ValueError
        Shapes that do not fit together.
    """
    feats = np.asarray(features)
    feats = feats.astype(np.result_type(feats.dtype, np.float32), copy=False)
    mod = np.asarray(feature_modality)
    has = np.asarray(baseline_has, dtype=bool)
    n_features = len(mod)
    if (feats.ndim != 2 or feats.shape[1] != n_features or np.shape(present) != (feats.shape[0], N_MODALITIES)
            or np.shape(baseline_mean) != (n_features,) or np.shape(fallback) != (n_features,)
            or has.shape != (N_MODALITIES,)):
        raise ValueError(f"center_features needs (B, {n_features}) features, (B, 2) flags, ({n_features},) baseline "
                         f"and fallback and (2,) baseline_has; got {feats.shape}, {np.shape(present)}, "
                         f"{np.shape(baseline_mean)}, {np.shape(fallback)} and {has.shape}.")
    centre = np.where(has[np.clip(mod, 0, N_MODALITIES - 1)], baseline_mean, fallback).astype(feats.dtype)
    centre[mod < 0] = 0.0
    # (B, F): whether each feature's modality is present in each window
    active = np.asarray(present, dtype=bool)[:, np.clip(mod, 0, N_MODALITIES - 1)] & (mod >= 0)
    out: NDArray[np.floating] = feats - np.where(active, centre, feats.dtype.type(0.0))
    return out


class Baseline:
    """Running per-modality mean of a person's calibration features.

    Parameters
    ----------
    feature_modality : ndarray
        ``(F,)`` modality of each feature (see :func:`center_features`).
    """

    def __init__(self, feature_modality: NDArray[np.integer]) -> None:
        self.feature_modality = np.asarray(feature_modality)
        n = len(self.feature_modality)
        self._sum = np.zeros(n, dtype=np.float64)
        self._count = np.zeros(N_MODALITIES, dtype=np.int64)

    @property
    def windows(self) -> NDArray[np.int64]:
        """Calibration windows seen per modality (eeg, ecg)."""
        return self._count.copy()

    def add(self, features: NDArray[np.floating], present: NDArray[np.floating]) -> None:
        """Add calibration windows: ``(B, F)`` features and ``(B, 2)`` presence flags (or one window, 1-D)."""
        feats = np.atleast_2d(np.asarray(features, dtype=np.float64))
        flags = np.atleast_2d(np.asarray(present)).astype(bool)
        if feats.shape[1] != len(self.feature_modality) or flags.shape != (feats.shape[0], N_MODALITIES):
            raise ValueError(f"Baseline.add expects (B, {len(self.feature_modality)}) features and (B, 2) flags, "
                             f"got {feats.shape} and {flags.shape}.")
        mod = np.clip(self.feature_modality, 0, N_MODALITIES - 1)
        self._sum += (feats * flags[:, mod]).sum(axis=0)
        self._count += flags.sum(axis=0)

    def mean(self) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """``(F,)`` baseline mean (0 for unseen modalities) and ``(2,)`` which modalities were seen."""
        has = self._count > 0
        counts = np.maximum(self._count, 1)[np.clip(self.feature_modality, 0, N_MODALITIES - 1)]
        return (self._sum / counts).astype(np.float32), has

    def center(self, features: NDArray[np.floating], present: NDArray[np.floating],
               fallback: NDArray[np.floating]) -> NDArray[np.floating]:
        """Centre ``(B, F)`` features on this baseline (see :func:`center_features`)."""
        mean, has = self.mean()
        return center_features(features, present, self.feature_modality, mean, has, fallback)


def as_numpy(t: Tensor) -> NDArray[np.float32]:
    """Return a CPU float32 copy of a tensor (for the numpy side of calibration)."""
    out: NDArray[np.float32] = t.detach().to("cpu", torch.float32).numpy()
    return out
