"""End-to-end latency benchmark; writes results/latency.json, results/latency.png and the README's table.

Usage: python benchmarks/bench_latency.py [--duration S] [--no-sweep]
The README section between the latency-table markers is regenerated from the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rt_physio.bench.latency import format_table, plot, run_latency_benchmark

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
START, END = "<!-- latency-table:start -->", "<!-- latency-table:end -->"


def update_readme(table: str) -> None:
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{README} has no {START} … {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run_latency_benchmark(duration=args.duration, sweep=not args.no_sweep)
    plot(result, HERE / "results" / "latency.png")
    result.pop("_raw")
    (HERE / "results" / "latency.json").write_text(json.dumps(result, indent=2) + "\n")
    table = format_table(result)
    if "sweeps" in result:
        sw = result["sweeps"]
        table += ("\n\nsweeps (ms):\n\n| sweep | value | e2e p50 | e2e p99 | added p50 | added p99 |\n"
                  "|---|---|---|---|---|---|\n")
        for name in ("chunk", "hop", "sessions"):
            for value, r in sw[name].items():
                if "failed" in r:
                    table += f"| {name} | {value} | engine failed | | | |\n"
                    continue
                table += (f"| {name} | {value} | {r['e2e_ms']['p50']:.1f} | {r['e2e_ms']['p99']:.1f} | "
                          f"{r['added_ms']['p50']:.2f} | {r['added_ms']['p99']:.2f} |\n")
    print(table)
    update_readme(table.rstrip())


if __name__ == "__main__":
    main()
