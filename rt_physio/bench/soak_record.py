"""The soak's checks on the recording and on the engine process's resources.

Recording: every prediction the subscriber received must be in the recording (same ``seq``, same ``t_end``).
Every raw sample of an LSL stream is identified by its counter channel (see :mod:`rt_physio.bench.soak_parts`):
sample ``k`` of the outlet's schedule. For each life of an outlet (between two of its restarts) the recorded
samples must be one run ``k = a … b`` without a hole or a repeat; what is missing before ``a`` (the engine had not
subscribed yet) and after ``b`` (in flight when the outlet died) is reported, and belongs to the outage.
BrainFlow's synthetic board has no counter: its recorded timestamps must have no gap.

Resources: the slope of the engine's RSS after the warm-up, by the Theil–Sen estimator (the median of the
slopes between every pair of samples: a few outliers, such as a transient burst of allocations during a fault,
do not move it, where a least-squares line would follow them), with its 95 % interval; threads and open files
after the warm-up (a leak per reconnection shows as a staircase); CPU; the deepest queue seen.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.bench.soak_parts import COUNTER_MOD, Incarnation, decode_counter
from rt_physio.bench.soak_watch import Pred
from rt_physio.io import Signal, read_sessions

__all__ = ["check_recording", "counter_runs", "resource_report"]

#: A timestamp step longer than this splits a recorded stream into separate runs (seconds).
_BREAK_S = 0.5


def counter_runs(stream: Signal, start_time: float) -> NDArray[np.int64]:
    """Return the schedule index ``k`` of every recorded sample of a counter stream (-1 where it cannot be placed).

    The recorded samples are cut into runs wherever the timestamps break or ``counter - position`` changes;
    each run takes its ``k`` from its first readable counter, the multiple of ``COUNTER_MOD`` from its timestamp
    (which the engine keeps on the outlet's schedule within milliseconds, clock jumps included).
    """
    n = stream.n_samples
    ks = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return ks
    codes = decode_counter(stream.data[:, 0])
    t = _stamps(stream)
    pos = np.arange(n)
    readable = codes >= 0
    residue = np.where(readable, (codes - pos) % COUNTER_MOD, -1)
    breaks: set[int] = set((np.flatnonzero(np.abs(np.diff(t)) > _BREAK_S) + 1).tolist())
    idx = np.flatnonzero(readable)
    change = idx[1:][residue[idx[1:]] != residue[idx[:-1]]]  # first readable sample of a new residue
    breaks |= set(change.tolist())
    edges: list[int] = [0, *sorted(breaks), n]
    for lo, hi in itertools.pairwise(edges):
        if hi <= lo:
            continue
        first = lo + int(np.argmax(readable[lo:hi])) if readable[lo:hi].any() else -1
        if first < 0:
            continue
        k_est = (t[first] - start_time) * stream.sfreq
        c = int(codes[first])
        near = round(k_est)
        k_first = near + (c - near + COUNTER_MOD // 2) % COUNTER_MOD - COUNTER_MOD // 2
        ks[lo:hi] = k_first + (pos[lo:hi] - first)
    return ks


def _stream_report(stream: Signal, start_time: float, lives: Sequence[Incarnation]) -> dict[str, Any]:
    ks = counter_runs(stream, start_time)
    placed = ks[ks >= 0]
    unique, counts = np.unique(placed, return_counts=True)
    report: dict[str, Any] = {"samples": stream.n_samples, "unplaced": int((ks < 0).sum()),
                              "repeated": int((counts > 1).sum()), "lives": []}
    covered = np.zeros(unique.shape[0], dtype=bool)
    holes = 0
    for life in lives:
        if life.k_first < 0:
            continue
        lo, hi = np.searchsorted(unique, [life.k_first, life.k_last + 1])
        got = unique[lo:hi]
        covered[lo:hi] = True
        entry: dict[str, Any] = {"source_id": life.source_id, "pushed": life.k_last - life.k_first + 1,
                                 "recorded": int(got.shape[0])}
        if got.shape[0]:
            a, b = int(got[0]), int(got[-1])
            entry["holes"] = (b - a + 1) - int(got.shape[0])
            entry["not_yet_subscribed"] = a - life.k_first  # pushed before the engine read this life
            entry["in_flight_at_end"] = life.k_last - b  # pushed after the last recorded sample
            holes += entry["holes"]
        report["lives"].append(entry)
    report["holes"] = holes
    report["phantom"] = int((~covered).sum())  # samples recorded that no outlet life pushed
    return report


def _stamps(stream: Signal) -> NDArray[np.float64]:
    if stream.timestamps is None:  # read_sessions always sets them
        raise ValueError(f"The {stream.modality.upper()} stream has no time stamps.")
    return stream.timestamps


def _board_report(stream: Signal) -> dict[str, Any]:
    t = _stamps(stream)
    steps = np.diff(t)
    long = steps > max(0.1, 10.0 / stream.sfreq)
    span = float(t[-1] - t[0]) if t.shape[0] > 1 else 0.0
    return {"samples": stream.n_samples, "gaps": int(long.sum()), "longest_gap_s": float(steps.max(initial=0.0)),
            "backwards": int((steps < 0).sum()), "rate_hz": stream.n_samples / span if span > 0 else float("nan")}


def check_recording(path: Path, preds: Sequence[Pred], outlets: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    """Compare the recording at ``path`` with the predictions received and the samples each outlet pushed.

    ``outlets`` maps (session, modality) to a :class:`~rt_physio.bench.soak_parts.SoakOutlet`; the other
    streams are checked for timestamp gaps only.
    """
    sessions = read_sessions(path)
    complete = all(rec.complete for rec in sessions.values()) if sessions else False
    out: dict[str, Any] = {"complete": complete, "sessions": {}}
    for session, rec in sessions.items():
        recorded = {int(m["seq"]): float(m["t_end"]) for m in rec.predictions}
        mine = [p for p in preds if p.session == session]
        missing = [p.seq for p in mine if p.seq not in recorded]
        moved = [p.seq for p in mine if p.seq in recorded and abs(recorded[p.seq] - p.t_end) > 1e-6]
        entry: dict[str, Any] = {"predictions_recorded": len(recorded), "received_not_recorded": len(missing),
                                 "t_end_mismatch": len(moved), "streams": {}}
        for modality, stream in rec.signals.items():
            outlet = outlets.get((session, modality))
            if outlet is None:
                entry["streams"][modality] = _board_report(stream)
            else:
                entry["streams"][modality] = _stream_report(stream, outlet.start_time, outlet.log.incarnations)
        out["sessions"][session] = entry
    return out


def _slope(points: Sequence[tuple[float, float]], name: str) -> dict[str, Any]:
    """Theil–Sen slope of (hours, MB) points with its 95 % interval and range, as ``<name>_...`` keys ({} if < 3)."""
    from scipy.stats import theilslopes

    if len(points) < 3:
        return {}
    hours, mb = np.array([h for h, _ in points]), np.array([v for _, v in points])
    slope, _, low, high = theilslopes(mb, hours, alpha=0.95)
    return {f"{name}_slope_mb_per_h": round(float(slope), 3),
            f"{name}_slope_ci95": [round(float(low), 3), round(float(high), 3)],
            f"{name}_mb_after_warmup": [round(float(mb.min()), 1), round(float(mb.max()), 1)]}


def _floor_slope(points: Sequence[tuple[float, float]], name: str, block_h: float = 5.0 / 60.0) -> dict[str, Any]:
    """Theil–Sen slope of the lowest value in each ``block_h`` block, as ``<name>_floor_...`` keys ({} if < 3).

    Memory swings by many MB within minutes (batches and segments come and go), which makes successive samples
    far from independent; the floor under those swings is what a leak lifts.
    """
    from scipy.stats import theilslopes

    if not points:
        return {}
    start = points[0][0]
    floors: dict[int, float] = {}
    for hours, mb in points:
        block = int((hours - start) // block_h)
        floors[block] = min(mb, floors.get(block, mb))
    if len(floors) < 3:
        return {}
    blocks = sorted(floors)
    slope, _, low, high = theilslopes([floors[b] for b in blocks], [start + (b + 0.5) * block_h for b in blocks])
    return {f"{name}_floor_slope_mb_per_h": round(float(slope), 3),
            f"{name}_floor_slope_ci95": [round(float(low), 3), round(float(high), 3)]}


def resource_report(samples: Sequence[Mapping[str, Any]], warmup_s: float) -> dict[str, Any]:
    """Memory slopes (Theil–Sen, MB/h) after ``warmup_s``, threads, open files, CPU, deepest queues.

    Slopes: ``rss`` (resident; also ``rss_floor``, the slope of each 5 minutes' lowest RSS), its parts ``rss_anon``
    (written memory, where a leak shows) and ``rss_file`` (mapped files' pages), and ``heap_in_use`` (glibc's
    in-use heap, from the status ``memory``).
    """
    if not samples:
        return {"samples": 0}
    t0 = float(samples[0]["t"])
    after = [s for s in samples if s["t"] - t0 >= warmup_s]
    out: dict[str, Any] = {"samples": len(samples), "warmup_s": warmup_s, "samples_after_warmup": len(after),
                           "rss_mb_first": round(float(samples[0]["rss_mb"]), 1),
                           "rss_mb_last": round(float(samples[-1]["rss_mb"]), 1),
                           "rss_mb_max": round(max(float(s["rss_mb"]) for s in samples), 1)}
    if len(after) >= 3:
        hours = [(s["t"] - t0) / 3600.0 for s in after]
        for key in ("rss", "rss_anon", "rss_file"):
            points = [(h, float(s[f"{key}_mb"])) for h, s in zip(hours, after, strict=True) if f"{key}_mb" in s]
            out.update(_slope(points, key))
            if key == "rss":
                out.update(_floor_slope(points, key))
        # the engine's own view (status `memory`): a leak rises here, fragmentation does not
        out.update(_slope([(h, float(s["memory"]["heap_in_use_mb"])) for h, s in zip(hours, after, strict=True)
                           if "heap_in_use_mb" in s.get("memory", {})], "heap_in_use"))
        memory = after[-1].get("memory", {})
        if "arenas" in memory:
            out["heap_arenas"] = memory["arenas"]
        if "trims" in memory:
            out["heap_trims"] = memory["trims"]
            out["heap_trimmed_mb"] = memory.get("trimmed_mb")
        for key in ("threads", "fds"):
            vals = [int(s[key]) for s in after]
            out[f"{key}_after_warmup"] = [min(vals), max(vals)]
            out[f"{key}_first_last"] = [int(after[0][key]), int(after[-1][key])]
        span = float(after[-1]["t"] - after[0]["t"])
        out["cpu_percent"] = round(100.0 * (after[-1]["cpu_s"] - after[0]["cpu_s"]) / span, 1) if span > 0 else None
    deepest: dict[str, float] = {}
    for s in samples:
        for key, value in s.get("queues", {}).items():
            if isinstance(value, int | float) and not math.isnan(value):
                deepest[key] = max(deepest.get(key, 0), value)
    out["queues_max"] = deepest
    return out
