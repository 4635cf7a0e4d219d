"""The engine clock's mappings: a wall clock that slews or steps, and streams whose own clocks jump."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rt_physio.clock import ClockGuard, WallClockMap, local_clock


class ShiftedWall:
    """The real wall clock plus an offset the test moves (what NTP does to time.time())."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


def test_a_small_wall_clock_change_is_slewed_not_stepped() -> None:
    wall = ShiftedWall()
    clock = WallClockMap(wall=wall, max_slew=1e-3)
    start = clock.offset
    wall.shift = 0.02  # NTP corrected the wall clock by 20 ms
    change = clock.refresh()
    assert change == pytest.approx(0.02, abs=2e-3)
    assert clock.offset == pytest.approx(start, abs=2e-3)  # not applied in one go: the sample grid would tear
    now = local_clock()
    clock.advance(now + 5.0)  # five seconds later: at most 5 ms of it applied
    assert clock.offset - start == pytest.approx(5e-3, abs=1e-3)
    clock.advance(now + 60.0)
    assert clock.offset - start == pytest.approx(0.02, abs=2e-3)  # converged, never beyond the target
    assert clock.steps == 0


def test_a_wall_clock_step_is_followed_at_once_and_counted() -> None:
    wall = ShiftedWall()
    clock = WallClockMap(wall=wall)
    start = clock.offset
    wall.shift = -30.0
    assert clock.refresh() == pytest.approx(-30.0, abs=0.01)
    assert clock.offset - start == pytest.approx(-30.0, abs=0.01)
    assert clock.steps == 1
    wall.shift = 0.0
    clock.step()  # the caller saw implausible stamps: re-measure now
    assert clock.offset == pytest.approx(start, abs=0.01)
    assert clock.steps == 2


@pytest.mark.parametrize("jump", [-30.0, -2.0, 5.0, 1e7])
def test_clock_guard_re_anchors_jumps_beyond_its_threshold(jump: float) -> None:
    guard = ClockGuard(jump_after=1.5)
    fs, lag = 100.0, 0.02
    out = []
    for k in range(0, 1000, 10):
        stamps = 50.0 + (k + np.arange(10)) / fs
        received = stamps[-1] + lag
        if k >= 500:
            stamps = stamps + jump  # the sender's clock jumped; arrivals did not
        out.append(guard.process(stamps, received))
    ts = np.concatenate(out)
    if abs(jump) > 1.5:
        assert guard.jumps == 1
        assert guard.last_jump == pytest.approx(jump, abs=0.05)
        # continuous on the engine clock: one sample period apart, give or take the lag estimate
        assert np.abs(np.diff(ts) - 1 / fs).max() < 0.01
    else:
        assert guard.jumps == 0
        np.testing.assert_allclose(ts[500:], 50.0 + np.arange(500, 1000) / fs + jump)


@pytest.mark.parametrize("jump", [-30.0, 30.0])
def test_a_re_anchored_chunk_that_came_early_still_follows_the_samples_before_it(jump: float) -> None:
    """The soak's root cause of 5 windows without ECG: the jump's chunk arrived sooner than the average lag."""
    guard = ClockGuard(jump_after=1.5)
    fs = 130.0
    out = []
    for k in range(0, 1300, 4):
        stamps = 50.0 + (k + np.arange(4)) / fs
        lag = 0.05 if k < 650 else 0.0  # the first chunk after the jump comes at once
        received = stamps[-1] + lag
        if k >= 650:
            stamps = stamps + jump
        out.append(guard.process(stamps, received))
    ts = np.concatenate(out)
    assert guard.jumps == 1
    assert (np.diff(ts) > 0).all()  # never back in time: the stream processor would break the stream
    assert np.abs(np.diff(ts) - 1 / fs).max() < 0.06


def test_clock_guard_leaves_a_real_gap_alone() -> None:
    """A sender that was silent for a minute: stamps and arrivals moved on together; no jump."""
    guard = ClockGuard(jump_after=1.5)
    a = guard.process(np.array([10.0, 10.01]), 10.03)
    b = guard.process(np.array([70.0, 70.01]), 70.03)
    assert guard.jumps == 0
    assert a[0] == 10.0 and b[0] == 70.0


@pytest.mark.parametrize("jump", [-30.0, 10.0])
def test_a_jump_inside_a_chunk_is_re_anchored_once_from_the_step_on(jump: float) -> None:
    """A chunk whose first samples came before the step: only the samples after it move, and the jump is counted once.

    Before, a forward step inside a chunk was cancelled by the "no earlier than the samples before it" rule applied to
    the chunk's first sample: the stream stayed in the future and every later chunk counted as a new jump (the soak's
    clock_jump fault, 311 windows without ECG).
    """
    guard = ClockGuard(jump_after=3.0)
    fs, lag = 500.0, 0.05
    out = []
    for k in range(0, 10_000, 50):
        stamps = 50.0 + (k + np.arange(50)) / fs
        received = stamps[-1] + lag
        if k == 5_000:
            stamps[25:] += jump  # the sender's clock stepped halfway through this chunk
        elif k > 5_000:
            stamps = stamps + jump
        out.append(guard.process(stamps, received))
    ts = np.concatenate(out)
    assert guard.jumps == 1
    assert guard.last_jump == pytest.approx(jump, abs=0.1)
    np.testing.assert_allclose(ts[:5_025], 50.0 + np.arange(5_025) / fs)  # before the step: untouched
    assert (np.diff(ts) > 0).all() and np.abs(np.diff(ts) - 1 / fs).max() < 0.06
    assert abs(ts[-1] - (50.0 + 9_999 / fs)) < 0.1  # back on the arrival clock, not jump seconds away from it
