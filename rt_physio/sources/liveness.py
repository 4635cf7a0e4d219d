"""Whether a stream is alive: ``waiting`` → ``streaming`` ⇄ ``stalled`` → ``lost``, from sample arrivals and the clock.

A :class:`Liveness` belongs to one stream. The acquisition thread records each chunk's arrival
(:meth:`Liveness.on_samples`: two stores, no lock, no allocation); the engine's watchdog calls
:meth:`Liveness.update` a few times a second and gets back the transition, if any. So a stream that never sends
a first sample is noticed exactly like one that stops: after ``stall_after`` seconds without a sample, counted
from :meth:`Liveness.start`.

States:

``waiting``    started, no sample yet, for less than ``stall_after`` seconds
``streaming``  a sample arrived within the last ``stall_after`` seconds
``stalled``    no sample for ``stall_after`` seconds (also before the first one); the source keeps trying
``lost``       the source gave up, or the engine did (``--give-up-after``); left again if samples come back

Every return to ``streaming`` from ``stalled`` or ``lost`` counts in :attr:`Liveness.recovered`.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Literal, get_args

from rt_physio.checks import check_positive

__all__ = ["LIVENESS_STATES", "Liveness", "LivenessReport", "LivenessState"]

LivenessState = Literal["waiting", "streaming", "stalled", "lost"]
LIVENESS_STATES: tuple[LivenessState, ...] = get_args(LivenessState)

#: Seconds of arrivals the measured rate is averaged over.
_RATE_SPAN = 5.0


@dataclass(frozen=True, slots=True)
class LivenessReport:
    """A snapshot of one stream's liveness (engine-clock times).

    Attributes
    ----------
    state : {"waiting", "streaming", "stalled", "lost"}
        See the module docstring.
    since : float
        When the stream entered ``state``, engine clock.
    last_sample_age_s : float or None
        Seconds since the newest chunk arrived; None before the first.
    rate_hz : float or None
        Samples per second received over the last few seconds; None until a second of arrivals is known.
    recovered : int
        Returns to ``streaming`` from ``stalled`` or ``lost``.
    reason : str or None
        Why the stream is ``lost``.
    """

    state: LivenessState
    since: float
    last_sample_age_s: float | None
    rate_hz: float | None
    recovered: int
    reason: str | None = None


class Liveness:
    """The liveness state machine of one stream.

    Parameters
    ----------
    stall_after : float
        Seconds without a sample after which the stream is ``stalled`` (also counted from :meth:`start` before
        the first sample).
    now : float
        Engine-clock time of construction (the stream is ``waiting`` from then on).
    """

    def __init__(self, stall_after: float, now: float) -> None:
        self.stall_after = check_positive("stall_after", stall_after, unit="seconds")
        self._state: LivenessState = "waiting"
        self._since = float(now)
        self._started = float(now)
        # written by the acquisition thread only (plain stores: atomic under the GIL), read by the watchdog
        self._last_arrival = math.nan
        self._samples = 0
        self._lost_at = math.nan
        self._lost_reason: str | None = None
        self.recovered = 0
        self._marks: collections.deque[tuple[float, int]] = collections.deque()

    @property
    def state(self) -> LivenessState:
        """The state decided by the last :meth:`update`."""
        return self._state

    @property
    def samples(self) -> int:
        """Samples received so far."""
        return self._samples

    def start(self, now: float) -> None:
        """Start the stall clock of the first sample now (the source starts)."""
        self._started = float(now)
        if self._state == "waiting":
            self._since = float(now)

    def on_samples(self, n: int, received: float) -> None:
        """Record a chunk of ``n`` samples that arrived at ``received`` (acquisition thread; never blocks)."""
        self._samples += n
        self._last_arrival = received

    def mark_lost(self, reason: str, now: float) -> None:
        """Record that the source (or the engine) gave up now; samples arriving later make it ``streaming`` again."""
        self._lost_at = float(now)
        self._lost_reason = reason

    def update(self, now: float) -> tuple[LivenessState, LivenessState] | None:
        """Decide the state at ``now`` (watchdog thread); return ``(old, new)`` when it changed, else None."""
        last = self._last_arrival
        if not math.isnan(self._lost_at) and not last > self._lost_at:
            new: LivenessState = "lost"
        elif math.isnan(last):
            new = "waiting" if now - self._started < self.stall_after else "stalled"
        elif now - last > self.stall_after:
            new = "stalled"
        else:
            new = "streaming"
            if not math.isnan(self._lost_at):
                self._lost_at, self._lost_reason = math.nan, None
        marks = self._marks
        if not marks or now - marks[-1][0] >= 0.25:
            marks.append((now, self._samples))
            while len(marks) > 2 and now - marks[1][0] >= _RATE_SPAN:
                marks.popleft()
        old = self._state
        if new == old:
            return None
        if new == "streaming" and old in ("stalled", "lost"):
            self.recovered += 1
        self._state = new
        self._since = now
        return old, new

    def not_streaming_for(self, now: float) -> float:
        """Seconds the stream has been out of ``streaming`` (0 while streaming), as of the last :meth:`update`."""
        return 0.0 if self._state == "streaming" else max(0.0, now - self._since_out())

    def _since_out(self) -> float:
        # waiting → stalled → lost is one outage: it started when the stream left streaming (or started)
        last = self._last_arrival
        return self._started if math.isnan(last) else max(self._started, last)

    def report(self, now: float) -> LivenessReport:
        """Return a snapshot for the status message."""
        last = self._last_arrival
        rate = None
        if len(self._marks) >= 2:
            (t0, n0), (t1, n1) = self._marks[0], self._marks[-1]
            if t1 - t0 >= 1.0:
                rate = (n1 - n0) / (t1 - t0)
        return LivenessReport(state=self._state, since=self._since,
                              last_sample_age_s=None if math.isnan(last) else max(0.0, now - last),
                              rate_hz=rate, recovered=self.recovered,
                              reason=self._lost_reason if self._state == "lost" else None)
