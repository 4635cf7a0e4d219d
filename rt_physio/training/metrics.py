"""Binary classification metrics (scikit-learn's implementations): balanced accuracy, F1, AUROC, AUC-PR.

AUC-PR is scikit-learn's ``average_precision_score`` (the step-wise area CBraMod reports as AUC-PR). Metrics that
are undefined for the data (AUROC with one class only) are NaN, written as ``null`` in JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["METRIC_NAMES", "binary_metrics", "json_safe"]

#: The metrics every report carries, in this order.
METRIC_NAMES = ("balanced_accuracy", "f1", "auroc", "auc_pr")


def binary_metrics(y_true: ArrayLike, y_prob: ArrayLike, threshold: float = 0.5) -> dict[str, float | int]:
    """Score probabilities against 0/1 labels.

    Parameters
    ----------
    y_true : array_like of shape (n,)
        Labels, 0 or 1.
    y_prob : array_like of shape (n,)
        Predicted probability of class 1.
    threshold : float
        A window is predicted positive when its probability is ``>= threshold``.

    Returns
    -------
    dict
        ``n_windows``, ``n_positive``, ``balanced_accuracy``, ``f1``, ``auroc``, ``auc_pr`` (NaN where undefined).
    """
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(y_prob, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true and y_prob must have the same length, got {y.shape[0]} and {p.shape[0]}.")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError(f"y_true must hold 0/1 labels, got values {np.unique(y).tolist()}.")
    out: dict[str, float | int] = {"n_windows": int(y.size), "n_positive": int(y.sum())}
    if y.size == 0:
        return out | dict.fromkeys(METRIC_NAMES, math.nan)
    pred = (p >= threshold).astype(int)
    both = 0 < y.sum() < y.size
    out["balanced_accuracy"] = float(balanced_accuracy_score(y, pred)) if both else float(np.mean(pred == y))
    out["f1"] = float(f1_score(y, pred, zero_division=0.0))
    out["auroc"] = float(roc_auc_score(y, p)) if both else math.nan
    out["auc_pr"] = float(average_precision_score(y, p)) if y.sum() > 0 else math.nan
    return out


def json_safe(value: object) -> object:
    """Replace NaN/inf floats by None (JSON ``null``) throughout nested dicts and lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [json_safe(v) for v in value]
    return value
