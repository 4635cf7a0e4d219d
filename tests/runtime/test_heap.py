"""The engine's heap trimmer (runtime/heap.py) and the fixed-size sample log behind the hand-off figures."""

from __future__ import annotations

import numpy as np
import pytest

from rt_physio.clock import local_clock
from rt_physio.runtime.heap import HeapTrimmer, heap_stats, resident_bytes, trim_heap
from rt_physio.runtime.tracing import SampleLog

_MB = 1024 * 1024


def test_trimming_gives_the_free_heap_between_live_blocks_back_to_the_system() -> None:
    stats = heap_stats()
    assert stats is not None, "this suite runs on glibc (Debian), where mallinfo2 must be found"
    # 2,000 blocks of 80 KB (below glibc's mmap threshold, so inside the arena); freeing every other one leaves
    # ~80 MB of free holes that cannot coalesce or shrink the top: glibc keeps them resident until trimmed.
    blocks = [np.ones(10_000) for _ in range(2_000)]
    kept = blocks[::2]
    del blocks
    before, free = resident_bytes(), heap_stats()
    assert before is not None and free is not None
    assert free.free > 60 * _MB
    assert trim_heap()
    after = resident_bytes()
    assert after is not None
    assert before - after > 50 * _MB, f"trim gave back {(before - after) / _MB:.1f} MB of ~80 MB free"
    assert all(float(b[-1]) == 1.0 for b in kept)  # live blocks untouched


def test_the_trimmer_trims_on_its_period_and_reports_what_it_gave_back() -> None:
    start = local_clock()
    trimmer = HeapTrimmer(every_s=10.0)
    assert not trimmer.tick(start + 1.0)
    assert trimmer.tick(start + 12.0)
    assert not trimmer.tick(start + 20.0)
    assert trimmer.tick(start + 22.5)
    report = trimmer.report()
    assert report["trims"] == 2
    assert report["trimmed_mb"] >= 0 and report["trim_ms"] >= 0
    assert report["rss_mb"] > 0 and report["heap_in_use_mb"] > 0 and report["heap_free_mb"] >= 0


def test_a_trimmer_with_no_period_never_trims_but_still_reports() -> None:
    trimmer = HeapTrimmer(every_s=0.0)
    assert not trimmer.tick(1e9)
    report = trimmer.report()
    assert "trims" not in report and report["rss_mb"] > 0


def test_the_sample_log_keeps_the_newest_values_oldest_first_without_growing() -> None:
    log = SampleLog(4)
    assert len(log) == 0 and log.values().size == 0
    for v in (1.0, 2.0, 3.0):
        log.append(v)
    assert log.values().tolist() == [1.0, 2.0, 3.0]
    for v in (4.0, 5.0, 6.0):
        log.append(v)
    assert len(log) == 4
    assert log.values().tolist() == [3.0, 4.0, 5.0, 6.0]
    with pytest.raises(ValueError, match="capacity"):
        SampleLog(0)
