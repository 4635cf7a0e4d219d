from __future__ import annotations

import numpy as np
import pytest

from rt_physio.dsp import StreamProcessor, WindowCounts, quality

FS = 200.0


def noise(n: int = 1000, n_channels: int = 4, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, n_channels)) * 10).astype(np.float32)


def test_clean_signal_scores_near_one():
    report = quality.assess(noise(), FS)
    assert report.score > 0.9
    assert report.channel_scores.shape == (4,)
    assert not report.flat.any()


def test_flat_channel_scores_zero():
    x = noise()
    x[:, 2] = 3.0
    report = quality.assess(x, FS)
    assert report.flat.tolist() == [False, False, True, False]
    assert report.channel_scores[2] == 0.0
    assert report.score == pytest.approx(report.channel_scores.mean())


def test_line_noise_ratio_finds_50_and_60_hz():
    t = np.arange(1000) / FS
    x = noise(n_channels=3, seed=1)
    x[:, 0] += 100 * np.sin(2 * np.pi * 50.0 * t)
    x[:, 1] += 100 * np.sin(2 * np.pi * 60.0 * t)
    ratio = quality.line_noise_ratio(x, FS)
    assert ratio[0] > 0.9 and ratio[1] > 0.9 and ratio[2] < 0.05
    only_50 = quality.line_noise_ratio(x, FS, line_freqs=(50.0,))
    assert only_50[1] < 0.05
    assert quality.assess(x, FS).channel_scores[0] < 0.1


def test_counts_from_the_processor_lower_the_score():
    counts = WindowCounts(nonfinite=np.array([0.0, 0.5, 0.0, 0.0]), filled=0.1, stuck=np.array([0, 0, 0.3, 0.0]),
                          n_input=1250)
    report = quality.assess(noise(), FS, counts)
    assert report.nonfinite.tolist() == pytest.approx([0.1, 0.6, 0.1, 0.1])
    assert report.clipped.tolist() == [0, 0, 0.3, 0]
    assert report.channel_scores[1] == pytest.approx(0.4 * (1 - report.line_ratio[1]))
    with pytest.raises(ValueError, match="must describe 3 channels, got 4"):
        quality.assess(noise(n_channels=3), FS, counts)


def test_railed_channel_is_counted_as_clipped_in_the_raw_stream():
    fs_in = 250.0
    x = noise(2500, 2, seed=3) * 10
    x[1000:1500, 1] = 187500.0  # amplifier rail
    ts = np.arange(2500) / fs_in
    proc = StreamProcessor(fs_in, 2, bandpass=(0.5, 45.0), notch=50.0)
    proc.push(x, ts)
    counts = proc.window_counts(ts[1499], 400)  # the 2 s ending with the rail
    assert counts is not None
    assert counts.stuck[0] == 0.0
    assert counts.stuck[1] > 0.9
    report = proc.quality(ts[1499], 400)
    assert report is not None and report.channel_scores[1] < 0.1 < report.channel_scores[0]


def test_bad_window_is_rejected():
    with pytest.raises(ValueError, match=r"shape \(samples >= 2, channels\)"):
        quality.assess(np.zeros(10), FS)
