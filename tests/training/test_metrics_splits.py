from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

from rt_physio.training.metrics import binary_metrics, json_safe
from rt_physio.training.splits import eegmat_split, subject_folds, subject_split


def test_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 500), 0, 1)
    m = binary_metrics(y, p, threshold=0.4)
    pred = (p >= 0.4).astype(int)
    assert m["balanced_accuracy"] == balanced_accuracy_score(y, pred)
    assert m["f1"] == f1_score(y, pred)
    assert m["auroc"] == roc_auc_score(y, p)
    assert m["auc_pr"] == average_precision_score(y, p)
    assert m["n_windows"] == 500
    assert m["n_positive"] == int(y.sum())


def test_metrics_undefined_are_nan_and_null_in_json() -> None:
    m = binary_metrics([0, 0, 0], [0.1, 0.7, 0.2])
    assert math.isnan(m["auroc"])
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert json_safe({"a": [m["auroc"], 1.0]}) == {"a": [None, 1.0]}
    with pytest.raises(ValueError, match="same length"):
        binary_metrics([0, 1], [0.5])


def test_splits_are_subject_wise() -> None:
    split = eegmat_split()
    assert split.train[0] == "Subject00" and split.train[-1] == "Subject27"
    assert split.validation == ("Subject28", "Subject29", "Subject30", "Subject31")
    assert split.test == ("Subject32", "Subject33", "Subject34", "Subject35")
    subjects = [f"S{i:02d}" for i in range(23)]
    s = subject_split(subjects, validation=3, test=2, seed=1)
    assert len(s.validation) == 3 and len(s.test) == 2 and len(s.train) == 18
    assert not set(s.train) & set(s.validation) and not set(s.train) & set(s.test)
    assert s == subject_split(subjects, validation=3, test=2, seed=1)
    assert subject_folds(subjects, 4)[0] == ("S00", "S01", "S02", "S03")
    assert len(subject_folds(subjects, 4)) == 6
    with pytest.raises(ValueError, match="keep one for training"):
        subject_split(["a", "b"], validation=2)
