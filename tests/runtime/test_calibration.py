"""Per-session calibration: the baseline maths, the session state machine, the executor path and a live engine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from rt_physio.nn import load_model
from rt_physio.nn.calibration import Baseline, center_features, is_calibratable
from rt_physio.publish.schema import validate
from rt_physio.runtime.calibration import SessionCalibration
from rt_physio.runtime.executor import InferenceExecutor
from rt_physio.runtime.session import Window
from tests.conftest import free_port
from tests.runtime.conftest import make_tiny_model
from tests.sources.test_engine_sources import RT_PHYSIO, Subscriber, _finish

MOD = np.array([0, 0, 0, 1, 1, -1])


def test_center_features_subtracts_each_present_block_only() -> None:
    feats = np.array([[1.0, 2.0, 3.0, 10.0, 20.0, 1.0], [1.0, 2.0, 3.0, 0.0, 0.0, 1.0]])
    present = np.array([[1, 1], [1, 0]])
    mean = np.array([1.0, 1.0, 1.0, 5.0, 5.0, 9.0])
    fallback = np.full(6, 100.0)
    out = center_features(feats, present, MOD, mean, np.array([True, True]), fallback)
    np.testing.assert_allclose(out[0], [0, 1, 2, 5, 15, 1])  # the -1 feature is never centred
    np.testing.assert_allclose(out[1], [0, 1, 2, 0, 0, 1])  # absent ECG block left as it was
    # a modality the baseline never saw falls back to the population baseline
    out = center_features(feats, present, MOD, mean, np.array([True, False]), fallback)
    np.testing.assert_allclose(out[0], [0, 1, 2, -90, -80, 1])


def test_baseline_means_each_block_over_windows_where_it_was_present() -> None:
    base = Baseline(MOD)
    base.add(np.array([2.0, 2, 2, 4, 4, 7]), np.array([1, 1]))
    base.add(np.array([4.0, 4, 4, 0, 0, 7]), np.array([1, 0]))  # no ECG: its block must not pull the mean to 0
    mean, has = base.mean()
    np.testing.assert_allclose(mean[:5], [3, 3, 3, 4, 4])
    assert has.tolist() == [True, True]
    assert base.windows.tolist() == [2, 1]
    with pytest.raises(ValueError, match="expects"):
        base.add(np.zeros(4), np.array([1, 1]))


def _session_steps(cal: SessionCalibration, ends: list[float], window_s: float = 5.0) -> list[str]:
    states = []
    for t_end in ends:
        feats = np.full(6, t_end)
        states.append(cal.step(t_end - window_s, t_end, feats, np.array([1.0, 1.0])).state)
    return states


def test_session_calibration_never_scores_its_own_windows_then_centres() -> None:
    cal = SessionCalibration("s", MOD, np.zeros(6), window_s=5.0)
    assert _session_steps(cal, [5.0]) == ["off"]
    cal.start(10.0)  # from the next window's start (t=1)
    states = _session_steps(cal, [6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0])
    assert states == ["calibrating"] * 6 + ["calibrated"]  # windows ending in (1, 11] are the baseline
    # the baseline is the mean of the calibration windows' features (6..11 → 8.5 for the blocks)
    step = cal.step(8.0, 13.0, np.full(6, 13.0), np.array([1.0, 1.0]))
    assert step.features is not None
    np.testing.assert_allclose(step.features, [4.5, 4.5, 4.5, 4.5, 4.5, 13.0])
    assert step.info is not None and step.info["windows"] == 6

    # a control message: a new baseline from t0 = 20.5; windows that straddle t0 are not scored and not used
    cal.start(6.0, t0=20.5)
    ends = [21.0, 24.0, 25.5, 26.5, 27.0]
    states = _session_steps(cal, ends)
    assert states == ["calibrating", "calibrating", "calibrating", "calibrating", "calibrated"]
    mean, _ = cal._active if cal._active is not None else (None, None)
    assert mean is not None
    np.testing.assert_allclose(mean[:5], 26.0)  # only the windows [20.5, 25.5] and [21.5, 26.5]


def test_session_calibration_rejects_bad_lengths() -> None:
    cal = SessionCalibration("s", MOD, np.zeros(6), window_s=5.0)
    for bad in (2.0, float("nan"), "60", True):
        with pytest.raises(ValueError, match="calibration seconds"):
            cal.start(bad)  # type: ignore[arg-type]


def test_calibrated_fusion_model_round_trips_and_splits(tmp_path: Path) -> None:
    loaded = make_tiny_model(tmp_path / "tinycal", calibrated=True)
    module = loaded.module
    assert is_calibratable(module)
    assert loaded.spec.calibration is not None and loaded.spec.calibration.level == "embeddings"
    np.testing.assert_allclose(module.calibration_fallback.numpy(), np.linspace(-1, 1, 400), atol=1e-6)
    torch.manual_seed(1)
    eeg, ecg = torch.randn(3, 4, 5, 200), torch.randn(3, 1, 5, 200)
    with torch.inference_mode():
        feats, present = module.features(eeg, ecg)
        assert feats.shape == (3, 400) and present.tolist() == [[1.0, 1.0]] * 3
        torch.testing.assert_close(module.classify(feats, present), module(eeg=eeg, ecg=ecg))
        calibrated = module.classify(feats, present, True)
        assert not torch.allclose(calibrated, module(eeg=eeg, ecg=ecg))
        _, present_eeg = module.features(eeg, None)
        assert present_eeg.tolist() == [[1.0, 0.0]] * 3
    # an uncalibrated model has no calibrated head and says so
    plain = make_tiny_model(tmp_path / "tiny")
    assert not is_calibratable(plain.module)
    with pytest.raises(ValueError, match="no calibrated head"):
        plain.module.classify(feats, present, True)


def _window(session: str, seq: int, t_end: float, rng: np.random.Generator) -> Window:
    inputs = {"eeg": rng.standard_normal((4, 5, 200)).astype(np.float32),
              "ecg": rng.standard_normal((1, 5, 200)).astype(np.float32)}
    window = Window(session, seq, t_end - 5.0, t_end, inputs, line_freqs=(50.0,))
    window.score_quality()
    return window


def test_executor_calibrates_one_session_and_leaves_the_other_alone(tmp_path: Path) -> None:
    loaded = make_tiny_model(tmp_path / "tinycal", calibrated=True)
    executor = InferenceExecutor(loaded, backend="traced", max_wait_s=0.0, threads=1)
    cal = executor.add_calibration("a", window_s=5.0)
    executor.add_calibration("b", window_s=5.0)
    cal.start(6.0)
    executor.start()
    rng = np.random.default_rng(0)
    results = {"a": [], "b": []}
    try:
        for k in range(4):
            for sid in ("a", "b"):
                window = _window(sid, k, 5.0 + k, rng)
                results[sid].append((window, executor.submit(window).result(timeout=30)))
    finally:
        executor.stop()
    states_a = [r.calibration["state"] for _, r in results["a"]]
    assert states_a == ["calibrating", "calibrating", "calibrated", "calibrated"]
    assert [r.probabilities for _, r in results["a"][:2]] == [{}, {}]
    assert [r.calibration["state"] for _, r in results["b"]] == ["off"] * 4
    # session b gets the uncalibrated head's output: exactly what the model gives eagerly
    window, result = results["b"][0]
    with torch.inference_mode():
        x = {m: torch.from_numpy(v)[None] for m, v in window.inputs.items()}
        want = torch.sigmoid(loaded.module(**x))[0, 0].item()
    assert result.probabilities["arousal"] == pytest.approx(want, abs=1e-4)
    # session a's calibrated output is the calibrated head on features centred by its two baseline windows
    baseline = []
    with torch.inference_mode():
        for w, _ in results["a"][:2]:
            f, _ = loaded.module.features(**{m: torch.from_numpy(v)[None] for m, v in w.inputs.items()})
            baseline.append(f[0])
        w, r = results["a"][2]
        f, p = loaded.module.features(**{m: torch.from_numpy(v)[None] for m, v in w.inputs.items()})
        centred = f - torch.stack(baseline).mean(0)
        want = torch.sigmoid(loaded.module.classify(centred, p, True))[0, 0].item()
    assert r.probabilities["arousal"] == pytest.approx(want, abs=1e-4)


def test_calibrate_needs_a_calibratable_model(tiny_model) -> None:
    executor = InferenceExecutor(tiny_model, backend="eager")
    with pytest.raises(Exception, match="cannot be calibrated"):
        executor.add_calibration("a", 5.0)


@pytest.mark.slow
@pytest.mark.timeout(900)  # the deadlines below, not a race
def test_engine_on_replayed_eegmat_calibrates_then_recalibrates_on_command(data_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "tinycal"
    make_tiny_model(model, calibrated=True)
    path = data_dir / "eegmat" / "Subject05_1.edf"
    # the replay loops and the engine runs until this test has seen what it waits for (then SIGINT): on a loaded
    # machine the waits below take longer, and neither the data nor the engine may run out first
    spec = f"replay:{path}?duration=60&loop=1"
    port, control_port = free_port(), free_port()
    sub = Subscriber(port)
    proc = subprocess.Popen(
        [RT_PHYSIO, "run", "--eeg", spec, "--ecg", spec, "--window", "2", "--hop", "0.5", "--model", str(model),
         "--publish", f"zmq://127.0.0.1:{port}", "--control", f"zmq://127.0.0.1:{control_port}", "--device", "cpu",
         "--session", "cal", "--duration", "900", "--backend", "eager", "--calibrate", "3", "--missing-after", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 120_000)
    req.connect(f"tcp://127.0.0.1:{control_port}")
    try:
        assert sub.until(proc, lambda p: sum(1 for m, _ in p if m.get("calibrated")) >= 3, timeout=240), _finish(proc)
        req.send(json.dumps({"session": "cal", "cmd": "calibrate", "seconds": 2.5}).encode())
        reply = json.loads(req.recv())
        assert reply["ok"] is True, reply
        n_before = len(sub.preds)
        assert sub.until(proc, lambda p: any(m.get("calibrating") for m, _ in p[n_before:])
                         and p[-1][0].get("calibrated"), timeout=240), _finish(proc)
        req.send(json.dumps({"session": "cal", "cmd": "calibrate", "seconds": 0.5}).encode())
        bad = json.loads(req.recv())
        assert bad["ok"] is False and "window length" in bad["error"]
    finally:
        req.close()
        _, err = _finish(proc)
        sub.close()
    assert "Traceback" not in err
    messages = [m for m, _ in sub.preds]
    for msg in messages:
        validate(msg)
    states = ["calibrating" if m["calibrating"] else "calibrated" if m["calibrated"] else "off" for m in messages]
    first_calibrated = states.index("calibrated")
    assert first_calibrated >= 2 and states[:first_calibrated] == ["calibrating"] * first_calibrated
    # the first baseline is the first 3 s of the session: windows ending no later than 3 s after the first start
    t0 = messages[0]["t_start"]
    assert all(m["t_end"] <= t0 + 3 + 1e-6 for m in messages[:first_calibrated])
    assert messages[first_calibrated]["t_end"] > t0 + 3
    for msg in messages:
        assert (msg["outputs"] == {}) == msg["calibrating"]
    # after the command: calibrating again (no outputs), then calibrated on the new baseline
    later = states[first_calibrated:]
    assert "calibrating" in later and later[-1] == "calibrated"
    assert load_model(model).spec.calibration is not None


@pytest.mark.slow
@pytest.mark.timeout(900)  # the deadlines below, not a race
def test_shipped_baseline_calibrates_on_a_replayed_rest_recording(data_dir: Path, port: int) -> None:
    path = data_dir / "eegmat" / "Subject05_1.edf"
    spec = f"replay:{path}?duration=60&loop=1"  # the engine runs until the awaited messages came (see above)
    sub = Subscriber(port)
    proc = subprocess.Popen(
        [RT_PHYSIO, "run", "--eeg", spec, "--ecg", spec, "--model", "eegmat-baseline", "--calibrate", "7",
         "--hop", "1", "--publish", f"zmq://127.0.0.1:{port}", "--duration", "900", "--missing-after", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sub.until(proc, lambda p: sum(1 for m, _ in p if m.get("calibrated")) >= 3, timeout=240), _finish(proc)
    finally:
        _, err = _finish(proc)
        sub.close()
    assert "Traceback" not in err
    messages = [m for m, _ in sub.preds]
    for msg in messages:
        validate(msg)
        assert msg["model"]["name"] == "eegmat-baseline"
    # 5-s windows on a 1-s hop: the windows ending within 7 s of the first start (3 of them) are the baseline
    assert [m["calibrating"] for m in messages[:3]] == [True, True, True]
    assert all(m["outputs"] == {} for m in messages[:3])
    assert messages[3]["calibrated"] and messages[3]["calibration"]["windows"] == 3
    # a rest recording, centred on its own first seconds: low workload
    assert np.mean([m["outputs"]["mental_workload"] for m in messages[3:]]) < 0.5


def test_schema_ties_outputs_to_the_calibration_state() -> None:
    import jsonschema

    from rt_physio.publish.schema import Prediction

    def message(outputs: dict[str, float], state: str | None) -> dict:
        cal = None if state is None else {"state": state, "seconds": 60.0, "progress": 0.5}
        return Prediction(session="s", seq=0, t_start=0.0, t_end=5.0, t_wall=1.0, outputs=outputs, model_name="m",
                          model_sha256="0" * 64, trained=True, modalities=["eeg"], quality={"eeg": 1.0},
                          latency_ms={"total": 1.0}, calibration=cal).to_message()

    validate(message({}, "calibrating"))
    validate(message({"x": 0.5}, "calibrated"))
    validate(message({"x": 0.5}, None))
    with pytest.raises(jsonschema.ValidationError):
        validate(message({"x": 0.5}, "calibrating"))  # a calibration window is never scored
    with pytest.raises(jsonschema.ValidationError):
        validate(message({}, "calibrated"))
    assert "calibrating" not in message({"x": 0.5}, None)
