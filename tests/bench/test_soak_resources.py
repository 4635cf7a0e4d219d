"""The soak's memory figures: slopes per part of the resident size, and the floor under minute-scale swings."""

from __future__ import annotations

import numpy as np

from rt_physio.bench.soak_record import resource_report


def _samples(rise_mb_per_h: float, swing_mb: float, hours: float = 1.0) -> list[dict[str, object]]:
    """10-s samples of an engine whose memory rises steadily and swings by ``swing_mb`` every ~90 s."""
    t = np.arange(0.0, hours * 3600.0, 10.0)
    base = 300.0 + rise_mb_per_h * t / 3600.0
    swing = swing_mb * (np.sin(2 * np.pi * t / 90.0) > 0.6)  # short peaks, like batches that come and go
    return [{"t": float(ti), "rss_mb": float(b + w + 223.0), "rss_anon_mb": float(b + w), "rss_file_mb": 223.0,
             "threads": 40, "fds": 95, "cpu_s": float(ti) * 0.5,
             "memory": {"heap_in_use_mb": float(170.0 + 0.5 * rise_mb_per_h * ti / 3600.0)}} for ti, b, w in
            zip(t, base, swing, strict=True)]


def test_a_steady_rise_under_swings_shows_in_the_floor_and_the_written_part_only() -> None:
    report = resource_report(_samples(rise_mb_per_h=4.0, swing_mb=15.0), warmup_s=600.0)
    assert abs(report["rss_floor_slope_mb_per_h"] - 4.0) < 0.3, report
    low, high = report["rss_floor_slope_ci95"]
    assert low <= 4.0 <= high
    assert report["rss_file_slope_mb_per_h"] == 0.0  # mapped files flat: all of it is written memory
    assert abs(report["rss_anon_slope_mb_per_h"] - report["rss_slope_mb_per_h"]) < 1e-9
    assert abs(report["heap_in_use_slope_mb_per_h"] - 2.0) < 0.1


def test_flat_memory_under_swings_has_a_flat_floor() -> None:
    report = resource_report(_samples(rise_mb_per_h=0.0, swing_mb=15.0), warmup_s=600.0)
    assert abs(report["rss_floor_slope_mb_per_h"]) < 0.05, report
    assert report["rss_mb_after_warmup"][1] - report["rss_mb_after_warmup"][0] >= 14.9  # the swing is there
