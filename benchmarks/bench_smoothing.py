"""Cost of output smoothing on the publish step, against the same step without it, in the same process.

What the engine does per prediction after inference (``Engine._on_result``): build the message and encode it as
JSON. With ``outputs.smoothing_s`` it first updates the session's :class:`~rt_physio.nn.smoothing.OutputSmoother`
(10 s span, 1-s hop: 10 windows in the mean) and carries the window's own outputs in the message. Baseline: the
same message without smoothing. Rounds alternate (noise of a shared VM hits both); each figure is the median over
rounds of the mean time per prediction.

Run: ``.venv/bin/python benchmarks/bench_smoothing.py [--rounds N] [--json PATH]``; prints a table and writes
``benchmarks/results/smoothing.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from rt_physio.nn.smoothing import OutputSmoother
from rt_physio.publish.schema import Prediction, encode

HERE = Path(__file__).resolve().parent
log = logging.getLogger("bench_smoothing")
N_PER_ROUND = 2000


def _publish(outputs: dict[str, float], seq: int, smoothing: dict[str, Any] | None) -> bytes:
    pred = Prediction("s1", seq, seq - 5.0, float(seq), time.time(), outputs, "eegmat-fusion", "0" * 64, True,
                      ["eeg", "ecg"], {"eeg": 1.0, "ecg": 1.0}, smoothing=smoothing)
    return encode(pred.to_message(), "json")


def _round(smooth: bool, probs: np.ndarray) -> float:
    smoother = OutputSmoother(10.0, "sigmoid")
    t0 = time.perf_counter()
    for i in range(N_PER_ROUND):
        own = {"mental_workload": float(probs[i])}
        if smooth:
            mean = smoother.update(float(i), [own["mental_workload"]])
            _publish({"mental_workload": float(mean[0])}, i,
                     {"seconds": 10.0, "windows": len(smoother), "window_outputs": own})
        else:
            _publish(own, i, None)
    return (time.perf_counter() - t0) / N_PER_ROUND


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", type=Path, default=HERE / "results" / "smoothing.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    probs = np.random.default_rng(0).uniform(0.01, 0.99, N_PER_ROUND)
    times: dict[str, list[float]] = {"plain": [], "smoothed": []}
    for _ in range(args.rounds):
        times["plain"].append(_round(False, probs))
        times["smoothed"].append(_round(True, probs))
    us = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    result = {"benchmark": "smoothing", "machine": platform.processor() or platform.machine(),
              "rounds": args.rounds, "predictions_per_round": N_PER_ROUND,
              "publish_us": {"plain (baseline)": round(us["plain"], 2), "smoothed 10 s": round(us["smoothed"], 2)},
              "added_us": round(us["smoothed"] - us["plain"], 2), "ratio": round(us["smoothed"] / us["plain"], 3)}
    log.info("| publish step per prediction | µs |\n|---|---|\n| message + JSON (baseline) | %.1f |\n"
             "| smoothing (10 s) + message + JSON | %.1f |\n| ratio | %.2f× (+%.1f µs) |",
             us["plain"], us["smoothed"], result["ratio"], result["added_us"])
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
