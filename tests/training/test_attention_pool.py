"""Attention pooling: queries learned on training windows find the patch that carries the label."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from rt_physio.training.attention_pool import fit_queries, pool_with_queries


def _planted(n: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """EEG patches where one random patch per window carries a marker (dim 0) and the label (dim 1); ECG is noise."""
    y = (np.arange(n) % 2).astype(np.float64)
    eeg = rng.normal(size=(n, 4, 5, 200)).astype(np.float32)
    ch, patch = rng.integers(0, 4, n), rng.integers(0, 5, n)
    eeg[np.arange(n), ch, patch, 0] += 6.0
    eeg[np.arange(n), ch, patch, 1] += np.where(y > 0, 1.5, -1.5)
    ecg = rng.normal(size=(n, 1, 5, 200)).astype(np.float32)
    present = np.ones((n, 2), dtype=bool)
    present[::7, 1] = False  # some windows without ECG
    ecg[~present[:, 1]] = 0.0
    return {"eeg": eeg, "ecg": ecg}, present, y


def _held_out_auroc(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    lr = LogisticRegression(C=0.1, max_iter=2000).fit(x[train], y[train])
    return float(roc_auc_score(y[~train], lr.decision_function(x[~train])))


def test_learned_queries_find_the_labelled_patch_where_the_mean_dilutes_it() -> None:
    rng = np.random.default_rng(0)
    emb, present, y = _planted(600, rng)
    train = np.arange(600) < 400
    queries = fit_queries(emb, present, y, train, seed=0)
    assert set(queries) == {"eeg", "ecg"} and queries["eeg"].shape == (200,)
    q = queries["eeg"]
    assert q[0] / np.linalg.norm(q) > 0.5, "the EEG query should point at the marker dimension"
    attn = pool_with_queries(emb, queries)[:, :200]
    mean = emb["eeg"].mean(axis=(1, 2))
    auc_attn, auc_mean = _held_out_auroc(attn, y, train), _held_out_auroc(mean, y, train)
    assert auc_attn > auc_mean + 0.1 and auc_attn > 0.8, (auc_attn, auc_mean)


def test_queries_read_only_the_training_rows_and_need_both_classes() -> None:
    rng = np.random.default_rng(1)
    emb, present, y = _planted(200, rng)
    train = np.arange(200) < 120
    scrambled = {m: e.copy() for m, e in emb.items()}
    scrambled["eeg"][~train] = rng.normal(size=scrambled["eeg"][~train].shape)
    a, b = fit_queries(emb, present, y, train), fit_queries(scrambled, present, y, train)
    np.testing.assert_array_equal(a["eeg"], b["eeg"])
    with pytest.raises(ValueError, match="both classes"):
        fit_queries(emb, present, y, train & (y > 0))
    with pytest.raises(ValueError, match="at least one modality"):
        fit_queries({}, present, y, train)
