"""Output smoothing (rt_physio.nn.smoothing): the running mean over the last S seconds, offline and live alike."""

from __future__ import annotations

import numpy as np
import pytest

from rt_physio.nn.smoothing import OutputSmoother, from_logits, smooth_series, to_logits


@pytest.mark.parametrize("activation", ["sigmoid", "softmax", "identity"])
def test_logits_round_trip(activation: str) -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(0.05, 0.95, (7, 3))
    if activation == "softmax":
        values /= values.sum(axis=1, keepdims=True)
    assert np.allclose(from_logits(to_logits(values, activation), activation), values)


def test_sigmoid_mean_is_taken_on_logits_over_the_last_seconds_only() -> None:
    sm = OutputSmoother(10.0, "sigmoid")
    p = [0.9, 0.5, 0.2, 0.7]
    t = [5.0, 10.0, 15.0, 20.0]
    out = [float(sm.update(ti, [pi])[0]) for ti, pi in zip(t, p, strict=True)]
    z = to_logits(np.array(p), "sigmoid")
    # a window that ended S seconds ago or earlier has left the mean: at t=15 the window ending at 5 is out
    expected = [z[0], (z[0] + z[1]) / 2, (z[1] + z[2]) / 2, (z[2] + z[3]) / 2]
    assert np.allclose(out, from_logits(np.array(expected), "sigmoid"))
    assert len(sm) == 2


def test_zero_seconds_is_every_window_on_its_own() -> None:
    sm = OutputSmoother(0.0, "sigmoid")
    assert [round(float(sm.update(t, [p])[0]), 9) for t, p in ((1.0, 0.3), (2.0, 0.8))] == [0.3, 0.8]


def test_softmax_mean_stays_a_distribution() -> None:
    sm = OutputSmoother(30.0, "softmax")
    sm.update(1.0, [0.7, 0.2, 0.1])
    out = sm.update(2.0, [0.1, 0.2, 0.7])
    assert out.sum() == pytest.approx(1.0)
    assert out[0] == pytest.approx(out[2])  # the geometric mean of two mirrored distributions is symmetric


def test_a_clock_step_backwards_restarts_the_mean() -> None:
    sm = OutputSmoother(30.0, "identity")
    sm.update(100.0, [1.0])
    sm.update(105.0, [3.0])
    assert float(sm.update(50.0, [10.0])[0]) == 10.0
    assert len(sm) == 1


def test_offline_series_equals_the_live_smoother_per_group_whatever_the_row_order() -> None:
    rng = np.random.default_rng(1)
    n = 40
    groups = np.array(["a", "b"] * (n // 2), dtype=object)
    t = np.arange(n, dtype=float) * 2.5
    p = rng.uniform(0.01, 0.99, n)
    order = rng.permutation(n)
    offline = smooth_series(t[order], p[order], groups[order], 12.0, "sigmoid")
    for g in ("a", "b"):
        sm = OutputSmoother(12.0, "sigmoid")
        rows = np.flatnonzero(groups[order] == g)
        rows = rows[np.argsort(t[order][rows])]
        live = [float(sm.update(t[order][r], [p[order][r]])[0]) for r in rows]
        assert np.allclose(offline[rows], live)
    # and it does smooth: the spread of the outputs shrinks
    assert offline.std() < p.std()


def test_a_window_with_no_usable_input_stays_out_of_the_mean() -> None:
    sm = OutputSmoother(10.0, "sigmoid")
    z = to_logits(np.array([0.9, 0.8]), "sigmoid")
    sm.update(5.0, [0.9])
    sm.update(10.0, [0.8])
    # the bare 0.5 of a window the model could not use: the mean of the usable windows is published instead
    out = float(sm.update(15.0, [0.5], usable=False)[0])
    assert out == pytest.approx(float(from_logits(z[1], "sigmoid")))  # the window ending at 5 has left (<= 15 - 10)
    assert len(sm) == 1
    # it never entered: the next usable window's mean holds the usable ones only
    out = float(sm.update(17.0, [0.7], usable=True)[0])
    assert out == pytest.approx(float(from_logits((z[1] + to_logits(0.7, "sigmoid")) / 2, "sigmoid")))
    assert len(sm) == 2


def test_with_no_usable_window_left_the_window_publishes_its_own_output() -> None:
    sm = OutputSmoother(10.0, "sigmoid")
    assert float(sm.update(5.0, [0.5], usable=False)[0]) == pytest.approx(0.5)  # nothing before it
    assert len(sm) == 0
    sm.update(10.0, [0.9])
    assert float(sm.update(19.0, [0.5], usable=False)[0]) == pytest.approx(0.9)  # 10 > 19 - 10: still inside
    assert float(sm.update(20.0, [0.5], usable=False)[0]) == pytest.approx(0.5)  # 10 <= 20 - 10: gone
    assert len(sm) == 0


def test_offline_series_with_a_usable_mask_equals_the_live_smoother() -> None:
    rng = np.random.default_rng(2)
    n = 60
    t = np.arange(n, dtype=float) * 2.5
    p = rng.uniform(0.01, 0.99, (n, 2))
    usable = rng.random(n) > 0.4
    usable[20:30] = False  # a stretch longer than the span: the mean empties and bare outputs come through
    p[~usable] = 0.5
    groups = np.array(["a"] * n, dtype=object)
    offline = smooth_series(t, p, groups, 12.0, "sigmoid", usable=usable)
    sm = OutputSmoother(12.0, "sigmoid")
    live = np.array([sm.update(ti, pi, usable=bool(ui)) for ti, pi, ui in zip(t, p, usable, strict=True)])
    assert np.array_equal(offline, live)
    assert np.allclose(offline[25:30], 0.5)  # nothing usable within 12 s: each window's own output
    # without the mask the bare outputs drag the mean toward 0.5; with it they never enter
    unmasked = smooth_series(t, p, groups, 12.0, "sigmoid")
    assert not np.allclose(unmasked[usable], offline[usable])


def test_the_usable_mask_must_be_bool_and_as_long_as_the_windows() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        smooth_series([1.0, 2.0], [0.5, 0.6], ["a", "a"], 5.0, "sigmoid", usable=[True])
    with pytest.raises(ValueError, match="usable must be a 1-d bool mask"):
        smooth_series([1.0, 2.0], [0.5, 0.6], ["a", "a"], 5.0, "sigmoid", usable=[1, 0])


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf"), 1e9])
def test_bad_seconds_are_refused_with_the_parameter_named(seconds: float) -> None:
    with pytest.raises(ValueError, match="smoothing_s"):
        OutputSmoother(seconds, "sigmoid")


def test_unknown_activation_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        OutputSmoother(5.0, "relu")


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        smooth_series([1.0, 2.0], [0.5], ["a", "a"], 5.0, "sigmoid")
