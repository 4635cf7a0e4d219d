"""Subject-fold cross-validation of the classical model (``rt-physio train classical --cv-json``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from rt_physio.errors import ConfigError
from rt_physio.nn.classical import ClassicalModel
from rt_physio.nn.fusion import MODALITIES
from rt_physio.training.calibration import baseline_mask
from rt_physio.training.classical.features import FeatureTable
from rt_physio.training.classical.fit import (
    C_GRID,
    SCORED_SETS,
    calibrated_features,
    evaluate_split,
    fit_classical,
    fit_split,
    new_model,
    predict,
)
from rt_physio.training.metrics import binary_metrics
from rt_physio.training.splits import subject_folds

__all__ = ["cross_validate"]

log = logging.getLogger(__name__)


def cross_validate(table: FeatureTable, *, fold_size: int = 4, calibrate: float | None = None,
                   grid: Sequence[float] = C_GRID, seed: int = 0) -> dict[str, Any]:
    """Subject-fold cross-validation: each fold of ``fold_size`` subjects is scored by a model trained on the rest.

    Within each training part, ``C`` is chosen on its last ``fold_size`` subjects (sorted), then both parameter
    sets are refitted on the whole training part with the chosen values. The report has per-fold metrics, their
    mean and standard deviation, and metrics pooled over every held-out window.
    """
    subjects = sorted(set(table.subjects.astype(str).tolist()))
    folds = subject_folds(subjects, fold_size)
    if len(subjects) < 2 * fold_size + 1:
        raise ConfigError(f"Cross-validation with {fold_size}-subject folds needs at least {2 * fold_size + 1} "
                          f"subjects (a training part with its own validation fold), got {len(subjects)}.")
    kinds = ["uncalibrated"] + (["calibrated", "uncalibrated_same_windows"] if calibrate is not None else [])
    per_fold: list[dict[str, Any]] = []
    pooled: dict[str, dict[str, list[NDArray[np.float64]]]] = {k: {} for k in kinds}
    for k, held_out in enumerate(folds):
        train_part = [s for s in subjects if s not in held_out]
        inner_train, inner_val = train_part[:-fold_size], train_part[-fold_size:]
        _, info = fit_split(table, inner_train, inner_val, calibrate, grid, seed)
        refit = new_model(table)
        train = np.isin(table.subjects.astype(str), train_part)
        fit_classical(refit, table.feats[train], table.present[train], table.labels[train],
                      info["uncalibrated"]["C"], calibrated=False, seed=seed)
        if calibrate is not None:
            is_base = baseline_mask(table.windows, calibrate)
            centred, fallback = calibrated_features(refit, table, is_base, train_part)
            rows = train & ~is_base
            fit_classical(refit, centred[rows], table.present[rows], table.labels[rows], info["calibrated"]["C"],
                          calibrated=True, seed=seed)
            with torch.no_grad():
                refit.calibration_fallback.copy_(torch.from_numpy(fallback))
        metrics = evaluate_split(refit, table, held_out, calibrate, train_part)
        per_fold.append({"fold": k, "subjects": list(held_out),
                         "C": {kind: info[kind]["C"] for kind in info}, **metrics})
        _pool(pooled, refit, table, held_out, calibrate, train_part)
        log.info("fold %d (%s): %s", k, ",".join(held_out), {
            kind: round(float(metrics[kind]["eeg,ecg"]["auroc"]), 3) for kind in kinds})
    summary: dict[str, Any] = {}
    for kind in kinds:
        summary[kind] = {}
        for s in SCORED_SETS:
            key = ",".join(s)
            values = {m: [float(f[kind][key][m]) for f in per_fold] for m in ("balanced_accuracy", "auroc", "f1")}
            y, p = (np.concatenate(v) for v in zip(*pooled[kind][key], strict=True))
            summary[kind][key] = {
                "mean_over_folds": {m: float(np.nanmean(v)) for m, v in values.items()},
                "sd_over_folds": {m: float(np.nanstd(v)) for m, v in values.items()},
                "pooled": binary_metrics(y, p),
            }
    return {"fold_size": fold_size, "n_folds": len(folds), "subjects": subjects, "calibrate_seconds": calibrate,
            "summary": summary, "folds": per_fold}


def _pool(pooled: dict[str, dict[str, list[Any]]], model: ClassicalModel, table: FeatureTable,
          held_out: Sequence[str], calibrate: float | None, train_part: Sequence[str]) -> None:
    rows = np.isin(table.subjects.astype(str), list(held_out))
    variants: list[tuple[str, NDArray[np.floating], NDArray[np.bool_], bool]] = [
        ("uncalibrated", table.feats, rows, False)]
    if calibrate is not None:
        is_base = baseline_mask(table.windows, calibrate)
        centred, _ = calibrated_features(model, table, is_base, train_part)
        variants += [("calibrated", centred, rows & ~is_base, True),
                     ("uncalibrated_same_windows", table.feats, rows & ~is_base, False)]
    for kind, feats, r, calibrated in variants:
        for s in SCORED_SETS:
            wanted = np.array([m in s for m in MODALITIES])
            scored = r & (table.present & wanted).any(axis=1)
            probs = predict(model, feats[scored], table.present[scored] & wanted, calibrated)
            pooled[kind].setdefault(",".join(s), []).append((table.labels[scored], probs))
