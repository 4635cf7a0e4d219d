"""The source protocol: what every acquisition backend (LSL, BrainFlow, replay, BLE) delivers.

A source owns one acquisition thread. It calls its sink with each :class:`Chunk` as soon as the samples are
pulled (event-driven, no polling tick), on that thread. Data are float32 in microvolts, shaped
(samples, channels); timestamps are float64 seconds on the engine clock (:func:`rt_physio.clock.local_clock`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from rt_physio.io.channels import MODALITIES, Modality

__all__ = [
    "MODALITIES", "Chunk", "ChunkSink", "Modality", "Source", "SourceStats", "StreamInfo", "ThreadedSource", "deliver",
]


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A block of consecutive samples of one stream.

    Attributes
    ----------
    data : ndarray of float32, shape (samples, channels)
        Signal values in microvolts.
    timestamps : ndarray of float64, shape (samples,)
        Sample times on the engine clock, seconds.
    received : float
        Engine-clock time at which the acquisition thread obtained this chunk (for latency accounting).
    """

    data: NDArray[np.float32]
    timestamps: NDArray[np.float64]
    received: float

    def __post_init__(self) -> None:
        if self.data.ndim != 2 or self.timestamps.shape != (self.data.shape[0],):
            raise ValueError(
                f"Chunk data must be (samples, channels) with one timestamp per sample, got data "
                f"{self.data.shape} and timestamps {self.timestamps.shape}."
            )

    @property
    def n_samples(self) -> int:
        """Number of samples in the chunk."""
        return int(self.data.shape[0])


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a source delivers: enough to set up filters, resampling and the message metadata."""

    name: str
    modality: Modality
    sfreq: float
    channel_names: tuple[str, ...]
    source_id: str = ""
    units: str = "uV"

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.channel_names)


@dataclass(slots=True)
class SourceStats:
    """Counters a source keeps; read from other threads (plain ints, updated by the acquisition thread)."""

    chunks: int = 0
    samples: int = 0
    errors: int = 0
    last_received: float = float("nan")
    extra: dict[str, int] = field(default_factory=dict)


ChunkSink = Callable[[Chunk], None]


@runtime_checkable
class Source(Protocol):
    """A stream of one modality that pushes chunks to a sink from its own thread."""

    @property
    def info(self) -> StreamInfo:
        """Static description of the stream (rate, channels, modality)."""
        ...

    @property
    def stats(self) -> SourceStats:
        """Live counters."""
        ...

    def start(self, sink: ChunkSink) -> None:
        """Start acquiring; ``sink`` is called on the acquisition thread with every chunk."""
        ...

    def stop(self) -> None:
        """Stop acquiring and release the device; idempotent, returns within about a second."""
        ...


class ThreadedSource:
    """Base class for sources that own one daemon acquisition thread.

    Resolving and opening the device happens in the constructor or factory, on the caller's thread, so that a
    wrong name or a missing board is a clear error before anything runs. Subclasses implement :meth:`_poll`
    (block briefly for new data and return a chunk or ``None``) and :meth:`_close` (release the device; runs
    exactly once, on the acquisition thread when it ran, else on the thread calling :meth:`stop`), and
    optionally :meth:`_open` (extra set-up on the acquisition thread, may raise).
    Errors raised by :meth:`_poll` are logged and counted; the loop keeps going unless ``_poll`` raises
    repeatedly for longer than ``fail_after`` seconds, after which the source stops and :attr:`failure` holds
    the exception. A subclass that knows an error is permanent may set :attr:`failure` and return ``None``
    after calling ``self._stop.set()``. Errors raised by the sink are counted (``stats.extra["sink_errors"]``)
    and logged, and acquisition goes on.
    """

    fail_after: float = 10.0

    def __init__(self, info: StreamInfo) -> None:
        self._info = info
        self._stats = SourceStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sink: ChunkSink | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self.failure: BaseException | None = None

    @property
    def info(self) -> StreamInfo:
        """Static description of the stream."""
        return self._info

    @property
    def stats(self) -> SourceStats:
        """Live counters."""
        return self._stats

    @property
    def running(self) -> bool:
        """True while the acquisition thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, sink: ChunkSink) -> None:
        """Start the acquisition thread delivering chunks to ``sink``."""
        if self._thread is not None or self._stop.is_set():
            raise RuntimeError(f"source {self._info.name!r} already started or stopped; open a new one")
        self._sink = sink
        self._thread = threading.Thread(target=self._run, name=f"src-{self._info.modality}-{self._info.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the acquisition thread to finish and wait for it (up to 2 s); release a never-started source."""
        self._stop.set()
        if self._thread is None:
            self._close_once()
        elif self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _close_once(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._close()
        except Exception:
            log.exception("source %s: error while closing", self._info.name)

    # -- to implement ---------------------------------------------------------------------------------------
    def _open(self) -> None:
        """Open the device or inlet (acquisition thread)."""

    def _poll(self) -> Chunk | None:
        """Wait briefly (≤ ~0.1 s) for data; return a chunk or None."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release the device or inlet (acquisition thread, every exit path)."""

    # -------------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        from rt_physio.clock import local_clock

        assert self._sink is not None
        sink = self._sink
        failing_since: float | None = None
        try:
            self._open()
            while not self._stop.is_set():
                try:
                    chunk = self._poll()
                except Exception as exc:  # a device hiccup must not kill the engine: count, log, retry
                    self._stats.errors += 1
                    now = local_clock()
                    if failing_since is None:  # one warning per run of failures, not one per retry
                        failing_since = now
                        log.warning("source %s: read failed (%s); retrying", self._info.name, exc)
                    else:
                        log.debug("source %s: read failed again (%s)", self._info.name, exc)
                    if now - failing_since > self.fail_after:
                        self.failure = exc
                        log.error("source %s: giving up after %.0f s of errors", self._info.name, self.fail_after)
                        return
                    self._stop.wait(0.1)
                    continue
                if failing_since is not None:
                    log.info("source %s: reading again", self._info.name)
                    failing_since = None
                if chunk is None or chunk.n_samples == 0:
                    continue
                deliver(sink, chunk, self._stats, self._info.name)
        except Exception as exc:
            self.failure = exc
            log.exception("source %s stopped", self._info.name)
        finally:
            self._close_once()


def deliver(sink: ChunkSink, chunk: Chunk, stats: SourceStats, name: str) -> None:
    """Count ``chunk`` in ``stats`` and hand it to ``sink``; a sink error is counted and logged, never raised.

    Acquisition must go on when downstream code fails on one chunk (the next may be fine); the first error
    is logged with its traceback, later ones every 1000th, and all are counted in ``stats.extra["sink_errors"]``.
    """
    stats.chunks += 1
    stats.samples += chunk.n_samples
    stats.last_received = chunk.received
    try:
        sink(chunk)
    except Exception:
        n = stats.extra.get("sink_errors", 0) + 1
        stats.extra["sink_errors"] = n
        if n == 1 or n % 1000 == 0:
            log.exception("source %s: the sink failed on a chunk (%d so far); acquisition goes on", name, n)
