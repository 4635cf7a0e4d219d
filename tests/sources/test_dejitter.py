"""Online dejitter: jittered timestamps in, the sampling clock out, within a few seconds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rt_physio.clock import Dejitter, local_clock
from rt_physio.sources.spec import open_source


def stamped_at_arrival(fs: float, n: int, chunk: int, max_delay: float, seed: int = 0, t0: float = 1000.0,
                       drift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """True sample times and the stamps a bridge gives: each chunk stamped at its (delayed) arrival, the
    samples before its last one spaced back by the nominal period."""
    rng = np.random.default_rng(seed)
    true = t0 + np.arange(n) / fs * (1 + drift)
    stamps = np.empty(n)
    for k in range(0, n, chunk):
        end = min(k + chunk, n)
        stamps[k:end] = true[end - 1] + rng.uniform(0, max_delay) - np.arange(end - k)[::-1] / fs
    return true, stamps


def run(dj: Dejitter, stamps: np.ndarray, chunk: int) -> np.ndarray:
    return np.concatenate([dj.process(stamps[k:k + chunk]) for k in range(0, len(stamps), chunk)])


@pytest.mark.parametrize(("fs", "chunk", "max_delay"), [(128.0, 4, 0.008), (500.0, 10, 0.006), (256.0, 1, 0.01)])
def test_residual_jitter_below_a_millisecond_after_a_few_seconds(fs, chunk, max_delay):
    true, stamps = stamped_at_arrival(fs, int(20 * fs), chunk, max_delay, drift=80e-6)  # a clock 80 ppm fast
    raw_jitter = np.abs(np.diff(stamps) - 1 / fs).max()
    assert raw_jitter > 2e-3  # the input is really jittered
    out = run(Dejitter(fs), stamps, chunk)
    settled = slice(int(3 * fs), None)
    err = out[settled] - true[settled]
    # what is left is a constant transport delay (unknowable) plus jitter below a millisecond
    assert np.abs(err - np.median(err)).max() < 1e-3
    assert np.abs(np.diff(out[settled]) - np.diff(true[settled])).max() < 0.2e-3
    assert 0 < np.median(err) < max_delay
    assert (np.diff(out) > 0).all()


def test_the_fitted_rate_follows_a_device_whose_clock_differs_from_nominal():
    fs = 250.0
    _, stamps = stamped_at_arrival(fs, int(30 * fs), 5, 0.004, drift=-500e-6)  # 0.05 % slow
    dj = Dejitter(fs)
    run(dj, stamps, 5)
    assert dj.period == pytest.approx((1 - 500e-6) / fs, rel=2e-5)


def test_a_gap_restarts_the_fit():
    fs = 100.0
    _, a = stamped_at_arrival(fs, 500, 5, 0.005)
    _, b = stamped_at_arrival(fs, 500, 5, 0.005, seed=1, t0=a[-1] + 3.0)  # 3 s later, a new sender
    dj = Dejitter(fs)
    out = run(dj, np.concatenate([a, b]), 5)
    assert dj.resets == 1
    assert np.abs(out[500:] - b).max() < 0.01  # no extrapolation of the old line across the gap
    assert out[500] - out[499] > 2.9


def test_invalid_parameters_are_named():
    with pytest.raises(ValueError, match="'sfreq' parameter must be a positive number, got 0"):
        Dejitter(0)
    with pytest.raises(ValueError, match="halflife"):
        Dejitter(100, halflife=-1)


def test_lsl_source_dejitters_a_jittered_stream(make_outlet, recorder):
    fs, chunk = 250.0, 5
    outlet, name = make_outlet(2, fs, stype="ECG")
    source = open_source(f"lsl:{name}", "ecg", resolve_timeout=3.0)
    raw_source = open_source(f"lsl:name={name}&dejitter=0", "ecg", resolve_timeout=3.0)
    raw = type(recorder)()
    source.start(recorder)
    raw_source.start(raw)
    n = int(6 * fs)
    true, stamps = stamped_at_arrival(fs, n, chunk, 0.008, t0=local_clock() - 6.5)
    try:
        for k in range(0, n, chunk):
            outlet.push_chunk(np.zeros((chunk, 2), np.float32), stamps[k:k + chunk].tolist())
            if k % 100 == 0:
                time.sleep(0.002)
        assert recorder.wait_samples(n, timeout=10.0)
        assert raw.wait_samples(n, timeout=10.0)
    finally:
        source.stop()
        raw_source.stop()
    correction = source.time_correction
    ts = recorder.timestamps() - correction
    settled = slice(int(3 * fs), None)
    err = ts[settled] - true[settled]
    assert np.abs(err - np.median(err)).max() < 1e-3
    assert np.abs(np.diff(raw.timestamps()) - 1 / fs).max() > 3e-3  # dejitter=0 passes the jitter through
    np.testing.assert_allclose(raw.timestamps() - raw_source.time_correction, stamps, atol=1e-9)
