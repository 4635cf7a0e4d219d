"""The non-learned period-copy reference of pre-training: period estimate and fill, on synthetic beat trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rt_physio.nn.masking import dual_mask, masked_mse, standardise, zero_mse
from rt_physio.training.pretrain_reference import beat_period, oracle_lag_copy, period_copy, rr_jitter


def _beats(n: int, period: int, first: int = 17) -> np.ndarray:
    """A spike train with a slow wave after each spike: one 'beat' every ``period`` samples."""
    s = np.zeros(n)
    for r in range(first, n, period):
        s[r] = 5.0
        s[r + 1:r + 1 + 30][: max(0, n - r - 1)] += np.hanning(30)[: max(0, min(30, n - r - 1))]
    return s


def test_beat_period_from_visible_samples_only() -> None:
    s = _beats(2000, 157)
    visible = np.ones(2000, dtype=bool)
    visible[600:1000] = False  # a hidden span
    assert beat_period(s, visible) == 157
    # what is hidden is not used: garbage there changes nothing
    noisy = s.copy()
    noisy[600:1000] = np.random.default_rng(0).normal(0, 10, 400)
    assert beat_period(noisy, visible) == 157
    # not a multiple of the period (314, 471 correlate as well)
    assert beat_period(_beats(2000, 120), np.ones(2000, dtype=bool)) == 120


def test_period_copy_fills_a_strictly_periodic_signal_and_keeps_visible_patches() -> None:
    x = torch.from_numpy(np.stack([_beats(2000, 160), _beats(2000, 100, first=5)])).float().view(2, 1, 10, 200)
    target = standardise(x)
    mask = torch.zeros((2, 1, 10), dtype=torch.int64)
    mask[0, 0, [1, 4, 7]] = 1  # isolated patches
    mask[1, 0, 5:7] = 1  # a 2-s span
    exact = period_copy(target, mask, shrink=1.0)
    assert float(masked_mse(exact, target, mask)) < 1e-6 * float(zero_mse(target, mask))
    visible = (mask == 0).unsqueeze(-1).expand_as(target)
    torch.testing.assert_close(exact[visible], target[visible])
    half = period_copy(target, mask)  # the default shrink 0.5 keeps a quarter of the error of zeros
    assert float(masked_mse(half, target, mask)) == pytest.approx(0.25 * float(zero_mse(target, mask)), rel=1e-4)


def test_period_copy_of_a_signal_without_beats_is_no_better_than_zeros() -> None:
    noise = torch.from_numpy(np.random.default_rng(2).normal(size=(4, 1, 10, 200))).float()
    target = standardise(noise)
    mask = dual_mask((4, 1, 10), 0.3, 0.0, generator=torch.Generator().manual_seed(3), span_ratio=0.2)
    ratio = float(masked_mse(period_copy(target, mask), target, mask)) / float(zero_mse(target, mask))
    assert 1.0 < ratio < 1.3  # a copy of unrelated noise adds its variance (x 0.25 with shrink 0.5)


def test_oracle_lag_copy_and_beat_jitter() -> None:
    periodic = standardise(torch.from_numpy(_beats(2000, 150)).float().view(1, 1, 10, 200))
    assert oracle_lag_copy(periodic) < 1e-9
    assert oracle_lag_copy(periodic, shrink=0.5) == pytest.approx(0.25, rel=1e-6)
    assert np.all(rr_jitter(periodic) == 0) and len(rr_jitter(periodic)) == 12  # 14 beats, 13 intervals
    # beats 3 samples late every other beat: intervals alternate 153, 147
    s = np.zeros(2000)
    for i, r in enumerate(range(20, 1990, 150)):
        s[r + 3 * (i % 2)] = 5.0
    jitter = rr_jitter(torch.from_numpy(s).float().view(1, 1, 10, 200))
    assert set(jitter.tolist()) == {6.0}
    noise = standardise(torch.from_numpy(np.random.default_rng(4).normal(size=(3, 1, 10, 200))).float())
    assert 1.5 < oracle_lag_copy(noise) < 2.1  # copying unrelated noise doubles the error, the best lag barely helps
