"""The soak's headline figures, its table and its figure."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["format_table", "plot", "summary"]

_KIND_ORDER = ("outlet_kill", "outlet_new_id", "broker_restart", "nan_burst", "flat_line", "clock_jump")


def _total(per_session: dict[str, dict[str, Any]], key: str) -> int:
    total = 0
    for entry in per_session.values():
        value = entry.get(key, 0)
        total += sum(value.values()) if isinstance(value, dict) else int(value or 0)
    return total


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values)
    return {"median": round(float(np.median(arr)), 2), "max": round(float(arr.max()), 2), "n": len(values)}


def _rig_summary(rig: dict[str, Any]) -> dict[str, Any]:
    zmq, mqtt, rec, res = rig["zmq"], rig["mqtt"], rig["recording"], rig["resources"]
    streams = [s for entry in rec["sessions"].values() for s in entry["streams"].values()]
    out: dict[str, Any] = {
        "rss_slope_mb_per_h": res.get("rss_slope_mb_per_h"), "rss_slope_ci95": res.get("rss_slope_ci95"),
        "rss_mb_after_warmup": res.get("rss_mb_after_warmup"), "threads_after_warmup": res.get("threads_after_warmup"),
        **{f"{part}_{k}": res.get(f"{part}_{k}") for part in ("rss_anon", "rss_file", "heap_in_use")
           for k in ("slope_mb_per_h", "slope_ci95", "mb_after_warmup")},
        "rss_floor_slope_mb_per_h": res.get("rss_floor_slope_mb_per_h"),
        "rss_floor_slope_ci95": res.get("rss_floor_slope_ci95"),
        "heap_trims": res.get("heap_trims"), "heap_trimmed_mb": res.get("heap_trimmed_mb"),
        "heap_arenas": res.get("heap_arenas"),
        "fds_after_warmup": res.get("fds_after_warmup"), "cpu_percent": res.get("cpu_percent"),
        "queues_max": res.get("queues_max"),
        "predictions_received": _total(zmq, "received"),
        "lost_outside_outages": _total(zmq, "lost_outside_outages"),
        "lost_inside_outages": _total(zmq, "lost_inside_outages"),
        "out_of_order": _total(zmq, "out_of_order"), "duplicates": _total(zmq, "duplicates"),
        "windows_not_cut_outside_outages": _total(zmq, "windows_not_cut_outside_outages"),
        "windows_not_cut_inside_outages": _total(zmq, "windows_not_cut_inside_outages"),
        "missing_modality_outside_outages": _total(zmq, "missing_modality_outside_outages"),
        "missing_modality_inside_outages": _total(zmq, "missing_modality_inside_outages"),
        "nonfinite_outputs": _total(zmq, "nonfinite_outputs"),
        "mqtt_received": _total(mqtt, "received"), "mqtt_lost_outside_outages": _total(mqtt, "lost_outside_outages"),
        "mqtt_lost_inside_outages": _total(mqtt, "lost_inside_outages"),
        "mqtt_not_delivered": _total(mqtt, "zmq_not_on_mqtt"), "mqtt_duplicates": _total(mqtt, "duplicates"),
        "stalled_subscriber_missed": _total(zmq, "stalled_subscriber_missed"),
        "received_not_recorded": sum(e["received_not_recorded"] for e in rec["sessions"].values()),
        "recorded_t_end_mismatch": sum(e["t_end_mismatch"] for e in rec["sessions"].values()),
        "raw_holes": sum(s.get("holes", 0) for s in streams),
        "raw_repeated": sum(s.get("repeated", 0) for s in streams),
        "raw_phantom": sum(s.get("phantom", 0) for s in streams),
        "board_gaps": sum(s.get("gaps", 0) for s in streams if "lives" not in s),
        "recording_complete": rec["complete"],
        "status_heartbeat_max_s": rig["status_heartbeat_max_s"],
        "engine_returncode": rig["engine"]["returncode"], "engine_tracebacks": rig["engine"]["tracebacks"],
        "injector_errors": len(rig["injector_errors"]),
    }
    drops: Counter[str] = Counter()
    for d in rig["drops_at_end"].values():
        drops.update(d)
    out["drops_at_end"] = dict(drops)
    faults: dict[str, dict[str, Any]] = {}
    for kind in _KIND_ORDER:
        mine = [f for f in rig["faults"] if f["kind"] == kind]
        if not mine:
            continue
        typical = Counter(", ".join(f["transitions"]) for f in mine).most_common(1)[0][0]
        faults[kind] = {
            "n": len(mine), "recovered": sum(f["recovered"] for f in mine),
            "reported": sum(f["reported"] for f in mine),
            "first_good_s": _spread([f["first_good_s"] for f in mine if f["first_good_s"] is not None]),
            "status_online_s": _spread([f["status_online_s"] for f in mine if f["status_online_s"] is not None]),
            "stream_back_s": _spread([f["stream_back_s"] for f in mine if f["stream_back_s"] is not None]),
            "mqtt_status_s": _spread([f["mqtt_status_s"] for f in mine if f["mqtt_status_s"] is not None]),
            "left_online": sum(f["left_online"] for f in mine), "typical_transitions": typical,
            "evidence": Counter(f["evidence"] for f in mine).most_common(1)[0][0],
        }
    out["faults"] = faults
    return out


def summary(results: dict[str, dict[str, Any]], config: Any) -> dict[str, Any]:
    """Headline figures per rig, and the faulted rig's RSS slope minus the baseline's."""
    out: dict[str, Any] = {name: _rig_summary(rig) for name, rig in results.items()}
    a = out.get("faulted", {}).get("rss_slope_mb_per_h")
    b = out.get("baseline", {}).get("rss_slope_mb_per_h")
    if a is not None and b is not None:
        out["rss_slope_faulted_minus_baseline_mb_per_h"] = round(a - b, 3)
    out["duration_s"] = config.duration
    return out


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
    if isinstance(x, list | tuple) and len(x) == 2:
        return f"{_fmt(x[0])}–{_fmt(x[1])}"
    if isinstance(x, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in x.items()) or "–"
    return str(x)


def _pair(spread: dict[str, float] | None, none: str) -> str:
    return none if spread is None else f"{spread['median']:.1f} / {spread['max']:.1f}"


def format_table(result: dict[str, Any]) -> str:
    """Markdown tables: the headline figures per rig, then one row per fault kind."""
    s = result["summary"]
    names = [n for n in ("faulted", "baseline") if n in s]
    rows = [
        ("RSS slope after warm-up, Theil–Sen (MB/h) [95 % CI]", "rss_slope_mb_per_h", "< 1"),
        ("RSS after warm-up (MB, min–max)", "rss_mb_after_warmup", ""),
        ("RSS floor slope: each 5 min's lowest (MB/h) [95 % CI]", "rss_floor_slope_mb_per_h", "< 1"),
        ("RSS written (anon) slope (MB/h) [95 % CI]", "rss_anon_slope_mb_per_h", "< 1"),
        ("RSS of mapped files slope (MB/h) [95 % CI]", "rss_file_slope_mb_per_h", ""),
        ("RSS written / mapped files after warm-up (MB)", None, ""),
        ("heap in use (glibc) slope after warm-up (MB/h) [95 % CI]", "heap_in_use_slope_mb_per_h", "< 1"),
        ("heap in use after warm-up (MB, min–max)", "heap_in_use_mb_after_warmup", ""),
        ("heap trims; MB they gave back; arenas", None, ""),
        ("threads after warm-up (min–max)", "threads_after_warmup", "flat"),
        ("open files after warm-up (min–max)", "fds_after_warmup", "flat"),
        ("engine CPU (% of one core)", "cpu_percent", ""),
        ("deepest queues (status `queues`)", "queues_max", ""),
        ("predictions received (ZeroMQ)", "predictions_received", ""),
        ("predictions lost outside outages (ZeroMQ)", "lost_outside_outages", "0"),
        ("predictions lost inside outages (ZeroMQ)", "lost_inside_outages", "0"),
        ("out of order / duplicates (ZeroMQ)", None, "0"),
        ("windows not cut outside / inside outages", None, "0"),
        ("predictions missing a modality outside outages", "missing_modality_outside_outages", "0"),
        ("predictions missing the faulted modality inside outages", "missing_modality_inside_outages", ""),
        ("MQTT: lost outside / inside outages, not delivered", None, "0"),
        ("recording: predictions received but not recorded", "received_not_recorded", "0"),
        ("recording: raw samples missing / repeated / phantom inside a stream's life", None, "0"),
        ("recording: synthetic board timestamp gaps", "board_gaps", "0"),
        ("stalled subscriber: predictions it missed (its own loss)", "stalled_subscriber_missed", ""),
        ("drops counted by the engine at the end (status `drops`)", "drops_at_end", ""),
        ("longest time between two status messages (s)", "status_heartbeat_max_s", "≤ heartbeat + ε"),
        ("engine exit status / tracebacks", None, "0 / 0"),
    ]
    lines = [f"soak: {s['duration_s']:.0f} s, model {result['config']['model']}, "
             f"{result['config']['lsl_sessions']} LSL sessions + BrainFlow synthetic, hop {result['config']['hop']} s",
             "", "| figure | " + " | ".join(names) + " | goal |", "|---|" + "---|" * len(names) + "---|"]
    for label, key, goal in rows:
        cells = []
        for n in names:
            r = s[n]
            if key is not None and key.endswith("_slope_mb_per_h"):
                ci = key.replace("_mb_per_h", "_ci95")
                cells.append(f"{_fmt(r.get(key))} [{_fmt(r.get(ci))}]")
            elif label.startswith("heap trims"):
                cells.append(f"{_fmt(r.get('heap_trims'))}; {_fmt(r.get('heap_trimmed_mb'))}; "
                             f"{_fmt(r.get('heap_arenas'))}")
            elif label.startswith("RSS written /"):
                cells.append(f"{_fmt(r.get('rss_anon_mb_after_warmup'))} / {_fmt(r.get('rss_file_mb_after_warmup'))}")
            elif key is not None:
                cells.append(_fmt(r.get(key)))
            elif label.startswith("out of order"):
                cells.append(f"{r['out_of_order']} / {r['duplicates']}")
            elif label.startswith("windows not cut"):
                cells.append(f"{r['windows_not_cut_outside_outages']} / {r['windows_not_cut_inside_outages']}")
            elif label.startswith("MQTT"):
                cells.append(f"{r['mqtt_lost_outside_outages']} / {r['mqtt_lost_inside_outages']}, "
                             f"{r['mqtt_not_delivered']}")
            elif label.startswith("recording: raw"):
                cells.append(f"{r['raw_holes']} / {r['raw_repeated']} / {r['raw_phantom']}")
            else:
                cells.append(f"{r['engine_returncode']} / {r['engine_tracebacks']}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {goal} |")
    if "rss_slope_faulted_minus_baseline_mb_per_h" in s:
        lines += ["", f"RSS slope, faulted minus baseline: {s['rss_slope_faulted_minus_baseline_mb_per_h']:+.3f} MB/h"]
    faults = s.get("faulted", {}).get("faults", {})
    if faults:
        lines += ["", "| fault | n | recovered | reported | to first good prediction, s (median / max) | "
                  "to status online, s | stream back, s | status transitions seen (typical) |",
                  "|---|---|---|---|---|---|---|---|"]
        for kind, f in faults.items():
            good = f["first_good_s"]
            online = f["status_online_s"]
            back = f["stream_back_s"] or f["mqtt_status_s"]
            lines.append(f"| {kind} | {f['n']} | {f['recovered']} | {f['reported']} | {_pair(good, '–')} | "
                         f"{_pair(online, 'stayed online')} | {_pair(back, '–')} | "
                         f"{f['typical_transitions'] or f['evidence']} |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """RSS, threads and open files over time (both rigs, faults marked) and recovery times per fault kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rigs = result["rigs"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    colours = {"faulted": "tab:red", "baseline": "tab:blue"}
    kind_colours = dict(zip(_KIND_ORDER, ("tab:orange", "tab:brown", "tab:purple", "tab:green", "tab:olive",
                                          "tab:cyan"), strict=True))
    for name, rig in rigs.items():
        samples = rig["samples"]
        if not samples:
            continue
        t0 = samples[0]["t"]
        t = np.array([(x["t"] - t0) / 60.0 for x in samples])
        axes[0, 0].plot(t, [x["rss_mb"] for x in samples], color=colours.get(name), label=f"{name} RSS")
        if all("rss_anon_mb" in x for x in samples):
            axes[0, 0].plot(t, [x["rss_anon_mb"] for x in samples], color=colours.get(name), ls="--",
                            label=f"{name} RSS written (anon)")
        slope = result["summary"][name].get("rss_slope_mb_per_h")
        axes[0, 1].plot(t, [x["threads"] for x in samples], color=colours.get(name), label=f"{name} threads")
        axes[0, 1].plot(t, [x["fds"] for x in samples], color=colours.get(name), ls="--", label=f"{name} open files")
        if slope is not None:
            anon = result["summary"][name].get("rss_anon_slope_mb_per_h")
            written = "" if anon is None else f", written {anon:+.2f}"
            axes[0, 0].plot([], [], " ", label=f"{name}: RSS {slope:+.2f}{written} MB/h after warm-up")
    faulted = rigs.get("faulted")
    if faulted is not None and faulted["samples"]:
        t0 = faulted["samples"][0]["t"]
        for f in faulted["faults"]:
            if f["start"] is not None and np.isfinite(f["start"]):
                for ax in (axes[0, 0], axes[0, 1]):
                    ax.axvline((f["start"] - t0) / 60.0, color=kind_colours[f["kind"]], alpha=0.25, lw=0.8)
        for i, kind in enumerate(_KIND_ORDER):
            vals = [f["first_good_s"] for f in faulted["faults"] if f["kind"] == kind and f["first_good_s"] is not None]
            axes[1, 0].scatter(np.full(len(vals), i) + np.random.default_rng(i).uniform(-0.15, 0.15, len(vals)), vals,
                               color=kind_colours[kind], s=14)
            online = [f["status_online_s"] for f in faulted["faults"]
                      if f["kind"] == kind and f["status_online_s"] is not None]
            axes[1, 1].scatter(np.full(len(online), i), online, color=kind_colours[kind], s=14)
    for ax, title in ((axes[1, 0], "fault end → first good prediction (s)"),
                      (axes[1, 1], "fault end → status online again (s)")):
        ax.set_xticks(range(len(_KIND_ORDER)), [k.replace("_", "\n") for k in _KIND_ORDER], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title("engine RSS and its written part (MB); fault starts marked", fontsize=10)
    axes[0, 1].set_title("engine threads and open files", fontsize=10)
    for ax in (axes[0, 0], axes[0, 1]):
        ax.set_xlabel("minutes")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"rt_physio soak, {result['summary']['duration_s'] / 60:.0f} min", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
