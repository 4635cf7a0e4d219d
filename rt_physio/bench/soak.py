"""Soak: hours of four live sessions under injected faults, every prediction and every recorded sample checked.

One *rig* is what a user runs plus what breaks around it: ``rt-physio run --config`` in its own process, with
three LSL sessions (EEG + ECG outlets pushed in real time by this process, see
:class:`~rt_physio.bench.soak_parts.SoakOutlet`) and one on BrainFlow's synthetic board, publishing to ZeroMQ
and to a real mosquitto (QoS 1, persistence on), recording (``record``). This process subscribes three ways: a
ZeroMQ subscriber that reads everything (the one the checks trust), a ZeroMQ subscriber that stalls (it stops
reading for minutes and then drains in a burst: its losses must stay its own), and a persistent MQTT
subscriber. It samples the engine's RSS, threads, open files, CPU and queue depths (from the status messages)
every ``sample_every`` seconds, and injects the faults of :mod:`rt_physio.bench.soak_faults` on a schedule.

The baseline, measured in the same run on the same machine: a second rig, identical but without faults (its own
outlets, broker and engine process), started and stopped with the faulted one. Its RSS slope is what the engine
does anyway; the faulted rig's minus it is what the faults cost. Its checks must come out clean too (they check
the checker).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pylsl

from rt_physio.bench.soak_check import HORIZON_S, check_predictions, fault_reports, outage_spans
from rt_physio.bench.soak_faults import Durations, Fault, FaultInjector, make_schedule
from rt_physio.bench.soak_parts import Broker, SoakOutlet, free_port
from rt_physio.bench.soak_record import check_recording, resource_report
from rt_physio.bench.soak_watch import MqttCollector, ProcessSampler, StalledSubscriber, ZmqCollector

__all__ = ["Rig", "SoakConfig", "run_soak"]

log = logging.getLogger(__name__)

#: (type, channels, rate) of the LSL streams of each LSL session: a 8-channel headset at 250 Hz, a 2-lead strap.
EEG = ("EEG", 8, 250.0)
ECG = ("ECG", 2, 130.0)
MODALITIES = ("eeg", "ecg")


@dataclass(frozen=True, slots=True)
class SoakConfig:
    """What to run; the defaults are the 1-hour benchmark's."""

    duration: float = 3600.0  # seconds of soak after every session of every rig published a complete prediction
    model: str = "eegmat-fusion"
    window: float = 5.0
    hop: float = 1.0
    lsl_sessions: int = 3
    board_session: bool = True  # a fourth session on BrainFlow's synthetic board
    first_fault: float = 120.0  # seconds after the start
    period: float = 60.0  # seconds between faults
    durations: Durations = field(default_factory=Durations)
    stall_first: float = 300.0  # the stalled subscriber reads nothing for this long, then in bursts
    burst_every: float = 120.0
    sample_every: float = 10.0
    warmup: float = 600.0  # seconds excluded from the RSS slope
    status_every: float = 5.0
    control: bool = True  # run the fault-free baseline rig beside the faulted one
    start_timeout: float = 300.0  # seconds an engine may take to publish its first complete predictions
    settle_timeout: float = 180.0  # seconds the soak may run on until every fault has recovered
    extra_args: tuple[str, ...] = ()

    @classmethod
    def for_duration(cls, duration: float, **kw: Any) -> SoakConfig:
        """Make the 1-hour benchmark's schedule from 20 minutes up; below, the same faults compressed.

        Compressed: a fault every ``duration / 30`` s (at least 8 s), outlets down for 60 % of that, the broker
        for 40 %, a 1-s NaN burst, a flat line of 40 %, clock jumps of ±30 s; the stalled subscriber sleeps a
        quarter of the run, then drains every sixth.
        """
        if duration >= 1200:
            return cls(duration=duration, warmup=min(600.0, duration / 6), **kw)
        period = max(8.0, duration / 30)
        return cls(duration=duration, first_fault=period / 2, period=period,
                   durations=Durations(outlet=min(20.0, 0.6 * period), broker=min(10.0, 0.4 * period), nan=1.0,
                                       flat=min(10.0, 0.4 * period), jump=30.0),
                   stall_first=duration / 4, burst_every=max(10.0, duration / 6), warmup=duration / 3, **kw)


@dataclass(slots=True)
class Rig:
    """One engine process and everything around it (see the module docstring)."""

    name: str
    config: SoakConfig
    folder: Path
    faults: list[Fault]
    outlets: dict[tuple[str, str], SoakOutlet] = field(default_factory=dict)
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)  # session -> (eeg spec, ecg spec)
    broker: Broker | None = None
    zmq_port: int = 0
    zmq: ZmqCollector | None = None
    stalled: StalledSubscriber | None = None
    mqtt: MqttCollector | None = None
    sampler: ProcessSampler | None = None
    injector: FaultInjector | None = None
    proc: subprocess.Popen[bytes] | None = None
    t_ready: float = float("nan")
    t_stop: float = float("nan")
    returncode: int | None = None

    # -- start ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Outlets, broker, subscribers, then the engine process (not yet waited for)."""
        cfg = self.config
        self.folder.mkdir(parents=True, exist_ok=True)
        uid = uuid.uuid4().hex[:6]
        for i in range(cfg.lsl_sessions):
            sid = f"s{i}"
            specs = []
            for m, (stype, n, fs) in zip(MODALITIES, (EEG, ECG), strict=True):
                name = f"soak-{self.name}-{uid}-{sid}-{m}"
                chunk = max(1, round(fs / 32))  # ~32 pushes a second, like a headset's app
                self.outlets[(sid, m)] = SoakOutlet(name, stype, n, fs, f"{name}-1", chunk=chunk, seed=10 * i + len(m))
                specs.append(f"lsl:{name}")
            self.sessions[sid] = (specs[0], specs[1])
        if cfg.board_session:
            self.sessions[f"s{cfg.lsl_sessions}"] = ("synthetic", "synthetic")
        for outlet in self.outlets.values():
            outlet.start()
        self.broker = Broker(self.folder / "broker")
        self.broker.start()
        self.zmq_port = free_port()
        self.zmq = ZmqCollector(self.zmq_port, name=f"zmq-{self.name}")
        self.stalled = StalledSubscriber(self.zmq_port, stall_first=cfg.stall_first, burst_every=cfg.burst_every)
        self.mqtt = MqttCollector(self.broker.port)
        config = self.folder / "soak.toml"
        config.write_text(self._toml())
        cmd = [sys.executable, "-m", "rt_physio.cli", "run", "--config", str(config), *cfg.extra_args]
        with (self.folder / "engine.out").open("wb") as out, (self.folder / "engine.err").open("wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        self.sampler = ProcessSampler(self.proc.pid, cfg.sample_every, extra=self._queues)

    def _toml(self) -> str:
        cfg = self.config
        assert self.broker is not None
        lines = [f'model = "{cfg.model}"', f"window = {cfg.window}", f"hop = {cfg.hop}",
                 f'publish = ["zmq://127.0.0.1:{self.zmq_port}", "mqtt://127.0.0.1:{self.broker.port}?qos=1"]',
                 f'record = "{self.folder / "recording"}"', f"status_every = {cfg.status_every}",
                 "resolve_timeout = 30.0", ""]
        for sid, (eeg, ecg) in self.sessions.items():
            lines += ["[[sessions]]", f'id = "{sid}"', f'eeg = "{eeg}"', f'ecg = "{ecg}"', ""]
        return "\n".join(lines)

    def _queues(self) -> dict[str, Any]:
        """Return the deepest of each queue over the sessions' latest status messages, and the engine's memory."""
        assert self.zmq is not None
        latest: dict[str, dict[str, Any]] = {}
        for status in reversed(self.zmq.statuses[-50:]):
            latest.setdefault(status.session, status.message)
        depths: dict[str, float] = {}
        memory: dict[str, Any] = {}
        for message in latest.values():
            for key, value in message.get("queues", {}).items():
                depths[key] = max(depths.get(key, 0), value)
            memory = message.get("memory", memory)  # engine-wide: the same in every session's status
        return {"queues": depths, "memory": memory}

    def settled(self) -> bool:
        """Every injected fault has recovered (the status is online again and a good prediction came)."""
        assert self.zmq is not None and self.mqtt is not None
        if not self.faults:
            return True
        if any(f.start != f.start or f.end != f.end for f in self.faults):  # NaN: not injected (yet)
            return self.injector is None or not self.injector.running
        modalities: dict[str, tuple[str, ...]] = {sid: MODALITIES for sid in self.sessions}
        now = float(pylsl.local_clock())
        reports = fault_reports(self.faults[-6:], self.zmq.preds[-2000:], self.zmq.statuses[-500:],
                                self.mqtt.preds[-2000:], self.mqtt.statuses[-500:], modalities, until=now)
        return all(r.recovered for r in reports)

    def ready(self) -> bool:
        """Every session published a prediction with all its modalities (raises if the engine died)."""
        assert self.zmq is not None and self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"rig {self.name}: the engine exited with {self.proc.returncode} before its first "
                               f"predictions: {self.stderr_tail()}")
        complete = {p.session for p in self.zmq.preds[-200:] if set(p.modalities) == set(MODALITIES)}
        return complete >= set(self.sessions)

    def begin(self) -> None:
        """Start the soak now: sampling, and (faulted rig) the fault schedule."""
        assert self.sampler is not None
        self.t_ready = float(pylsl.local_clock())
        self.sampler.start()
        if self.faults:
            self.injector = FaultInjector(self.faults, self.outlets, self.broker).start()

    # -- stop ----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop injecting, stop the engine (SIGINT, as Ctrl-C), wait for its offline status, stop everything."""
        if self.injector is not None:
            self.injector.stop()
        assert self.proc is not None and self.sampler is not None
        self.sampler.sample()  # one last sample while the engine runs
        self.t_stop = float(pylsl.local_clock())
        self.sampler.stop()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.returncode = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
            log.error("rig %s: the engine did not stop within 120 s of SIGINT", self.name)
        if self.broker is not None and self.broker.pid is None:  # stopped by a fault at the very end
            self.broker.start()
        for closer in (self.mqtt_settle, self._close_subscribers):
            closer()
        for outlet in self.outlets.values():
            outlet.stop()
        if self.broker is not None:
            self.broker.stop()

    def mqtt_settle(self, timeout: float = 30.0) -> None:
        """Wait until the MQTT subscriber has every session's final offline status (the engine's last message)."""
        mqtt = self.mqtt
        assert mqtt is not None
        wait_for(lambda: {s.session for s in mqtt.statuses[-20:] if s.message.get("reason") == "stop"}
                 >= set(self.sessions), timeout)

    def _close_subscribers(self) -> None:
        zmq = self.zmq
        assert zmq is not None and self.mqtt is not None and self.stalled is not None
        wait_for(lambda: {s.session for s in zmq.statuses[-20:] if s.message.get("state") == "offline"}
                 >= set(self.sessions), 10.0)
        zmq.close()
        self.mqtt.close()
        self.stalled.close()

    def stderr_tail(self, n: int = 3000) -> str:
        """Return the end of the engine's stderr."""
        path = self.folder / "engine.err"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    # -- results -------------------------------------------------------------------------------------------
    def analyse(self) -> dict[str, Any]:
        """Every check of this rig (see :mod:`~rt_physio.bench.soak_check`, :mod:`~rt_physio.bench.soak_record`)."""
        assert self.zmq is not None and self.mqtt is not None and self.stalled is not None and self.sampler
        cfg = self.config
        modalities: dict[str, tuple[str, ...]] = {sid: MODALITIES for sid in self.sessions}
        reports = fault_reports(self.faults, self.zmq.preds, self.zmq.statuses, self.mqtt.preds,
                                self.mqtt.statuses, modalities, until=self.t_stop)
        outages = outage_spans(reports, missing_after=1.0, hop=cfg.hop)
        spans: dict[str, list[tuple[float, float]]] = {sid: [] for sid in self.sessions}
        broker_spans: list[tuple[float, float]] = []
        for r in reports:
            f = r.fault
            back = r.first_good_s if r.first_good_s is not None else HORIZON_S
            span = (f.start - 2.0, f.end + back + cfg.hop)
            if f.session is None:
                broker_spans.append(span)
            else:
                spans[f.session].append(span)
        zmq = check_predictions(self.zmq.preds, modalities, hop=cfg.hop, outages=outages, fault_spans=spans)
        mqtt_spans = {sid: [*s, *broker_spans] for sid, s in spans.items()}
        mqtt = check_predictions(self.mqtt.preds, modalities, hop=cfg.hop, outages=outages, fault_spans=mqtt_spans)
        zmq_seqs = {(p.session, p.seq) for p in self.zmq.preds}
        mqtt_seqs = {(p.session, p.seq) for p in self.mqtt.preds}
        for sid in self.sessions:
            mqtt[sid]["zmq_not_on_mqtt"] = sum(1 for s, _ in zmq_seqs - mqtt_seqs if s == sid)
            stalled = self.stalled.seqs.get(sid, [])
            zmq[sid]["stalled_subscriber_received"] = len(stalled)
            zmq[sid]["stalled_subscriber_missed"] = len({q for s, q in zmq_seqs if s == sid} - set(stalled))
        recording = check_recording(self.folder / "recording", self.zmq.preds, self.outlets)
        resources = resource_report(self.sampler.samples, min(cfg.warmup, cfg.duration / 2))
        err = self.stderr_tail(1 << 30)
        last = {}
        for s in self.zmq.statuses:
            if s.message.get("state") != "offline":
                last[s.session] = s.message
        return {
            "rig": self.name, "faults": [r.to_json() for r in reports],
            "injector_errors": self.injector.errors if self.injector is not None else [],
            "zmq": zmq, "mqtt": mqtt, "recording": recording, "resources": resources,
            "samples": self.sampler.samples, "status_heartbeat_max_s": _heartbeat_gap(self.zmq.statuses),
            "drops_at_end": {sid: m.get("drops", {}) for sid, m in last.items()},
            "engine": {"returncode": self.returncode, "tracebacks": err.count("Traceback"),
                       "errors": sum(" ERROR " in line or line.startswith("ERROR") for line in err.splitlines()),
                       "stderr_lines": err.count("\n")},
            "collector_errors": self.zmq.errors + self.mqtt.errors, "mqtt_connects": self.mqtt.connects,
            "stalled_bursts": self.stalled.bursts, "t_ready": self.t_ready, "t_stop": self.t_stop,
        }


def _heartbeat_gap(statuses: list[Any]) -> float:
    """Longest time between two status messages of one session (the heartbeat promises ``status_every``)."""
    last: dict[str, float] = {}
    worst = 0.0
    for s in statuses:
        if s.session in last:
            worst = max(worst, s.received - last[s.session])
        last[s.session] = s.received
    return round(worst, 3)


def wait_for(check: Callable[[], bool], timeout: float, poll: float = 0.1) -> bool:
    """Poll ``check`` until it holds or ``timeout`` passes (the subscribers' lists fill on their own threads)."""
    done = threading.Event()
    deadline = pylsl.local_clock() + timeout
    while not check():
        if pylsl.local_clock() > deadline:
            return False
        done.wait(poll)
    return True


def run_soak(config: SoakConfig, folder: Path, *, on_ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the soak (faulted rig, and the baseline rig when ``config.control``); return every result."""
    sessions = [f"s{i}" for i in range(config.lsl_sessions)]
    faults = make_schedule(config.duration, first_at=config.first_fault, period=config.period, sessions=sessions,
                           durations=config.durations)
    rigs = [Rig("faulted", config, folder / "faulted", faults)]
    if config.control:
        rigs.append(Rig("baseline", config, folder / "baseline", []))
    try:
        for rig in rigs:
            rig.start()
        if not wait_for(lambda: all(r.ready() for r in rigs), config.start_timeout, poll=0.5):
            raise RuntimeError(f"the engines did not publish complete predictions within {config.start_timeout:g} s: "
                               + " | ".join(r.stderr_tail(1500) for r in rigs))
        for rig in rigs:
            rig.begin()
        if on_ready is not None:
            on_ready()
        log.info("soak: %d faults over %.0f s", len(faults), config.duration)
        threading.Event().wait(config.duration)  # the soak itself: the engines run, faults come on schedule
        if not wait_for(lambda: all(r.settled() for r in rigs), config.settle_timeout, poll=1.0):
            log.error("soak: not every fault recovered within %.0f s of the end; stopping anyway",
                      config.settle_timeout)
    finally:
        for rig in rigs:
            if rig.proc is not None:
                rig.stop()
    results = {rig.name: rig.analyse() for rig in rigs}
    return {"config": _config_json(config), "rigs": results, "summary": summarise(results, config)}


def _config_json(config: SoakConfig) -> dict[str, Any]:
    out = {k: getattr(config, k) for k in config.__dataclass_fields__ if k != "durations"}
    out["durations"] = {k: getattr(config.durations, k) for k in config.durations.__dataclass_fields__}
    out["extra_args"] = list(config.extra_args)
    return out


def summarise(results: dict[str, dict[str, Any]], config: SoakConfig) -> dict[str, Any]:
    """Return the headline figures (see :func:`rt_physio.bench.soak_report.format_table`)."""
    from rt_physio.bench.soak_report import summary

    return summary(results, config)


__all__ += ["wait_for"]
