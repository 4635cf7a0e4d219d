from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_physio.dsp import StreamProcessor

from ._signals import chunk_bounds

FS = 250.0


def feed(proc: StreamProcessor, x: np.ndarray, ts: np.ndarray, sizes: list[int]) -> int:
    return sum(proc.push(x[a:b], ts[a:b]) for a, b in chunk_bounds(len(x), sizes))


def everything(proc: StreamProcessor) -> tuple[np.ndarray, np.ndarray]:
    data, ts = proc.ring.latest(proc.ring.capacity)
    return data.copy(), ts.copy()


def signal(n: int, n_channels: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, n_channels)) * 20 + 1000 * np.arange(1, n_channels + 1)).astype(np.float32)
    return x, 1000.0 + np.arange(n) / FS


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 90), min_size=1, max_size=8),
    nan_at=st.lists(st.tuples(st.integers(0, 1999), st.integers(1, 30), st.integers(0, 2)), max_size=4),
    gaps=st.lists(st.tuples(st.integers(1, 1999), st.integers(1, 400)), max_size=3),
    jitter=st.lists(st.tuples(st.integers(1, 1999), st.sampled_from([-0.001, -1.0, np.nan])), max_size=3),
    fs_out=st.sampled_from([200.0, 100.0]),
)
def test_whole_pipeline_is_identical_under_any_chunking(sizes, nan_at, gaps, jitter, fs_out):
    x, ts = signal(2000)
    for start, length, channel in nan_at:
        x[start:start + length, channel] = np.nan
    for at, missing in gaps:  # missing samples up to 1.6 s: short ones are filled, long ones break the stream
        ts[at:] += missing / FS
    for at, step in jitter:  # a late stamp, a clock jump back, a missing stamp
        if np.isnan(step):
            ts[at] = np.nan
        elif step < -0.5:
            ts[at:] += step
        else:
            ts[at] += step
    kwargs = {"bandpass": (0.5, 45.0), "notch": 50.0, "fs_out": fs_out, "capacity_s": 60.0}
    one, chunked = StreamProcessor(FS, 3, **kwargs), StreamProcessor(FS, 3, **kwargs)
    n_one = one.push(x, ts)
    assert feed(chunked, x, ts, sizes) == n_one
    for (a_data, a_ts), (b_data, b_ts) in [(everything(one), everything(chunked))]:
        assert np.array_equal(a_data, b_data)
        assert np.array_equal(a_ts, b_ts)
    assert one.stats.gaps == chunked.stats.gaps
    assert one.stats.samples_filled == chunked.stats.samples_filled
    assert one.stats.breaks == chunked.stats.breaks
    assert one.stats.backwards == chunked.stats.backwards
    assert np.all(np.isfinite(everything(one)[0]))


def test_matches_the_offline_scipy_pipeline_with_causal_timestamps():
    x, ts = signal(5000)
    proc = StreamProcessor(FS, 3, bandpass=(0.5, 45.0), notch=50.0, capacity_s=60.0)
    feed(proc, x, ts, [1, 7, 32, 3])
    sos = proc.sos
    assert sos is not None and sos.shape == (5, 6)
    y = scipy.signal.sosfilt(sos, x, axis=0, zi=scipy.signal.sosfilt_zi(sos)[:, :, None] * x[0].astype(float))[0]
    up, down = proc.resampler.up, proc.resampler.down
    ref = scipy.signal.resample_poly(y, up, down, axis=0)
    data, out_ts = everything(proc)
    d = proc.resampler.delay_out
    np.testing.assert_allclose(data[d:], ref[: len(data) - d], rtol=1e-6, atol=1e-4)
    # output k became computable with input k*down/up and carries that (interpolated) input time
    np.testing.assert_allclose(out_ts, 1000.0 + np.arange(len(data)) * down / up / FS, rtol=0, atol=1e-9)
    assert proc.delay_s == pytest.approx(d / 200.0)


def test_a_window_ending_at_t_is_ready_when_the_sample_at_t_arrives():
    x, ts = signal(1000)
    proc = StreamProcessor(FS, 3, bandpass=None, notch=None)
    for i in range(len(x)):
        proc.push(x[i:i + 1], ts[i:i + 1])
        assert proc.newest_timestamp < ts[i] + 1 / FS
        if i >= 300:
            got = proc.read_until(ts[i], 200)
            assert got is not None
            assert ts[i] - 1 / 200 < got[1][-1] <= ts[i]


def test_content_lags_the_timestamp_by_the_resampler_delay():
    x = np.zeros((1000, 1), np.float32)
    x[500] = 1000.0
    ts = 50.0 + np.arange(1000) / FS
    proc = StreamProcessor(FS, 1, bandpass=None, notch=None)
    proc.push(x, ts)
    data, out_ts = everything(proc)
    assert out_ts[np.argmax(data[:, 0])] == pytest.approx(ts[500] + proc.delay_s, abs=1e-9)


def test_nan_bursts_never_poison_the_filter_and_are_counted():
    x, ts = signal(3000)
    x[1000:1100, 0] = np.nan
    x[1500, :] = np.inf
    x[:5, 2] = -np.inf  # before any finite value: replaced by 0
    proc = StreamProcessor(FS, 3, bandpass=(0.5, 45.0), notch=50.0, capacity_s=60.0)
    feed(proc, x, ts, [16])
    assert proc.stats.nonfinite_replaced == 100 + 3 + 5
    data, _ = everything(proc)
    assert np.all(np.isfinite(data))
    # identical to filtering the same signal with the bad values replaced by hand (last good value, 0 at first)
    fixed = x.copy()
    fixed[1000:1100, 0] = fixed[999, 0]
    fixed[1500] = fixed[1499]
    fixed[:5, 2] = 0.0
    ref = StreamProcessor(FS, 3, bandpass=(0.5, 45.0), notch=50.0, capacity_s=60.0)
    ref.push(fixed, ts)
    assert np.array_equal(everything(ref)[0], data)
    counts = proc.window_counts(ts[1200], 200)
    assert counts is not None
    assert counts.nonfinite[0] == pytest.approx(100 / 250, abs=0.02)
    assert counts.nonfinite[1] == 0


def test_short_gap_is_filled_and_counted_and_keeps_the_grid():
    x, ts = signal(2000)
    ts[1000:] += 3 / FS  # three samples lost
    proc = StreamProcessor(FS, 3, bandpass=(0.5, 45.0), notch=None, capacity_s=60.0)
    n_out = feed(proc, x, ts, [10])
    assert proc.stats.gaps == 1
    assert proc.stats.samples_filled == 3
    assert proc.stats.breaks == 0
    assert n_out == -(-2003 * 4 // 5)  # 2000 + 3 filled inputs at 250 Hz → 200 Hz, nothing lost
    _, out_ts = everything(proc)
    np.testing.assert_allclose(np.diff(out_ts), 1 / 200, atol=1e-9)
    counts = proc.window_counts(out_ts[-1], len(out_ts) - 1)
    assert counts is not None and counts.filled == pytest.approx(3 / 2003, rel=1e-2)


def test_long_gap_breaks_the_stream_and_windows_never_span_it(caplog):
    x, ts = signal(3000)
    ts[1000:] += 5.0
    proc = StreamProcessor(FS, 3, bandpass=(0.5, 45.0), notch=50.0, capacity_s=60.0)
    with caplog.at_level(logging.WARNING, logger="rt_physio.dsp"):
        feed(proc, x, ts, [25])
    assert proc.stats.breaks == 1 and proc.stats.gaps == 1 and proc.stats.samples_filled == 0
    assert any("breaks" in r.getMessage() for r in caplog.records)
    after_break = ts[1000]
    assert proc.read_until(after_break + 1.0, 400) is None  # would reach back before the break
    got = proc.read_until(ts[-1], 1000)
    assert got is not None and got[1][0] >= after_break
    data, _ = got
    assert np.abs(data).max() < 200  # restarted at the steady state of the new level: no DC step transient


def test_backward_timestamps_are_repaired_or_break():
    x, ts = signal(2000)
    ts[700] = ts[699] - 0.001  # jitter
    ts[1200] = np.nan
    ts[1500:] -= 10.0  # clock jump
    proc = StreamProcessor(FS, 3, bandpass=None, notch=None, capacity_s=60.0)
    feed(proc, x, ts, [9])
    assert proc.stats.backwards == 3
    assert proc.stats.breaks == 1
    _, out_ts = proc.ring.latest(proc.ring.n_available)
    assert out_ts[0] >= ts[1500] and np.all(np.diff(out_ts) > 0)


def test_reset_forgets_the_signal_but_not_the_counters():
    x, ts = signal(500)
    proc = StreamProcessor(FS, 3, bandpass=(0.5, 45.0), notch=50.0)
    first = proc.push(x, ts)
    proc.reset()
    assert np.isnan(proc.newest_timestamp)
    assert proc.read_until(1e9, 1) is None
    assert proc.push(x, ts) == first
    assert proc.stats.samples_in == 1000 and proc.stats.samples_out == 2 * first


def test_ring_overflow_is_counted():
    x, ts = signal(2000)
    proc = StreamProcessor(FS, 3, bandpass=None, notch=None, capacity_s=2.0)
    proc.push(x, ts)
    assert proc.stats.overwritten == 1600 - proc.ring.capacity


def test_notch_above_nyquist_is_skipped_and_band_edge_clipped(caplog):
    with caplog.at_level(logging.WARNING, logger="rt_physio.dsp"):
        proc = StreamProcessor(100.0, 2, bandpass=(0.5, 70.0), notch=60.0)
    messages = [r.getMessage() for r in caplog.records]
    assert any("notch at 60 Hz" in m and "skipped" in m for m in messages)
    assert any("band-pass upper edge 70 Hz" in m for m in messages)
    assert proc.sos is not None and proc.sos.shape == (4, 6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fs_in": -1.0}, "'fs_in' parameter"),
        ({"n_channels": 0}, "'n_channels' parameter"),
        ({"bandpass": (50.0, 10.0)}, "'low' parameter must be below 'high'"),
        ({"notch": -50.0}, "'notch' parameter"),
        ({"capacity_s": 0.0}, "'capacity_s' parameter"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"fs_in": 250.0, "n_channels": 2, "bandpass": (0.5, 45.0), "notch": 50.0} | kwargs
    with pytest.raises(ValueError, match=match):
        StreamProcessor(args.pop("fs_in"), args.pop("n_channels"), **args)


def test_push_validates_shapes():
    proc = StreamProcessor(250.0, 2, bandpass=None, notch=None)
    with pytest.raises(ValueError, match=r"'data' parameter must have shape \(samples, 2\), got \(4, 3\)"):
        proc.push(np.zeros((4, 3), np.float32), np.zeros(4))
    with pytest.raises(ValueError, match=r"'timestamps' parameter must be an array of shape \(4,\)"):
        proc.push(np.zeros((4, 2), np.float32), np.zeros(5))
    assert proc.push(np.zeros((0, 2), np.float32), np.zeros(0)) == 0
