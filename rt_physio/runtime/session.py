"""A session: the streams of one person, turned into aligned model windows every hop.

Each modality's source thread pushes its chunks through that modality's :class:`StreamProcessor`
(filters → 200 Hz → ring) and then asks the session whether the next window is complete. Windows end on a
fixed grid ``t_k = t_0 + k * hop`` on the engine clock and cover ``[t_k - W, t_k]`` for every modality. A window
is cut the moment the last modality's data reach ``t_k`` — no timer tick in between. A modality that is still
behind ``missing_after`` seconds past ``t_k`` (silent, unplugged, or started late) is left out of that window
and the message says so; the engine's watchdog calls :meth:`Session.poll` so this also happens when no data
arrive at all.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from rt_physio.clock import ClockGuard, local_clock
from rt_physio.dsp import StreamProcessor
from rt_physio.dsp.quality import WindowCounts, assess
from rt_physio.runtime.tracing import Trace
from rt_physio.sources.base import Chunk, Modality, Source
from rt_physio.sources.liveness import Liveness

__all__ = ["ModalityStream", "Session", "Window"]

log = logging.getLogger(__name__)


#: Raw-domain counts of a window for its quality score, or a function that reads them when the score is computed.
CountsSource = WindowCounts | None | Callable[[], WindowCounts | None]


@dataclass(slots=True)
class Window:
    """Model-ready inputs of one session for one hop.

    ``inputs`` maps each present modality to a float32 array (channels, patches, samples_per_patch) in units of
    ``scale_uv`` microvolts. ``quality`` is scored while the model runs, not before it: by the thread that cut
    the window once it is handed to the executor, or, when the executor runs the window on that very thread,
    by the executor's quality thread. :meth:`score_quality` does the work once, whoever calls it first; read
    the result through :meth:`wait_quality`.
    """

    session: str
    seq: int
    t_start: float
    t_end: float
    inputs: dict[Modality, NDArray[np.float32]]
    trace: Trace = field(default_factory=Trace)
    quality: dict[Modality, float] = field(default_factory=dict)
    #: per modality: the window as (C, n) in model units (the data of ``inputs``), and its raw-domain counts (or
    #: a function reading them)
    quality_inputs: list[tuple[Modality, NDArray[np.float32], CountsSource]] = field(default_factory=list)
    scale_uv: float = 100.0
    quality_sfreq: float = 200.0
    line_freqs: tuple[float, ...] = (50.0, 60.0)
    _quality_done: threading.Event = field(default_factory=threading.Event)
    _quality_claimed: threading.Lock = field(default_factory=threading.Lock)
    started: threading.Event = field(default_factory=threading.Event)

    @property
    def modalities(self) -> list[Modality]:
        """Present modalities, in a fixed order."""
        return [m for m in ("eeg", "ecg") if m in self.inputs]

    def score_quality(self) -> None:
        """Compute :attr:`quality` from the raw window copies kept at cut time, then release them.

        Only the first call does the work (a later or concurrent one returns at once).
        """
        if not self._quality_claimed.acquire(blocking=False):
            return
        try:
            for modality, x, source in self.quality_inputs:
                counts = source() if callable(source) else source
                raw = x.T * np.float32(self.scale_uv)  # (n, C) µV
                self.quality[modality] = assess(raw, self.quality_sfreq, counts, line_freqs=self.line_freqs).score
        finally:
            self.quality_inputs.clear()
            self._quality_done.set()

    def wait_quality(self, timeout: float = 1.0) -> dict[Modality, float]:
        """Return :attr:`quality` once scored (or whatever is there after ``timeout`` seconds)."""
        self._quality_done.wait(timeout)
        return self.quality


class ModalityStream:
    """One modality of a session: its source, the processor its chunks go through, its liveness and clock guard.

    ``spec`` is the SPEC the source was opened from (for status messages and errors). The :class:`Session` gives
    the stream its :attr:`liveness` (stall threshold) and :attr:`clock` (jump threshold, from the hop).
    """

    def __init__(self, modality: Modality, source: Source, processor: StreamProcessor,
                 select: NDArray[np.intp] | None = None, spec: str = "") -> None:
        self.modality = modality
        self.source = source
        self.processor = processor
        #: columns of the source's chunks that feed the model, in its order (None: all)
        self.select = select
        self.spec = spec or source.info.name
        self.liveness = Liveness(2.0, local_clock())
        self.clock = ClockGuard(3.0)
        self.lock = threading.Lock()
        self.first_timestamp = math.nan
        self.newest_raw = math.nan
        self.last_received = math.nan
        self.last_dsp_done = math.nan


def _window_counts(stream: ModalityStream, t_end: float, n: int) -> WindowCounts | None:
    """Raw-domain counts of the window ending at ``t_end``, read under the stream's lock (None once overwritten)."""
    with stream.lock:
        return stream.processor.window_counts(t_end, n)


WindowSink = Callable[[Window], None]
ChunkTap = Callable[[Modality, Chunk], None]


class Session:
    """Align the modalities of one person into windows and hand each to ``on_window``.

    Parameters
    ----------
    session_id : str
        Used in topics and messages.
    streams : dict
        One :class:`ModalityStream` per configured modality.
    window_s, hop_s : float
        Window length (a whole number of seconds: one model patch per second) and hop.
    on_window : callable
        Receives each window; called on whichever thread completed it. It may run the model right there
        (the executor's run-to-completion path) but must not wait on other threads.
    sfreq : float
        Model input rate (samples per second per patch).
    scale_uv : float
        Inputs are divided by this (CBraMod expects units of 100 µV).
    missing_after : float
        Seconds past a window's end after which a modality that has not caught up is left out.
    line_freqs : tuple of float
        Mains frequencies the quality score counts as interference.
    on_chunk : callable, optional
        Sees every raw chunk (modality, chunk) after its stamps are on the engine clock (see ``jump_after``), on
        the source's thread (the recorder's tap); must not block and must not modify the chunk.
    stall_after : float
        Seconds without a sample after which a stream is ``stalled``
        (see :class:`~rt_physio.sources.liveness.Liveness`).
    jump_after : float, optional
        Timestamp inconsistency (seconds) that re-anchors a stream's clock
        (see :class:`~rt_physio.clock.ClockGuard`); default: three hops, at least 1 s.
    """

    def __init__(self, session_id: str, streams: dict[Modality, ModalityStream], *, window_s: float,
                 hop_s: float, on_window: WindowSink, sfreq: float = 200.0, scale_uv: float = 100.0,
                 missing_after: float = 1.0, line_freqs: tuple[float, ...] = (50.0, 60.0),
                 on_chunk: ChunkTap | None = None, stall_after: float = 2.0, jump_after: float | None = None) -> None:
        if not streams:
            raise ValueError("A session needs at least one modality stream.")
        self.session_id = session_id
        self.streams = streams
        self.window_s = window_s
        self.hop_s = hop_s
        self.sfreq = sfreq
        self.scale_uv = scale_uv
        self.n_patches = round(window_s)
        self.n_samples = round(window_s * sfreq)
        self.missing_after = missing_after
        self.line_freqs = line_freqs
        self.quality_defer_s = 0.002
        self._on_window = on_window
        self._on_chunk = on_chunk
        self._lock = threading.Lock()
        self._next_end: float | None = None
        self._seq = 0
        # A modality has caught up with t when its next output sample is due after t: its newest sample is
        # within half an output period of t (output stamps jitter with the input's, so half is the best guess).
        self._tolerance = 0.5 / sfreq
        self.windows_cut = 0
        self.windows_skipped = 0
        self.missing_counts: dict[Modality, int] = dict.fromkeys(streams, 0)
        self.jump_after = max(3.0 * hop_s, 1.0) if jump_after is None else jump_after
        now = local_clock()
        for stream in streams.values():
            stream.liveness = Liveness(stall_after, now)
            stream.clock = ClockGuard(self.jump_after)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every source; chunks flow from here on (and each stream's stall clock runs)."""
        for modality, stream in self.streams.items():
            stream.liveness.start(local_clock())
            stream.source.start(self._make_sink(modality))

    def stop(self) -> None:
        """Stop every source (idempotent)."""
        for stream in self.streams.values():
            stream.source.stop()

    def _make_sink(self, modality: Modality) -> Callable[[Chunk], None]:
        stream = self.streams[modality]

        jumps_seen = [0]

        def sink(chunk: Chunk) -> None:
            stream.liveness.on_samples(chunk.n_samples, chunk.received)
            try:
                stamps = stream.clock.process(chunk.timestamps, chunk.received)
                if stamps is not chunk.timestamps:
                    chunk = Chunk(chunk.data, stamps, chunk.received)
                    if stream.clock.jumps != jumps_seen[0]:
                        jumps_seen[0] = stream.clock.jumps
                        log.warning("session %s: the %s stream's clock jumped by %+.3f s; re-anchored it on the "
                                    "engine clock (%d jump(s) so far)", self.session_id, modality.upper(),
                                    stream.clock.last_jump, stream.clock.jumps)
                data = chunk.data if stream.select is None else chunk.data[:, stream.select]
                with stream.lock:
                    stream.processor.push(data, chunk.timestamps)
                stream.last_dsp_done = local_clock()
                stream.last_received = chunk.received
                stream.newest_raw = float(chunk.timestamps[-1])
                if math.isnan(stream.first_timestamp):
                    stream.first_timestamp = float(chunk.timestamps[0])
                self._advance(trigger=stream)
            finally:  # after the window is cut (the tap adds no latency), and even when processing failed
                if self._on_chunk is not None:
                    self._on_chunk(modality, chunk)

        return sink

    def poll(self) -> None:
        """Re-check the window grid; the engine's watchdog calls this a few times a second."""
        self._advance(trigger=None)

    # -- windowing ---------------------------------------------------------------------------------------------
    # Timing decisions use the session's *data clock* (the newest sample timestamp of any modality), not the
    # wall clock: a modality is declared missing when the others' data have moved ``missing_after`` seconds past
    # the window, which is independent of delivery jitter and of how often anything polls.
    def data_clock(self) -> float:
        """Newest sample timestamp of any modality (engine clock; NaN before any data)."""
        return self._data_clock()

    def why_no_window(self) -> str | None:
        """Say why no window was cut (None once one was): what each stream sent, against the window length.

        For the end of a run without a single prediction: a stream that sent nothing, or a recording shorter than
        a window (or replayed so fast that its stamps span less than one), would otherwise end in silence.
        """
        if self.windows_cut:
            return None
        parts = []
        short = False
        for modality, stream in self.streams.items():
            what = f"the {modality.upper()} source {stream.spec}"
            n = stream.source.stats.samples
            if not n or math.isnan(stream.first_timestamp):
                parts.append(f"{what} sent no sample")
                continue
            span = stream.newest_raw - stream.first_timestamp + 1.0 / stream.processor.fs_in
            text = f"{what} sent {n} samples covering {span:.1f} s"
            if span < self.window_s + stream.processor.delay_s:
                short = True
                text += (f", less than one {self.window_s:g}-s window (a recording shorter than the window, or one "
                         "replayed too fast?)")
            parts.append(text)
        reason = "; ".join(parts)
        if not short and all(not math.isnan(s.first_timestamp) for s in self.streams.values()):
            reason += "; the run ended before the first window was complete"
        return reason

    def _data_clock(self) -> float:
        newest = [s.processor.newest_timestamp for s in self.streams.values()]
        finite = [t for t in newest if not math.isnan(t)]
        return max(finite) if finite else math.nan

    def _anchor(self, data_now: float) -> float | None:
        """First window end: once every modality has a full window (or the silent ones time out)."""
        started = [s for s in self.streams.values() if not math.isnan(s.first_timestamp)]
        if not started:
            return None
        if len(started) < len(self.streams):
            first_data = min(s.first_timestamp for s in started)
            if data_now < first_data + self.window_s + self.missing_after:
                return None  # give the silent modalities their chance to start
        # the resampler's group delay postpones each stream's first full window by its delay
        return max(s.first_timestamp + s.processor.delay_s for s in started) + self.window_s

    def _caught_up(self, stream: ModalityStream, t_end: float) -> bool:
        return stream.processor.newest_timestamp >= t_end - self._tolerance

    def _advance(self, trigger: ModalityStream | None) -> None:
        ready: list[Window] = []
        with self._lock:
            data_now = self._data_clock()
            if math.isnan(data_now):
                return
            if self._next_end is None:
                self._next_end = self._anchor(data_now)
                if self._next_end is None:
                    return
            while True:
                t_end = self._next_end
                present = [s for s in self.streams.values() if self._caught_up(s, t_end)]
                if not present:
                    break
                if len(present) < len(self.streams) and data_now < t_end + self.missing_after:
                    break  # wait (bounded) for the slow modality
                window = self._cut(t_end, present, trigger)
                self._next_end = t_end + self.hop_s
                if window is None:
                    self.windows_skipped += 1
                    self._skip_unreadable()
                    continue
                for modality in self.streams:
                    if modality not in window.inputs:
                        self.missing_counts[modality] += 1
                ready.append(window)
        for window in ready:
            self._on_window(window)
            # Score quality while the model runs, not while the executor thread is getting the window to it:
            # both need the GIL, and the executor's few hundred microseconds of Python come first.
            window.started.wait(self.quality_defer_s)
            window.score_quality()

    def _skip_unreadable(self) -> None:
        """Move the grid past window ends no stream can fill (after an outage): arithmetic, not one pass per hop."""
        assert self._next_end is not None
        ends = []
        for stream in self.streams.values():
            with stream.lock:
                ring = stream.processor.ring
                n = ring.n_available
                if n == 0:
                    continue
                first = float(ring.latest(n)[1][0])
            ends.append(first + (self.n_samples - 1) / stream.processor.fs_out)
        if not ends:
            return
        k = math.floor((min(ends) - self._tolerance - self._next_end) / self.hop_s)
        if k > 0:
            self._next_end += k * self.hop_s
            self.windows_skipped += k

    def _gap_tolerance(self, stream: ModalityStream) -> float:
        return max(self._tolerance, 1.5 / stream.source.info.sfreq)

    def _cut(self, t_end: float, present: list[ModalityStream], trigger: ModalityStream | None) -> Window | None:
        inputs: dict[Modality, NDArray[np.float32]] = {}
        pending: list[tuple[Modality, NDArray[np.float32], CountsSource]] = []
        for stream in present:
            with stream.lock:
                # The window ends at the output sample nearest t_end: the same half-period tolerance that
                # _caught_up grants. (With 1 µs of slack, an output grid phase-locked to the window grid, as a
                # replay's is, put the nearest sample a few µs *after* t_end whenever time_correction or the
                # dejitter fit moved the stamps by that much; the window then ended one sample early and the
                # hole test below dropped the modality from every window: the in-process replay flake.)
                got = stream.processor.read_until(t_end + self._tolerance, self.n_samples)
                if got is None:
                    continue  # started late or data already overwritten: this modality is missing here
                data, stamps = got
                if stamps[-1] < t_end - self._gap_tolerance(stream):
                    continue  # the stream has a hole at t_end (it stopped and came back): missing here
                # (n, C) µV → (C, n) in model units, in one pass over the ring (this copy frees it for the writer)
                x = np.multiply(data.T, np.float32(1.0 / self.scale_uv), dtype=np.float32, order="C")
            # quality reads this copy back in µV later, and the raw-domain counts then, off the latency path
            pending.append((stream.modality, x, functools.partial(_window_counts, stream, t_end + self._tolerance,
                                                                  self.n_samples)))
            inputs[stream.modality] = x.reshape(x.shape[0], self.n_patches, -1)  # (C, N, 200), a view
        if not inputs:
            return None
        trace = Trace(cut=local_clock())
        # The chunk that completed the window is the latency reference; a watchdog cut uses the newest stream.
        if trigger is not None:
            trace.sample = trigger.newest_raw
            trace.received = trigger.last_received
            trace.dsp_done = trigger.last_dsp_done
        else:
            newest = max(present, key=lambda s: s.newest_raw)
            trace.sample, trace.received, trace.dsp_done = newest.newest_raw, newest.last_received, trace.cut
        window = Window(self.session_id, self._seq, t_end - self.window_s, t_end, inputs, trace, quality_inputs=pending,
                        scale_uv=self.scale_uv, quality_sfreq=self.sfreq, line_freqs=self.line_freqs)
        self._seq += 1
        self.windows_cut += 1
        return window
