"""DSP benchmark: rt_physio's numba kernels against the baselines a user would otherwise run, in the same process.

Tables (stdout) and JSON (benchmarks/results/dsp.json):

1. SosFilter, 32 channels, 5 sections (order-4 band-pass + 50 Hz notch) vs ``scipy.signal.sosfilt(zi=...)``
   per chunk of 1 … 8192 samples; both through their public Python API, state carried across chunks.
   Targets: ≥ 5× at chunks ≤ 32, ≥ 1.5× at 8192, ≥ 150 M channel-samples/s on one core at large chunks.
2. RingBuffer write (8-sample chunk) + read of a 5-s window, 32 ch at 250 Hz, vs an ``np.roll`` ring (MNE-LSL's
   update) at buffer lengths 10 … 600 s. Target: ours flat, theirs growing.
3. StreamResampler (250 → 200 Hz, 32 ch) vs ``scipy.signal.resample_poly`` per chunk. The baseline is stateless,
   so it is not even correct at chunk edges; it is the per-chunk cost a naive user pays.
4. StreamProcessor.push (hygiene + filters + resampler + ring, one compiled call) vs the same steps in scipy /
   NumPy (sosfilt with zi, resample_poly, np.roll ring), per chunk.

Method: the process is pinned to one core; ours and the baseline alternate round by round (so that the noise of a
shared 2-vCPU VM hits both); each figure is the median over rounds of the mean time per call.

Run: ``.venv/bin/python benchmarks/bench_dsp.py`` (``--quick`` for a fast smoke run, ``--json PATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np
import scipy
import scipy.signal

from rt_physio.dsp import RingBuffer, SosFilter, StreamProcessor, StreamResampler, design_bandpass, design_notch

ROOT = Path(__file__).resolve().parent
C = 32
FS = 250.0


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "numba": numba.__version__,
            "platform": platform.platform()}


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned"


def compare(ours: Callable[[], object], theirs: Callable[[], object], calls: int, rounds: int) -> tuple[float, float]:
    """Median over rounds of the mean µs per call, ours and theirs, alternating which goes first."""
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    pair = [("ours", ours), ("theirs", theirs)]
    for r in range(rounds):
        for name, fn in pair if r % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter_ns() - t0) / calls / 1e3)
    return statistics.median(times["ours"]), statistics.median(times["theirs"])


def cycler(x: np.ndarray, chunk: int) -> Callable[[], np.ndarray]:
    """Return a function giving the next ``chunk`` rows of ``x`` each call, wrapping around."""
    starts = list(range(0, len(x) - chunk + 1, chunk))
    state = {"i": 0}

    def next_chunk() -> np.ndarray:
        i = state["i"]
        state["i"] = (i + 1) % len(starts)
        return x[starts[i]: starts[i] + chunk]

    return next_chunk


def calls_for(ours: Callable[[], object], theirs: Callable[[], object], quick: bool) -> int:
    """Calls per round so that one round of both takes about 0.15 s (0.01 s with --quick); also warms up."""
    t0 = time.perf_counter()
    for _ in range(3):
        ours()
        theirs()
    per_pair = (time.perf_counter() - t0) / 3
    budget = 0.01 if quick else 0.15
    return int(min(50_000, max(3, budget / per_pair)))


Pair = tuple[Callable[[], object], Callable[[], object]]


def filter_pair(sos: np.ndarray, x: np.ndarray, chunk: int) -> Pair:
    filt = SosFilter(sos, C)
    zi = {"zi": np.zeros((sos.shape[0], 2, C))}
    get_a, get_b = cycler(x, chunk), cycler(x, chunk)

    def ours() -> None:
        filt.process(get_a())

    def theirs() -> None:
        _, zi["zi"] = scipy.signal.sosfilt(sos, get_b(), axis=0, zi=zi["zi"])

    return ours, theirs


def bench_filter(rounds: int, quick: bool) -> list[dict[str, Any]]:
    sos = np.vstack([design_bandpass(0.5, 45.0, FS), design_notch(50.0, FS)])
    x = (np.random.default_rng(0).standard_normal((65536, C)) * 20).astype(np.float32)
    rows = []
    for chunk in (1, 4, 16, 32, 128, 1024, 8192):
        ours, theirs = filter_pair(sos, x, chunk)
        t_ours, t_theirs = compare(ours, theirs, calls_for(ours, theirs, quick), rounds)
        target = 5.0 if chunk <= 32 else (1.5 if chunk >= 8192 else None)
        speedup = t_theirs / t_ours
        rows.append({"chunk": chunk, "ours_us": t_ours, "scipy_us": t_theirs, "speedup": speedup,
                     "ours_mcs_per_s": chunk * C / t_ours, "scipy_mcs_per_s": chunk * C / t_theirs,
                     "target_speedup": target, "meets_target": None if target is None else speedup >= target})
    return rows


class RollRing:
    """MNE-LSL's buffer update: roll the whole array left and write the new chunk at the end."""

    def __init__(self, capacity: int) -> None:
        self.data = np.zeros((capacity, C), np.float32)
        self.ts = np.zeros(capacity)

    def write(self, chunk: np.ndarray, ts: np.ndarray) -> None:
        n = len(chunk)
        self.data = np.roll(self.data, -n, axis=0)
        self.data[-n:] = chunk
        self.ts = np.roll(self.ts, -n)
        self.ts[-n:] = ts

    def latest(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.data[-n:], self.ts[-n:]


def ring_pair(x: np.ndarray, capacity: int, chunk: int, window: int) -> Pair:
    ring, roll = RingBuffer(C, capacity), RollRing(capacity)
    clock = {"ours": 0.0, "theirs": 0.0}
    get_a, get_b = cycler(x, chunk), cycler(x, chunk)
    stamps = np.arange(chunk) / FS

    def ours() -> None:
        clock["ours"] += chunk / FS
        ring.write(get_a(), clock["ours"] + stamps)
        ring.latest(window)

    def theirs() -> None:
        clock["theirs"] += chunk / FS
        roll.write(get_b(), clock["theirs"] + stamps)
        roll.latest(window)

    return ours, theirs


def bench_ring(rounds: int, quick: bool) -> list[dict[str, Any]]:
    chunk, window = 8, int(5 * FS)
    x = (np.random.default_rng(1).standard_normal((4096, C)) * 20).astype(np.float32)
    rows = []
    for seconds in (10, 30, 60, 120, 300, 600):
        capacity = int(seconds * FS)
        ours, theirs = ring_pair(x, capacity, chunk, window)
        for _ in range(capacity // chunk + 1):  # fill ours so that every write wraps and overwrites
            ours()
        theirs()  # np.roll costs the same whatever the buffer holds
        t_ours, t_theirs = compare(ours, theirs, calls_for(ours, theirs, quick), rounds)
        rows.append({"buffer_s": seconds, "ours_us": t_ours, "np_roll_us": t_theirs, "speedup": t_theirs / t_ours})
    return rows


def resampler_pair(x: np.ndarray, chunk: int) -> Pair:
    resampler = StreamResampler(FS, 200.0, C)
    up, down = resampler.up, resampler.down
    get_a, get_b = cycler(x, chunk), cycler(x, chunk)

    def ours() -> None:
        resampler.process(get_a())

    def theirs() -> None:
        scipy.signal.resample_poly(get_b(), up, down, axis=0)

    return ours, theirs


def bench_resampler(rounds: int, quick: bool) -> list[dict[str, Any]]:
    x = (np.random.default_rng(2).standard_normal((65536, C)) * 20).astype(np.float64)
    rows = []
    for chunk in (1, 4, 16, 32, 128, 1024):
        ours, theirs = resampler_pair(x, chunk)
        t_ours, t_theirs = compare(ours, theirs, calls_for(ours, theirs, quick), rounds)
        rows.append({"chunk": chunk, "ours_us": t_ours, "resample_poly_us": t_theirs, "speedup": t_theirs / t_ours,
                     "ours_mcs_per_s": chunk * C / t_ours})
    return rows


def pipeline_pair(x: np.ndarray, chunk: int) -> Pair:
    proc = StreamProcessor(FS, C, bandpass=(0.5, 45.0), notch=50.0)
    sos = np.vstack([design_bandpass(0.5, 45.0, FS), design_notch(50.0, FS)])
    state = {"zi": np.zeros((sos.shape[0], 2, C)), "t_ours": 0.0, "t_theirs": 0.0}
    roll = RollRing(30 * 200)
    get_a, get_b = cycler(x, chunk), cycler(x, chunk)
    stamps = np.arange(chunk) / FS

    def ours() -> None:
        state["t_ours"] += chunk / FS
        proc.push(get_a(), state["t_ours"] + stamps)

    def theirs() -> None:
        state["t_theirs"] += chunk / FS
        y, state["zi"] = scipy.signal.sosfilt(sos, get_b(), axis=0, zi=state["zi"])
        out = scipy.signal.resample_poly(y, 4, 5, axis=0)
        roll.write(out.astype(np.float32), state["t_theirs"] + np.arange(len(out)) / 200.0)

    return ours, theirs


def bench_pipeline(rounds: int, quick: bool) -> list[dict[str, Any]]:
    x = (np.random.default_rng(3).standard_normal((65536, C)) * 20 + 500).astype(np.float32)
    rows = []
    for chunk in (1, 8, 32, 256):
        ours, theirs = pipeline_pair(x, chunk)
        t_ours, t_theirs = compare(ours, theirs, calls_for(ours, theirs, quick), rounds)
        rows.append({"chunk": chunk, "ours_us": t_ours, "scipy_numpy_us": t_theirs, "speedup": t_theirs / t_ours})
    return rows


def table(title: str, header: list[str], lines: list[list[str]]) -> str:
    out = [f"\n### {title}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def report(results: dict[str, Any]) -> str:
    parts = [f"rt_physio DSP benchmark — {results['machine']['cpu']}, {results['affinity']}, "
             f"median of {results['rounds']} alternating rounds"]
    parts.append(table(
        "SosFilter vs scipy.signal.sosfilt(zi=…) — 32 ch, 5 sections, float32 in, state carried",
        ["chunk", "ours µs", "scipy µs", "speedup", "ours M ch-samples/s", "scipy M ch-samples/s", "target"],
        [[str(r["chunk"]), f"{r['ours_us']:.2f}", f"{r['scipy_us']:.2f}", f"{r['speedup']:.1f}×",
          f"{r['ours_mcs_per_s']:.0f}", f"{r['scipy_mcs_per_s']:.1f}",
          "" if r["target_speedup"] is None else
          f"≥ {r['target_speedup']:g}× {'✓' if r['meets_target'] else '✗'}"] for r in results["filter"]]))
    parts.append(table(
        "RingBuffer vs np.roll ring (MNE-LSL) — write 8 samples + read a 5-s window, 32 ch @ 250 Hz",
        ["buffer", "ours µs", "np.roll µs", "speedup"],
        [[f"{r['buffer_s']} s", f"{r['ours_us']:.2f}", f"{r['np_roll_us']:.1f}", f"{r['speedup']:.0f}×"]
         for r in results["ring"]]))
    parts.append(table(
        "StreamResampler vs scipy.signal.resample_poly per chunk — 250 → 200 Hz, 32 ch",
        ["chunk", "ours µs", "resample_poly µs", "speedup", "ours M ch-samples/s"],
        [[str(r["chunk"]), f"{r['ours_us']:.2f}", f"{r['resample_poly_us']:.1f}", f"{r['speedup']:.1f}×",
          f"{r['ours_mcs_per_s']:.0f}"] for r in results["resampler"]]))
    parts.append(table(
        "StreamProcessor.push vs sosfilt(zi) + resample_poly + np.roll ring — 32 ch @ 250 Hz → 200 Hz",
        ["chunk", "ours µs", "scipy/NumPy µs", "speedup"],
        [[str(r["chunk"]), f"{r['ours_us']:.2f}", f"{r['scipy_numpy_us']:.1f}", f"{r['speedup']:.1f}×"]
         for r in results["pipeline"]]))
    s = results["summary"]
    parts.append(f"\nTargets: ≥5× at chunks ≤32: {'met' if s['small_chunks_5x'] else 'MISSED'}; "
                 f"≥1.5× at 8192: {'met' if s['chunk_8192_1_5x'] else 'MISSED'}; "
                 f"≥150 M ch-samples/s at large chunks: {s['large_chunk_mcs_per_s']:.0f} "
                 f"({'met' if s['throughput_150m'] else 'MISSED'}); ring flat: ours {s['ring_ours_10s_us']:.2f} → "
                 f"{s['ring_ours_600s_us']:.2f} µs, np.roll {s['ring_roll_10s_us']:.1f} → "
                 f"{s['ring_roll_600s_us']:.1f} µs")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few calls per round (smoke test, noisy figures)")
    parser.add_argument("--rounds", type=int, default=21, help="alternating rounds per figure (default 21)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write JSON (default benchmarks/results/dsp.json; --quick writes none)")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    affinity = pin_one_core()
    results: dict[str, Any] = {"benchmark": "dsp", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "command": " ".join([Path(sys.executable).name, *sys.argv]),
                               "machine": machine(), "affinity": affinity, "rounds": rounds, "quick": args.quick}
    results["filter"] = bench_filter(rounds, args.quick)
    results["ring"] = bench_ring(rounds, args.quick)
    results["resampler"] = bench_resampler(rounds, args.quick)
    results["pipeline"] = bench_pipeline(rounds, args.quick)
    flt, ring = results["filter"], results["ring"]
    large = max(r["ours_mcs_per_s"] for r in flt if r["chunk"] >= 1024)
    results["summary"] = {
        "small_chunks_5x": all(r["meets_target"] for r in flt if r["chunk"] <= 32),
        "chunk_8192_1_5x": all(r["meets_target"] for r in flt if r["chunk"] == 8192),
        "large_chunk_mcs_per_s": large, "throughput_150m": large >= 150.0,
        "ring_ours_10s_us": ring[0]["ours_us"], "ring_ours_600s_us": ring[-1]["ours_us"],
        "ring_roll_10s_us": ring[0]["np_roll_us"], "ring_roll_600s_us": ring[-1]["np_roll_us"],
    }
    text = report(results)
    print(text)
    results["table"] = text
    out = args.json if args.json is not None else (None if args.quick else ROOT / "results" / "dsp.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
