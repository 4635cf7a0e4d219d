"""The shipped benchmarks run and produce figures that make sense (speed itself is not asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rt_physio.bench import inference, latency
from rt_physio.cli import main
from rt_physio.nn import LoadedModel
from tests.runtime.conftest import make_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return make_tiny_model(tmp_path_factory.mktemp("bench") / "tiny-bench")


def test_inference_parts_measure_both_paths(tiny: LoadedModel) -> None:
    cpu = torch.device("cpu")
    b1 = inference.batch1_latency(tiny, cpu, "traced", rounds=3)
    for r in b1.values():
        assert r["eager_ms"]["p50"] > 0
        assert r["optimised_ms"]["p50"] > 0
        assert r["max_abs_logit_diff"] < 1e-4  # the optimised path computes the same thing
    tp = inference.throughput(tiny, cpu, "traced", (1, 4), seconds=0.2)
    assert set(tp) == {"1", "4"}
    assert all(v > 0 for v in tp.values())
    sim = inference.simulate_sessions(tiny, cpu, "traced", n_sessions=3, hop=0.5, duration=1.5, max_batch=64)
    assert sim["dropped"] == 0
    assert sim["latency_ms"]["n"] == 3 * 2  # first hop of each session is warm-up
    assert sim["latency_ms"]["p99"] < 500


@pytest.mark.slow
def test_latency_benchmark_end_to_end(tmp_path: Path) -> None:
    result = latency.run_latency_benchmark(duration=4, window=2, hop=0.5, hop_seconds=3.0)
    out = tmp_path / "latency.json"
    result.pop("_raw")
    out.write_text(json.dumps(result))
    for key in ("added_ms", "e2e_ms", "baseline_tick_ms"):
        assert {"p50", "p99"} <= set(result[key])
    assert result["n_predictions"] >= 8  # 4 s at 0.5 s hop, scored after the warm-up predictions
    # e2e contains the forward pass; what the engine adds is the rest, and it is non-negative
    assert result["e2e_ms"]["p50"] >= result["infer_ms"]["p50"]
    assert result["added_ms"]["p50"] >= 0
    # the fixed-tick scheduler waits up to one 40-ms tick per window: on average it must be slower
    assert result["baseline_tick_added_ms"]["p50"] > result["added_ms"]["p50"]
    assert result["baseline_lsl_hop_ms"]["n"] > 100
    assert result["baseline_zmq_hop_ms"]["n"] > 100
    # the outlet process's own delay is measured (it is inside the acquire stage, not inside e2e)
    assert result["harness_push_ms"]["n"] > 50 and result["harness_push_ms"]["p50"] >= 0
    assert result["added_minus_transport_p50_ms"] < result["added_ms"]["p50"]
    assert "fixed-tick" in latency.format_table(result)


@pytest.mark.slow
def test_latency_benchmark_on_a_real_device_stream_uses_its_own_timestamps() -> None:
    """``--eeg lsl:NAME``: no harness; e2e runs from the window's end on the device's (LSL-corrected) clock."""
    import threading
    import time
    import uuid

    import numpy as np
    import pylsl

    name = f"rtp-device-{uuid.uuid4().hex[:6]}"
    fs, chunk = 128.0, 8
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 14, fs, "float32", f"sid-{name}"))
    stop = threading.Event()

    def device() -> None:  # a headset's app: chunks stamped with the sampling time of each sample
        rng = np.random.default_rng(0)
        t0, k = pylsl.local_clock(), 0
        while not stop.is_set():
            due = t0 + (k + chunk) / fs
            time.sleep(max(0.0, due - pylsl.local_clock()))
            stamps = t0 + (k + 1 + np.arange(chunk)) / fs
            outlet.push_chunk(rng.normal(0, 20, (chunk, 14)).astype(np.float32), stamps.tolist())
            k += chunk

    thread = threading.Thread(target=device, daemon=True)
    thread.start()
    try:
        result = latency.run_latency_benchmark(duration=3, window=2, hop=0.5, eeg=f"lsl:{name}", ecg="none")
    finally:
        stop.set()
        thread.join(timeout=5)
    assert result["harness"] is False and "baseline_tick_ms" not in result  # baselines need the harness
    assert result["n_predictions"] >= 5
    # the window's last sample exists at t_end, so e2e covers at least the forward pass, and stays far below a hop
    assert result["infer_ms"]["p50"] <= result["e2e_ms"]["p50"] < 500
    assert "acquire" in result["stages_ms"]


def test_latency_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "latency", "--sessions", "x"])
    assert "--sessions" in capsys.readouterr().err
