"""``rt-physio bench``: the benchmarks shipped with the package (imported only when run: they pull in torch)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TextIO

__all__ = ["register"]


def _write(result: dict[str, object], table: str, path: Path | None, out: TextIO) -> None:
    out.write(table + "\n")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        out.write(f"wrote {path}\n")


def _cmd_inference(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.bench.inference import format_table, run_inference_benchmark

    result = run_inference_benchmark(args.model, args.device, quick=args.quick, threads=args.threads)
    _write(result, format_table(result), args.json, out)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rt-physio bench <benchmark>``."""
    bench = sub.add_parser("bench", help="benchmarks, each against a baseline measured in the same run")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    inf = bench_sub.add_parser("inference", help="eager vs optimised inference, batching, sessions per machine")
    inf.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    inf.add_argument("--model", default="untrained-demo", metavar="NAME|PATH")
    inf.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    inf.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: cores - 1, at least 1)")
    inf.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    inf.set_defaults(handler=_cmd_inference)
