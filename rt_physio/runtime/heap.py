"""The engine process's C heap: what the allocator holds, and handing its free pages back to the system.

A soak of four sessions (benchmarks/bench_soak.py) showed the engine's resident memory rising by tens of MB per
hour while what Python and glibc had *in use* stayed nearly flat: the growth was heap that was freed and kept by
glibc's allocator, spread over the per-thread arenas of the engine's threads (acquisition, inference, publishers,
recorder) and fragmented by buffers of many sizes coming and going. glibc returns such memory only from the top
of the main arena on its own; ``malloc_trim(0)`` walks every arena and gives every free page back
(``madvise(MADV_DONTNEED)``) and touches no live object. It costs about 70 ms per GB of free heap given back
(110 ms for 1.6 GB here), and holds each arena's lock meanwhile: trimming every 30 s keeps each trim small.

:class:`HeapTrimmer` does that every ``every_s`` seconds from the engine's watchdog (never from the hot path),
and :meth:`HeapTrimmer.report` is the status message's ``memory`` entry: resident size (and its written and
file-backed parts), the heap in use and free, the number of arenas, and what the trims gave back.
:func:`limit_arenas` caps the arenas, as ``MALLOC_ARENA_MAX`` does from the environment: glibc otherwise gives up
to 8 per core to threads that allocate, and free memory in one arena serves no other. The engine does not cap
them by default: neither what two arenas save (one soak each way) nor what they cost in latency (p99 1.01–1.25×
in three runs of benchmarks/bench_arenas.py) is established (README, "Soak"). On a C library other than glibc
(macOS, musl) nothing is trimmed and the report holds the resident size only.
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

__all__ = ["HeapStats", "HeapTrimmer", "arena_count", "heap_stats", "limit_arenas", "resident_bytes",
           "resident_split", "trim_heap"]

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
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.malloc_info.restype = ctypes.c_int
        libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        libc.open_memstream.restype = ctypes.c_void_p
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.free.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()
_M_ARENA_MAX = -8  # mallopt's parameter number for the arena limit (glibc's malloc.h)


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


def resident_split() -> dict[str, int]:
    """Return this process's resident bytes by kind (Linux ``/proc/self/status``): ``anon``, ``file``, ``shmem``.

    ``anon`` is memory the process wrote (heaps, stacks, Python's own arenas): a leak rises here. ``file`` is
    pages of mapped files, mostly the code of shared libraries as it is first run (a plateau, and the kernel can
    take it back at any time). Empty where the kernel does not report them.
    """
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "RssShmem"):
                    out[key[3:].lower()] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    return out


def limit_arenas(count: int) -> bool:
    """Let glibc's allocator use at most ``count`` arenas from now on; False where it cannot (not glibc).

    glibc gives threads that contend for the heap arenas of their own, up to 8 per core, and memory freed in one
    arena serves only that arena: a process whose threads free and allocate buffers of many sizes (acquisition,
    inference, publishers, recorder) keeps each arena's high-water mark. Fewer arenas share the free memory.
    Arenas made before the call stay; call it before the process starts its threads (an application that embeds
    the engine). The same as setting ``MALLOC_ARENA_MAX`` before the process starts.
    """
    if _LIBC is None or count < 1:
        return False
    return bool(_LIBC.mallopt(_M_ARENA_MAX, count))


def arena_count() -> int | None:
    """Return how many arenas glibc's allocator has made in this process (``malloc_info``), or None elsewhere."""
    if _LIBC is None:
        return None
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = _LIBC.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return None
    try:
        _LIBC.malloc_info(0, stream)
    finally:
        _LIBC.fclose(stream)  # flushes: buf and size are valid after this
    try:
        xml = ctypes.string_at(buf, size.value).decode("ascii", "replace")
    finally:
        _LIBC.free(buf)
    return xml.count("<heap nr=")


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
        for kind, size in resident_split().items():
            out[f"rss_{kind}_mb"] = round(size / _MB, 1)
        stats = heap_stats()
        if stats is not None:
            out["heap_in_use_mb"] = round(stats.in_use / _MB, 1)
            out["heap_free_mb"] = round(stats.free / _MB, 1)
            arenas = arena_count()
            if arenas is not None:
                out["arenas"] = arenas
        arrow = sys.modules.get("pyarrow")  # loaded by the recorder: its buffers live in Arrow's own pool
        if arrow is not None:
            out["arrow_mb"] = round(arrow.total_allocated_bytes() / _MB, 1)
        if self.available and self.every_s > 0:
            out["trims"] = self.trims
            out["trimmed_mb"] = round(self.released_bytes / _MB, 1)
            if self.trims:
                out["trim_ms"] = round(self.last_trim_ms, 2)
        return out
