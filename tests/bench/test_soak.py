"""A 60-s soak in the suite: the benchmark's harness, its fault schedule compressed (the 1-hour run is the benchmark).

Real parts throughout: ``rt-physio run --config`` in its own process, real LSL outlets destroyed and created
again, a real mosquitto stopped and started, BrainFlow's synthetic board, real ZeroMQ and MQTT subscribers, the
real recording read back. The soak waits (bounded, generously) until every fault has recovered before it stops
the engine, so a loaded machine makes it longer, not red.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rt_physio.bench.soak import SoakConfig, run_soak
from rt_physio.bench.soak_faults import KINDS
from rt_physio.bench.soak_report import format_table


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_60_s_soak_loses_nothing_outside_outages_and_recovers_from_every_fault(tmp_path: Path) -> None:
    config = SoakConfig.for_duration(60.0, control=False, settle_timeout=300.0, start_timeout=600.0)
    result = run_soak(config, tmp_path)
    table = format_table(result)
    rig = result["rigs"]["faulted"]
    summary = result["summary"]["faulted"]
    assert rig["injector_errors"] == [], table
    assert {f["kind"] for f in rig["faults"]} == set(KINDS), table  # every kind of fault was injected
    assert all(f["start"] == f["start"] and f["end"] == f["end"] for f in rig["faults"])  # not NaN: it happened

    # every prediction reached the subscriber that reads everything, in order, once; and MQTT, through restarts
    assert summary["predictions_received"] >= 4 * 40, table
    assert summary["lost_outside_outages"] == 0, table
    assert summary["out_of_order"] == 0 and summary["duplicates"] == 0, table
    assert summary["windows_not_cut_outside_outages"] == 0, table
    assert summary["missing_modality_outside_outages"] == 0, table
    assert summary["mqtt_lost_outside_outages"] == 0, table
    assert summary["nonfinite_outputs"] == 0, table
    assert not rig["collector_errors"]

    # every fault came back, and the status (the predictions' quality, for a flat line) said what happened
    for fault in rig["faults"]:
        assert fault["recovered"], (fault, table)
        assert fault["reported"], (fault, table)
        if fault["kind"] in ("outlet_kill", "outlet_new_id"):
            assert fault["left_online"] and fault["status_online_s"] is not None, fault  # degraded, then online
        else:
            assert not fault["left_online"], fault  # the stream kept streaming: the status must not say otherwise

    # the recording holds every prediction received, and every raw sample of each outlet's life without a hole
    assert summary["recording_complete"], table
    assert summary["received_not_recorded"] == 0 and summary["recorded_t_end_mismatch"] == 0, table
    assert summary["raw_holes"] == 0 and summary["raw_repeated"] == 0 and summary["raw_phantom"] == 0, table
    assert summary["board_gaps"] == 0, table
    lives = [life for entry in rig["recording"]["sessions"].values() for stream in entry["streams"].values()
             for life in stream.get("lives", [])]
    assert len(lives) == 6 + 2  # six streams, two of them restarted once
    assert all(life["recorded"] > 0 for life in lives), lives

    # the engine stayed healthy and said so on time
    assert summary["engine_returncode"] == 0 and summary["engine_tracebacks"] == 0, table
    assert summary["status_heartbeat_max_s"] < config.status_every + 5.0, table
    assert all(n == 0 for n in summary["drops_at_end"].values()), table
    assert summary["heap_arenas"] is not None and summary["heap_arenas"] >= 1, table  # the status reports them
