"""Real recordings through filter → resample → ring, against the offline scipy pipeline."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyedflib
import pytest
import scipy.signal

with warnings.catch_warnings():
    # wfdb 4.3.1 calls DataFrame.set_index(inplace=True) at import, which pandas 3.1 deprecates
    warnings.filterwarnings("ignore", message="The inplace keyword in DataFrame.set_index is deprecated")
    import wfdb

from rt_physio.dsp import SosFilter, StreamProcessor, quality

from ._signals import chunk_bounds


def read_edf_uv(path: Path) -> tuple[np.ndarray, float]:
    with pyedflib.EdfReader(str(path)) as edf:
        fs = edf.getSampleFrequency(0)
        units = [edf.getPhysicalDimension(i) for i in range(edf.signals_in_file)]
        scale = np.array([1000.0 if u.strip().lower() == "mv" else 1.0 for u in units])
        x = np.stack([edf.readSignal(i) for i in range(edf.signals_in_file)], axis=1) * scale
    return x.astype(np.float32), float(fs)


def offline(proc: StreamProcessor, x: np.ndarray) -> np.ndarray:
    """What a batch user would write: sosfilt from the first sample's steady state, then resample_poly."""
    sos = proc.sos
    assert sos is not None
    zi = scipy.signal.sosfilt_zi(sos)[:, :, None] * x[0].astype(np.float64)
    y, _ = scipy.signal.sosfilt(sos, x, axis=0, zi=zi)
    return scipy.signal.resample_poly(y, proc.resampler.up, proc.resampler.down, axis=0)


def stream(proc: StreamProcessor, x: np.ndarray, t0: float, seed: int) -> None:
    sizes = list(np.random.default_rng(seed).integers(1, 65, size=97))  # what LSL pull_chunk delivers
    ts = t0 + np.arange(len(x)) / proc.fs_in
    for a, b in chunk_bounds(len(x), sizes):
        proc.push(x[a:b], ts[a:b])


def check_against_offline(proc: StreamProcessor, x: np.ndarray, t0: float) -> None:
    ref = offline(proc, x)
    data, ts = proc.ring.latest(proc.ring.capacity)
    d = proc.resampler.delay_out
    assert proc.ring.n_written == len(ref)  # one output per resample_poly output, none lost, none extra
    # float32 storage is the only difference: the float64 pipelines agree to ~1e-12 µV
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(data[d:], ref[: len(data) - d], rtol=2e-7, atol=1e-7 * scale)
    step = proc.resampler.down / proc.resampler.up / proc.fs_in
    np.testing.assert_allclose(ts, t0 + np.arange(len(ts)) * step, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", ["Subject00_2.edf", "Subject13_1.edf"])
def test_eegmat_edf_through_the_stream_processor(data_dir, name):
    x, fs = read_edf_uv(data_dir / "eegmat" / name)
    assert fs == 500.0 and x.shape[1] == 21
    proc = StreamProcessor(fs, 21, bandpass=(0.5, 45.0), notch=50.0, capacity_s=len(x) / fs + 1)
    stream(proc, x, t0=5000.0, seed=1)
    check_against_offline(proc, x, 5000.0)
    assert proc.stats.nonfinite_replaced == 0 and proc.stats.gaps == 0


def test_eegmat_filter_alone_is_bit_identical_on_real_data(data_dir):
    x, fs = read_edf_uv(data_dir / "eegmat" / "Subject05_2.edf")
    proc = StreamProcessor(fs, 21, bandpass=(0.5, 45.0), notch=50.0)
    sos = proc.sos
    filt = SosFilter(sos, 21)
    got = np.concatenate([filt.process(x[a:b]) for a, b in chunk_bounds(len(x), [1, 3, 32, 7, 500])])
    assert np.array_equal(got, scipy.signal.sosfilt(sos, x, axis=0))


def test_mitbih_100_through_the_stream_processor(data_dir):
    record = wfdb.rdrecord(str(data_dir / "wfdb" / "100"))
    assert record.fs == 360
    x = (record.p_signal * 1000.0).astype(np.float32)  # mV → µV
    proc = StreamProcessor(360.0, 2, bandpass=(0.5, 40.0), notch=60.0, capacity_s=len(x) / 360 + 1)
    stream(proc, x, t0=12.5, seed=2)
    check_against_offline(proc, x, 12.5)


def test_quality_flags_the_repeated_values_at_the_end_of_an_eegmat_file(data_dir):
    x, fs = read_edf_uv(data_dir / "eegmat" / "Subject00_1.edf")
    proc = StreamProcessor(fs, 21, bandpass=(0.5, 45.0), notch=50.0, capacity_s=200.0)
    stream(proc, x, t0=0.0, seed=3)
    t_last = proc.newest_timestamp
    n = 1000  # 5 s at 200 Hz
    # the last ~2 s of this file hold one repeated value in every channel (padding): a dead-channel signature
    counts = [proc.window_counts(t, n) for t in [*np.arange(10.0, t_last - 5, 5.0), t_last]]
    assert all(c is not None for c in counts)
    assert max(float(c.stuck.max()) for c in counts[:-1]) < 0.01
    assert counts[-1].stuck.min() > 0.3
    last = proc.quality(t_last, n)
    assert last is not None and last.score < 0.7
    report = proc.quality(60.0, n)
    assert report is not None and report.score > 0.8  # clean, pre-filtered EEG
    assert not report.flat.any()
    assert 0.0 <= report.score <= 1.0
    window = proc.read_until(60.0, n)
    assert window is not None
    assert quality.assess(window[0], 200.0).score == pytest.approx(report.score, abs=1e-9)
