"""Fitting and scoring the classical model's three logistic regressions (one per modality set).

Three logistic regressions are fitted (EEG + ECG, EEG alone, ECG alone; ``class_weight="balanced"``). The
regularisation ``C`` is chosen on the validation subjects' AUROC of the EEG + ECG set. With calibration, a second
parameter set is fitted on features centred per subject on the first seconds of that subject's rest recording
(:mod:`rt_physio.training.calibration`); those calibration windows are never trained on or scored.

Scoring mirrors :mod:`rt_physio.training.evaluate`: for a modality set, the model sees only the set's modalities,
and a window is scored when at least one of them gave features; a window whose ECG has no plausible beats counts as
lacking ECG (the EEG classifier scores it in the EEG + ECG set; the ECG-only set does not score it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from rt_physio.dsp.features import BANDS, ECG_FEATURES
from rt_physio.errors import ConfigError
from rt_physio.nn.classical import MODALITY_SETS, ClassicalModel, LogisticHead
from rt_physio.nn.fusion import MODALITIES
from rt_physio.training.calibration import baseline_mask, center_by_subject, population_fallback
from rt_physio.training.classical.features import SFREQ, FeatureTable
from rt_physio.training.metrics import binary_metrics

__all__ = ["C_GRID", "SCORED_SETS", "calibrated_features", "evaluate_split", "fit_classical", "fit_split",
           "new_model", "predict", "score", "select_and_fit"]

#: Candidate inverse regularisation strengths of the logistic regressions.
C_GRID: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
#: Modality sets scored, as ``rt-physio evaluate`` names them.
SCORED_SETS: tuple[tuple[str, ...], ...] = (("eeg", "ecg"), ("eeg",), ("ecg",))


def _fit_head(head: LogisticHead, x: NDArray[np.float64], y: NDArray[np.float32], cols: NDArray[np.bool_], c: float,
              seed: int) -> None:
    from sklearn.linear_model import LogisticRegression

    sub = x[:, cols]
    mean = sub.mean(axis=0)
    scale = sub.std(axis=0)
    scale[scale < 1e-8] = 1.0  # a constant feature carries nothing: leave it unscaled
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
    clf.fit((sub - mean) / scale, y.astype(int))
    full_mean = np.zeros(x.shape[1])
    full_scale = np.ones(x.shape[1])
    full_coef = np.zeros((1, x.shape[1]))
    full_mean[cols], full_scale[cols], full_coef[:, cols] = mean, scale, clf.coef_
    with torch.no_grad():
        head.mean.copy_(torch.from_numpy(full_mean))
        head.scale.copy_(torch.from_numpy(full_scale))
        head.coef.copy_(torch.from_numpy(full_coef))
        head.intercept.copy_(torch.from_numpy(clf.intercept_))


def fit_classical(model: ClassicalModel, feats: NDArray[np.floating], present: NDArray[np.bool_],
                  labels: NDArray[np.float32], c: float, *, calibrated: bool, seed: int = 0) -> None:
    """Fit the three logistic regressions of one parameter set (``lr`` or ``cal``) of ``model`` in place.

    Parameters
    ----------
    model : ClassicalModel
        Its ``lr.*`` (or ``cal.*`` when ``calibrated``) buffers are overwritten.
    feats, present, labels :
        Training windows: ``(n, F)`` features (centred when ``calibrated``), ``(n, 2)`` blocks present, ``(n,)``
        0/1 targets.
    c : float
        Inverse regularisation strength.
    calibrated : bool
        Fit ``cal.*`` (features centred per subject) instead of ``lr.*``.
    seed : int
        ``random_state`` of the solver.
    """
    x = np.asarray(feats, dtype=np.float64)
    modality = model.feature_modality.cpu().numpy()
    heads = model.cal if calibrated else model.lr
    needs = {"eeg_ecg": (True, True), "eeg": (True, False), "ecg": (False, True)}
    for name in MODALITY_SETS:
        want_eeg, want_ecg = needs[name]
        rows = (present[:, 0] if want_eeg else True) & (present[:, 1] if want_ecg else True)
        cols = ((modality == 0) & want_eeg) | ((modality == 1) & want_ecg)
        if not np.any(rows) or len(np.unique(labels[rows])) < 2:
            raise ConfigError(f"Cannot fit the {name} classifier: its training windows lack one of the classes.")
        head = heads[name]
        assert isinstance(head, LogisticHead)
        _fit_head(head, x[rows], labels[rows], cols, c, seed)


def predict(model: ClassicalModel, feats: NDArray[np.floating], present: NDArray[np.bool_],
            calibrated: bool) -> NDArray[np.float64]:
    """Probabilities ``(n,)`` of the first output from precomputed features (``model.classify`` + sigmoid)."""
    with torch.no_grad():
        logits = model.classify(torch.from_numpy(np.asarray(feats, dtype=np.float32)),
                                torch.from_numpy(present.astype(np.float32)), calibrated=calibrated)
    return torch.sigmoid(logits[:, 0]).double().numpy()


def score(model: ClassicalModel, table: FeatureTable, feats: NDArray[np.floating], rows: NDArray[np.bool_], *,
          calibrated: bool, threshold: float = 0.5) -> dict[str, dict[str, Any]]:
    """Metrics per modality set on the windows ``rows`` (scored as ``rt-physio evaluate`` scores them)."""
    out: dict[str, dict[str, Any]] = {}
    for s in SCORED_SETS:
        wanted = np.array([m in s for m in MODALITIES])
        scored = rows & (table.present & wanted).any(axis=1)
        probs = predict(model, feats[scored], table.present[scored] & wanted, calibrated)
        out[",".join(s)] = binary_metrics(table.labels[scored], probs, threshold)
    return out


def _auroc(model: ClassicalModel, table: FeatureTable, feats: NDArray[np.floating], rows: NDArray[np.bool_],
           calibrated: bool) -> float:
    return float(score(model, table, feats, rows, calibrated=calibrated)["eeg,ecg"]["auroc"])


def select_and_fit(model: ClassicalModel, table: FeatureTable, feats: NDArray[np.floating],
                   train: NDArray[np.bool_], val: NDArray[np.bool_], *, calibrated: bool, grid: Sequence[float],
                   seed: int) -> tuple[float, dict[str, float]]:
    """Pick C on ``val`` (AUROC of the EEG + ECG set), leaving ``model`` fitted on ``train`` with that C."""
    aurocs: dict[str, float] = {}
    for c in grid:
        fit_classical(model, feats[train], table.present[train], table.labels[train], c, calibrated=calibrated,
                      seed=seed)
        aurocs[f"{c:g}"] = _auroc(model, table, feats, val, calibrated)
    best = max(grid, key=lambda c: (aurocs[f"{c:g}"], -abs(np.log10(c))))  # ties: the C closest to 1
    fit_classical(model, feats[train], table.present[train], table.labels[train], best, calibrated=calibrated,
                  seed=seed)
    return best, aurocs


def calibrated_features(model: ClassicalModel, table: FeatureTable, is_base: NDArray[np.bool_],
                        train_subjects: Sequence[str]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Features centred per subject, the fallback coming from the training subjects' baselines only."""
    modality = model.feature_modality.cpu().numpy()
    _, baselines = center_by_subject(table.feats, table.present, table.subjects, is_base, modality)
    fallback = population_fallback({s: b for s, b in baselines.items() if s in set(train_subjects)}, modality)
    centred, _ = center_by_subject(table.feats, table.present, table.subjects, is_base, modality, fallback)
    return centred, fallback


def new_model(table: FeatureTable) -> ClassicalModel:
    """Return an unfitted model for the table's features (its EEG channel count, ECG, one output)."""
    n_ch = (table.feats.shape[1] - len(ECG_FEATURES)) // (2 * len(BANDS))
    return ClassicalModel(n_eeg_channels=n_ch, ecg=True, n_outputs=1, sfreq=SFREQ)


def fit_split(table: FeatureTable, train_subjects: Sequence[str], val_subjects: Sequence[str],
              calibrate: float | None, grid: Sequence[float], seed: int) -> tuple[ClassicalModel, dict[str, Any]]:
    """Fit both parameter sets on ``train_subjects`` with C chosen on ``val_subjects``; returns the model and C info."""
    model = new_model(table)
    train = np.isin(table.subjects.astype(str), list(train_subjects))
    val = np.isin(table.subjects.astype(str), list(val_subjects))
    info: dict[str, Any] = {}
    c, aurocs = select_and_fit(model, table, table.feats, train, val, calibrated=False, grid=grid, seed=seed)
    info["uncalibrated"] = {"C": c, "validation_auroc_per_C": aurocs}
    if calibrate is not None:
        is_base = baseline_mask(table.windows, calibrate)
        centred, fallback = calibrated_features(model, table, is_base, train_subjects)
        c, aurocs = select_and_fit(model, table, centred, train & ~is_base, val & ~is_base, calibrated=True,
                                   grid=grid, seed=seed)
        with torch.no_grad():
            model.calibration_fallback.copy_(torch.from_numpy(fallback))
        info["calibrated"] = {"C": c, "validation_auroc_per_C": aurocs}
    return model, info


def evaluate_split(model: ClassicalModel, table: FeatureTable, subjects: Sequence[str], calibrate: float | None,
                   train_subjects: Sequence[str]) -> dict[str, Any]:
    """Score ``subjects`` with each parameter set (see :func:`score` for one).

    The keys are ``uncalibrated`` and, with ``calibrate``, ``calibrated`` and ``uncalibrated_same_windows`` (the
    uncalibrated set on the windows the calibrated one scores: the gain of calibration alone).
    """
    rows = np.isin(table.subjects.astype(str), list(subjects))
    out: dict[str, Any] = {"uncalibrated": score(model, table, table.feats, rows, calibrated=False)}
    if calibrate is not None:
        is_base = baseline_mask(table.windows, calibrate)
        centred, _ = calibrated_features(model, table, is_base, train_subjects)
        out["calibrated"] = score(model, table, centred, rows & ~is_base, calibrated=True)
        # the same windows as the calibrated scores, without calibration: the gain of calibration alone
        out["uncalibrated_same_windows"] = score(model, table, table.feats, rows & ~is_base, calibrated=False)
    return out
