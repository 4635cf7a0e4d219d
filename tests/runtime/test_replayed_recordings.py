"""Real recordings other than EEGMAT, replayed into real LSL outlets and read by the engine with the default model.

A CinC 2017 record (a WFDB record whose samples are in a ``.mat`` file: 300 Hz, one lead, like a chest strap's) goes
through a :class:`~rt_physio.sources.replay.Player` (what ``rt-physio replay FILE`` runs) into an ``lsl:`` ECG-only
session of an in-process :class:`~rt_physio.runtime.engine.Engine`. Also what the engine says when such a recording
cannot give an estimate: an ECG the model cannot use (replayed 4x too fast), a recording shorter than a window, a
stream too slow for the model's band-pass.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import zmq

from rt_physio.cli import format_prediction
from rt_physio.config import EngineConfig, SessionConfig
from rt_physio.errors import ConfigError
from rt_physio.io import read_recording
from rt_physio.nn.smoothing import from_logits, smooth_series, to_logits
from rt_physio.publish.schema import Prediction, validate, validate_status
from rt_physio.runtime.engine import Engine
from rt_physio.sources import replay as replay_mod
from rt_physio.sources.replay import Player
from tests.conftest import free_port


def _replay_into_engine(path: Path, speed: float, n_pred: int, timeout: float = 30.0) -> list[Prediction]:
    """Replay ``path`` at ``speed`` into LSL, run the default model on its ECG; return the first ``n_pred``."""
    name = f"rtp-rec-{uuid.uuid4().hex[:8]}"
    player = Player(read_recording(path), name=name, speed=speed)
    got: list[Prediction] = []
    enough = threading.Event()

    def on_prediction(prediction: Prediction) -> None:
        got.append(prediction)
        if len(got) >= n_pred:
            enough.set()

    # smoothing 0: each message carries its own window's output (what the assertions below compare)
    config = EngineConfig(sessions=(SessionConfig("rec", None, f"lsl:{name}-ECG"),), hop_s=0.5, smoothing_s=0.0,
                          publish=(f"zmq://127.0.0.1:{free_port()}",), device="cpu")
    engine = Engine(config, on_prediction=on_prediction)
    try:
        engine.start()
        player.start()
        assert enough.wait(timeout), f"{len(got)} of {n_pred} predictions within {timeout:g} s"
    finally:
        engine.stop()
        player.stop()
    return got[:n_pred]


@pytest.mark.parametrize("record", ["A00001", "A00004"], ids=["normal", "atrial-fibrillation"])
def test_cinc2017_single_lead_replayed_through_lsl_gives_ecg_only_predictions(data_dir: Path, record: str) -> None:
    preds = _replay_into_engine(data_dir / "cinc2017" / f"{record}.mat", speed=1.0, n_pred=3)
    assert [p.seq for p in preds] == [0, 1, 2]
    for prediction in preds:
        message = prediction.to_message()
        validate(message)
        assert message["modalities"] == ["ecg"]
        assert set(message["quality"]) == {"ecg"}
        assert message["model"]["name"] == "eegmat-fusion"
        assert set(message["outputs"]) == {"mental_workload"}
        assert 0.0 < message["outputs"]["mental_workload"] < 1.0
        assert "unused_modalities" not in message  # the model found beats in every window: it used the ECG
        assert "warning" not in message


def test_an_ecg_the_model_cannot_use_is_flagged_in_the_message(data_dir: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """At 4x, a 75-bpm heart looks like 300 bpm: the model finds no plausible beats and says so, not a bare 0.5."""
    with caplog.at_level(logging.WARNING, logger="rt_physio.runtime.executor"):
        preds = _replay_into_engine(data_dir / "cinc2017" / "A00001.mat", speed=4.0, n_pred=4)
    flagged = 0
    for prediction in preds:
        message = prediction.to_message()
        validate(message)
        assert message["modalities"] == ["ecg"]
        prior = message["outputs"]["mental_workload"] == 0.5  # the head's output with no usable modality
        assert ("unused_modalities" in message) == prior, message
        if prior:
            flagged += 1
            assert message["unused_modalities"] == ["ecg"]
            assert message["warning"].endswith("the window's own output carries no information")
            assert "(no usable input: ecg)" in format_prediction(message)
    assert flagged >= 1
    logged = [r.getMessage() for r in caplog.records if "could not use" in r.getMessage()]
    assert len(logged) == 1  # once, not per window
    assert "could not use its ECG (no plausible heartbeats, 30-220 bpm, in the ECG?)" in logged[0]


def test_windows_with_no_usable_input_stay_out_of_the_mean_and_are_counted(data_dir: Path) -> None:
    """The default model's own smoothing (10 s) on a real ECG whose electrode goes flat for 7 s, then comes back.

    Replayed at 2x (a 75-bpm heart looks like 150 bpm: still plausible) to keep the test short.
    """
    record = read_recording(data_dir / "cinc2017" / "A00001.mat")
    ecg = record.signals["ecg"]
    data = ecg.data.copy()
    data[round(12 * ecg.sfreq): round(19 * ecg.sfreq)] = 0.0  # flat: no heartbeat to find
    record = dataclasses.replace(record, signals={"ecg": dataclasses.replace(ecg, data=data)})
    name = f"rtp-rec-{uuid.uuid4().hex[:8]}"
    player = Player(record, name=name, speed=2.0)
    port = free_port()
    sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"rt_physio/rec/status")
    sub.connect(f"tcp://127.0.0.1:{port}")
    got: list[Prediction] = []
    config = EngineConfig(sessions=(SessionConfig("rec", None, f"lsl:{name}-ECG"),), hop_s=0.5, status_every_s=0.5,
                          publish=(f"zmq://127.0.0.1:{port}",), device="cpu")
    engine = Engine(config, on_prediction=got.append)
    counted: dict[str, int] = {}
    try:
        engine.start()
        player.start()
        deadline = time.monotonic() + 60
        # until a status counts windows without usable input, and usable windows came before and after one
        while time.monotonic() < deadline and not (counted.get("no_usable_input", 0) >= 1 and _mixed(got)):
            engine._watchdog()  # what Engine.run does between its waits: publishes the heartbeats
            if sub.poll(100):
                status = json.loads(sub.recv_multipart()[1])
                validate_status(status)
                counted = status["drops"]
    finally:
        engine.stop()
        player.stop()
        sub.close()
    assert counted.get("no_usable_input", 0) >= 1, counted
    assert _mixed(got), [p.unused for p in got]
    assert engine.smoothing_s == 10.0  # the model's outputs.smoothing_s
    nothing = [bool(p.unused) for p in got]  # ECG-only session: an unused ECG leaves nothing usable
    assert engine.drop_counts("rec")["no_usable_input"] == sum(nothing)
    t_end = np.array([p.t_end for p in got])
    own = np.array([p.smoothing["window_outputs"]["mental_workload"] for p in got if p.smoothing])
    assert len(own) == len(got)
    for i, pred in enumerate(got):
        message = pred.to_message()
        validate(message)
        inside = np.array([not nothing[j] and t_end[j] > t_end[i] - 10.0 for j in range(i + 1)])
        assert message["smoothing"]["windows"] == int(inside.sum()), i
        if inside.any():  # the mean of the usable windows of the last 10 s, whatever this window's own output
            expected = float(from_logits(to_logits(own[: i + 1][inside], "sigmoid").mean(), "sigmoid"))
        else:
            expected = own[i]
        assert message["outputs"]["mental_workload"] == pytest.approx(expected, abs=1e-6), i
        if nothing[i]:
            assert own[i] == 0.5 and message["unused_modalities"] == ["ecg"] and "warning" in message
    # offline (evaluate) gives the same series from the same windows and mask
    offline = smooth_series(t_end, own, ["rec"] * len(got), 10.0, "sigmoid", usable=~np.array(nothing))
    assert np.allclose(offline, [p.outputs["mental_workload"] for p in got], atol=1e-6)


def _mixed(preds: list[Prediction]) -> bool:
    """A window with no usable input after a usable one, then a usable one again."""
    flags = "".join("x" if p.unused else "u" for p in preds)  # x: nothing usable (an ECG-only session)
    return "ux" in flags and "xu" in flags[flags.index("ux"):]


def test_a_recording_shorter_than_a_window_says_so_when_the_run_ends(data_dir: Path) -> None:
    """The shortest CinC 2017 record (9 s) at 4x is 2.3 s of stream: no window can fill, and the session says why."""
    name = f"rtp-rec-{uuid.uuid4().hex[:8]}"
    player = Player(read_recording(data_dir / "cinc2017" / "A05493.hea"), name=name, speed=4.0)
    n = player.tracks["ecg"].signal.n_samples
    config = EngineConfig(sessions=(SessionConfig("short", None, f"lsl:{name}-ECG"),),
                          publish=(f"zmq://127.0.0.1:{free_port()}",), device="cpu")
    engine = Engine(config)
    try:
        engine.start()
        session = engine.sessions["short"]
        assert session.why_no_window() == f"the ECG source lsl:{name}-ECG sent no sample"
        player.start()
        assert player.wait(20.0)
        source = session.streams["ecg"].source
        deadline = time.monotonic() + 10.0
        while source.stats.samples < n and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a counter, with a deadline: the samples are in flight
        assert source.stats.samples == n
    finally:
        engine.stop()
        player.stop()
    assert engine.predictions == 0
    assert session.why_no_window() == (
        f"the ECG source lsl:{name}-ECG sent {n} samples covering 2.3 s, less than one 5-s window (a recording "
        "shorter than the window, or one replayed too fast?)")


def test_a_stream_too_slow_for_the_model_band_is_refused_by_name(data_dir: Path) -> None:
    """A CSV replayed with a wrong rate (1 Hz) cannot carry the ECG band from 0.5 Hz: a ConfigError, no traceback."""
    spec = f"replay:{data_dir / 'neurokit' / 'ecg_1000hz.csv'}?rate=1&duration=20"
    config = EngineConfig(sessions=(SessionConfig("slow", None, spec),), publish=(f"zmq://127.0.0.1:{free_port()}",),
                          device="cpu")
    with pytest.raises(ConfigError, match=r"The ECG stream 'ecg_1000hz-ECG' runs at 1 Hz, too slow for model "
                                          r"'eegmat-fusion': its ECG band-pass starts at 0\.5 Hz"):
        Engine(config)
    assert not replay_mod._PLAYERS  # the source opened before the refusal was closed
