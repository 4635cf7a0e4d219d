"""Soak benchmark: four live sessions for --duration seconds under injected faults (see rt_physio/bench/soak.py).

Usage: python benchmarks/bench_soak.py --duration 3600 --json benchmarks/results/soak.json \
           --plot benchmarks/results/soak.png [--no-baseline] [--keep DIR]

The engine runs as `rt-physio run --config` in its own process; the LSL outlets, the fault injector, the
subscribers and the checks run here. A second, fault-free engine beside it is the baseline (--no-baseline
leaves it out). Durations under 20 minutes compress the fault schedule (a fault every duration/30 s, at least
8 s).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from rt_physio.bench.soak import SoakConfig, run_soak
from rt_physio.bench.soak_report import format_table, plot

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of soak (after start-up)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "soak.json")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--model", default="eegmat-fusion")
    parser.add_argument("--no-baseline", action="store_true", help="leave out the fault-free baseline engine")
    parser.add_argument("--keep", type=Path, default=None, help="keep recordings and logs in this folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = SoakConfig.for_duration(args.duration, control=not args.no_baseline, model=args.model)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run_soak(config, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="rtp-soak-") as tmp:
            result = run_soak(config, Path(tmp))
    if args.plot is not None:
        plot(result, args.plot)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(format_table(result))


if __name__ == "__main__":
    main()
