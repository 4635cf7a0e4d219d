"""End-to-end latency: from a sample's push to the subscriber holding the prediction, per stage.

The default harness runs three processes on this machine, all reading ``pylsl.local_clock``:

1. an outlet process pushing synthetic EEG (14 ch, 128 Hz) and ECG (2 leads, 256 Hz) per session in real time,
   logging the push time of every chunk;
2. the engine under test, ``rt-physio run`` on those LSL streams, publishing on ZeroMQ;
3. this process, subscribed over ZeroMQ.

Per prediction: ``e2e`` = receipt − push time of the window's last sample (the newest sample stamped ≤ t_end,
over the window's modalities); the engine's own breakdown comes from the message's ``latency_ms``; the engine's
added latency is ``e2e − infer`` (everything that is not the model's forward pass). The first predictions of
each session are discarded as warm-up.

Baselines measured in the same run, on the same machine and model: a fixed-tick scheduler at 25 Hz (wake,
poll the inlets, process, run the model, publish, sleep — as timeflux's graph scheduler does), the bare LSL
push → pull hop, and the bare ZeroMQ PUB → SUB hop. With ``--eeg``/``--ecg`` naming real streams there is no
harness: ``e2e`` is measured from the window's end on the device's own (LSL-corrected) timestamps.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import zmq

from rt_physio.bench.harness import OutletSpec, PushLog, run_outlets, run_tick_loop, run_zmq_publisher

__all__ = ["format_table", "run_latency_benchmark"]

log = logging.getLogger(__name__)

EEG = ("EEG", 14, 128.0)
ECG = ("ECG", 2, 256.0)
STARTUP_S = 30.0  # longest engine start-up (imports, model load, warm-up) a run waits for
MAX_RUN_S = 3600.0  # outlets and the tick loop stop when told to; this only bounds a run that was abandoned


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "p999": float("nan"),
                "max": float("nan"), "n": 0}
    arr = np.asarray(values)
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p90": round(float(np.percentile(arr, 90)), 3),
            "p99": round(float(np.percentile(arr, 99)), 3), "p999": round(float(np.percentile(arr, 99.9)), 3),
            "max": round(float(arr.max()), 3), "n": len(values)}


def _session_streams(uid: str, n_sessions: int) -> dict[str, dict[str, OutletSpec]]:
    out = {}
    for i in range(n_sessions):
        out[f"s{i}"] = {m: OutletSpec(f"rtpbench-{uid}-s{i}-{m}", t, n, fs)
                        for m, (t, n, fs) in (("eeg", EEG), ("ecg", ECG))}
    return out


class _Subscriber:
    """SUB socket collecting predictions with their receipt time on the engine clock."""

    def __init__(self, port: int) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"rt_physio/")
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.received: list[tuple[dict[str, Any], float]] = []
        self.per_session: dict[str, int] = {}

    def _take(self) -> None:
        topic, payload = self.sock.recv_multipart()
        t = pylsl.local_clock()
        if topic.endswith(b"/pred"):
            msg = json.loads(payload)
            self.received.append((msg, t))
            self.per_session[msg["session"]] = self.per_session.get(msg["session"], 0) + 1

    def collect(self, sessions: int, per_session: int, alive: Any, timeout: float) -> None:
        """Receive until every session delivered ``per_session`` predictions (or the producer died / timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            if len(self.per_session) >= sessions and min(self.per_session.values()) >= per_session:
                return
            if self.sock.poll(100):
                self._take()

    def drain(self) -> None:
        while self.sock.poll(300):
            self._take()
        self.sock.close()


def _score(received: list[tuple[dict[str, Any], float]], logs: dict[str, PushLog] | None,
           streams: dict[str, dict[str, OutletSpec]] | None, warmup: int) -> dict[str, Any]:
    tol = 0.5 / 200.0  # the engine cuts when a stream is within half an output period of t_end
    e2e, added, infer = [], [], []
    stages: dict[str, list[float]] = {}
    seen: dict[str, int] = {}
    for msg, t_recv in received:
        sid = msg["session"]
        seen[sid] = seen.get(sid, 0) + 1
        if seen[sid] <= warmup:
            continue
        if logs is not None and streams is not None:
            # the window is cut when every modality has a sample stamped at or after t_end - tol
            pushes = [logs[streams[sid][m].name].push_time_reaching(msg["t_end"] - tol, 1.0 / streams[sid][m].sfreq)
                      for m in msg["modalities"]]
            ref = max(pushes)
        else:
            ref = msg["t_end"]
        if not np.isfinite(ref):
            continue
        lat = msg["latency_ms"]
        e = 1e3 * (t_recv - ref)
        e2e.append(e)
        infer.append(lat.get("infer", float("nan")))
        added.append(e - lat.get("infer", 0.0))
        for k, v in lat.items():
            stages.setdefault(k, []).append(v)
    return {"e2e_ms": _stats(e2e), "added_ms": _stats(added), "infer_ms": _stats(infer),
            "stages_ms": {k: _stats(v) for k, v in stages.items() if k != "batch_size"},
            "n_predictions": len(e2e), "e2e_raw": e2e, "added_raw": added}


def _start_outlets(ctx: Any, streams: dict[str, dict[str, OutletSpec]], chunk: int) -> tuple[Any, Any, Any]:
    queue, stop = ctx.Queue(), ctx.Event()
    specs = [s for per in streams.values() for s in per.values()]
    proc = ctx.Process(target=run_outlets, args=(specs, chunk, 0.5, MAX_RUN_S, queue, stop), daemon=True)
    proc.start()
    return proc, queue, stop


def _collect_logs(proc: Any, queue: Any, stop: Any) -> dict[str, PushLog]:
    stop.set()
    raw = queue.get(timeout=60)
    proc.join(timeout=10)
    return {name: PushLog(np.asarray(v["first_ts"]), np.asarray(v["pushed_at"])) for name, v in raw.items()}


def _wanted(duration: float, hop: float, warmup: int) -> int:
    return warmup + max(1, round(duration / hop))


def measure_engine(*, sessions: int, duration: float, chunk: int, hop: float, window: float, model: str,
                   warmup: int, eeg: str | None = None, ecg: str | None = None,
                   extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``rt-physio run`` against the harness (or the given real streams) and score its predictions.

    The run lasts until every session has published ``warmup + duration / hop`` predictions, however long
    the engine took to start.
    """
    ctx = mp.get_context("spawn")
    port = _free_port()
    harness = eeg is None and ecg is None
    streams = _session_streams(uuid.uuid4().hex[:6], sessions) if harness else None
    outlets = None
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "sessions.toml"
        if streams is not None:
            config.write_text("".join(f'[[sessions]]\nid = "{sid}"\neeg = "lsl:{s["eeg"].name}"\n'
                                      f'ecg = "lsl:{s["ecg"].name}"\n' for sid, s in streams.items()))
            outlets = _start_outlets(ctx, streams, chunk)
            source_args = ["--config", str(config)]
        else:
            source_args = ["--eeg", eeg or "none", "--ecg", ecg or "none"]
        sub = _Subscriber(port)
        # resolving 2 streams per session through LSL's multicast discovery slows down with many streams
        resolve = f"{5.0 + 0.5 * sessions:g}"
        cmd = [sys.executable, "-m", "rt_physio.cli", "run", *source_args, "--model", model, "--hop", str(hop),
               "--window", str(window), "--publish", f"zmq://127.0.0.1:{port}", "--quiet",
               "--resolve-timeout", resolve, *extra_args]
        engine = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            sub.collect(sessions, _wanted(duration, hop, warmup), lambda: engine.poll() is None,
                        STARTUP_S + window + 3 * duration + 30)
        finally:
            engine.send_signal(signal.SIGINT)
            try:
                _, err = engine.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                engine.kill()
                _, err = engine.communicate()
        sub.drain()
        if engine.returncode not in (0, -signal.SIGINT):
            raise RuntimeError(f"engine exited with {engine.returncode}: {err[-2000:]}")
        logs = _collect_logs(*outlets) if outlets is not None else None
    result = _score(sub.received, logs, streams, warmup)
    result.update({"sessions": sessions, "chunk": chunk, "hop_s": hop, "window_s": window})
    if logs is not None and streams is not None:
        result["harness_push_ms"] = _push_delays(logs, streams, chunk)
    return result


def _push_delays(logs: dict[str, PushLog], streams: dict[str, dict[str, OutletSpec]], chunk: int) -> dict[str, float]:
    """How long after its newest sample's stamp each chunk's push returned (the outlet process's own delay).

    The engine's ``acquire`` stage starts at that stamp, so it includes this; ``e2e`` starts at the push, so it
    does not.
    """
    delays: list[float] = []
    for per in streams.values():
        for spec in per.values():
            log_ = logs[spec.name]
            newest = log_.first_ts + (chunk - 1) / spec.sfreq
            delays.extend((1e3 * (log_.pushed_at - newest)).tolist())
    return _stats(delays)


def measure_tick_baseline(*, rate: float, sessions: int, duration: float, chunk: int, hop: float, window: float,
                          model: str, warmup: int) -> dict[str, Any]:
    """Measure the same pipeline scheduled on fixed ticks (timeflux-style), same harness."""
    ctx = mp.get_context("spawn")
    port = _free_port()
    streams = _session_streams(uuid.uuid4().hex[:6], sessions)
    outlets = _start_outlets(ctx, streams, chunk)
    sub = _Subscriber(port)
    config = {"model": model, "port": port, "rate": rate, "hop": hop, "window": window, "duration": MAX_RUN_S,
              "sessions": {sid: {m: s.name for m, s in per.items()} for sid, per in streams.items()}}
    stop = ctx.Event()
    tick = ctx.Process(target=run_tick_loop, args=(config, stop), daemon=True)
    tick.start()
    try:
        sub.collect(sessions, _wanted(duration, hop, warmup), tick.is_alive, STARTUP_S + window + 3 * duration + 30)
    finally:
        stop.set()
        tick.join(timeout=30)
    sub.drain()
    logs = _collect_logs(*outlets)
    result = _score(sub.received, logs, streams, warmup)
    result["rate_hz"] = rate
    return result


def measure_lsl_hop(seconds: float = 8.0) -> dict[str, float]:
    """Bare LSL hop: push (another process) → visible in an inlet woken by pull_sample, drained by pull_chunk."""
    ctx = mp.get_context("spawn")
    spec = OutletSpec(f"rtpbench-hop-{uuid.uuid4().hex[:6]}", *EEG)
    queue = ctx.Queue()
    proc = ctx.Process(target=run_outlets, args=([spec], 1, 1.5, seconds, queue), daemon=True)
    proc.start()
    found = pylsl.resolve_bypred(f"name='{spec.name}'", 1, 10.0)
    inlet = pylsl.StreamInlet(found[0], max_buflen=10)
    inlet.open_stream(timeout=5.0)
    first_seen: dict[float, float] = {}
    buf = np.zeros((1024, spec.n_channels), dtype=np.float32)
    end = time.monotonic() + seconds + 3.0
    while time.monotonic() < end:
        _, ts = inlet.pull_sample(timeout=0.1)
        if ts is None:
            continue
        now = pylsl.local_clock()
        first_seen.setdefault(ts, now)
        _, more = inlet.pull_chunk(timeout=0.0, max_samples=1024, dest_obj=buf)
        for t in more:
            first_seen.setdefault(t, now)
    logs = _collect_logs(proc, queue, ctx.Event())[spec.name]
    lat = [1e3 * (seen - logs.push_time_of(ts)) for ts, seen in first_seen.items()]
    return _stats([v for v in lat[int(spec.sfreq):] if np.isfinite(v)])


def measure_zmq_hop(seconds: float = 8.0, rate: float = 128.0) -> dict[str, float]:
    """Bare ZeroMQ hop: PUB (another process) → SUB here, ~500-byte JSON messages."""
    ctx = mp.get_context("spawn")
    port = _free_port()
    proc = ctx.Process(target=run_zmq_publisher, args=(port, rate, seconds, 1.5), daemon=True)
    proc.start()
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"bench/")
    sock.connect(f"tcp://127.0.0.1:{port}")
    lat: list[float] = []
    end = time.monotonic() + seconds + 4.0
    while time.monotonic() < end and (proc.is_alive() or sock.poll(0)):
        if sock.poll(100):
            _, payload = sock.recv_multipart()
            lat.append(1e3 * (pylsl.local_clock() - json.loads(payload)["sent"]))
    sock.close(linger=0)
    proc.join(timeout=5)
    return _stats(lat[int(rate):])


def run_latency_benchmark(*, sessions: int = 1, duration: float = 30.0, chunk: int = 8, hop: float = 1.0,
                          window: float = 5.0, model: str = "eegmat-fusion", eeg: str | None = None,
                          ecg: str | None = None, baselines: bool = True, sweep: bool = False, warmup: int = 2,
                          hop_seconds: float = 8.0) -> dict[str, Any]:
    """Measure rt_physio and (optionally) its baselines; returns the JSON document."""
    from rt_physio.sources.lsl_streams import quiet_liblsl

    quiet_liblsl()
    common: dict[str, Any] = {"window": window, "model": model, "warmup": warmup}
    main = measure_engine(sessions=sessions, duration=duration, chunk=chunk, hop=hop, eeg=eeg, ecg=ecg, **common)
    result: dict[str, Any] = {
        "benchmark": "latency", "model": model, "harness": eeg is None and ecg is None,
        "sessions": sessions, "chunk": chunk, "hop_s": hop, "window_s": window, "duration_s": duration,
        "e2e_ms": main["e2e_ms"], "added_ms": main["added_ms"], "infer_ms": main["infer_ms"],
        "stages_ms": main["stages_ms"], "n_predictions": main["n_predictions"],
        "harness_push_ms": main.get("harness_push_ms"),
        "_raw": {"e2e": main["e2e_raw"], "added": main["added_raw"]},
    }
    if baselines and result["harness"]:
        tick = measure_tick_baseline(rate=25.0, sessions=sessions, duration=duration, chunk=chunk, hop=hop,
                                     **common)
        result["baseline_tick_ms"] = tick["e2e_ms"]
        result["baseline_tick_added_ms"] = tick["added_ms"]
        result["_raw"]["tick"] = tick["e2e_raw"]
        result["baseline_lsl_hop_ms"] = measure_lsl_hop(hop_seconds)
        result["baseline_zmq_hop_ms"] = measure_zmq_hop(hop_seconds)
        result["ratios"] = {
            "tick_e2e_p50_over_ours": round(tick["e2e_ms"]["p50"] / main["e2e_ms"]["p50"], 2),
            "tick_e2e_p99_over_ours": round(tick["e2e_ms"]["p99"] / main["e2e_ms"]["p99"], 2),
            "tick_added_p50_over_ours": round(tick["added_ms"]["p50"] / max(main["added_ms"]["p50"], 1e-3), 2),
            "ours_added_p50_over_lsl_hop_p50": round(main["added_ms"]["p50"]
                                                     / max(result["baseline_lsl_hop_ms"]["p50"], 1e-3), 2),
        }
        # "added" includes one LSL hop in and one ZeroMQ hop out by definition; what is left is the engine's own
        transport = result["baseline_lsl_hop_ms"]["p50"] + result["baseline_zmq_hop_ms"]["p50"]
        result["added_minus_transport_p50_ms"] = round(main["added_ms"]["p50"] - transport, 3)
    if sweep and result["harness"]:
        result["sweeps"] = run_sweeps(duration=min(duration, 15.0), hop=hop, **common)
    return result


def run_sweeps(*, duration: float, hop: float, window: float, model: str, warmup: int,
               max_sessions: int = 64) -> dict[str, Any]:
    """Chunk size (1, 8, 32), hop (0.25, 0.5, 1 s) and sessions (1, 2, 4, … until p99 > hop)."""
    common: dict[str, Any] = {"window": window, "model": model, "warmup": warmup, "duration": duration}
    out: dict[str, Any] = {"chunk": {}, "hop": {}, "sessions": {}}
    for chunk in (1, 8, 32):
        r = measure_engine(sessions=1, chunk=chunk, hop=hop, **common)
        out["chunk"][str(chunk)] = {"e2e_ms": r["e2e_ms"], "added_ms": r["added_ms"]}
    for h in (0.25, 0.5, 1.0):
        r = measure_engine(sessions=1, chunk=8, hop=h, **common)
        out["hop"][str(h)] = {"e2e_ms": r["e2e_ms"], "added_ms": r["added_ms"]}
    n = 1
    while n <= max_sessions:
        try:
            r = measure_engine(sessions=n, chunk=8, hop=hop, **common)
        except RuntimeError as exc:  # one failed point ends the sweep; the figures measured so far are kept
            log.error("%d sessions: the engine failed (%s); sweep stopped", n, str(exc)[:300])
            out["sessions"][str(n)] = {"failed": str(exc)[:2000]}
            break
        out["sessions"][str(n)] = {"e2e_ms": r["e2e_ms"], "added_ms": r["added_ms"],
                                   "n_predictions": r["n_predictions"]}
        log.info("%d sessions: e2e p99 %.1f ms", n, r["e2e_ms"]["p99"])
        if not r["e2e_ms"]["p99"] < hop * 1e3:
            break
        n *= 2
    return out


def format_table(result: dict[str, Any]) -> str:
    """Render the figures as a Markdown table (rt_physio and each baseline, with ratios)."""
    def row(name: str, s: dict[str, float]) -> str:
        return (f"| {name} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['p999']:.2f} | "
                f"{s['max']:.2f} | {s['n']} |")

    lines = [f"latency benchmark — model {result['model']}, {result['sessions']} session(s), chunk "
             f"{result['chunk']}, hop {result['hop_s']} s, window {result['window_s']} s", "",
             "| ms | p50 | p90 | p99 | p99.9 | max | n |", "|---|---|---|---|---|---|---|",
             row("rt_physio e2e (push of last sample → subscriber)", result["e2e_ms"]),
             row("rt_physio added (e2e − model forward pass)", result["added_ms"]),
             row("model forward pass (infer)", result["infer_ms"])]
    for stage in ("acquire", "dsp", "window", "queue", "publish"):
        if stage in result["stages_ms"]:
            lines.append(row(f"  stage: {stage}", result["stages_ms"][stage]))
    if result.get("harness_push_ms"):
        lines.append(row("  harness: newest sample's stamp → push returned (inside acquire, not in e2e)",
                         result["harness_push_ms"]))
    if "baseline_tick_ms" in result:
        lines.append(row("baseline: fixed-tick 25 Hz scheduler, e2e", result["baseline_tick_ms"]))
        lines.append(row("baseline: fixed-tick 25 Hz, added (e2e − infer)", result["baseline_tick_added_ms"]))
        lines.append(row("baseline: bare LSL hop", result["baseline_lsl_hop_ms"]))
        lines.append(row("baseline: bare ZeroMQ hop", result["baseline_zmq_hop_ms"]))
        r = result["ratios"]
        lines += ["", f"fixed-tick e2e / rt_physio e2e: p50 {r['tick_e2e_p50_over_ours']}×, p99 "
                      f"{r['tick_e2e_p99_over_ours']}×; fixed-tick added / rt_physio added (p50): "
                      f"{r['tick_added_p50_over_ours']}×; rt_physio added minus the bare LSL and ZeroMQ hops "
                      f"(p50): {result['added_minus_transport_p50_ms']:.2f} ms"]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Histogram of e2e and added latency (and the tick baseline) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = result["_raw"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    series = [("rt_physio added", raw["added"]), ("rt_physio e2e", raw["e2e"])]
    if "tick" in raw:
        series.append(("fixed-tick 25 Hz e2e", raw["tick"]))
    hi = max(max(v) for _, v in series if v) * 1.05
    bins = np.linspace(0, hi, 80)
    for name, values in series:
        ax.hist(values, bins=bins.tolist(), alpha=0.6, label=f"{name} (p50 {np.median(values):.1f} ms)")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("predictions")
    ax.set_title(f"rt_physio latency — {result['model']}, {result['sessions']} session(s), chunk {result['chunk']}")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
