"""Inference benchmark: eager vs traced (CPU) / CUDA graphs (GPU), batching throughput, sessions per machine.

Usage: python benchmarks/bench_inference.py [--device cpu|cuda] [--model NAME] [--threads N] [--quick]
Writes benchmarks/results/inference-<device>.json and prints a table (same as `rt-physio bench inference`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from rt_physio.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    device = args[args.index("--device") + 1] if "--device" in args else "cpu"
    out = Path(__file__).resolve().parent / "results" / f"inference-{device}.json"
    sys.exit(main(["bench", "inference", "--json", str(out), *args]))
