"""What the soak watches the engine through: its subscribers and its process.

- :class:`ZmqCollector`: a ZeroMQ subscriber that reads everything at once (predictions and status messages,
  each with its receipt time on the engine clock), the one the checks trust;
- :class:`StalledSubscriber`: a ZeroMQ subscriber that stops reading for long stretches and then drains in a
  burst; what it misses is its own loss (the engine's high-water mark), never the others';
- :class:`MqttCollector`: a persistent MQTT subscriber (QoS 1, clean session off) that reconnects by itself
  through the broker restarts;
- :class:`ProcessSampler`: RSS, threads, open files and CPU time of a process from ``/proc``, every few seconds.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pylsl
import zmq

__all__ = ["MqttCollector", "Pred", "ProcessSampler", "StalledSubscriber", "Status", "ZmqCollector"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pred:
    """What the checks need of one prediction, and when it arrived (engine clock)."""

    session: str
    seq: int
    t_start: float
    t_end: float
    modalities: tuple[str, ...]
    quality: dict[str, float]
    finite: bool  # outputs present and finite (not a nonfinite_output message)
    received: float

    @staticmethod
    def from_message(msg: dict[str, Any], received: float) -> Pred:
        """Keep the checked fields of an ``rt_physio.prediction/1`` message."""
        return Pred(str(msg["session"]), int(msg["seq"]), float(msg["t_start"]), float(msg["t_end"]),
                    tuple(msg["modalities"]), {k: float(v) for k, v in msg.get("quality", {}).items()},
                    bool(msg.get("outputs")) and not msg.get("nonfinite_output", False), received)


@dataclass(frozen=True, slots=True)
class Status:
    """One ``rt_physio.status/1`` message and when it arrived (engine clock)."""

    message: dict[str, Any]
    received: float

    @property
    def session(self) -> str:
        """The session it is about."""
        return str(self.message["session"])


class ZmqCollector:
    """A ZeroMQ subscriber on its own thread keeping every prediction and status with its receipt time."""

    def __init__(self, port: int, name: str = "zmq-collector") -> None:
        self.preds: list[Pred] = []
        self.statuses: list[Status] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port,), name=name, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the ZeroMQ collector did not start")

    def _run(self, port: int) -> None:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"rt_physio/")
        sock.setsockopt(zmq.RCVHWM, 0)  # this one must never be the reason something is missing
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                topic, payload = sock.recv_multipart()
                received = float(pylsl.local_clock())
                try:
                    msg = json.loads(payload)
                    if topic.endswith(b"/status"):
                        self.statuses.append(Status(msg, received))
                    else:
                        self.preds.append(Pred.from_message(msg, received))
                except (ValueError, KeyError, TypeError) as exc:  # a malformed message is a finding, not a crash
                    self.errors.append(f"{topic!r}: {exc}")
        finally:
            sock.close()

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join(5)


class StalledSubscriber:
    """A ZeroMQ subscriber that never reads for ``stall_first`` s, then drains in bursts every ``burst_every`` s.

    ``seqs[session]`` holds the sequence numbers it did get; its losses are its own.
    """

    def __init__(self, port: int, *, stall_first: float, burst_every: float) -> None:
        self.seqs: dict[str, list[int]] = {}
        self.bursts = 0
        self._stop = threading.Event()
        self._sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"rt_physio/")
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(f"tcp://127.0.0.1:{port}")
        self._thread = threading.Thread(target=self._run, args=(stall_first, burst_every), name="zmq-stalled",
                                        daemon=True)
        self._thread.start()

    def _run(self, stall_first: float, burst_every: float) -> None:
        wait = stall_first
        # the stall itself is the point: this subscriber is asleep on purpose, not waiting for a state
        while not self._stop.wait(wait):
            while self._sock.poll(0):
                topic, payload = self._sock.recv_multipart()
                if topic.endswith(b"/pred"):
                    msg = json.loads(payload)
                    self.seqs.setdefault(str(msg["session"]), []).append(int(msg["seq"]))
            self.bursts += 1
            wait = burst_every
        self._sock.close()

    def close(self) -> None:
        """Stop."""
        self._stop.set()
        self._thread.join(5)


class MqttCollector:
    """A persistent MQTT subscriber (QoS 1, clean session off): the broker keeps its messages while it is away.

    ``preds`` and ``statuses`` as in :class:`ZmqCollector`; ``connects`` counts its (re)connections.
    """

    def __init__(self, port: int, prefix: str = "rt_physio") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.preds: list[Pred] = []
        self.statuses: list[Status] = []
        self.errors: list[str] = []
        self.connects = 0
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-{uuid.uuid4().hex[:10]}",
                                   clean_session=False)
        self._client.reconnect_delay_set(1, 2)
        topics = [(f"{prefix}/+/pred", 1), (f"{prefix}/+/status", 1)]

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            self.connects += 1
            client.subscribe(topics)

        self._client.on_connect = on_connect
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(20):
            raise RuntimeError("the MQTT collector got no SUBACK")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        received = float(pylsl.local_clock())
        try:
            body = json.loads(msg.payload)
            if msg.topic.endswith("/status"):
                self.statuses.append(Status(body, received))
            else:
                self.preds.append(Pred.from_message(body, received))
        except (ValueError, KeyError, TypeError) as exc:
            self.errors.append(f"{msg.topic}: {exc}")

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(slots=True)
class ProcessSampler:
    """Sample a process's RSS, threads, open files and CPU time every ``every`` s (``queues`` adds more per sample).

    ``samples`` holds dicts with ``t`` (engine clock), ``rss_mb`` (and ``rss_anon_mb``, ``rss_file_mb``),
    ``threads``, ``fds``, ``cpu_s`` and whatever ``extra()`` returns.
    """

    pid: int
    every: float = 10.0
    extra: Any = None  # callable returning a dict, or None
    samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ProcessSampler:
        """Take a sample now and every ``every`` s after."""
        self._thread = threading.Thread(target=self._run, name=f"sampler-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def sample(self) -> dict[str, Any] | None:
        """One sample now (None once the process is gone)."""
        proc = Path(f"/proc/{self.pid}")
        try:
            status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            fds = len(os.listdir(proc / "fd"))
        except (FileNotFoundError, ProcessLookupError):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        out: dict[str, Any] = {
            "t": float(pylsl.local_clock()), "rss_mb": int(status["VmRSS"].split()[0]) / 1024.0,
            "threads": int(status["Threads"]), "fds": fds, "cpu_s": (int(stat[11]) + int(stat[12])) / ticks,
        }
        for key in ("RssAnon", "RssFile"):  # written memory (where a leak shows) and mapped files' pages
            if key in status:
                out[f"rss_{key[3:].lower()}_mb"] = int(status[key].split()[0]) / 1024.0
        if self.extra is not None:
            out.update(self.extra())
        return out

    def _run(self) -> None:
        while True:
            got = self.sample()
            if got is None:
                return
            self.samples.append(got)
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
