"""The model card (``model.toml`` fields) of a trained classical model: what it is, how it was made, how it scored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rt_physio.dsp.features import BANDS
from rt_physio.nn.spec import SCHEMA
from rt_physio.training.classical.features import CLASSICAL_PREPROCESSING, SCALE_UV, SFREQ, WINDOW_S, FeatureTable

if TYPE_CHECKING:  # train.py imports this module
    from rt_physio.training.classical.train import ClassicalConfig

__all__ = ["model_card"]


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
            if not (isinstance(v, float) and not np.isfinite(v))}


def model_card(cfg: ClassicalConfig, table: FeatureTable, info: dict[str, Any], validation: dict[str, Any],
               train_subjects: Sequence[str], val_subjects: Sequence[str], seconds: float, channels: list[str],
               label: str) -> dict[str, Any]:
    """Return the ``model.toml`` fields of a classical model trained by :func:`~.train.train_classical_model`.

    Parameters
    ----------
    cfg : ClassicalConfig
        The training arguments (description, calibration length, seed, C grid, command).
    table : FeatureTable
        The windows trained and validated on.
    info : dict
        Per parameter set (``uncalibrated``, ``calibrated``): the chosen ``C`` and the validation AUROC per C.
    validation : dict
        Validation metrics per parameter set and modality set.
    train_subjects, val_subjects : sequence of str
        The split.
    seconds : float
        Wall time of the training.
    channels : list of str
        The EEG montage, in feature order.
    label : str
        The output name.
    """
    calibrated = cfg.calibrate is not None
    lost = int((table.available[:, 1] & ~table.present[:, 1]).sum())
    description = cfg.description or (
        "Classical model for mental workload (rest = 0 vs mental arithmetic = 1) on PhysioNet EEGMAT: Welch band "
        "powers (delta, theta, alpha, beta, gamma up to 45 Hz; log10 absolute and relative) per EEG channel, and "
        "heart rate, ln(1 + SDNN), ln(1 + RMSSD) from R peaks in each 5-s ECG window, fed to logistic regression "
        "(one per modality set: EEG + ECG, EEG alone, ECG alone). Trained on subjects 00-27, C selected on 28-31. "
        "The EEG montage is fixed (features are per channel): the 20 EEGMAT channels in inputs.eeg.channels. "
        + ("It also holds a calibrated parameter set for features centred on the first "
           f"{cfg.calibrate:g} s of the person's rest (level = features); between-person differences dominate the "
           "uncalibrated error, so run it with calibration when a rest baseline can be recorded. "
           if calibrated else "")
        + "Not traceable: the engine runs it eagerly on the CPU (cheap: a few ms per window)."
    )
    fields: dict[str, Any] = {
        "schema": SCHEMA,
        "trained": True,
        "description": description,
        "architecture": {"type": "classical", "classical": {
            "eeg_channels": len(channels), "ecg": True, "bands": [*(lo for _, lo, _ in BANDS), BANDS[-1][2]]}},
        "inputs": {"sfreq": SFREQ, "window_s": WINDOW_S, "scale_uv": SCALE_UV, "eeg": {"channels": channels},
                   "ecg": {"channels": []}},
        "preprocessing": {m: {"bandpass": list(p.bandpass or ()), "notch": p.notch}
                          for m, p in CLASSICAL_PREPROCESSING.items()},
        "outputs": {"names": [label], "activation": "sigmoid"},
    }
    if calibrated:
        fields["calibration"] = {"seconds": float(cfg.calibrate or 0.0), "level": "features", "expects": True}
    metrics = {kind: {key: _rounded(m) for key, m in sets.items()} for kind, sets in validation.items()}
    fields["provenance"] = {
        "seed": cfg.seed,
        "data": "PhysioNet EEGMAT 1.0.0 (Zyma et al. 2019); rest = 0, mental arithmetic = 1",
        "split": {"train": list(train_subjects), "validation": list(val_subjects)},
        "windows": "5-s non-overlapping windows from the start of each recording (as rt-physio evaluate cuts them)",
        "preprocessing_note": "each modality through the engine's StreamProcessor (band-pass, 50 Hz notch, "
                              "resampling to 200 Hz), then µV / 100",
        "features": {
            "eeg": "per channel in inputs.eeg.channels order: log10(band power + 1e-10) for delta 1-4, theta 4-8, "
                   "alpha 8-13, beta 13-30, gamma 30-45 Hz, then relative power (band / 1-45 Hz); Welch, 2-s Hann "
                   "segments, 50 % overlap; power in model units squared",
            "ecg": "hr_bpm, ln(1 + SDNN ms), ln(1 + RMSSD ms) from R peaks (5-20 Hz band-pass, squared derivative, "
                   "150-ms integration, 250-ms refractory, either polarity); the window's ECG counts as missing "
                   "when < 3 beats, median |R| < 3 robust SDs of the band-passed lead, HR outside 30-220 bpm, max/min "
                   "RR > 2.5 or RR CV > 0.2",
            "ecg_windows_without_plausible_beats": lost,
        },
        "classifier": "scikit-learn LogisticRegression (lbfgs, L2, class_weight='balanced') on standardised "
                      "features, one per modality set; parameters stored as tensors (lr.*, cal.*)",
        "selection": {kind: {"C": v["C"], "C_grid": list(cfg.c_grid),
                             "validation_auroc_per_C": {k: round(a, 4) for k, a in v["validation_auroc_per_C"].items()},
                             "criterion": "validation AUROC of the eeg,ecg set"} for kind, v in info.items()},
        "training_command": cfg.command or "rt-physio train classical",
        "n_windows_loaded": int(table.feats.shape[0]),
        "wall_time_s": round(seconds, 1),
        "validation_metrics": metrics,
        "validation_note": "subjects 28-31 (which also chose C, so optimistic); calibrated scores exclude the "
                           "calibration windows, and uncalibrated_same_windows scores the uncalibrated set on those "
                           "same windows",
    }
    return fields
