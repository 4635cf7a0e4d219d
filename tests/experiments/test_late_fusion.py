"""The late-fusion experiment's two pieces: C chosen on held-out rows, and the logit average."""

from __future__ import annotations

import numpy as np

from rt_physio.experiments.late_fusion import fit_scores, mix


def test_fit_scores_chooses_c_on_validation_and_scores_the_requested_rows() -> None:
    rng = np.random.default_rng(0)
    n = 300
    y = (rng.random(n) < 0.4).astype(np.float32)
    x = rng.normal(0, 1, (n, 20)) * 5.0 + 100.0  # standardisation must undo offset and scale
    x[:, 0] += 8.0 * y
    split = np.arange(n) % 3
    logits, c = fit_scores(x, y, split == 0, split == 1, split == 2)
    assert logits.shape == (int((split == 2).sum()),)
    assert c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    rows = split == 2
    # the informative feature was found: positives score higher on rows never fitted on
    assert logits[y[rows] == 1].mean() > logits[y[rows] == 0].mean() + 1.0


def test_mix_is_the_sigmoid_of_the_weighted_logits() -> None:
    deep, classical = np.array([2.0, -1.0]), np.array([0.0, 3.0])
    np.testing.assert_allclose(mix(deep, classical, 1.0), 1 / (1 + np.exp(-deep)))
    np.testing.assert_allclose(mix(deep, classical, 0.0), 1 / (1 + np.exp(-classical)))
    np.testing.assert_allclose(mix(deep, classical, 0.5), 1 / (1 + np.exp(-np.array([1.0, 1.0]))))
