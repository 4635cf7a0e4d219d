from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_physio.dsp import RingBuffer


@settings(max_examples=80, deadline=None)
@given(
    capacity=st.integers(1, 40),
    n_channels=st.integers(1, 3),
    sizes=st.lists(st.integers(0, 100), min_size=1, max_size=25),
    reads=st.lists(st.tuples(st.integers(1, 45), st.floats(-5, 400)), min_size=1, max_size=6),
)
def test_reads_equal_a_numpy_slice_of_everything_written(capacity, n_channels, sizes, reads):
    ring = RingBuffer(n_channels, capacity)
    history = np.zeros((0, n_channels), np.float32)
    stamps = np.zeros(0)
    t = 0.0
    for size in sizes:
        # repeated timestamps are allowed (non-decreasing)
        ts = t + np.floor(np.arange(size) * 0.7)
        t = (ts[-1] + 1) if size else t
        data = np.random.default_rng(size).standard_normal((size, n_channels)).astype(np.float32)
        ring.write(data, ts)
        history, stamps = np.concatenate([history, data]), np.concatenate([stamps, ts])

        kept = min(len(history), capacity)
        assert ring.n_written == len(history)
        assert ring.n_overwritten == len(history) - kept
        assert ring.n_available == kept
        for n, t_end in reads:
            data_view, ts_view = ring.latest(n)
            k = min(n, kept)
            assert np.array_equal(data_view, history[len(history) - k:])
            assert np.array_equal(ts_view, stamps[len(stamps) - k:])

            stop = int(np.searchsorted(stamps, t_end, side="right"))
            got = ring.until(t_end, n)
            if stop - n < len(history) - kept:
                assert got is None
            else:
                assert got is not None
                assert np.array_equal(got[0], history[stop - n:stop])
                assert np.array_equal(got[1], stamps[stop - n:stop])

            t_start = t_end - n / 3
            start = max(int(np.searchsorted(stamps, t_start, side="right")), len(history) - kept)
            win_data, win_ts = ring.window(t_start, t_end)
            assert np.array_equal(win_ts, stamps[start:max(start, stop)])
            assert np.array_equal(win_data, history[start:max(start, stop)])


def test_window_is_a_view_not_a_copy_and_read_only():
    ring = RingBuffer(2, 10)
    for i in range(37):  # wrap several times, one sample at a time
        ring.write(np.full((1, 2), i, np.float32), np.array([float(i)]))
    data, ts = ring.latest(10)
    assert data.flags.c_contiguous and ts.flags.c_contiguous
    assert not data.flags.writeable
    assert np.shares_memory(data, ring._store)
    assert np.array_equal(ts, np.arange(27, 37.0))
    with pytest.raises(ValueError, match="read-only"):
        data[0, 0] = 1.0


def test_oversized_write_keeps_the_newest_and_counts_what_was_never_stored():
    ring = RingBuffer(1, 8)
    ring.write(np.arange(5, dtype=np.float32)[:, None], np.arange(5.0))
    ring.write(np.arange(5, 25, dtype=np.float32)[:, None], np.arange(5.0, 25.0))
    assert ring.n_written == 25
    assert ring.n_never_stored == 12
    assert ring.n_overwritten == 17
    assert np.array_equal(ring.latest(100)[0][:, 0], np.arange(17, 25.0))


def test_backward_timestamps_are_rejected_and_a_break_starts_a_new_segment():
    ring = RingBuffer(1, 16)
    ring.write(np.zeros((4, 1)), np.arange(4.0) + 100)
    with pytest.raises(ValueError, match="non-decreasing"):
        ring.write(np.zeros((2, 1)), np.array([50.0, 51.0]))
    with pytest.raises(ValueError, match="non-decreasing"):
        ring.write(np.zeros((2, 1)), np.array([104.0, np.nan]))
    assert ring.n_written == 4  # a rejected write changes nothing
    ring.mark_break()
    assert np.isnan(ring.newest_timestamp)
    assert ring.until(1e9, 1) is None
    ring.write(np.ones((3, 1)), np.array([50.0, 51.0, 52.0]))
    assert ring.segment_start == 4
    assert ring.n_available == 3
    assert ring.until(1e9, 4) is None  # a read never spans the break
    assert np.array_equal(ring.until(51.5, 2)[1], [50.0, 51.0])
    assert np.array_equal(ring.slice(2, 7)[1], [102.0, 103.0, 50.0, 51.0, 52.0])  # index reads may


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: RingBuffer(0, 5), "'n_channels'"),
        (lambda: RingBuffer(2, -1), "'capacity' parameter must be an integer >= 1, got -1"),
        (lambda: RingBuffer(2, 5, dtype=np.complex64), "numeric"),
        (lambda: RingBuffer(2, 5).write(np.zeros((3, 3)), np.zeros(3)), r"shape \(samples, 2\)"),
        (lambda: RingBuffer(2, 5).write(np.zeros((3, 2)), np.zeros(2)), "'timestamps'"),
        (lambda: RingBuffer(2, 5).slice(0, 1), r"within the stored samples \[0, 0\)"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
