from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_physio.dsp import StreamResampler, rate_ratio, resample_filter

from ._signals import chunk_bounds

LISTED_RATES = [128.0, 250.0, 256.0, 360.0, 500.0, 1000.0]


@settings(max_examples=40, deadline=None)
@given(
    fs_in=st.sampled_from([*LISTED_RATES, 200.0, 255.98, 130.0]),
    n=st.integers(1, 600),
    n_channels=st.integers(1, 3),
    sizes=st.lists(st.integers(0, 70), min_size=1, max_size=10),
    seed=st.integers(0, 1000),
)
def test_output_is_identical_under_any_chunking(fs_in, n, n_channels, sizes, seed):
    x = np.random.default_rng(seed).standard_normal((n, n_channels)).astype(np.float32)
    one = StreamResampler(fs_in, 200.0, n_channels)
    y_one, pos_one = one.process_positions(x)
    chunked = StreamResampler(fs_in, 200.0, n_channels)
    parts, positions = [], []
    for a, b in chunk_bounds(n, sizes):
        y, pos = chunked.process_positions(x[a:b])
        parts.append(y)
        positions.append(pos + a)
    assert np.array_equal(np.concatenate(parts), y_one)  # bit for bit
    np.testing.assert_allclose(np.concatenate(positions), pos_one, rtol=0, atol=1e-9)
    # output k is emitted with the input at floor(k * down / up): as soon as it is computable
    k = np.arange(len(y_one))
    np.testing.assert_allclose(pos_one, k * one.down / one.up, rtol=0, atol=1e-9)
    assert len(y_one) == -(-n * one.up // one.down)


@pytest.mark.parametrize("fs_in", LISTED_RATES)
def test_matches_resample_poly_in_steady_state_after_the_delay_shift(fs_in):
    r = StreamResampler(fs_in, 200.0, 2)
    assert r.exact
    assert r.fs_out_effective == 200.0
    assert fs_in * r.up == 200 * r.down
    rng = np.random.default_rng(0)
    x = rng.standard_normal((int(fs_in * 10), 2)) * 30
    y = np.concatenate([r.process(x[a:b]) for a, b in chunk_bounds(len(x), [1, 5, 33, 2, 64])])
    ref = scipy.signal.resample_poly(x, r.up, r.down, axis=0)
    d = r.delay_out
    m = len(y) - d  # the tail of resample_poly sees zero padding after the end; the stream has not got there
    # Tolerance: both sum the same float64 products in a different order, so they differ by rounding only:
    # a few ulp of the output amplitude (here ~30): 1e-12 absolute is ~1e4 times looser than seen, 1e9 tighter
    # than any indexing or filter error would be.
    np.testing.assert_allclose(y[d:], ref[:m], rtol=0, atol=1e-12)
    assert r.delay_s == pytest.approx(d / 200.0)
    assert r.delay_s <= 0.08


def test_delay_shift_is_the_group_delay_of_a_pure_tone():
    fs_in, f = 500.0, 7.0
    r = StreamResampler(fs_in, 200.0, 1)
    t_in = np.arange(5000) / fs_in
    y, pos = r.process_positions(np.sin(2 * np.pi * f * t_in)[:, None])
    content_t = pos / fs_in - r.delay_s  # the moment each output represents
    steady = slice(100, None)
    np.testing.assert_allclose(y[steady, 0], np.sin(2 * np.pi * f * content_t[steady]), atol=2e-3)  # passband ripple


def test_non_integer_rate_uses_a_bounded_rational_and_reports_the_true_rate():
    up, down, exact = rate_ratio(255.98, 200.0)
    assert not exact
    assert (up, down) == (368, 471)
    r = StreamResampler(255.98, 200.0, 2)
    assert abs(r.fs_out_effective / 200.0 - 1) < 1e-5
    assert r.delay_s == pytest.approx(0.05, rel=1e-4)
    x = np.sin(2 * np.pi * 10.0 * np.arange(25598) / 255.98)[:, None].repeat(2, 1)
    y, pos = r.process_positions(x)
    content_t = pos / 255.98 - r.delay_s
    np.testing.assert_allclose(y[50:, 0], np.sin(2 * np.pi * 10.0 * content_t[50:]), atol=2e-3)
    assert rate_ratio(255.98, 200.0, tolerance=1e-4)[:2] == (25, 32)


def test_rate_ratio_for_listed_rates_is_exact_and_reduced():
    assert rate_ratio(128, 200) == (25, 16, True)
    assert rate_ratio(360, 200) == (5, 9, True)
    assert rate_ratio(200, 200) == (1, 1, True)
    assert rate_ratio(250, 200) == (4, 5, True)


def test_filter_is_resample_polys():
    h, delay_up = resample_filter(2, 5)
    assert delay_up % 5 == 0
    ref = scipy.signal.firwin(101, 1 / 5, window=("kaiser", 5.0)) * 2
    assert np.array_equal(h[delay_up - 50: delay_up + 51], ref)


def test_identity_rate_is_a_copy_with_no_delay():
    r = StreamResampler(200.0, 200.0, 3)
    x = np.random.default_rng(1).standard_normal((50, 3))
    assert np.array_equal(r.process(x), x)
    assert r.delay_s == 0.0


def test_reset_restarts():
    r = StreamResampler(250.0, 200.0, 1)
    x = np.random.default_rng(2).standard_normal((100, 1))
    first = r.process(x)
    r.reset()
    assert np.array_equal(r.process(x), first)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: StreamResampler(0.0, 200.0, 1), "'fs_in' parameter must be a strictly positive"),
        (lambda: StreamResampler(250.0, 200.0, 1, half_width=0), "'half_width'"),
        (lambda: StreamResampler(250.0, 200.0, 2).process(np.zeros((4, 3))), r"\(samples, 2\)"),
        (lambda: StreamResampler(250.0, 200.0, 2).process_into(np.zeros((40, 2)), np.zeros((3, 2)), np.zeros(40)),
         "at least 33 rows"),
        (lambda: rate_ratio(1.0, 1e-9 * np.pi, tolerance=1e-15), "No ratio"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
