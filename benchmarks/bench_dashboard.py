"""What watching a session costs the engine: `rt-physio run` alone vs with `--dashboard --preview` and a page open.

Each round runs the engine on BrainFlow's synthetic board (default model, 5-s windows, 1-s hop) for ``--seconds``
and collects every prediction's ``latency_ms`` from a ZeroMQ subscriber, in two configurations that alternate
(A B A B …, so that background load on the machine falls on both alike):

* **baseline**: the engine alone (the subscriber is the only client);
* **dashboard**: the engine with ``--dashboard --preview`` and a headless Chromium showing the page (Debian's
  ``chromium`` and ``chromium-driver``, as in the tests), so the page's server, its charts and the preview thread
  all run on the same 2 cores.

It prints a table (p50 / p99 of ``total`` and of the engine's own part, ``total - infer``) and writes
``benchmarks/results/dashboard.json``.

Run: ``.venv/bin/python benchmarks/bench_dashboard.py [--seconds 40] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

HERE = Path(__file__).resolve().parent
RT_PHYSIO = str(Path(sys.executable).parent / "rt-physio")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _collect(port: int, stop: threading.Event, out: list[dict[str, float]]) -> None:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"rt_physio/")
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    while not stop.is_set():
        if sock.poll(100):
            topic, payload = sock.recv_multipart()
            if topic.endswith(b"/pred"):
                out.append(json.loads(payload)["latency_ms"])
    sock.close()


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def run_round(with_dashboard: bool, seconds: float) -> list[dict[str, float]]:
    """Run one engine for ``seconds`` after its first prediction; return every prediction's latency_ms."""
    port, page = _free_port(), _free_port()
    args = [RT_PHYSIO, "run", "--quiet", "--device", "cpu", "--publish", f"zmq://127.0.0.1:{port}",
            "--duration", str(seconds + 60)]
    if with_dashboard:
        args += ["--preview", "--dashboard", f"127.0.0.1:{page}"]
    got: list[dict[str, float]] = []
    stop = threading.Event()
    collector = threading.Thread(target=_collect, args=(port, stop, got), daemon=True)
    collector.start()
    engine = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        deadline = time.monotonic() + 120
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
        if with_dashboard:
            browser = _browser()
            browser.get(f"http://127.0.0.1:{page}/")
        got.clear()  # the first windows include start-up work
        time.sleep(seconds)
        return list(got)
    finally:
        stop.set()
        if browser is not None:
            browser.quit()
        engine.send_signal(signal.SIGTERM)
        engine.wait(120)
        collector.join(5)


def summary(latencies: list[dict[str, float]]) -> dict[str, float]:
    """p50 / p99 of ``total`` and of ``total - infer`` (ms), and the count."""
    total = np.array([x["total"] for x in latencies])
    own = total - np.array([x.get("infer", 0.0) for x in latencies])
    return {"n": len(latencies), "total_p50": float(np.percentile(total, 50)),
            "total_p99": float(np.percentile(total, 99)), "own_p50": float(np.percentile(own, 50)),
            "own_p99": float(np.percentile(own, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "dashboard.json")
    args = parser.parse_args()
    collected: dict[str, list[dict[str, float]]] = {"baseline": [], "dashboard": []}
    for _ in range(args.rounds):
        for name in ("baseline", "dashboard"):
            collected[name] += run_round(name == "dashboard", args.seconds)
    results = {name: summary(values) for name, values in collected.items()}
    print(f"{'':10s} {'n':>5s} {'total p50':>10s} {'total p99':>10s} {'own p50':>9s} {'own p99':>9s}  (ms)")
    for name, r in results.items():
        print(f"{name:10s} {r['n']:5d} {r['total_p50']:10.2f} {r['total_p99']:10.2f} {r['own_p50']:9.2f} "
              f"{r['own_p99']:9.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "what": "latency_ms of every prediction: the engine alone (baseline) vs with --dashboard --preview and a "
                "headless Chromium showing the page; rounds alternate",
        "seconds_per_round": args.seconds, "rounds": args.rounds, "machine": platform.platform(),
        "cpus": os.cpu_count(), "results": results}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
