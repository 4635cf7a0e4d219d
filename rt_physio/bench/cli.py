"""``rt-physio bench``: the benchmarks shipped with the package (imported only when run: they pull in torch)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TextIO

from rt_physio.checks import int_arg, number_arg

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


def _cmd_latency(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.bench.latency import format_table, plot, run_latency_benchmark

    result = run_latency_benchmark(
        sessions=args.sessions,
        duration=args.duration,
        chunk=args.chunk,
        hop=args.hop,
        window=args.window,
        model=args.model,
        eeg=args.eeg,
        ecg=args.ecg,
        baselines=not args.no_baselines,
        sweep=args.sweep,
    )
    if args.plot is not None:
        plot(result, args.plot)
        out.write(f"wrote {args.plot}\n")
    result.pop("_raw")
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
    inf.add_argument(
        "--threads", type=int_arg(), metavar="N", help="torch CPU threads (default: cores - 1, at least 1)"
    )
    inf.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    inf.set_defaults(handler=_cmd_inference)

    lat = bench_sub.add_parser(
        "latency", help="end-to-end latency per stage, against a fixed-tick scheduler, bare LSL and bare ZeroMQ hops"
    )
    lat.add_argument("--eeg", metavar="SPEC", help="measure a real EEG stream instead of the synthetic harness")
    lat.add_argument("--ecg", metavar="SPEC", help="measure a real ECG stream instead of the synthetic harness")
    lat.add_argument(
        "--sessions", type=int_arg(), default=1, metavar="N", help="sessions in the harness (default 1)"
    )
    lat.add_argument("--duration", type=number_arg(), default=30.0, metavar="S",
                     help="seconds scored (default 30)")
    lat.add_argument("--chunk", type=int_arg(), default=8, metavar="N", help="samples per pushed chunk (default 8)")
    lat.add_argument(
        "--hop", type=number_arg(), default=1.0, metavar="S", help="seconds between predictions (default 1)"
    )
    lat.add_argument("--window", type=number_arg(), default=5.0, metavar="S", help="window length (default 5)")
    lat.add_argument("--model", default="eegmat-fusion", metavar="NAME|PATH")
    lat.add_argument("--no-baselines", action="store_true", help="skip the baselines")
    lat.add_argument("--sweep", action="store_true", help="also sweep chunk size, hop and number of sessions")
    lat.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    lat.add_argument("--plot", type=Path, metavar="OUT.png", help="write a latency histogram")
    lat.set_defaults(handler=_cmd_latency)
