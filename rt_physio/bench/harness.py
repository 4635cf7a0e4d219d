"""Processes of the latency harness: LSL outlets with known push times, a ZMQ hop, and a fixed-tick baseline.

Each runs in its own process (``multiprocessing`` spawn context), so the engine under test shares the machine
with its data source and its subscriber exactly as in a real deployment, and all three read one clock,
``pylsl.local_clock``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["OutletSpec", "PushLog", "run_outlets", "run_tick_loop", "run_zmq_publisher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutletSpec:
    """One synthetic LSL stream of the harness."""

    name: str
    stype: str
    n_channels: int
    sfreq: float


@dataclass(slots=True)
class PushLog:
    """When each chunk of one stream went out: timestamp of its first sample and the actual push time."""

    first_ts: NDArray[np.float64]
    pushed_at: NDArray[np.float64]

    def push_time_of(self, t: float) -> float:
        """Push time of the chunk holding the newest sample stamped ≤ ``t`` (nan if none was pushed)."""
        # the latest chunk starting at or before t holds the newest sample ≤ t
        i = int(np.searchsorted(self.first_ts, t, side="right")) - 1
        return float(self.pushed_at[i]) if 0 <= i < len(self.pushed_at) else float("nan")

    def push_time_reaching(self, t: float, period: float) -> float:
        """Push time of the chunk holding the first sample stamped ≥ ``t`` (samples ``period`` s apart).

        This is the sample that lets the engine cut a window whose end is ``t`` (plus its tolerance).
        """
        n = len(self.first_ts)
        if n == 0:
            return float("nan")
        step = float(self.first_ts[1] - self.first_ts[0]) if n > 1 else period  # chunks are equally long
        i = max(0, int(np.searchsorted(self.first_ts, t, side="right")) - 1)
        if self.first_ts[i] + step - period < t - 1e-9:
            i += 1  # every sample of chunk i is older than t: the first one at or after t opens chunk i + 1
        return float(self.pushed_at[i]) if i < len(self.pushed_at) else float("nan")


def _push_stream(spec: OutletSpec, chunk: int, start: float, stop_at: float, out: dict[str, PushLog],
                 ready: threading.Barrier, stop: Any) -> None:
    import pylsl

    info = pylsl.StreamInfo(spec.name, spec.stype, spec.n_channels, spec.sfreq, "float32", f"{spec.name}-harness")
    chans = info.desc().append_child("channels")
    for i in range(spec.n_channels):
        ch = chans.append_child("channel")
        ch.append_child_value("label", f"{spec.stype}{i + 1}")
        ch.append_child_value("unit", "microvolts")
        ch.append_child_value("type", spec.stype)
    outlet = pylsl.StreamOutlet(info, chunk_size=chunk)
    rng = np.random.default_rng(abs(hash(spec.name)) % 2**32)
    freqs = rng.uniform(4, 20, spec.n_channels)
    ready.wait()
    first_ts: list[float] = []
    pushed: list[float] = []
    k = 0
    while True:
        due = start + (k + chunk - 1) / spec.sfreq  # a chunk goes out when its last sample exists
        if due > stop_at or (stop is not None and stop.is_set()):
            break
        delay = due - pylsl.local_clock()
        if delay > 0:
            time.sleep(delay)
        t = (k + np.arange(chunk)) / spec.sfreq
        data = (20 * np.sin(2 * np.pi * freqs[None, :] * t[:, None])
                + rng.normal(0, 2, (chunk, spec.n_channels))).astype(np.float32)
        stamps = start + t
        outlet.push_chunk(data, stamps.tolist())
        pushed.append(pylsl.local_clock())
        first_ts.append(float(stamps[0]))
        k += chunk
    out[spec.name] = PushLog(np.asarray(first_ts), np.asarray(pushed))
    time.sleep(0.5)  # let inlets drain before the outlet disappears


def run_outlets(specs: list[OutletSpec], chunk: int, lead_s: float, duration: float,
                result: mp.Queue[dict[str, dict[str, list[float]]]], stop: Any = None) -> None:
    """Process body: push every stream in real time, starting ``lead_s`` s from now.

    Pushing ends after ``duration`` s or when the (multiprocessing) event ``stop`` is set.
    """
    import pylsl

    start = pylsl.local_clock() + lead_s
    logs: dict[str, PushLog] = {}
    ready = threading.Barrier(len(specs))
    threads = [threading.Thread(target=_push_stream, args=(s, chunk, start, start + duration, logs, ready, stop))
               for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.put({name: {"first_ts": lg.first_ts.tolist(), "pushed_at": lg.pushed_at.tolist()}
                for name, lg in logs.items()})


def run_zmq_publisher(port: int, rate: float, duration: float, lead_s: float) -> None:
    """Process body: ~500-byte JSON messages on a PUB socket, each carrying its send time."""
    import pylsl
    import zmq

    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
    sock.bind(f"tcp://127.0.0.1:{port}")
    filler = "x" * 400
    start = pylsl.local_clock() + lead_s
    k = 0
    while True:
        due = start + k / rate
        if due > start + duration:
            break
        delay = due - pylsl.local_clock()
        if delay > 0:
            time.sleep(delay)
        sent = pylsl.local_clock()
        sock.send_multipart([b"bench/zmq", json.dumps({"k": k, "sent": sent, "pad": filler}).encode()])
        k += 1
    time.sleep(0.3)
    sock.close(linger=0)


def run_tick_loop(config: dict[str, Any], stop: Any = None) -> None:
    """Process body: the fixed-tick baseline (timeflux-style: wake, poll every inlet, process, sleep).

    The same LSL inlets, filters, resampler, windowing, model runner and message as the engine; only the
    scheduling differs: data are pulled once per tick (``pull_chunk(timeout=0)``) and a completed window is
    run and published within that tick, as a graph scheduler does.
    """
    import pylsl
    import torch
    import zmq

    from rt_physio.clock import local_clock
    from rt_physio.dsp import StreamProcessor
    from rt_physio.nn import load_model
    from rt_physio.publish.schema import Prediction
    from rt_physio.runtime.executor import window_key
    from rt_physio.runtime.runners import make_runner
    from rt_physio.runtime.session import ModalityStream, Session, Window
    from rt_physio.sources.base import Chunk, ChunkSink, SourceStats, StreamInfo

    class Polled:
        """A source the tick loop feeds: the inlet is pulled on the tick, not by an acquisition thread."""

        def __init__(self, inlet: Any, info: StreamInfo) -> None:
            self.inlet = inlet
            self._info = info
            self._stats = SourceStats()
            self.sink: ChunkSink | None = None
            self.buf = np.zeros((4096, info.n_channels), dtype=np.float32)

        @property
        def info(self) -> StreamInfo:
            return self._info

        @property
        def stats(self) -> SourceStats:
            return self._stats

        def start(self, sink: ChunkSink) -> None:
            self.sink = sink

        def stop(self) -> None:
            self.sink = None

        def poll(self) -> None:
            _, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=len(self.buf), dest_obj=self.buf)
            if ts and self.sink is not None:
                n = len(ts)
                self.sink(Chunk(self.buf[:n].copy(), np.asarray(ts, dtype=np.float64), received=local_clock()))

    torch.set_num_threads(1)
    model = load_model(config["model"])
    runner = make_runner(model.module, torch.device("cpu"), "traced")
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
    sock.bind(f"tcp://127.0.0.1:{config['port']}")
    ready: list[Window] = []
    polled: list[Polled] = []
    sessions: list[Session] = []
    for sid, names in config["sessions"].items():
        streams = {}
        for modality, name in names.items():
            inlet = pylsl.StreamInlet(pylsl.resolve_bypred(f"name='{name}'", 1, 10.0)[0], max_buflen=30)
            inlet.open_stream(timeout=5.0)
            lsl = inlet.info()
            info = StreamInfo(name, modality, lsl.nominal_srate(), tuple(f"c{i}" for i in range(lsl.channel_count())))
            source = Polled(inlet, info)
            polled.append(source)
            spec = model.spec.preprocessing[modality]
            processor = StreamProcessor(info.sfreq, info.n_channels, bandpass=spec.bandpass,
                                        notch=50.0 if spec.notch else None)
            streams[modality] = ModalityStream(modality, source, processor)
        session = Session(sid, streams, window_s=config["window"], hop_s=config["hop"], on_window=ready.append)
        session.start()
        sessions.append(session)
    period = 1.0 / config["rate"]
    end = local_clock() + config["duration"]
    next_tick = local_clock()
    # A hop that is a whole number of tick periods would meet the tick at one fixed phase for the whole run (with
    # a device's own clock, which drifts against the computer's, every phase occurs): after each published window
    # the tick grid moves by a random fraction of a period, so the run samples the phases uniformly.
    phase = np.random.default_rng(0)
    while local_clock() < end and not (stop is not None and stop.is_set()):
        next_tick += period
        for source in polled:
            source.poll()
        while ready:
            window = ready.pop(0)
            window.trace.infer_start = local_clock()
            xs = [torch.from_numpy(window.inputs[m])[None] for m in window.modalities]
            probs = torch.sigmoid(runner(window_key(window), xs))[0].numpy()
            window.trace.infer_end = local_clock()
            pred = Prediction(window.session, window.seq, window.t_start, window.t_end, time.time(),
                              dict(zip(model.spec.outputs, map(float, probs), strict=True)), model.spec.name,
                              model.sha256, model.spec.trained, list(window.modalities), {})
            window.trace.serialised = local_clock()
            pred.latency_ms = window.trace.to_ms()
            sock.send_multipart([f"rt_physio/{window.session}/pred".encode(), pred.to_json()])
            next_tick += phase.uniform(0.0, period)
        time.sleep(max(0.0, next_tick - local_clock()))
    for session in sessions:
        session.stop()
    time.sleep(0.3)
    sock.close(linger=500)
