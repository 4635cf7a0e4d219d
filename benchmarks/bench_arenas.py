"""What capping glibc's arenas costs in latency: `rt-physio run` with MALLOC_ARENA_MAX=2 vs glibc's default.

Usage: python benchmarks/bench_arenas.py [--rounds 3] [--duration 30] [--sessions 4] [--json OUT]

Capping glibc's allocator at 2 arenas (`MALLOC_ARENA_MAX=2`, or rt_physio/runtime/heap.limit_arenas) lets
memory freed by one thread serve the others; fewer arenas can also mean threads waiting on an arena's lock. Each
round runs the latency benchmark's engine (LSL harness outlets in, ZeroMQ out, rt_physio/bench/latency.measure_engine)
once capped and once with glibc's default (no `MALLOC_ARENA_MAX`: up to 8 arenas per core), alternating so that
drift in a shared machine falls on both; predictions are pooled per arm and compared as ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from rt_physio.bench.latency import measure_engine

HERE = Path(__file__).resolve().parent
log = logging.getLogger("bench_arenas")


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {f"p{q:g}": round(float(np.percentile(arr, q)), 3) for q in (50, 90, 99)} | {"n": int(arr.size)}


def run(rounds: int, duration: float, sessions: int) -> dict[str, Any]:
    """Alternate capped and glibc-default engines for ``rounds`` rounds; pooled latency per arm and ratios."""
    arms = {"capped (MALLOC_ARENA_MAX=2)": "2", f"glibc default (up to {8 * (os.cpu_count() or 1)} arenas)": None}
    pooled: dict[str, dict[str, list[float]]] = {arm: {"e2e": [], "added": []} for arm in arms}
    by_round: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    saved = os.environ.pop("MALLOC_ARENA_MAX", None)
    try:
        for r in range(rounds):
            for arm, env in arms.items():
                if env is None:
                    os.environ.pop("MALLOC_ARENA_MAX", None)
                else:
                    os.environ["MALLOC_ARENA_MAX"] = env  # read by glibc as the engine process starts
                got = measure_engine(sessions=sessions, duration=duration, chunk=8, hop=1.0, window=5.0,
                                     model="eegmat-fusion", warmup=2)
                pooled[arm]["e2e"] += list(got["e2e_raw"])
                pooled[arm]["added"] += list(got["added_raw"])
                by_round[arm].append(_percentiles(list(got["added_raw"])))
                log.info("round %d, %s: %d predictions, added p50 %.3f ms", r + 1, arm, len(got["added_raw"]),
                         got["added_ms"]["p50"])
    finally:
        os.environ.pop("MALLOC_ARENA_MAX", None)
        if saved is not None:
            os.environ["MALLOC_ARENA_MAX"] = saved
    out: dict[str, Any] = {"benchmark": "arenas", "rounds": rounds, "duration_s": duration, "sessions": sessions,
                           "cpus": os.cpu_count(), "arms": {}}
    for arm, raw in pooled.items():
        out["arms"][arm] = {"e2e_ms": _percentiles(raw["e2e"]), "added_ms": _percentiles(raw["added"]),
                            "added_ms_by_round": by_round[arm]}
    capped, default = (out["arms"][a] for a in arms)
    out["ratios_capped_over_default"] = {
        f"{kind}_{q}": round(capped[f"{kind}_ms"][q] / default[f"{kind}_ms"][q], 3)
        for kind in ("e2e", "added") for q in ("p50", "p99")}
    return out


def format_table(result: dict[str, Any]) -> str:
    """Markdown: one row per arm, then the ratios."""
    lines = ["| arm | predictions | end to end p50 / p99 (ms) | added p50 / p99 (ms) |", "|---|---|---|---|"]
    for arm, r in result["arms"].items():
        e, a = r["e2e_ms"], r["added_ms"]
        lines.append(f"| {arm} | {e['n']} | {e['p50']:.2f} / {e['p99']:.2f} | {a['p50']:.2f} / {a['p99']:.2f} |")
    for arm, r in result["arms"].items():
        rounds = "; ".join(f"{x['p50']:.2f} / {x['p99']:.2f}" for x in r["added_ms_by_round"])
        lines.append(f"| {arm}, added p50 / p99 round by round | {rounds} | | |")
    ratios = ", ".join(f"{k} {v:.2f}×" for k, v in result["ratios_capped_over_default"].items())
    return "\n".join([*lines, "", f"capped / default: {ratios}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of predictions per engine run")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "arenas.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run(args.rounds, args.duration, args.sessions)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(result))


if __name__ == "__main__":
    main()
