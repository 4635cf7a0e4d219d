"""The engine's heap trimmer (runtime/heap.py) and the fixed-size sample log behind the hand-off figures."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rt_physio.clock import local_clock
from rt_physio.runtime.heap import HeapTrimmer, heap_stats, resident_bytes, resident_split, trim_heap
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


_THREADS_ALLOCATE = textwrap.dedent("""
    import json, sys, threading
    from rt_physio.runtime import heap
    limited = heap.limit_arenas(int(sys.argv[1])) if sys.argv[1] != "none" else None
    def work():  # each new thread that allocates gets an arena of its own, up to the limit
        for i in range(200):
            blocks = [bytearray(1000 + (i * 37) % 5000) for _ in range(50)]
            del blocks
    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"limited": limited, "arenas": heap.arena_count()}))
""")


def _arenas_after_twelve_threads(limit: str) -> dict[str, object]:
    import json

    done = subprocess.run([sys.executable, "-c", _THREADS_ALLOCATE, limit], capture_output=True, text=True,
                          timeout=120, check=True)
    return dict(json.loads(done.stdout))


def test_limiting_the_arenas_keeps_twelve_allocating_threads_in_two_heaps() -> None:
    free_run = _arenas_after_twelve_threads("none")
    limited = _arenas_after_twelve_threads("2")
    assert isinstance(free_run["arenas"], int) and free_run["arenas"] > 2, free_run  # glibc's default: many
    assert limited == {"limited": True, "arenas": 2}, limited


def test_the_resident_size_splits_into_written_memory_and_mapped_files() -> None:
    parts = resident_split()
    rss = resident_bytes()
    assert rss is not None and {"anon", "file", "shmem"} <= set(parts), parts
    assert parts["anon"] > 0 and parts["file"] > 0  # this interpreter wrote memory and maps its own libraries
    # the parts and the total are read a moment apart; they agree within a few MB
    assert abs(sum(parts.values()) - rss) < 16 * _MB, (parts, rss)
    before = parts["anon"]
    block = np.ones(40 * _MB // 8)  # 40 MB written: an anonymous mapping, not a file
    after = resident_split()["anon"]
    assert after - before > 30 * _MB, (before, after)
    del block


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
