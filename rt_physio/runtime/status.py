"""Session status: each modality's liveness turned into ``rt_physio.status/1`` messages, on change and as a heartbeat.

The engine's watchdog calls :meth:`StatusReporter.tick` on its own (main) thread a few times a second. Each tick
updates every stream's :class:`~rt_physio.sources.liveness.Liveness` (so a stream that never sends a first
sample turns ``stalled`` exactly like one that stops), publishes the status of every session in which a state
changed (or a source reconnected, or a stream's clock jumped), and a heartbeat every ``every`` seconds
otherwise. A session is ``online`` when every configured
modality is ``streaming``, ``degraded`` otherwise, ``offline`` once stopped.

With ``give_up_after``, a modality that stays out of ``streaming`` that long is marked ``lost`` and the tick
returns a :class:`~rt_physio.errors.SourceLostError` naming the session, the modality and the SPEC: the engine
then stops and ``rt-physio run`` exits with status 3. Without it the session stays ``degraded`` while the source
keeps trying to recover (LSL re-resolve, BrainFlow re-prepare, Bluetooth reconnect), and turns ``online`` again
when samples come back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from rt_physio.clock import local_clock
from rt_physio.errors import SourceLostError
from rt_physio.runtime.session import ModalityStream, Session

__all__ = ["SessionState", "StatusReporter"]

log = logging.getLogger(__name__)

SessionState = Literal["online", "degraded", "offline"]
StatusSink = Callable[[str, dict[str, Any]], None]


def _wall(t_engine: float, now: float, wall_now: float) -> float:
    """Unix time of an engine-clock instant."""
    return round(wall_now - (now - t_engine), 3)


class StatusReporter:
    """Decide and publish the status of every session (see the module docstring).

    Parameters
    ----------
    sessions : mapping
        Session id → :class:`Session`.
    publish : callable
        ``publish(session_id, message)`` hands a status map (without ``schema``/``session``, which publishers add)
        to every publisher; called on the watchdog's thread.
    model_name : str
        Shown in every message.
    every : float
        Heartbeat period, seconds.
    give_up_after : float or None
        Seconds out of ``streaming`` after which a modality is given up on (None: never).
    drops : callable
        ``drops(session_id)`` → every loss counter of the session (the message's ``drops``).
    dropped : callable
        Windows the executor dropped, all sessions (the message's legacy ``dropped``).
    queues : callable, optional
        ``queues(session_id)`` → what waits in the engine's queues now (the message's ``queues``).
    memory : callable, optional
        ``memory()`` → the engine process's memory (the message's ``memory``; see runtime/heap.py).
    """

    def __init__(self, sessions: Mapping[str, Session], publish: StatusSink, *, model_name: str, every: float,
                 give_up_after: float | None, drops: Callable[[str], dict[str, int]],
                 dropped: Callable[[], int], queues: Callable[[str], dict[str, int]] | None = None,
                 memory: Callable[[], dict[str, float | int]] | None = None) -> None:
        self.sessions = sessions
        self._publish = publish
        self.model_name = model_name
        self.every = every
        self.give_up_after = give_up_after
        self._drops = drops
        self._dropped = dropped
        self._queues = queues
        self._memory = memory
        self._started = dict.fromkeys(sessions, local_clock())
        self._next_heartbeat = dict.fromkeys(sessions, 0.0)
        self._failures_seen: set[int] = set()
        self._events: dict[int, tuple[int, int]] = {}  # per stream: (reconnects, clock_jumps) last published
        self.published = 0
        self.given_up: SourceLostError | None = None

    # -- the watchdog's side ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Publish every session's first status (its modalities are ``waiting``)."""
        now = local_clock()
        for session_id in self.sessions:
            self._started[session_id] = now
            self._send(session_id, now, "start")

    def tick(self, now: float | None = None) -> SourceLostError | None:
        """Update every stream's liveness; publish changes and heartbeats; return the error when giving up."""
        now = local_clock() if now is None else now
        for session_id, session in self.sessions.items():
            changed = False
            for stream in session.streams.values():
                self._note_failure(session_id, stream, now)
                change = stream.liveness.update(now)
                if change is not None:
                    changed = True
                    self._log_change(session_id, stream, change, now)
                events = self._event_counts(stream)
                if self._events.setdefault(id(stream), events) != events:  # a reconnection or a clock jump
                    self._events[id(stream)] = events
                    changed = True
                if (self.give_up_after is not None and self.given_up is None
                        and stream.liveness.not_streaming_for(now) > self.give_up_after):
                    self.given_up = self._give_up(session_id, stream, now)
                    stream.liveness.update(now)
                    changed = True
            if changed:
                self._send(session_id, now, "change")
            elif now >= self._next_heartbeat[session_id]:
                self._send(session_id, now, "heartbeat")
        return self.given_up

    def stop(self) -> None:
        """Publish every session's last status: ``offline`` (reason ``give_up`` when a source was given up on)."""
        now = local_clock()
        for session_id in self.sessions:
            self._send(session_id, now, "give_up" if self.given_up is not None else "stop", state="offline")

    # -- messages --------------------------------------------------------------------------------------------
    def state(self, session_id: str) -> SessionState:
        """``online`` when every modality of the session is streaming (as of the last tick), else ``degraded``."""
        streams = self.sessions[session_id].streams.values()
        return "online" if all(s.liveness.state == "streaming" for s in streams) else "degraded"

    def message(self, session_id: str, reason: str, *, now: float | None = None,
                state: SessionState | None = None) -> dict[str, Any]:
        """Build the status map of a session (publishers add ``schema`` and ``session``)."""
        now = local_clock() if now is None else now
        wall_now = time.time()
        session = self.sessions[session_id]
        message: dict[str, Any] = {
            "state": state or self.state(session_id), "reason": reason, "t_wall": round(wall_now, 3),
            "uptime_s": round(max(0.0, now - self._started[session_id]), 3), "model": self.model_name,
            "modalities": {m: self._modality(stream, now, wall_now) for m, stream in session.streams.items()},
            "windows": session.windows_cut, "skipped": session.windows_skipped,
            "missing": dict(session.missing_counts), "dropped": self._dropped(), "drops": self._drops(session_id),
        }
        if self._queues is not None:
            message["queues"] = self._queues(session_id)
        if self._memory is not None:
            message["memory"] = self._memory()
        if reason == "give_up" and self.given_up is not None:
            message["error"] = str(self.given_up)
        return message

    @staticmethod
    def _event_counts(stream: ModalityStream) -> tuple[int, int]:
        extra = stream.source.stats.extra
        return int(extra.get("reconnects", 0)), stream.clock.jumps + int(extra.get("clock_steps", 0))

    @staticmethod
    def _modality(stream: ModalityStream, now: float, wall_now: float) -> dict[str, Any]:
        report = stream.liveness.report(now)
        processed = stream.processor.stats
        extra = stream.source.stats.extra
        entry: dict[str, Any] = {
            "state": report.state, "since": _wall(report.since, now, wall_now),
            "last_sample_age_s": None if report.last_sample_age_s is None else round(report.last_sample_age_s, 3),
            "rate_hz": None if report.rate_hz is None else round(report.rate_hz, 2),
            "nonfinite": processed.nonfinite_replaced, "gaps": processed.gaps,
            "reconnects": int(extra.get("reconnects", 0)),
            "clock_jumps": StatusReporter._event_counts(stream)[1],
            "recovered": report.recovered, "source": stream.spec,
        }
        error = report.reason
        if error is None and report.state != "streaming":
            error = getattr(stream.source, "last_error", None)
        if error:
            entry["error"] = str(error)
        return entry

    def _send(self, session_id: str, now: float, reason: str, state: SessionState | None = None) -> None:
        try:
            self._publish(session_id, self.message(session_id, reason, now=now, state=state))
        except Exception:  # a status that cannot be sent must not stop the watchdog (or the engine's shutdown)
            log.exception("session %s: could not publish the status", session_id)
        self.published += 1
        self._next_heartbeat[session_id] = now + self.every

    # -- transitions ------------------------------------------------------------------------------------------
    def _note_failure(self, session_id: str, stream: ModalityStream, now: float) -> None:
        failure = getattr(stream.source, "failure", None)
        if failure is None or id(failure) in self._failures_seen or getattr(stream.source, "running", False):
            return
        self._failures_seen.add(id(failure))
        log.error("session %s: the %s source %s stopped: %s", session_id, stream.modality.upper(), stream.spec,
                  failure)
        stream.liveness.mark_lost(f"the source stopped: {failure}", now)

    def _log_change(self, session_id: str, stream: ModalityStream, change: tuple[str, str], now: float) -> None:
        old, new = change
        what = f"session {session_id}: {stream.modality.upper()} ({stream.spec})"
        if new == "stalled":
            age = stream.liveness.report(now).last_sample_age_s
            silent = "no sample yet" if age is None else f"no sample for {age:.1f} s"
            log.warning("%s stalled: %s; the session is degraded until it streams again", what, silent)
        elif new == "streaming" and old in ("stalled", "lost"):
            log.warning("%s streams again (recovered %d time(s))", what, stream.liveness.recovered)
        elif new == "lost":
            log.error("%s lost: %s", what, stream.liveness.report(now).reason)
        else:
            log.info("%s: %s -> %s", what, old, new)

    def _give_up(self, session_id: str, stream: ModalityStream, now: float) -> SourceLostError:
        assert self.give_up_after is not None
        seconds = stream.liveness.not_streaming_for(now)
        report = stream.liveness.report(now)
        detail = getattr(stream.source, "last_error", None) or report.reason
        why = "never sent a sample" if report.last_sample_age_s is None else f"sent no sample for {seconds:.1f} s"
        error = SourceLostError(
            f"session {session_id}: the {stream.modality.upper()} source {stream.spec} ({stream.source.info.name}) "
            f"{why}; gave up after {self.give_up_after:g} s (--give-up-after)"
            + (f". Last error: {detail}." if detail else ".")
            + " Check the device and its connection, or run without --give-up-after to wait for it.")
        stream.liveness.mark_lost(f"gave up after {self.give_up_after:g} s without samples", now)
        log.error("%s", error)
        return error
