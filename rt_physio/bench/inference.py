"""Inference benchmark: eager PyTorch vs the executor's runner, batching throughput, sessions per machine.

Every figure is measured against a baseline in the same run:

* batch-1 latency (p50/p99) of eager PyTorch and of the optimised runner (traced on the CPU, CUDA-graph replay
  on a GPU), same weights, same inputs, interleaved rounds — reported as a speed-up;
* throughput (windows/s) of the optimised runner for batch sizes 1 … 64, against batch 1;
* sessions per machine: N simulated sessions, each handing the executor a window every hop, staggered over the
  hop; window-ready → prediction latency p50/p99 and the largest N whose p99 stays below the hop (compared
  with the same search when every window is its own model call: ``max_batch = 1``);
* reduced precision (bf16 on the CPU, fp16 on a GPU): speed and the largest probability difference from fp32.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from typing import Any

import numpy as np
import torch

from rt_physio.clock import local_clock
from rt_physio.nn import LoadedModel, load_model
from rt_physio.runtime.executor import InferenceExecutor, InferenceResult, resolve_device
from rt_physio.runtime.runners import Runner, ShapeKey, make_runner
from rt_physio.runtime.session import Window
from rt_physio.runtime.tracing import Trace

__all__ = ["format_table", "run_inference_benchmark"]

log = logging.getLogger(__name__)

CONFIGS = {"14eeg+2ecg x5": ((14, 5), (2, 5)), "20eeg+1ecg x5": ((20, 5), (1, 5))}


def device_name(device: torch.device) -> str:
    """Human-readable name of the device the figures were measured on."""
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch thread(s)"


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1e3
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p99": round(float(np.percentile(arr, 99)), 3),
            "mean": round(float(arr.mean()), 3), "n": len(values)}


def _inputs(key: ShapeKey, batch: int, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [(0.3 * torch.randn((batch, c, key.n_patches, 200), generator=gen)).to(device) for c in key.channels]


def _timed(runner: Runner, key: ShapeKey, xs: list[torch.Tensor], device: torch.device) -> float:
    t0 = time.perf_counter()
    runner(key, xs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def batch1_latency(model: LoadedModel, device: torch.device, optimised: str, rounds: int) -> dict[str, Any]:
    """Eager vs optimised runner at batch 1, interleaved so machine noise hits both alike."""
    eager = make_runner(model.module, device, "eager")
    fast = make_runner(model.module, device, optimised)  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for name, ((ce, ne), (cc, _)) in CONFIGS.items():
        key = ShapeKey(("eeg", "ecg"), (ce, cc), ne)
        xs = _inputs(key, 1, device)
        for runner in (eager, fast):
            for _ in range(3):
                _timed(runner, key, xs, device)
        times: dict[str, list[float]] = {"eager": [], "optimised": []}
        for _ in range(rounds):
            times["eager"].append(_timed(eager, key, xs, device))
            times["optimised"].append(_timed(fast, key, xs, device))
        e, o = _percentiles(times["eager"]), _percentiles(times["optimised"])
        with torch.inference_mode():
            delta = float((fast(key, xs) - eager(key, xs)).abs().max())
        out[name] = {"eager_ms": e, "optimised_ms": o, "speedup_p50": round(e["p50"] / o["p50"], 3),
                     "max_abs_logit_diff": delta}
        log.info("%s: eager p50 %.2f ms, %s p50 %.2f ms", name, e["p50"], optimised, o["p50"])
    return out


def throughput(model: LoadedModel, device: torch.device, backend: str, batches: tuple[int, ...],
               seconds: float) -> dict[str, float]:
    """Windows per second of the runner at each batch size (14 EEG + 2 ECG, 5 patches)."""
    runner = make_runner(model.module, device, backend)  # type: ignore[arg-type]
    key = ShapeKey(("eeg", "ecg"), (14, 2), 5)
    out: dict[str, float] = {}
    for batch in batches:
        xs = _inputs(key, batch, device)
        _timed(runner, key, xs, device)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2:
            _timed(runner, key, xs, device)
            n += 1
        out[str(batch)] = round(n * batch / (time.perf_counter() - t0), 1)
        log.info("batch %d: %.1f windows/s", batch, out[str(batch)])
    return out


def simulate_sessions(model: LoadedModel, device: torch.device, backend: str, n_sessions: int, hop: float,
                      duration: float, max_batch: int) -> dict[str, Any]:
    """N sessions each hand over a window every ``hop`` s (staggered); latency from hand-over to result."""
    done: dict[tuple[str, int], float] = {}
    lock = threading.Lock()

    def on_result(window: Window, result: InferenceResult) -> None:
        with lock:
            done[(window.session, window.seq)] = local_clock()

    ex = InferenceExecutor(model, on_result, device=str(device), backend=backend,  # type: ignore[arg-type]
                           max_batch=max_batch, max_queue=max(256, 4 * n_sessions), threads=torch.get_num_threads())
    rng = np.random.default_rng(0)
    pool = [{"eeg": rng.normal(0, 0.3, (14, 5, 200)).astype(np.float32),
             "ecg": rng.normal(0, 0.3, (2, 5, 200)).astype(np.float32)} for _ in range(8)]
    ex.warm_up({"eeg": (14, 5, 200), "ecg": (2, 5, 200)}, batches=tuple(b for b in (1, 2, 4, 8, 16, 32, 64)
                                                                         if b <= max_batch))
    ex.start()
    submitted: dict[tuple[str, int], float] = {}
    t0 = local_clock() + 0.1
    schedule = sorted((t0 + k * hop + i * hop / n_sessions, i, k)
                      for k in range(int(duration / hop)) for i in range(n_sessions))
    for due, i, k in schedule:
        delay = due - local_clock()
        if delay > 0:
            time.sleep(delay)
        now = local_clock()
        window = Window(f"s{i}", k, now - 5.0, now, dict(pool[(i + k) % len(pool)]),  # type: ignore[arg-type]
                        Trace(cut=now))
        submitted[(f"s{i}", k)] = now
        ex.submit(window)
    ex.stop(drain_timeout=30.0)
    warm = 1  # the first hop of each session settles the batching pattern
    lat = [done[key] - t for key, t in submitted.items() if key in done and key[1] >= warm]
    lost = sum(1 for key in submitted if key not in done)
    stats = _percentiles(lat) if lat else {"p50": float("inf"), "p99": float("inf"), "n": 0}
    return {"sessions": n_sessions, "latency_ms": stats, "dropped": lost,
            "mean_batch": round(ex.completed / max(ex.batches, 1), 2)}


def max_sessions(model: LoadedModel, device: torch.device, backend: str, hop: float, duration: float,
                 max_batch: int, start: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Largest N with p99 < hop and nothing dropped: doubling, then bisection."""
    trials: list[dict[str, Any]] = []

    def ok(n: int) -> bool:
        r = simulate_sessions(model, device, backend, n, hop, duration, max_batch)
        trials.append(r)
        passed = bool(r["dropped"] == 0 and r["latency_ms"]["p99"] < hop * 1e3)
        log.info("%d sessions (max_batch %d): p50 %.1f ms p99 %.1f ms, dropped %d, mean batch %.1f -> %s", n,
                 max_batch, r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["dropped"], r["mean_batch"],
                 "ok" if passed else "over")
        return passed

    good, bad = 0, None
    n = start
    while n <= limit:
        if ok(n):
            good, n = n, n * 2
        else:
            bad = n
            break
    if bad is not None:
        lo, hi = good, bad
        while hi - lo > max(1, lo // 8):
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        good = lo
    return good, trials


def precision_check(model: LoadedModel, device: torch.device, backend: str) -> dict[str, Any]:
    """Reduced precision vs fp32 on the same inputs: speed and largest probability difference."""
    low = "fp16" if device.type == "cuda" else "bf16"
    key = ShapeKey(("eeg", "ecg"), (14, 2), 5)
    xs = _inputs(key, 8, device, seed=3)
    full = make_runner(model.module, device, backend)  # type: ignore[arg-type]
    reduced = make_runner(model.module, device, backend, low)  # type: ignore[arg-type]
    with torch.inference_mode():
        p_full, p_low = torch.sigmoid(full(key, xs)), torch.sigmoid(reduced(key, xs))
    x1 = [x[:1] for x in xs]
    t_full = [_timed(full, key, x1, device) for _ in range(10)]
    t_low = [_timed(reduced, key, x1, device) for _ in range(10)]
    return {"precision": low, "max_abs_prob_diff": round(float((p_full - p_low).abs().max()), 6),
            "fp32_ms": _percentiles(t_full), f"{low}_ms": _percentiles(t_low)}


def run_inference_benchmark(model_name: str, device_arg: str, *, rounds: int = 30, sessions_duration: float = 8.0,
                            hop: float = 1.0, quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Run every part of the benchmark and return the JSON document."""
    device = resolve_device(device_arg)
    model = load_model(model_name, device="cpu")
    optimised = "cuda-graph" if device.type == "cuda" else "traced"
    # the executor's default, fixed for every part so eager and optimised see the same thread count
    threads = threads if threads is not None else max(1, (os.cpu_count() or 1) - 1)
    torch.set_num_threads(threads)
    result: dict[str, Any] = {
        "benchmark": "inference", "model": model.spec.name, "device": device_name(device),
        "torch": torch.__version__, "torch_threads": threads, "optimised_backend": optimised,
    }
    result["batch1"] = batch1_latency(model, device, optimised, rounds)
    main = result["batch1"]["14eeg+2ecg x5"]
    result["eager_ms"] = main["eager_ms"]["p50"]
    result["optimized_ms"] = main["optimised_ms"]["p50"]
    result["speedup"] = main["speedup_p50"]
    batches = (1, 4, 16) if quick else (1, 2, 4, 8, 16, 32, 64)
    result["throughput_windows_per_s"] = throughput(model, device, optimised, batches, 1.0 if quick else 3.0)
    start, limit = (4, 16) if quick else ((64, 4096) if device.type == "cuda" else (8, 256))
    duration = 3.0 if quick else sessions_duration
    result["max_sessions"], result["session_trials"] = max_sessions(model, device, optimised, hop, duration, 64,
                                                                    start, limit)
    result["max_sessions_unbatched"], result["session_trials_unbatched"] = max_sessions(
        model, device, optimised, hop, duration, 1, max(1, start // 2), limit)
    result["precision"] = precision_check(model, device, optimised)
    return result


def format_table(result: dict[str, Any]) -> str:
    """Render the benchmark as a Markdown table."""
    lines = [f"inference benchmark — {result['model']} on {result['device']} (torch {result['torch']})", "",
             "| what | baseline | rt_physio | ratio |", "|---|---|---|---|"]
    for name, r in result["batch1"].items():
        lines.append(f"| batch-1 latency {name}, p50 / p99 ms | eager {r['eager_ms']['p50']:.2f} / "
                     f"{r['eager_ms']['p99']:.2f} | {result['optimised_backend']} {r['optimised_ms']['p50']:.2f} / "
                     f"{r['optimised_ms']['p99']:.2f} | {r['speedup_p50']:.2f}× |")
    tp = result["throughput_windows_per_s"]
    best = max(tp, key=lambda b: tp[b])
    lines.append(f"| throughput, windows/s | batch 1: {tp['1']:.1f} | batch {best}: {tp[best]:.1f} | "
                 f"{tp[best] / tp['1']:.2f}× |")
    lines.append(f"| sessions at 1 s hop with p99 < hop | one model call per window: "
                 f"{result['max_sessions_unbatched']} | batched: {result['max_sessions']} | "
                 f"{result['max_sessions'] / max(result['max_sessions_unbatched'], 1):.2f}× |")
    p = result["precision"]
    low = p["precision"]
    lines.append(f"| {low} batch-1 p50 ms (max prob. diff {p['max_abs_prob_diff']:.1e}) | fp32 "
                 f"{p['fp32_ms']['p50']:.2f} | {low} {p[low + '_ms']['p50']:.2f} | "
                 f"{p['fp32_ms']['p50'] / p[low + '_ms']['p50']:.2f}× |")
    lines.append("")
    lines.append("throughput by batch size (windows/s): " + ", ".join(f"{b}: {v}" for b, v in tp.items()))
    return "\n".join(lines)
