"""LSL streams as sources: an inlet per stream, drained the moment samples arrive.

The acquisition loop blocks in ``pull_sample(timeout=0.1)``, which wakes on the first sample, then drains
what else is queued with ``pull_chunk(timeout=0.0)`` into a preallocated array. (With liblsl 1.18,
``pull_chunk(timeout=T)`` only returns when ``max_samples`` are filled or T passes, which costs ~100 ms.)
Timestamps are the sender's plus ``time_correction()``, refreshed every few seconds (its first call can take
~0.6 s, so it is made when the source is opened, on the caller's thread), then dejittered by our own online
fit (:class:`~rt_physio.clock.Dejitter`, settles in seconds); LSL's own post-processing is off.

A stream that goes silent (its sender crashed, the headset went out of range), or never sends a first sample,
is reported after ``stall_after`` seconds. The inlet is opened with ``recover=True``, so when a stream with the
same source_id comes back liblsl reconnects and samples flow again; beyond that, :class:`~rt_physio.sources.
lsl_recovery.LslRecovery` looks for the stream by the original query (a sender restarted with another
source_id) and renews a subscription that stays silent while its stream is visible. Nothing here gives up:
the engine decides (``--give-up-after``). The gap is counted (``stats.extra``: ``stalls``, ``gaps``,
``gap_ms``, ``reconnects``), the dejitter fit restarts, and the time correction is re-read at once. The session
downstream leaves the modality out of windows while it is behind and takes it back once it has a full window
again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import pylsl
from numpy.typing import NDArray
from pylsl.util import LostError
from pylsl.util import TimeoutError as LslTimeoutError

from rt_physio.clock import Dejitter, local_clock
from rt_physio.errors import SourceError
from rt_physio.io.channels import scale_to_uv
from rt_physio.sources.base import Chunk, ChunkSink, Modality, StreamInfo, ThreadedSource
from rt_physio.sources.lsl_recovery import LslRecovery
from rt_physio.sources.lsl_streams import describe_query, resolve_stream, summarize
from rt_physio.sources.profiles import ModalityProfile

__all__ = ["LslSource"]

log = logging.getLogger(__name__)

_DTYPES: dict[int, type[np.generic]] = {pylsl.cf_float32: np.float32, pylsl.cf_double64: np.float64,
                                        pylsl.cf_int8: np.int8, pylsl.cf_int16: np.int16, pylsl.cf_int32: np.int32,
                                        pylsl.cf_int64: np.int64}
_FORMATS: dict[type[np.generic], int] = {v: k for k, v in _DTYPES.items()}


def _channel_field(info: pylsl.StreamInfo, field: str) -> list[str]:
    """Return ``desc/channels/channel/<field>`` of every channel ('' where missing)."""
    values: list[str] = []
    channel = info.desc().child("channels").child("channel")
    while not channel.empty():
        values.append(str(channel.child_value(field)).strip())
        channel = channel.next_sibling("channel")
    return values


class LslSource(ThreadedSource):
    """One LSL stream, delivered as chunks of float32 µV on the engine clock.

    Use :meth:`open`, which resolves the stream and checks it against the profile on the caller's thread.

    Parameters
    ----------
    inlet : pylsl.StreamInlet
        An inlet on the stream (owned from now on by the source).
    info : StreamInfo
        What the source delivers.
    pick : ndarray of int or None
        Stream channels to keep, in order; None for all.
    scale : float, ndarray or None
        Factor (scalar or per picked channel) from stream values to µV; None when already µV.
    dtype : numpy dtype
        The stream's sample type.
    time_correction : float
        Initial ``time_correction()`` estimate, seconds.
    dejitter : bool
        Replace the timestamps by an online least-squares fit against the sample index (see
        :class:`~rt_physio.clock.Dejitter`).
    query : mapping, optional
        The properties the stream was resolved by, to find it again (default: its source_id).
    uid : str
        The stream's uid (the one instance of it the inlet is on).
    """

    #: Seconds between ``time_correction`` refreshes.
    time_correction_interval: float = 5.0
    #: Seconds ``pull_sample`` blocks waiting for data (bounds how long :meth:`stop` takes).
    wait: float = 0.1
    #: Seconds :meth:`start` waits for the sender to accept the data subscription.
    open_timeout: float = 5.0
    #: Seconds without a sample after which the stream is reported silent (:attr:`stalled`).
    stall_after: float = 1.0
    #: A timestamp step longer than this (seconds) counts as a gap in the data.
    gap_after: float = 0.5

    def __init__(self, inlet: pylsl.StreamInlet, info: StreamInfo, *, pick: NDArray[np.intp] | None,
                 scale: float | NDArray[np.float64] | None, dtype: type[np.generic], time_correction: float,
                 dejitter: bool = True, query: Mapping[str, str] | None = None, uid: str = "") -> None:
        super().__init__(info)
        self._inlet: pylsl.StreamInlet | None = inlet
        self._recovery = LslRecovery(query or {"source_id": info.source_id}, info.name, uid, info.source_id,
                                     (inlet.channel_count, float(info.sfreq), _FORMATS[dtype]))
        self._subscribed_at = math.nan
        self._pick = pick
        self._scale = scale
        n_stream = inlet.channel_count
        self._capacity = max(256, int(info.sfreq))
        self._buf = np.zeros((self._capacity, n_stream), dtype=dtype)
        self._rest = self._buf[1:]  # pull_chunk writes here, after the sample pull_sample woke us with
        self._time_correction = float(time_correction)
        self._next_correction = local_clock() + self.time_correction_interval
        self._dejitter = Dejitter(info.sfreq) if dejitter else None
        self._last_arrival = float("nan")
        self._last_stamp = float("nan")
        self._stalled = False
        self._stats.extra.update(stalls=0, gaps=0, gap_ms=0, dejitter_resets=0, reconnects=0)

    def start(self, sink: ChunkSink) -> None:
        """Subscribe to the stream's data, then start the acquisition thread delivering chunks to ``sink``.

        Every sample the sender pushes after this returns is delivered.
        """
        if self._inlet is None or self._thread is not None or self._stop.is_set():
            raise RuntimeError(f"source {self._info.name!r} already started or stopped; open a new one")
        try:
            self._inlet.open_stream(timeout=self.open_timeout)
        except (LslTimeoutError, LostError) as exc:
            raise SourceError(f"LSL stream {self._info.name!r} did not accept a subscription within "
                              f"{self.open_timeout:g} s ({type(exc).__name__}); is its sender still running?") from exc
        self._subscribed_at = self._recovery.subscribed_at = local_clock()
        super().start(sink)

    @property
    def stalled(self) -> bool:
        """True while the stream has been silent for more than :attr:`stall_after` seconds."""
        return self._stalled

    @property
    def last_error(self) -> str | None:
        """Why the latest recovery attempt failed (None while data flow)."""
        return self._recovery.last_error

    @property
    def dejitter(self) -> Dejitter | None:
        """The timestamp fit (None when dejittering is off)."""
        return self._dejitter

    @property
    def time_correction(self) -> float:
        """The current ``time_correction`` estimate (added to every timestamp), seconds."""
        return self._time_correction

    @classmethod
    def open(cls, query: Mapping[str, str], modality: Modality, profile: ModalityProfile | None = None, *,
             timeout: float = 5.0, max_buflen: int = 360, dejitter: bool = True) -> LslSource:
        """Resolve the stream matching ``query``, open an inlet and check it against ``profile``.

        Parameters
        ----------
        query : mapping
            LSL properties to match: ``name``, ``type`` and/or ``source_id``.
        modality : {"eeg", "ecg"}
            What the stream is used as.
        profile : ModalityProfile, optional
            Expected channels, rate and units; without one, any regular numeric stream is accepted, labels
            and units come from its XML description (``Ch1..ChN`` and µV where absent).
        timeout : float
            Seconds to wait for the stream to appear (also bounds the metadata and time-correction queries).
        max_buflen : int
            Seconds of data the inlet buffers while the engine is busy.
        dejitter : bool
            Fit the timestamps online against the sample index (default) instead of passing them through.

        Returns
        -------
        LslSource
            The source (not started; :meth:`start` subscribes to the data).

        Raises
        ------
        SourceError
            Stream not found (the message lists the visible ones), irregular rate, text stream, or channel
            count / rate contradicting the profile.
        """
        profile = profile or ModalityProfile(modality)
        found = resolve_stream(query, timeout)
        what = f"LSL stream {found.name()!r}"
        if found.nominal_srate() == pylsl.IRREGULAR_RATE:
            raise SourceError(f"{what} has an irregular sampling rate (nominal_srate 0); rt_physio needs a regularly "
                              f"sampled {modality.upper()} stream. Pick another stream: {summarize(found).describe()}.")
        if found.channel_format() not in _DTYPES:
            raise SourceError(f"{what} carries {summarize(found).channel_format} samples, not numbers.")
        sfreq = float(found.nominal_srate())
        if profile.sfreq is not None and abs(sfreq - profile.sfreq) > 1e-3 * profile.sfreq:
            raise SourceError(f"{what} samples at {sfreq:g} Hz but the profile expects {profile.sfreq:g} Hz.")
        inlet = pylsl.StreamInlet(found, max_buflen=max_buflen, recover=True, processing_flags=pylsl.proc_none)
        try:
            full = inlet.info(timeout=max(1.0, timeout))
            labels = _channel_field(full, "label")
            units = _channel_field(full, "unit")
            n = found.channel_count()
            labels = labels if len(labels) == n and all(labels) else []
            units = units if len(units) == n else [""] * n
            pick, names = _pick_channels(what, n, labels, profile.channels)
            idx = pick if pick is not None else np.arange(n)
            scale = profile.scale if profile.scale is not None else _unit_scale(what, [units[i] for i in idx])
            correction = inlet.time_correction(timeout=max(1.0, timeout))
        except (LslTimeoutError, LostError) as exc:
            inlet.close_stream()
            raise SourceError(f"{what} was found but stopped answering ({type(exc).__name__}); is its sender "
                              "still running?") from exc
        except BaseException:
            inlet.close_stream()
            raise
        info = StreamInfo(name=found.name(), modality=modality, sfreq=sfreq, channel_names=names,
                          source_id=found.source_id() or found.uid())
        log.info("opened %s for %s: %d channels at %g Hz (query %s)", what, modality, len(names), sfreq,
                 describe_query(query))
        return cls(inlet, info, pick=pick, scale=None if isinstance(scale, float) and scale == 1.0 else scale,
                   dtype=_DTYPES[found.channel_format()], time_correction=correction, dejitter=dejitter,
                   query=query, uid=found.uid())

    # -- acquisition thread -------------------------------------------------------------------------------
    def _poll(self) -> Chunk | None:
        inlet = self._inlet
        if inlet is None:  # liblsl declared the stream lost: wait for it to be found again
            self._stop.wait(self.wait)
            self._on_silence(local_clock())
            return None
        try:
            first, stamp = inlet.pull_sample(timeout=self.wait)
            if stamp is None:
                self._on_silence(local_clock())
                return None
            self._buf[0] = first
            _, stamps = inlet.pull_chunk(timeout=0.0, max_samples=self._capacity - 1, dest_obj=self._rest,
                                         as_numpy=True)
        except LostError:  # liblsl gave up on this inlet (a stream without source_id): look for it by the query
            log.warning("LSL stream %s: liblsl lost it; looking for it again by %s", self._info.name,
                        describe_query(self._recovery.query))
            self._inlet = None
            inlet.close_stream()
            return None
        received = local_clock()
        n = 1 + len(stamps)
        timestamps = np.empty(n, dtype=np.float64)
        timestamps[0] = stamp
        timestamps[1:] = stamps
        if self._stalled:
            self._stalled = False
            self._recovery.reset()
            self._next_correction = received  # the sender may be another machine now: re-read the offset
            log.info("LSL stream %s: data again after %.1f s", self._info.name, received - self._last_arrival)
        self._last_arrival = received
        self._refresh_correction(received)
        timestamps += self._time_correction
        step = timestamps[0] - self._last_stamp
        if step > self.gap_after:
            self._stats.extra["gaps"] += 1
            self._stats.extra["gap_ms"] += round(1e3 * step)
            log.info("LSL stream %s: %.3f s gap in the timestamps", self._info.name, step)
        self._last_stamp = float(timestamps[-1])
        if self._dejitter is not None:
            timestamps = self._dejitter.process(timestamps)
            self._stats.extra["dejitter_resets"] = self._dejitter.resets
        raw = self._buf[:n] if self._pick is None else self._buf[:n, self._pick]
        data = raw.astype(np.float32) if self._scale is None else (raw * self._scale).astype(np.float32)
        return Chunk(data, timestamps, received)

    def _on_silence(self, now: float) -> None:
        """No sample this time: report a stall (also before the first sample), try to recover, keep the offset."""
        since = self._last_arrival if not math.isnan(self._last_arrival) else self._subscribed_at
        if not self._stalled and now - since > self.stall_after:
            self._stalled = True
            self._stats.extra["stalls"] += 1
            what = "no data yet" if math.isnan(self._last_arrival) else "no data"
            recovery = self._recovery  # its source_id is that of the stream read now (it may have been reopened)
            log.warning("LSL stream %s: %s for %.1f s; waiting for it to come back (source_id %r, query %s)",
                        self._info.name, what, now - since, recovery.source_id, describe_query(recovery.query))
        if (self._stalled or self._inlet is None) and self._recovery.due(now):
            reopened = self._recovery.attempt(now, self._inlet)
            if reopened is not None:
                old, self._inlet = self._inlet, reopened.inlet
                if old is not None:
                    old.close_stream()
                self._time_correction = reopened.time_correction
                self._next_correction = now + self.time_correction_interval
                self._subscribed_at = self._recovery.subscribed_at
            self._stats.extra["reconnects"] = self._recovery.reopened + self._recovery.resubscribed
        self._refresh_correction(now)

    def _refresh_correction(self, now: float | None = None) -> None:
        now = local_clock() if now is None else now
        if now < self._next_correction or self._inlet is None:
            return
        self._next_correction = now + self.time_correction_interval
        try:  # liblsl updates the estimate in the background; with timeout 0 this never blocks
            self._time_correction = float(self._inlet.time_correction(timeout=0.0))
        except (LslTimeoutError, LostError) as exc:
            log.debug("LSL stream %s: time_correction unavailable (%s); keeping %.6f s", self._info.name,
                      type(exc).__name__, self._time_correction)

    def _close(self) -> None:
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            inlet.close_stream()
            del inlet  # liblsl destroys the inlet with the last reference


def _pick_channels(what: str, n: int, labels: list[str],
                   expected: tuple[str, ...] | None) -> tuple[NDArray[np.intp] | None, tuple[str, ...]]:
    """Match the stream's channels to the profile's: all of them, or the expected labels picked by name."""
    if expected is None:
        return None, tuple(labels) if labels else tuple(f"Ch{i + 1}" for i in range(n))
    if len(expected) == n:
        if labels and labels != list(expected):
            log.info("%s labels its channels %s; the profile says %s. Using the stream's labels.", what, labels,
                     list(expected))
        return None, tuple(labels) if labels else expected
    if labels and set(expected) <= set(labels):
        return np.array([labels.index(c) for c in expected], dtype=np.intp), expected
    shown = f" ({', '.join(labels)})" if labels else " (unlabelled)"
    raise SourceError(f"{what} has {n} channels{shown} but the profile expects {len(expected)} "
                      f"({', '.join(expected)}); use a profile that matches the device, or lsl-eeg / lsl-ecg.")


def _unit_scale(what: str, units: list[str]) -> float | NDArray[np.float64]:
    """Per-channel factors to µV from the XML units ('' or unknown units are taken as µV)."""
    scales = []
    for unit in units:
        scale = scale_to_uv(unit) if unit else None
        if scale is None and unit and unit.lower() not in ("none", "n/a", "unknown"):
            log.warning("%s declares unit %r; taking it as µV (set units in a profile to override)", what, unit)
        scales.append(1.0 if scale is None else scale)
    if all(s == scales[0] for s in scales):
        return scales[0]
    return np.asarray(scales, dtype=np.float64)
