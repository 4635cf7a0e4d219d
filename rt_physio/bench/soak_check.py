"""The soak's checks on what the subscribers received: lost predictions, missing modalities, and each fault's recovery.

All times are on the engine clock (``pylsl.local_clock``, shared by every process on the machine).

Predictions (per session, from the subscriber that reads everything at once): ``seq`` counts the windows a
session cut, so a missing ``seq`` is a prediction lost between the window and the subscriber, wherever it
happened. ``t_end`` sits on the grid ``t_0 + k * hop``: a missing grid point is a window that was never cut.
A prediction without one of its session's modalities is *explained* when its window overlaps an outage of that
modality's stream (from the fault's start, less ``missing_after`` and a hop, to the moment the status showed the
stream streaming again); any other is a window that lost a modality it had.

Faults: for each one, the status transitions of its session(s) from just before it started until its recovery,
the time from its end to the status being ``online`` again (when it left ``online``), and to the first *good*
prediction: all modalities present, outputs finite, and the faulted modality's quality back to at least 90 % of
its median over the 30 s before the fault. For a broker restart, recovery is the first MQTT prediction and the
first MQTT status after the broker is back. Each fault is *reported* when the status (or, for a flat line, which
no status field describes, the predictions' quality) shows it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rt_physio.bench.soak_faults import Fault
from rt_physio.bench.soak_watch import Pred, Status

__all__ = ["FaultReport", "check_predictions", "fault_reports", "outage_spans"]

#: How long after a fault's end its recovery is looked for, seconds.
HORIZON_S = 120.0
#: Counters of a modality's status entry whose increments are reported as transitions.
_COUNTERS = ("reconnects", "clock_jumps", "recovered", "nonfinite", "gaps")


@dataclass(slots=True)
class FaultReport:
    """What one fault did and how the engine came back from it (seconds from the fault's end)."""

    fault: Fault
    transitions: list[str]
    left_online: bool
    status_online_s: float | None  # back to online (None: it never left, or never came back: see recovered)
    stream_back_s: float | None  # the faulted stream streaming again (outlet faults)
    first_good_s: float | None  # first good prediction (MQTT for a broker restart)
    mqtt_status_s: float | None  # first MQTT status after the broker is back (broker restart)
    recovered: bool
    reported: bool
    evidence: str

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        f = self.fault
        return {
            "kind": f.kind, "session": f.session, "modality": f.modality, "at_s": round(f.at, 1),
            "duration_s": f.duration, "note": f.note, "start": f.start, "end": f.end,
            "transitions": self.transitions, "left_online": self.left_online,
            "status_online_s": _r(self.status_online_s), "stream_back_s": _r(self.stream_back_s),
            "first_good_s": _r(self.first_good_s), "mqtt_status_s": _r(self.mqtt_status_s),
            "recovered": self.recovered, "reported": self.reported, "evidence": self.evidence,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _session_statuses(statuses: Sequence[Status], session: str) -> list[Status]:
    return [s for s in statuses if s.session == session]


def _diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Say what changed from one status message to the next."""
    out = []
    if before.get("state") != after.get("state"):
        out.append(f"{before.get('state')}→{after.get('state')}")
    mods_b, mods_a = before.get("modalities", {}), after.get("modalities", {})
    for m, a in mods_a.items():
        b = mods_b.get(m, {})
        if b.get("state") != a.get("state"):
            out.append(f"{m} {b.get('state')}→{a.get('state')}")
        for key in _COUNTERS:
            d = int(a.get(key, 0)) - int(b.get(key, 0))
            if d:
                out.append(f"{m}.{key} {d:+d}")
    return out


def _transitions(statuses: list[Status], t0: float, t1: float) -> tuple[list[str], list[Status]]:
    """List the changes from the last status before ``t0`` through every status received up to ``t1``."""
    before = [s for s in statuses if s.received < t0]
    during = [s for s in statuses if t0 <= s.received <= t1]
    if not before or not during:
        return [], during
    out: list[str] = []
    prev = before[-1].message
    for s in during:
        out += _diff(prev, s.message)
        prev = s.message
    return out, during


def _baseline_quality(preds: Sequence[Pred], modality: str, start: float) -> float:
    q = [p.quality[modality] for p in preds if start - 30.0 <= p.t_end <= start and modality in p.quality]
    return float(np.median(q)) if q else 0.0


def _good(p: Pred, modalities: Sequence[str], modality: str | None, baseline: float) -> bool:
    if not p.finite or any(m not in p.modalities for m in modalities):
        return False
    return modality is None or p.quality.get(modality, 0.0) >= 0.9 * baseline


def _fault_report(fault: Fault, preds: Sequence[Pred], statuses: Sequence[Status], mqtt_preds: Sequence[Pred],
                  mqtt_statuses: Sequence[Status], modalities: dict[str, tuple[str, ...]], until: float
                  ) -> FaultReport:
    end = fault.end
    horizon = min(end + HORIZON_S, until)  # what happens later belongs to the next fault (or to the stop)
    if math.isnan(fault.start) or math.isnan(end):
        return FaultReport(fault, [], False, None, None, None, None, False, False, "not injected")
    if fault.kind == "broker_restart":
        first_pred = next((p.received for p in mqtt_preds if end < p.received <= horizon), None)
        first_status = next((s.received for s in mqtt_statuses if end < s.received <= horizon), None)
        reported = first_status is not None
        return FaultReport(
            fault, [], False, None, None, None if first_pred is None else first_pred - end,
            None if first_status is None else first_status - end, recovered=first_pred is not None and reported,
            reported=reported, evidence="each session's status re-sent on MQTT after the restart" if reported else
            "no MQTT status after the restart")
    assert fault.session is not None and fault.modality is not None
    session, m = fault.session, fault.modality
    mine = _session_statuses(statuses, session)
    transitions, during = _transitions(mine, fault.start - 0.5, horizon)
    left = [s for s in during if s.message.get("state") != "online"]
    online = next((s.received for s in during if s.received >= end and s.message.get("state") == "online"
                   and (not left or s.received > left[0].received)), None)
    back = next((s.received for s in during if s.received >= end
                 and s.message["modalities"][m]["state"] == "streaming"
                 and (fault.kind not in ("outlet_kill", "outlet_new_id") or s.received > fault.start)), None)
    session_preds = [p for p in preds if p.session == session]
    baseline = _baseline_quality(session_preds, m, fault.start)
    good = next((p.received for p in session_preds if end < p.received <= horizon
                 and _good(p, modalities[session], m, baseline)), None)
    first_good_s = None if good is None else good - end
    status_online_s = None if not left or online is None else online - end
    reported, evidence = _evidence(fault, transitions, session_preds, baseline)
    recovered = good is not None and (not left or online is not None)
    stream_back_s = None if back is None or fault.kind not in ("outlet_kill", "outlet_new_id") else back - end
    return FaultReport(fault, transitions, bool(left), status_online_s, stream_back_s, first_good_s, None,
                       recovered, reported, evidence)


def _evidence(fault: Fault, transitions: list[str], preds: Sequence[Pred], baseline: float) -> tuple[bool, str]:
    m = fault.modality
    seen = set(transitions)
    if fault.kind in ("outlet_kill", "outlet_new_id"):
        need = [f"{m} streaming→stalled", f"{m} stalled→streaming", f"{m}.recovered +1"]
        if fault.kind == "outlet_new_id":
            reconnected = any(t.startswith(f"{m}.reconnects +") for t in transitions)
            ok = all(n in seen for n in need) and reconnected
            return ok, ", ".join([*need, f"{m}.reconnects +n"]) + (" seen" if ok else " NOT all seen")
        ok = all(n in seen for n in need)
        return ok, ", ".join(need) + (" seen" if ok else " NOT all seen")
    if fault.kind == "nan_burst":
        ok = any(t.startswith(f"{m}.nonfinite +") for t in transitions)
        return ok, f"{m}.nonfinite counted" if ok else f"{m}.nonfinite NOT counted"
    if fault.kind == "clock_jump":
        ok = f"{m}.clock_jumps +1" in seen
        return ok, f"{m}.clock_jumps +1" if ok else f"{m}.clock_jumps NOT counted"
    # flat line: no status field describes signal quality; the predictions' quality does
    q = [p.quality.get(m or "", 1.0) for p in preds if p.t_start < fault.end and p.t_end > fault.start]
    worst = min(q) if q else float("nan")
    ok = bool(q) and worst < 0.5 * baseline
    return ok, f"prediction quality {m} {baseline:.2f} → {worst:.2f} (status: streaming, as it is)"


def fault_reports(faults: Sequence[Fault], preds: Sequence[Pred], statuses: Sequence[Status],
                  mqtt_preds: Sequence[Pred], mqtt_statuses: Sequence[Status],
                  modalities: dict[str, tuple[str, ...]], *, until: float) -> list[FaultReport]:
    """Return one :class:`FaultReport` per fault (``modalities``: each session's configured modalities).

    A fault's recovery is looked for until the next fault on the same session (the next broker restart, for a
    broker restart), :data:`HORIZON_S` after its end, or ``until`` (the soak's stop), whichever comes first.
    """
    preds = sorted(preds, key=lambda p: p.received)
    statuses = sorted(statuses, key=lambda s: s.received)
    mqtt_preds = sorted(mqtt_preds, key=lambda p: p.received)
    mqtt_statuses = sorted(mqtt_statuses, key=lambda s: s.received)
    reports = []
    for i, f in enumerate(faults):
        later = [g.start for g in faults[i + 1:] if g.session == f.session and not math.isnan(g.start)]
        limit = min([until, *later])
        reports.append(_fault_report(f, preds, statuses, mqtt_preds, mqtt_statuses, modalities, limit))
    return reports


def outage_spans(reports: Sequence[FaultReport], *, missing_after: float, hop: float
                 ) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Per (session, modality): the spans in which its stream was out (outlet faults), for explaining gaps."""
    spans: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in reports:
        f = r.fault
        if f.kind not in ("outlet_kill", "outlet_new_id") or f.session is None or f.modality is None:
            continue
        back = f.end + (r.stream_back_s if r.stream_back_s is not None else HORIZON_S)
        spans.setdefault((f.session, f.modality), []).append((f.start - missing_after - hop, back))
    return spans


def _inside(t0: float, t1: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(t0 < b and t1 > a for a, b in spans)


def check_predictions(preds: Sequence[Pred], modalities: dict[str, tuple[str, ...]], *, hop: float,
                      outages: dict[tuple[str, str], list[tuple[float, float]]],
                      fault_spans: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, Any]]:
    """Per session: predictions received, lost (missing ``seq``), out of order, windows never cut, missing modalities.

    ``fault_spans[session]`` are the spans (engine clock) of every fault that touched the session: a loss there
    counts as *inside* an outage, anywhere else as *outside*.
    """
    out: dict[str, dict[str, Any]] = {}
    for session, mods in modalities.items():
        mine = [p for p in preds if p.session == session]
        seqs = [p.seq for p in mine]
        spans = fault_spans.get(session, [])
        report: dict[str, Any] = {"received": len(mine), "out_of_order": sum(
            b <= a for a, b in itertools.pairwise(seqs))}
        by_seq = {p.seq: p for p in mine}
        report["duplicates"] = len(mine) - len(by_seq)
        lost_in, lost_out = 0, 0
        ordered = sorted(by_seq.values(), key=lambda p: p.seq)
        for a, b in itertools.pairwise(ordered):
            missing = b.seq - a.seq - 1
            if missing > 0:
                if _inside(a.t_end, b.t_end, spans):
                    lost_in += missing
                else:
                    lost_out += missing
        report["first_seq"] = ordered[0].seq if ordered else None
        report["last_seq"] = ordered[-1].seq if ordered else None
        report["lost_inside_outages"], report["lost_outside_outages"] = lost_in, lost_out
        holes_in, holes_out = 0, 0
        for a, b in itertools.pairwise(ordered):
            steps = (b.t_end - a.t_end) / hop
            hole = round(steps) - (b.seq - a.seq)  # grid points between them that no window (received or lost) had
            if abs(steps - round(steps)) > 1e-3 or hole < 0:
                holes_out += 1  # off the grid: counted as a fault of the grid itself
            elif hole > 0:
                if _inside(a.t_end, b.t_end, spans):
                    holes_in += hole
                else:
                    holes_out += hole
        report["windows_not_cut_inside_outages"], report["windows_not_cut_outside_outages"] = holes_in, holes_out
        unexplained: dict[str, int] = {}
        explained: dict[str, int] = {}
        for p in mine:
            for m in mods:
                if m in p.modalities:
                    continue
                if _inside(p.t_start, p.t_end, outages.get((session, m), [])):
                    explained[m] = explained.get(m, 0) + 1
                else:
                    unexplained[m] = unexplained.get(m, 0) + 1
        report["missing_modality_inside_outages"] = explained
        report["missing_modality_outside_outages"] = unexplained
        report["nonfinite_outputs"] = sum(not p.finite for p in mine)
        out[session] = report
    return out
