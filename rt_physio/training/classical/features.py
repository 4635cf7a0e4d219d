"""The classical model's training table: EEGMAT windows cut as the engine sees them, and their features.

Windows are cut exactly as ``rt-physio evaluate`` cuts them (the engine's DSP via
:func:`~rt_physio.training.datasets.prepare.prepare`, 5-s non-overlapping windows in model units) and turned into
:func:`~rt_physio.dsp.features.channel_features`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rt_physio.dsp.features import BANDS, ECG_FEATURES, channel_features
from rt_physio.nn.fusion import MODALITIES
from rt_physio.nn.spec import Preprocessing
from rt_physio.training.datasets.prepare import prepare
from rt_physio.training.datasets.windows import WindowDataset

__all__ = ["CLASSICAL_PREPROCESSING", "SCALE_UV", "SFREQ", "WINDOW_S", "FeatureTable", "load_feature_table"]

log = logging.getLogger(__name__)

#: Engine filtering per modality (the same as the fusion model's, so both see the same signal).
CLASSICAL_PREPROCESSING = {
    "eeg": Preprocessing(bandpass=(0.3, 75.0), notch=True),
    "ecg": Preprocessing(bandpass=(0.5, 45.0), notch=True),
}
#: Model inputs: microvolts / SCALE_UV, at SFREQ Hz, in WINDOW_S-second windows.
SCALE_UV = 100.0
SFREQ = 200.0
WINDOW_S = 5.0


@dataclass
class FeatureTable:
    """Features of every window of a dataset, with what scoring and calibration need.

    Attributes
    ----------
    feats : ndarray of float32, shape (n, F)
        :func:`channel_features` of each window (model units).
    present : ndarray of bool, shape (n, 2)
        Feature blocks computed (eeg, ecg): ECG is False where no plausible beats were found.
    available : ndarray of bool, shape (n, 2)
        Modalities the recording has (before the features decide whether they are usable).
    labels : ndarray of float32, shape (n,)
    subjects, conditions : ndarray of str, shape (n,)
    starts : ndarray of float64, shape (n,)
        Window start in seconds from the start of its recording.
    windows : WindowDataset
        The windows themselves.
    """

    feats: NDArray[np.float32]
    present: NDArray[np.bool_]
    available: NDArray[np.bool_]
    labels: NDArray[np.float32]
    subjects: NDArray[np.object_]
    conditions: NDArray[np.object_]
    starts: NDArray[np.float64]
    windows: WindowDataset = field(repr=False)


def load_feature_table(data: str | Path, subjects: Sequence[int] | None = None, *, line_freq: float = 50.0,
                       cache: Path | None = None) -> FeatureTable:
    """Load EEGMAT recordings, preprocess them as the engine does, cut 5-s windows and compute their features."""
    from rt_physio.training.datasets.eegmat import EEGMAT_EEG_CHANNELS, EEGMAT_LABEL, load_eegmat
    from rt_physio.training.evaluate import select_channels

    recordings = load_eegmat(data, subjects)
    recordings = select_channels(recordings, {"eeg": EEGMAT_EEG_CHANNELS, "ecg": ()})
    prepared = prepare(recordings, CLASSICAL_PREPROCESSING, line_freq=line_freq, scale_uv=SCALE_UV,
                       sfreq_out=SFREQ, cache_dir=cache)
    windows = WindowDataset(prepared, [EEGMAT_LABEL], window_s=WINDOW_S, hop_s=WINDOW_S, modalities=MODALITIES)
    n = len(windows)
    n_features = 2 * len(BANDS) * len(EEGMAT_EEG_CHANNELS) + len(ECG_FEATURES)
    feats = np.zeros((n, n_features), dtype=np.float32)
    present = np.zeros((n, 2), dtype=bool)
    for start in range(0, n, 256):
        idx = np.arange(start, min(n, start + 256))
        batch = windows.batch(idx)
        for i, j in enumerate(idx):
            eeg = batch.inputs["eeg"][i] if batch.present[i, 0] else None
            ecg = batch.inputs["ecg"][i] if batch.present[i, 1] else None
            f, p = channel_features(eeg, ecg, SFREQ, n_eeg_channels=len(EEGMAT_EEG_CHANNELS))
            feats[j], present[j] = f, p > 0
    lost = int((windows.present[:, 1] & ~present[:, 1]).sum())
    log.info("%d windows from %d recordings; ECG without plausible beats in %d of %d windows with ECG", n,
             len(recordings), lost, int(windows.present[:, 1].sum()))
    return FeatureTable(feats, present, windows.present.copy(), windows.labels[:, 0].copy(), windows.subjects,
                        windows.conditions, windows.starts, windows)
