"""A model output that is not finite: no outputs, a warning, counted; never an exception per window.

The tiny model's float32 activations overflow for inputs of about 1e30 model units (real huge-amplitude input;
its outputs are finite up to about 1e20), so NaN comes out of a real forward pass, not from a stub.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import zmq

from rt_physio.clock import local_clock
from rt_physio.config import EngineConfig, SessionConfig
from rt_physio.nn import LoadedModel
from rt_physio.publish.schema import NONFINITE_WARNING, validate
from rt_physio.runtime.engine import Engine
from rt_physio.runtime.executor import InferenceExecutor
from rt_physio.runtime.session import Window
from rt_physio.runtime.tracing import Trace
from tests.conftest import RealTimeOutlet, free_port
from tests.runtime.conftest import make_tiny_model


def _window(session: str, seq: int, amplitude: float, seed: int) -> Window:
    rng = np.random.default_rng(seed)
    inputs = {"eeg": rng.normal(0, amplitude, (14, 5, 200)).astype(np.float32),
              "ecg": rng.normal(0, 0.3, (2, 5, 200)).astype(np.float32)}
    return Window(session, seq, 10.0 * seq, 10.0 * seq + 5.0, inputs, Trace(cut=local_clock()))  # type: ignore[arg-type]


def test_nonfinite_rows_have_no_outputs_and_are_counted_while_their_batch_mates_are_scored(
        tiny_model: LoadedModel, caplog: pytest.LogCaptureFixture) -> None:
    ex = InferenceExecutor(tiny_model, device="cpu", backend="traced", max_wait_s=0.2)
    amplitudes = {"a": 0.3, "b": 1e30, "c": 0.3, "d": 1e30}
    windows = [_window(s, 0, amp, seed=i) for i, (s, amp) in enumerate(amplitudes.items())]
    futures = [ex.submit(w) for w in windows]  # one batch: rows are independent
    ex.start()
    results = {w.session: f.result(timeout=60) for w, f in zip(windows, futures, strict=True)}
    ex.stop()
    for session, amplitude in amplitudes.items():
        result = results[session]
        if amplitude > 1:
            assert (result.nonfinite, result.probabilities) == (True, {})
        else:
            assert not result.nonfinite
            assert len(result.probabilities) == len(tiny_model.spec.outputs)
            assert all(0 <= p <= 1 for p in result.probabilities.values())
    assert dict(ex.nonfinite_by_session) == {"b": 1, "d": 1}
    assert ex.failed == 0
    assert not [r for r in caplog.records if r.exc_info is not None]


def test_nonfinite_features_never_enter_a_calibration_baseline(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "cal", calibrated=True)
    ex = InferenceExecutor(model, device="cpu", backend="eager", max_wait_s=0.0)
    calibration = ex.add_calibration("s", window_s=5.0)
    calibration.start(20.0, t0=0.0)  # windows ending at 5 and 15 s are the baseline; 25 s is scored
    ex.start()
    results = [ex.submit(_window("s", seq, amp, seed=seq)).result(timeout=60)
               for seq, amp in enumerate((0.3, 1e30, 0.3))]
    ex.stop()
    assert results[0].calibration is not None and results[0].calibration["state"] == "calibrating"
    assert results[1].nonfinite  # not counted in the baseline, and it says so
    assert results[2].calibration is not None and results[2].calibration["state"] == "calibrated"
    assert results[2].calibration["windows"] == 1  # only the finite window
    assert not results[2].nonfinite and all(np.isfinite(list(results[2].probabilities.values())))


@pytest.mark.slow
def test_engine_publishes_huge_input_windows_without_outputs_and_counts_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    uid = uuid.uuid4().hex[:8]
    outlet = RealTimeOutlet(f"rtp-huge-{uid}", "EEG", 8, 200.0, chunk=8, amplitude_uv=1e32).start()
    port = free_port()
    sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"rt_physio/s1/pred")
    sub.connect(f"tcp://127.0.0.1:{port}")
    model = make_tiny_model(tmp_path / "tiny")
    config = EngineConfig(sessions=(SessionConfig("s1", eeg=f"lsl:rtp-huge-{uid}", ecg=None),),
                          model=str(tmp_path / "tiny"), device="cpu", threads=1, window_s=2, hop_s=0.5,
                          publish=(f"zmq://127.0.0.1:{port}",))
    engine = Engine(config, model=model)
    engine.count_drops("printer", lambda: 7)  # how the CLI reports its line printer's drops
    runner = threading.Thread(target=engine.run, daemon=True)
    runner.start()
    messages = []
    try:
        deadline = time.monotonic() + 60
        while len(messages) < 4 and time.monotonic() < deadline:
            if sub.poll(500):
                messages.append(json.loads(sub.recv_multipart()[1]))
    finally:
        engine.request_stop()
        runner.join(30)
        outlet.stop()
        sub.close()
    assert not runner.is_alive()
    assert len(messages) == 4
    for msg in messages:
        validate(msg)  # the schema allows empty outputs only with nonfinite_output and its warning
        assert msg["outputs"] == {}
        assert msg["nonfinite_output"] is True
        assert NONFINITE_WARNING in msg["warning"]
    assert [m["seq"] for m in messages] == list(range(messages[0]["seq"], messages[0]["seq"] + 4))
    counts = engine.drop_counts("s1")
    assert counts["nonfinite_outputs"] == engine.predictions >= 4
    assert counts == {"executor": 0, "recorder": 0, "zmq": 0, "mqtt": 0, "mqtt_control": 0,
                      "nonfinite_outputs": engine.predictions, "no_usable_input": 0, "printer": 7}
    assert not [r for r in caplog.records if r.exc_info is not None]  # no traceback, per window or at all
