"""A model with ``outputs.smoothing_s``: the engine publishes the running mean of each session's window outputs.

Real LSL outlet, real engine, a tiny random model; every prediction is collected through ``on_prediction`` (no
subscriber can miss the first ones), so each published output can be recomputed from the windows' own outputs.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from rt_physio.config import EngineConfig, SessionConfig
from rt_physio.nn.smoothing import from_logits, to_logits
from rt_physio.publish.schema import Prediction, validate
from rt_physio.runtime.engine import Engine
from tests.conftest import RealTimeOutlet, free_port
from tests.runtime.conftest import make_tiny_model

SPAN_S, HOP_S = 3.0, 0.5


def _run(tmp_path: Path, *, smoothing: float | None, calibrated: bool = False, calibrate_s: float | None = None,
         n: int = 14, recalibrate_after: int | None = None) -> list[Prediction]:
    uid = uuid.uuid4().hex[:8]
    outlet = RealTimeOutlet(f"rtp-smooth-{uid}", "EEG", 8, 200.0, chunk=8).start()
    folder = tmp_path / ("tiny-cal" if calibrated else "tiny")
    model = make_tiny_model(folder, calibrated=calibrated, smoothing_s=SPAN_S)
    got: list[Prediction] = []
    done = threading.Event()

    def collect(pred: Prediction) -> None:
        got.append(pred)
        if len([p for p in got if p.outputs]) >= n:
            done.set()

    config = EngineConfig(sessions=(SessionConfig("s1", eeg=f"lsl:rtp-smooth-{uid}", ecg=None),),
                          model=str(folder), device="cpu", threads=1, window_s=2, hop_s=HOP_S,
                          publish=(f"zmq://127.0.0.1:{free_port()}",), smoothing_s=smoothing,
                          calibrate_s=calibrate_s)
    engine = Engine(config, on_prediction=collect, model=model)
    runner = threading.Thread(target=engine.run, daemon=True)
    runner.start()
    try:
        if recalibrate_after is not None:
            deadline = time.monotonic() + 60
            while len([p for p in got if p.outputs]) < recalibrate_after and time.monotonic() < deadline:
                time.sleep(0.05)
            reply = engine.handle_control("s1", {"cmd": "calibrate", "seconds": calibrate_s})
            assert reply["ok"], reply
            got_before = len([p for p in got if p.outputs])
            done.clear()
            n_after = got_before + 6
            while len([p for p in got if p.outputs]) < n_after and time.monotonic() < deadline + 60:
                time.sleep(0.05)
        else:
            assert done.wait(60), f"only {len(got)} predictions"
    finally:
        engine.request_stop()
        runner.join(30)
        outlet.stop()
    assert not runner.is_alive()
    return got


def test_published_outputs_are_the_mean_of_the_window_outputs_of_the_last_seconds(tmp_path: Path) -> None:
    preds = _run(tmp_path, smoothing=None)  # the model's own outputs.smoothing_s
    assert [p.seq for p in preds] == list(range(preds[0].seq, preds[0].seq + len(preds)))  # none lost
    names = list(preds[0].outputs)
    raw = np.array([[p.smoothing["window_outputs"][k] for k in names] for p in preds if p.smoothing])
    t_end = np.array([p.t_end for p in preds])
    assert len(raw) == len(preds)
    for i, pred in enumerate(preds):
        msg = pred.to_message()
        validate(msg)
        assert msg["smoothing"]["seconds"] == SPAN_S
        inside = (t_end[: i + 1] > t_end[i] - SPAN_S)
        assert msg["smoothing"]["windows"] == int(inside.sum())
        expected = from_logits(to_logits(raw[: i + 1][inside], "sigmoid").mean(axis=0), "sigmoid")
        assert np.allclose([pred.outputs[k] for k in names], expected, atol=1e-5)
    assert max(p.smoothing["windows"] for p in preds if p.smoothing) == round(SPAN_S / HOP_S)
    # the mean smooths: outputs move less from window to window than the windows' own outputs
    smoothed = np.array([[p.outputs[k] for k in names] for p in preds])
    assert np.abs(np.diff(smoothed, axis=0)).mean() < np.abs(np.diff(raw, axis=0)).mean()


def test_smoothing_zero_publishes_every_window_on_its_own(tmp_path: Path) -> None:
    preds = _run(tmp_path, smoothing=0.0, n=4)
    assert all(p.smoothing is None and "smoothing" not in p.to_message() for p in preds)


@pytest.mark.slow
def test_the_mean_restarts_when_a_recalibration_changes_the_head(tmp_path: Path) -> None:
    preds = _run(tmp_path, smoothing=None, calibrated=True, calibrate_s=2.0, recalibrate_after=8)
    states = [None if p.calibration is None else p.calibration["state"] for p in preds]
    assert "calibrating" in states
    with_outputs = [i for i, p in enumerate(preds) if p.outputs]
    # the first output after each calibrating stretch holds one window: nothing from before the new baseline
    firsts = [i for i in with_outputs if i > 0 and states[i - 1] == "calibrating"]
    assert len(firsts) == 2, states
    for i in firsts:
        assert preds[i].smoothing is not None and preds[i].smoothing["windows"] == 1
    assert max(preds[i].smoothing["windows"] for i in with_outputs if preds[i].smoothing) > 1
