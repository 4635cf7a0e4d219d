"""DREAMER as a table of window features per trial, with its baseline recordings, for the protocols of ``train cv``.

Each film clip of each subject is a *trial* (``"S03_clip07"``): its stimulus recording is cut into non-overlapping
windows, each turned into classical features (:func:`~rt_physio.dsp.features.channel_features`: log band
powers and relative powers per EEG channel, heart rate and HRV from the ECG) after the engine's filtering
(:func:`~rt_physio.training.datasets.prepare.prepare`, as ``train classical`` does). The neutral clip shown before it
(DREAMER's per-trial baseline recording) is cut and featurised the same way; its mean feature vector is the trial's
*baseline*. A block of features that a window lacks (ECG without plausible beats) is NaN.

Centring (``--baseline``): ``none`` leaves features as they are; ``trial`` subtracts each trial's own baseline;
``subject`` subtracts the mean baseline of the subject's trials on the training side of the fold (a subject with
none there, i.e. a held-out subject, uses its own held-out trials' baselines: unlabelled neutral clips, the
calibration a new user records before use). Baseline windows are never trained on or scored themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rt_physio.dsp.features import BANDS, ECG_FEATURES, channel_features, eeg_feature_count
from rt_physio.nn.fusion import MODALITIES
from rt_physio.training.datasets.dreamer import DREAMER_LABELS, check_amplitudes, load_dreamer
from rt_physio.training.datasets.prepare import prepare
from rt_physio.training.datasets.windows import WindowDataset
from rt_physio.training.protocols import Fold

__all__ = ["BASELINE_MODES", "Design", "TrialTable", "design", "load_trials", "references"]

log = logging.getLogger(__name__)

#: Values of ``--baseline``.
BASELINE_MODES = ("none", "trial", "subject")
_SCALE_UV = 100.0
_SFREQ = 200.0


@dataclass(frozen=True)
class TrialTable:
    """Window features of every trial and its baseline recording.

    Attributes
    ----------
    feats : ndarray of float64, shape (n, F)
        Features per window (NaN where a block is absent).
    trial : ndarray of str, shape (n,)
        Trial of each window (``"S03_clip07"``).
    is_baseline : ndarray of bool, shape (n,)
        Window from the trial's baseline recording (else from its stimulus).
    subject_of : dict[str, str]
        Trial -> subject, in file order; trials with no stimulus window are left out.
    labels : dict[str, dict[str, int]]
        Target (arousal, valence, dominance) -> trial -> 0 / 1 (score > threshold).
    feature_names : tuple of str
    amplitude_uv : dict[str, float]
        Observed typical amplitude per modality (:func:`~rt_physio.training.datasets.dreamer.check_amplitudes`).
    """

    feats: NDArray[np.float64]
    trial: NDArray[np.object_]
    is_baseline: NDArray[np.bool_]
    subject_of: dict[str, str]
    labels: dict[str, dict[str, int]]
    feature_names: tuple[str, ...]
    amplitude_uv: dict[str, float]

    def baseline_mean(self, trial: str) -> NDArray[np.float64]:
        """Mean features of the trial's baseline windows (NaN where no window has the block)."""
        return _nanmean(self.feats[self.is_baseline & (self.trial == trial)])


@dataclass(frozen=True)
class Design:
    """Rows handed to a model: centred stimulus windows of some trials, and where they came from.

    Attributes
    ----------
    x : ndarray of float64, shape (n, F)
    y : ndarray of int64, shape (n,)
    trial : ndarray of str, shape (n,)
        Trial of each row.
    baseline_trials : frozenset of str
        Trials whose baseline recordings went into the centring of these rows.
    """

    x: NDArray[np.float64]
    y: NDArray[np.int64]
    trial: NDArray[np.object_]
    baseline_trials: frozenset[str]


def load_trials(path: str | Path, *, eeg_unit: str = "uV", ecg_unit: str = "uV", threshold: float = 3.0,
                window_s: float = 5.0, line_freq: float = 50.0, cache: Path | None = None) -> TrialTable:
    """Read ``DREAMER.mat``, check the stated units, and featurise every stimulus and baseline window.

    Raises
    ------
    DatasetError
        Unreadable file, a structure that is not DREAMER's, or amplitudes implausible for the stated units.
    """
    from rt_physio.training.classical.features import CLASSICAL_PREPROCESSING

    recordings = load_dreamer(path, threshold=threshold, eeg_unit=eeg_unit, ecg_unit=ecg_unit, check_units=False)
    amplitude = check_amplitudes(recordings, {"eeg": eeg_unit, "ecg": ecg_unit}, source=Path(path))
    prepared = prepare(recordings, CLASSICAL_PREPROCESSING, line_freq=line_freq, scale_uv=_SCALE_UV,
                       sfreq_out=_SFREQ, cache_dir=cache)
    windows = WindowDataset(prepared, DREAMER_LABELS, window_s=window_s, hop_s=window_s, modalities=MODALITIES)
    n_ch = windows.channels.get("eeg", 0)
    feats = np.full((len(windows), eeg_feature_count(n_ch) + len(ECG_FEATURES)), np.nan)
    for start in range(0, len(windows), 256):
        idx = np.arange(start, min(len(windows), start + 256))
        batch = windows.batch(idx)
        for i, j in enumerate(idx):
            eeg = batch.inputs["eeg"][i] if batch.present[i, 0] else None
            ecg = batch.inputs["ecg"][i] if batch.present[i, 1] else None
            f, present = channel_features(eeg, ecg, _SFREQ, n_eeg_channels=n_ch)
            row = f.astype(np.float64)
            if not present[0]:
                row[:-len(ECG_FEATURES)] = np.nan
            if not present[1]:
                row[-len(ECG_FEATURES):] = np.nan
            feats[j] = row
    trial = np.array([str(name).rsplit("_", 1)[0] for name in windows.names], dtype=object)
    is_baseline = windows.conditions == "baseline"
    subject_of: dict[str, str] = {}
    labels: dict[str, dict[str, int]] = {k: {} for k in DREAMER_LABELS}
    for j in np.flatnonzero(~is_baseline):
        t = str(trial[j])
        if t not in subject_of:
            subject_of[t] = str(windows.subjects[j])
            for k, name in enumerate(DREAMER_LABELS):
                labels[name][t] = int(windows.labels[j, k])
    electrodes = next((r.signals["eeg"].channel_names for r in recordings if "eeg" in r.signals), ())
    names = [f"{ch}_{kind}_{band}" for ch in electrodes for kind in ("log_power", "relative")
             for band, _, _ in BANDS] + list(ECG_FEATURES)
    log.info("%d stimulus and %d baseline windows of %d trials (%d subjects); ECG without plausible beats in %d",
             int((~is_baseline).sum()), int(is_baseline.sum()), len(subject_of), len(set(subject_of.values())),
             int(np.isnan(feats[:, -1]).sum()))
    return TrialTable(feats, trial, is_baseline, subject_of, labels, tuple(names), amplitude)


def references(table: TrialTable, mode: str, fold: Fold) -> dict[str, tuple[NDArray[np.float64], frozenset[str]]]:
    """Per trial of the fold: the vector subtracted from its windows and the trials whose baselines made it."""
    if mode not in BASELINE_MODES:
        raise ValueError(f"The 'baseline' parameter must be one of {list(BASELINE_MODES)}, got {mode!r}.")
    trials = (*fold.train, *fold.test)
    zero = np.zeros(table.feats.shape[1])
    if mode == "none":
        return {t: (zero, frozenset()) for t in trials}
    if mode == "trial":
        return {t: (table.baseline_mean(t), frozenset([t])) for t in trials}
    out: dict[str, tuple[NDArray[np.float64], frozenset[str]]] = {}
    for subject in {table.subject_of[t] for t in trials}:
        own_train = [t for t in fold.train if table.subject_of[t] == subject]
        own = own_train or [t for t in fold.test if table.subject_of[t] == subject]
        ref = _nanmean(np.stack([table.baseline_mean(t) for t in own]))
        for t in trials:
            if table.subject_of[t] == subject:
                out[t] = (ref, frozenset(own))
    return out


def design(table: TrialTable, trials: Collection[str], target: str,
           refs: Mapping[str, tuple[NDArray[np.float64], frozenset[str]]]) -> Design:
    """Centred stimulus windows of ``trials`` with their ``target`` labels."""
    wanted = set(trials)
    rows = np.flatnonzero(~table.is_baseline & np.isin(table.trial, list(wanted)))
    which = table.trial[rows]
    shift = np.stack([refs[str(t)][0] for t in which]) if rows.size else np.zeros((0, table.feats.shape[1]))
    y = np.array([table.labels[target][str(t)] for t in which], dtype=np.int64)
    used: set[str] = set()
    for t in wanted:
        used |= refs[t][1]
    return Design(table.feats[rows] - shift, y, which, frozenset(used))


def _nanmean(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Column means ignoring NaN; NaN for a column without a finite value (no RuntimeWarning)."""
    finite = np.isfinite(x)
    count = finite.sum(axis=0)
    total = np.where(finite, x, 0.0).sum(axis=0)
    out: NDArray[np.float64] = np.divide(total, count, out=np.full(x.shape[1:], np.nan), where=count > 0)
    return out

