"""The soak's fault schedule and the thread that injects it.

Six kinds of fault, each aimed at one LSL stream of one session (the broker restart at every session's MQTT
connection):

``outlet_kill``     the outlet is destroyed and created again ``duration`` s later with the same source_id
                    (its app crashed and restarted): liblsl's own recovery should reconnect
``outlet_new_id``   the same, but it comes back with a new source_id (many apps make one up at start): the engine
                    must find it again by its name
``broker_restart``  mosquitto stops (SIGTERM) and starts again ``duration`` s later, same port
``nan_burst``       every channel NaN for ``duration`` s (an electrode off, a driver bug)
``flat_line``       every channel constant for ``duration`` s (a railed amplifier)
``clock_jump``      the outlet's timestamps move by ``shift`` s from now on (its clock was stepped)

A fault's *start* and *end* are recorded on the engine clock when they happen. The schedule cycles through the
kinds, one every ``period`` s, and through the LSL sessions and modalities, so that two faults never hit the same
session within three periods.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pylsl

from rt_physio.bench.soak_parts import Broker, SoakOutlet

__all__ = ["KINDS", "Durations", "Fault", "FaultInjector", "FaultKind", "make_schedule"]

log = logging.getLogger(__name__)

FaultKind = Literal["outlet_kill", "outlet_new_id", "broker_restart", "nan_burst", "flat_line", "clock_jump"]
KINDS: tuple[FaultKind, ...] = ("outlet_kill", "nan_burst", "broker_restart", "flat_line", "outlet_new_id",
                                "clock_jump")


@dataclass(frozen=True, slots=True)
class Durations:
    """How long each kind of fault lasts (seconds) and how far a clock jumps."""

    outlet: float = 20.0
    broker: float = 10.0
    nan: float = 2.0
    flat: float = 10.0
    jump: float = 30.0

    def of(self, kind: FaultKind) -> float:
        """Return how long a fault of ``kind`` lasts (0 for a clock jump: it is an instant)."""
        return {"outlet_kill": self.outlet, "outlet_new_id": self.outlet, "broker_restart": self.broker,
                "nan_burst": self.nan, "flat_line": self.flat, "clock_jump": 0.0}[kind]


@dataclass(slots=True)
class Fault:
    """One scheduled fault and, once injected, when it really started and ended (engine clock)."""

    kind: FaultKind
    at: float  # seconds after the soak's start
    duration: float
    session: str | None = None  # None: every session (broker restart)
    modality: str | None = None
    shift: float = 0.0  # clock_jump only
    start: float = float("nan")
    end: float = float("nan")
    note: str = ""

    @property
    def name(self) -> str:
        """E.g. ``outlet_kill s1/eeg``."""
        where = f" {self.session}/{self.modality}" if self.session is not None else ""
        return f"{self.kind}{where}"


def make_schedule(total: float, *, first_at: float, period: float, sessions: Sequence[str],
                  durations: Durations = Durations(), end_margin: float | None = None) -> list[Fault]:
    """Faults from ``first_at`` every ``period`` s, ending ``end_margin`` s (default: 2 periods) before ``total``.

    Kinds cycle in :data:`KINDS` order; the faults aimed at a stream cycle through ``sessions`` and, every full
    turn of them, switch modality (five such kinds and three sessions: over six turns every kind hits every
    stream); clock jumps alternate forward and backward.
    """
    margin = 2 * period if end_margin is None else end_margin
    faults: list[Fault] = []
    i = 0
    targeted = 0  # faults aimed at a stream so far: the target turns independently of the kind
    jumps = 0
    while first_at + i * period + durations.of(KINDS[i % len(KINDS)]) <= total - margin:
        kind = KINDS[i % len(KINDS)]
        at = first_at + i * period
        if kind == "broker_restart":
            faults.append(Fault(kind, at, durations.of(kind)))
        else:
            session = sessions[targeted % len(sessions)]
            modality = ("eeg", "ecg")[(targeted // len(sessions)) % 2]
            targeted += 1
            shift = 0.0
            if kind == "clock_jump":
                shift = durations.jump if jumps % 2 == 0 else -durations.jump
                jumps += 1
            faults.append(Fault(kind, at, durations.of(kind), session, modality, shift))
        i += 1
    return faults


@dataclass(slots=True)
class FaultInjector:
    """Inject ``faults`` on its own thread, ``fault.at`` s after :meth:`start` (engine clock)."""

    faults: list[Fault]
    outlets: Mapping[tuple[str, str], SoakOutlet]
    broker: Broker | None
    t0: float = float("nan")
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _new_ids: int = 0

    def start(self) -> FaultInjector:
        """Start the schedule's clock now."""
        self.t0 = float(pylsl.local_clock())
        self._thread = threading.Thread(target=self._run, name="soak-faults", daemon=True)
        self._thread.start()
        return self

    def _sleep_until(self, t: float) -> bool:
        """Wait until engine time ``t``; False when stopped first."""
        return not self._stop.wait(max(0.0, t - float(pylsl.local_clock())))

    def _run(self) -> None:
        for fault in self.faults:
            if not self._sleep_until(self.t0 + fault.at):
                return
            try:
                self._inject(fault)
            except Exception as exc:  # the schedule goes on; the report shows the fault as not injected
                log.exception("soak: could not inject %s", fault.name)
                self.errors.append(f"{fault.name}: {exc}")

    def _inject(self, fault: Fault) -> None:
        log.info("soak: %s for %.1f s", fault.name, fault.duration)
        if fault.kind == "broker_restart":
            assert self.broker is not None
            fault.start = self.broker.stop()
            self._sleep_until(fault.start + fault.duration)
            fault.end = self.broker.start()
            return
        assert fault.session is not None and fault.modality is not None
        outlet = self.outlets[(fault.session, fault.modality)]
        if fault.kind in ("outlet_kill", "outlet_new_id"):
            fault.start = outlet.kill()
            self._sleep_until(fault.start + fault.duration)
            source_id = outlet.log.incarnations[-1].source_id
            if fault.kind == "outlet_new_id":
                self._new_ids += 1
                source_id = f"{outlet.name}-restarted-{self._new_ids}"
            fault.note = f"source_id {source_id}"
            fault.end = outlet.restore(source_id)
        elif fault.kind in ("nan_burst", "flat_line"):
            fault.start, fault.end = outlet.overlay("nan" if fault.kind == "nan_burst" else "flat", fault.duration)
            self._sleep_until(fault.end)
        else:
            fault.start = fault.end = outlet.shift_clock(fault.shift)
            fault.note = f"{fault.shift:+g} s"

    @property
    def running(self) -> bool:
        """True while faults are still to come."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop injecting (a fault under way is left as it is)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
