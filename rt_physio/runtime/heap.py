"""The engine process's C heap: what the allocator holds, and handing its free pages back to the system.

A soak of four sessions (benchmarks/bench_soak.py) showed the engine's resident memory rising by tens of MB per
hour while what Python and glibc had *in use* stayed nearly flat: the growth was heap that was freed and kept by
glibc's allocator, spread over the per-thread arenas of the engine's threads (acquisition, inference, publishers,
recorder) and fragmented by buffers of many sizes coming and going. glibc returns such memory only from the top
of the main arena on its own; ``malloc_trim(0)`` walks every arena and gives every free page back
(``madvise(MADV_DONTNEED)``) and touches no live object. It costs about 70 ms per GB of free heap given back
(110 ms for 1.6 GB here), and holds each arena's lock meanwhile: trimming every 30 s keeps each trim small.

:class:`HeapTrimmer` does that every ``every_s`` seconds from the engine's watchdog (never from the hot path),
and :meth:`HeapTrimmer.report` is the status message's ``memory`` entry: resident size, the heap in use and free, and
what the trims gave back. On a C library other than glibc (macOS, musl) nothing is trimmed and the report holds
the resident size only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from rt_physio.clock import local_clock

__all__ = ["HeapStats", "HeapTrimmer", "heap_stats", "resident_bytes", "trim_heap"]

log = logging.getLogger(__name__)

_MB = 1024.0 * 1024.0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc() -> Any | None:
    """Return glibc with ``mallinfo2`` (2.33+) and ``malloc_trim``, or None on any other C library."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


@dataclass(frozen=True, slots=True)
class HeapStats:
    """glibc's view of the heap (``mallinfo2``), bytes: all arenas plus large blocks mapped on their own."""

    in_use: int  # allocated and not freed (``uordblks`` + ``hblkhd``)
    free: int  # freed and kept by the allocator (``fordblks``): resident unless trimmed


def heap_stats() -> HeapStats | None:
    """Return the heap's in-use and free bytes now, or None where glibc's ``mallinfo2`` is not available."""
    if _LIBC is None:
        return None
    info = _LIBC.mallinfo2()
    return HeapStats(in_use=int(info.uordblks + info.hblkhd), free=int(info.fordblks))


def resident_bytes() -> int | None:
    """Resident set size of this process in bytes (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def trim_heap() -> bool:
    """Give every free page of every glibc arena back to the system; False where glibc is not the allocator."""
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True


class HeapTrimmer:
    """Trim the heap every ``every_s`` seconds when :meth:`tick` is called (the engine's watchdog thread).

    Parameters
    ----------
    every_s : float
        Seconds between trims; 0 or less never trims (the report still says what the heap holds).
    """

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = every_s
        self.available = _LIBC is not None
        self.trims = 0
        self.released_bytes = 0  # resident bytes the trims gave back, summed
        self.last_trim_ms = float("nan")
        self._next = local_clock() + every_s

    def tick(self, now: float | None = None) -> bool:
        """Trim when one is due; return whether it trimmed."""
        if self.every_s <= 0 or not self.available:
            return False
        now = local_clock() if now is None else now
        if now < self._next:
            return False
        self._next = now + self.every_s
        before = resident_bytes()
        t0 = local_clock()
        trim_heap()
        self.last_trim_ms = 1e3 * (local_clock() - t0)
        after = resident_bytes()
        self.trims += 1
        if before is not None and after is not None:
            self.released_bytes += max(0, before - after)
        if self.last_trim_ms > 50.0:
            log.warning("trimming the heap took %.0f ms", self.last_trim_ms)
        return True

    def report(self) -> dict[str, float | int]:
        """Return the status message's ``memory`` entry (MB; heap figures only where glibc reports them)."""
        out: dict[str, float | int] = {}
        rss = resident_bytes()
        if rss is not None:
            out["rss_mb"] = round(rss / _MB, 1)
        stats = heap_stats()
        if stats is not None:
            out["heap_in_use_mb"] = round(stats.in_use / _MB, 1)
            out["heap_free_mb"] = round(stats.free / _MB, 1)
        if self.available and self.every_s > 0:
            out["trims"] = self.trims
            out["trimmed_mb"] = round(self.released_bytes / _MB, 1)
            if self.trims:
                out["trim_ms"] = round(self.last_trim_ms, 2)
        return out
