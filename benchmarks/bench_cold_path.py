"""Why the engine's per-chunk work costs more live than in a loop: the same calls, hot and after an idle gap.

A live stream delivers a chunk every few tens of milliseconds (8 samples at 256 Hz: 31 ms). Between chunks the
acquisition thread sleeps, other processes run, and the caches and branch predictors forget the engine's code
and data. This benchmark times the per-chunk work of one stream, exactly the calls the acquisition thread makes
(timestamp dejitter, ``StreamProcessor.push``, and the window cut: ``read_until`` + one scaled transposed copy),
in three schedules:

* **hot** (the baseline): back to back, as a micro-benchmark measures it;
* **after sleep**: ``time.sleep(gap)`` before each call, as live;
* **after busy wait**: spinning for ``gap`` before each call (the CPU stays awake, but runs other code).

It prints a table and writes ``benchmarks/results/cold_path.json``; ratios are against the hot loop.

Run: ``.venv/bin/python benchmarks/bench_cold_path.py [--gap 0.031] [--rounds 300]``
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from rt_physio.clock import Dejitter
from rt_physio.dsp import StreamProcessor

HERE = Path(__file__).resolve().parent
log = logging.getLogger("bench_cold_path")

SFREQ, CHANNELS, CHUNK = 128.0, 14, 8


def _one_round(k: int, dejitter: Dejitter, proc: StreamProcessor, rng: np.random.Generator) -> tuple[float, ...]:
    stamps = (k * CHUNK + np.arange(CHUNK)) / SFREQ + rng.normal(0, 1e-4, CHUNK)
    data = rng.normal(0, 20, (CHUNK, CHANNELS)).astype(np.float32)
    t0 = time.perf_counter()
    fitted = dejitter.process(stamps)
    t1 = time.perf_counter()
    proc.push(data, fitted)
    t2 = time.perf_counter()
    t_end = proc.newest_timestamp
    got = proc.read_until(t_end + 1e-6, 1000)
    if got is not None:
        x = np.multiply(got[0].T, np.float32(0.01), dtype=np.float32, order="C")
        x.reshape(CHANNELS, 5, -1)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def measure(schedule: str, gap: float, rounds: int, seed: int = 0) -> dict[str, float]:
    """Median µs per call of each step under one schedule (``hot``, ``sleep`` or ``busy``)."""
    rng = np.random.default_rng(seed)
    dejitter = Dejitter(SFREQ)
    proc = StreamProcessor(SFREQ, CHANNELS, bandpass=(0.3, 45.0), notch=50.0)
    for k in range(800):  # fill the ring (5 s at 200 Hz and more) and compile
        _one_round(k, dejitter, proc, rng)
    times = []
    for k in range(800, 800 + rounds):
        if schedule == "sleep":
            time.sleep(gap)
        elif schedule == "busy":
            until = time.perf_counter() + gap
            while time.perf_counter() < until:
                pass
        times.append(_one_round(k, dejitter, proc, rng))
    arr = 1e6 * np.asarray(times)
    med = np.median(arr, axis=0)
    return {"dejitter_us": round(float(med[0]), 1), "push_us": round(float(med[1]), 1),
            "cut_us": round(float(med[2]), 1), "total_us": round(float(np.median(arr.sum(axis=1))), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gap", type=float, default=0.031, help="idle seconds before each call (default 31 ms)")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "cold_path.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results: dict[str, Any] = {"benchmark": "cold_path", "machine": platform.machine(), "gap_s": args.gap,
                               "rounds": args.rounds, "stream": f"{CHANNELS} ch at {SFREQ:g} Hz, chunks of {CHUNK}"}
    for schedule in ("hot", "sleep", "busy"):
        results[schedule] = measure(schedule, args.gap, args.rounds)
    hot = results["hot"]
    results["ratio_sleep_over_hot"] = round(results["sleep"]["total_us"] / hot["total_us"], 2)
    results["ratio_busy_over_hot"] = round(results["busy"]["total_us"] / hot["total_us"], 2)
    lines = [f"per-chunk work of one stream ({results['stream']}), median µs per call", "",
             "| schedule | dejitter | push | cut | total | × hot |", "|---|---|---|---|---|---|"]
    for schedule, label in (("hot", "hot loop (baseline)"), ("sleep", f"after {1e3 * args.gap:g} ms sleep"),
                            ("busy", f"after {1e3 * args.gap:g} ms busy wait")):
        r = results[schedule]
        lines.append(f"| {label} | {r['dejitter_us']} | {r['push_us']} | {r['cut_us']} | {r['total_us']} | "
                     f"{r['total_us'] / hot['total_us']:.1f} |")
    log.info("%s", "\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
