"""Classical signal features: band powers, R peaks and HRV, the per-channel feature vector of one window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rt_physio.dsp.features import band_powers, channel_features, detect_r_peaks, hrv

FS = 200.0


def synthetic_ecg(bpm: float, seconds: float, fs: float, *, polarity: float = 1.0, noise_mv: float = 0.05,
                  seed: int = 0) -> np.ndarray:
    """A PQRST train in mV (Gaussian waves), baseline wander and white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * fs)) / fs
    x = np.zeros_like(t)
    waves = ((-0.2, 0.025, 0.15), (-0.03, 0.01, -0.1), (0.0, 0.012, 1.2), (0.03, 0.01, -0.25), (0.25, 0.04, 0.3))
    for beat in np.arange(0.3, seconds, 60.0 / bpm):
        for offset, width, amp in waves:  # P, Q, R, S, T
            x += amp * np.exp(-0.5 * ((t - beat - offset) / width) ** 2)
    wander = 0.2 * np.sin(2 * np.pi * 0.3 * t)
    return polarity * x + wander + noise_mv * rng.standard_normal(t.size)


def test_a_10_hz_sine_puts_its_power_in_alpha() -> None:
    t = np.arange(int(10 * FS)) / FS
    x = np.stack([np.sin(2 * np.pi * 10 * t), 3.0 * np.sin(2 * np.pi * 10.3 * t)])
    absolute, relative = band_powers(x, FS)
    assert relative.shape == (2, 5)
    assert np.all(relative[:, 2] > 0.9)  # alpha
    # a sine of amplitude A has power A² / 2, all of it in the alpha band
    np.testing.assert_allclose(absolute[:, 2], [0.5, 4.5], rtol=0.05)


@pytest.mark.parametrize("polarity", [1.0, -1.0])
@pytest.mark.parametrize("fs", [200.0, 500.0])
def test_synthetic_ecg_at_72_bpm_gives_72_bpm(polarity: float, fs: float) -> None:
    for seed in range(5):
        ecg = synthetic_ecg(72.0, 5.0, fs, polarity=polarity, seed=seed)
        result = hrv(ecg, fs)
        assert result is not None
        hr, sdnn, rmssd = result
        assert abs(hr - 72.0) <= 1.0
        assert sdnn < 20 and rmssd < 20  # a perfectly regular train: only sampling jitter
        peaks = detect_r_peaks(ecg, fs)
        # each detection sits on the R wave (within 10 ms), whatever the polarity
        r_times = np.arange(0.3, 5.0, 60.0 / 72.0)
        assert np.all(np.min(np.abs(peaks[:, None] / fs - r_times[None, :]), axis=1) <= 0.01)


def test_noise_only_ecg_gives_none(data_dir: Path) -> None:
    assert hrv(np.zeros(int(5 * FS)), FS) is None
    # white noise can line up like beats by chance, rarely: at most 1 % of 500 windows
    rng = np.random.default_rng(1)
    accepted = sum(hrv(rng.standard_normal(int(5 * FS)), FS) is not None for _ in range(500))
    assert accepted <= 5
    # a real noise lead: EEGMAT Subject13_1's ECG has no R peaks (dataset manifest)
    import pyedflib

    reader = pyedflib.EdfReader(str(data_dir / "eegmat" / "Subject13_1.edf"))
    try:
        i = reader.getSignalLabels().index("ECG ECG")
        x, fs = reader.readSignal(i), reader.getSampleFrequency(i)
    finally:
        reader.close()
    n = int(5 * fs)
    results = [hrv(x[k:k + n], fs) for k in range(0, x.size - n + 1, n)]
    assert len(results) == 36 and all(r is None for r in results)


def test_multi_lead_ecg_uses_a_plausible_lead() -> None:
    rng = np.random.default_rng(2)
    leads = np.stack([rng.standard_normal(int(5 * FS)), synthetic_ecg(60.0, 5.0, FS, polarity=-1.0)])
    result = hrv(leads, FS)
    assert result is not None and abs(result[0] - 60.0) <= 1.0


def test_channel_features_layout_and_absent_blocks() -> None:
    rng = np.random.default_rng(3)
    eeg = rng.standard_normal((4, 5, 200)).astype(np.float32)
    ecg = synthetic_ecg(72.0, 5.0, FS).reshape(1, 5, 200)
    feats, present = channel_features(eeg, ecg, FS)
    assert feats.shape == (4 * 5 * 2 + 3,) and feats.dtype == np.float32
    np.testing.assert_array_equal(present, [1, 1])
    assert abs(feats[-3] - 72.0) <= 1.0
    # relative powers of each channel sum to 1 over the five contiguous bands
    per_channel = feats[:-3].reshape(4, 10)
    np.testing.assert_allclose(per_channel[:, 5:].sum(axis=1), 1.0, rtol=1e-4)
    feats, present = channel_features(None, rng.standard_normal((1, 5, 200)), FS, n_eeg_channels=4)
    np.testing.assert_array_equal(present, [0, 0])
    assert not feats.any()
    _, present = channel_features(np.zeros((4, 5, 200)), None, FS)
    np.testing.assert_array_equal(present, [0, 0])  # a flat EEG window carries nothing
