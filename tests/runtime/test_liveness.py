"""Liveness and recovery of a running engine, seen where a user sees them: the status and prediction messages.

Real parts only: pylsl outlets in this process, BrainFlow's synthetic and playback boards, a real ZeroMQ
subscriber. Deadlines are generous (a loaded 2-core machine); the only tight figure is the one the status
promises: a stall shows within 5 s of the engine's own clock (the messages' t_wall).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
import zmq

from rt_physio.cli import main
from rt_physio.config import EngineConfig, SessionConfig
from rt_physio.errors import SourceLostError
from rt_physio.nn import LoadedModel
from rt_physio.publish.schema import validate, validate_status
from rt_physio.runtime.engine import Engine
from rt_physio.sources.brainflow_boards import BoardShim, BrainFlowInputParams
from tests.conftest import free_port
from tests.sources.test_engine_sources import RT_PHYSIO

Message = dict[str, Any]


class Collector:
    """A ZeroMQ SUB on its own thread, keeping every status and prediction with its receipt time."""

    def __init__(self, port: int) -> None:
        self.statuses: list[Message] = []
        self.preds: list[tuple[Message, float]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port, ready), daemon=True)
        self._thread.start()
        ready.wait(5)

    def _run(self, port: int, ready: threading.Event) -> None:
        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"rt_physio/")
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        ready.set()
        while not self._stop.is_set():
            if sock.poll(100):
                topic, payload = sock.recv_multipart()
                msg = json.loads(payload)
                with self._cond:
                    if topic.endswith(b"/status"):
                        self.statuses.append(msg)
                    else:
                        self.preds.append((msg, pylsl.local_clock()))
                    self._cond.notify_all()
        sock.close()

    def wait(self, done: Callable[[], Any], timeout: float) -> Any:
        """Wait until ``done()`` returns something truthy; return it (or fail the test after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = done()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"timed out after {timeout:g} s; last status: "
                                f"{self.statuses[-1] if self.statuses else None}", pytrace=False)
                self._cond.wait(left)

    def status_after(self, index: int, check: Callable[[Message], bool]) -> Callable[[], Message | None]:
        return lambda: next((s for s in self.statuses[index:] if check(s)), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Pusher:
    """A real LSL outlet pushing in real time from its own thread; ``shift`` moves its stamps (a clock jump)."""

    def __init__(self, name: str, stype: str, n_channels: int, sfreq: float, *, source_id: str, chunk: int = 8) -> None:
        self.outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(
            pylsl.StreamInfo(name, stype, n_channels, sfreq, "float32", source_id), chunk_size=chunk)
        self.sfreq, self.chunk, self.n_channels = sfreq, chunk, n_channels
        self.shift = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(0)
        start, k = pylsl.local_clock(), 0
        while not self._stop.is_set():
            delay = start + (k + self.chunk) / self.sfreq - pylsl.local_clock()
            if delay > 0:
                time.sleep(delay)
            stamps = start + (k + 1 + np.arange(self.chunk)) / self.sfreq + self.shift
            assert self.outlet is not None
            self.outlet.push_chunk(rng.normal(0, 20, (self.chunk, self.n_channels)).astype(np.float32),
                                   stamps.tolist())
            k += self.chunk

    def start(self) -> Pusher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.outlet = None  # liblsl destroys the outlet with its last reference


class EngineThread:
    """``Engine.run`` on a thread, keeping what it raised."""

    def __init__(self, engine: Engine, duration: float = 180.0) -> None:
        self.engine = engine
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(duration,), daemon=True)
        self._thread.start()

    def _run(self, duration: float) -> None:
        try:
            self.engine.run(duration)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.engine.request_stop()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the engine did not stop"


def _config(port: int, eeg: str, ecg: str, session: str, **kw: Any) -> EngineConfig:
    return EngineConfig(sessions=(SessionConfig(session, eeg, ecg),), window_s=2.0, hop_s=0.5, device="cpu",
                        threads=1, backend="eager", publish=(f"zmq://127.0.0.1:{port}",), **kw)


def _both(collector: Collector, start: int = 0) -> Callable[[], bool]:
    return lambda: any(m["modalities"] == ["eeg", "ecg"] for m, _ in collector.preds[start:])


def _check_messages(collector: Collector) -> None:
    for status in collector.statuses:
        validate_status(status)
    seqs = [m["seq"] for m, _ in collector.preds]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for msg, _ in collector.preds:
        validate(msg)


@pytest.mark.slow
def test_an_outlet_that_resolves_but_never_pushes_is_stalled_within_5_s_then_streams(tiny_model: LoadedModel
                                                                                       ) -> None:
    uid = uuid.uuid4().hex[:8]
    eeg = Pusher(f"rtp-eeg-{uid}", "EEG", 4, 128.0, source_id=f"eeg-{uid}").start()
    ecg = Pusher(f"rtp-ecg-{uid}", "ECG", 1, 256.0, source_id=f"ecg-{uid}")  # visible, silent
    port = free_port()
    collector = Collector(port)
    engine = Engine(_config(port, f"lsl:rtp-eeg-{uid}", f"lsl:rtp-ecg-{uid}", "quiet"), model=tiny_model)
    runner = EngineThread(engine)
    try:
        start = collector.wait(collector.status_after(0, lambda s: s["reason"] == "start"), 60)
        stalled = collector.wait(collector.status_after(0, lambda s: s["modalities"]["ecg"]["state"] == "stalled"),
                                 30)
        assert stalled["state"] == "degraded"
        assert stalled["modalities"]["ecg"]["last_sample_age_s"] is None  # never sent a first sample
        assert stalled["modalities"]["eeg"]["state"] == "streaming"
        assert stalled["t_wall"] - start["t_wall"] < 5.0
        collector.wait(lambda: any(m["modalities"] == ["eeg"] for m, _ in collector.preds), 30)  # EEG goes on
        mark = len(collector.statuses)
        n_preds = len(collector.preds)
        ecg.start()  # ... and now the strap sends
        online = collector.wait(collector.status_after(mark, lambda s: s["state"] == "online"), 30)
        assert online["modalities"]["ecg"]["state"] == "streaming"
        assert online["modalities"]["ecg"]["recovered"] == 1
        collector.wait(_both(collector, n_preds), 30)
    finally:
        runner.stop()
        eeg.stop()
        ecg.stop()
        collector.close()
    assert runner.error is None
    _check_messages(collector)
    assert collector.statuses[-1]["state"] == "offline" and collector.statuses[-1]["reason"] == "stop"


@pytest.mark.slow
def test_an_outlet_re_created_with_another_source_id_is_read_again(tiny_model: LoadedModel) -> None:
    uid = uuid.uuid4().hex[:8]
    name = f"rtp-eeg-{uid}"
    eeg = Pusher(name, "EEG", 4, 128.0, source_id=f"first-{uid}").start()
    ecg = Pusher(f"rtp-ecg-{uid}", "ECG", 1, 256.0, source_id=f"ecg-{uid}").start()
    port = free_port()
    collector = Collector(port)
    engine = Engine(_config(port, f"lsl:{name}", f"lsl:rtp-ecg-{uid}", "newid"), model=tiny_model)
    runner = EngineThread(engine)
    eeg2 = None
    try:
        collector.wait(_both(collector), 60)
        mark = len(collector.statuses)
        eeg.stop()  # the headset's app dies ...
        collector.wait(collector.status_after(mark, lambda s: s["modalities"]["eeg"]["state"] == "stalled"), 30)
        eeg2 = Pusher(name, "EEG", 4, 128.0, source_id=f"second-{uid}").start()  # ... and restarts, new source_id
        n_preds = len(collector.preds)
        collector.wait(_both(collector, n_preds), 60)
        online = collector.wait(collector.status_after(mark, lambda s: s["state"] == "online"), 30)
    finally:
        runner.stop()
        eeg.stop()
        ecg.stop()
        if eeg2 is not None:
            eeg2.stop()
        collector.close()
    assert runner.error is None
    assert online["modalities"]["eeg"]["reconnects"] >= 1
    assert online["modalities"]["eeg"]["recovered"] == 1
    _check_messages(collector)


@pytest.mark.slow
def test_release_all_sessions_mid_run_shows_in_the_status_and_predictions_resume(tiny_model: LoadedModel) -> None:
    port = free_port()
    collector = Collector(port)
    engine = Engine(_config(port, "synthetic", "synthetic", "board"), model=tiny_model)
    runner = EngineThread(engine)
    try:
        collector.wait(lambda: len(collector.preds) >= 2, 60)
        mark = len(collector.statuses)
        BoardShim.release_all_sessions()  # the board is gone under the engine's feet
        released = collector.wait(collector.status_after(mark, lambda s: s["modalities"]["eeg"]["reconnects"] >= 1),
                                  30)
        n_preds = len(collector.preds)
        collector.wait(lambda: len(collector.preds) >= n_preds + 3 and _both(collector, n_preds)(), 30)
        online = collector.wait(collector.status_after(len(collector.statuses) - 1,
                                                       lambda s: s["state"] == "online"), 30)
    finally:
        runner.stop()
        collector.close()
    assert runner.error is None
    assert released["modalities"]["ecg"]["reconnects"] >= 1  # one board, both modalities
    assert online["modalities"]["eeg"]["reconnects"] == online["modalities"]["ecg"]["reconnects"] >= 1
    _check_messages(collector)


def _playback_file(path: Path, seconds: float) -> None:
    from brainflow.data_filter import DataFilter

    board = BoardShim(-1, BrainFlowInputParams())
    board.prepare_session()
    board.start_stream()
    time.sleep(seconds)
    data = board.get_board_data()
    board.stop_stream()
    board.release_session()
    DataFilter.write_file(data, str(path), "w")


@pytest.mark.slow
def test_give_up_after_ends_the_run_with_a_message_naming_the_dead_source(
        tmp_path: Path, tiny_model: LoadedModel, capsys: pytest.CaptureFixture[str]) -> None:
    """A board that cannot be prepared again (its file is gone): exit status 3 after --give-up-after 3."""
    recording = tmp_path / "board.csv"
    _playback_file(recording, 3.0)
    spec = f"brainflow:playback_file?file={recording}&master_board=synthetic"
    port = free_port()
    collector = Collector(port)
    sabotaged: list[float] = []

    def sabotage() -> None:  # once predictions flow: the board's file vanishes and the board is released
        collector.wait(lambda: len(collector.preds) >= 1, 60)
        recording.unlink()
        BoardShim.release_all_sessions()
        sabotaged.append(time.monotonic())

    saboteur = threading.Thread(target=sabotage, daemon=True)
    saboteur.start()
    models = tmp_path / "m"
    from tests.runtime.conftest import make_tiny_model

    make_tiny_model(models / "tiny")
    status = main(["run", "--eeg", spec, "--ecg", "none", "--model", str(models / "tiny"), "--window", "2",
                   "--hop", "0.5", "--device", "cpu", "--publish", f"zmq://127.0.0.1:{port}", "--give-up-after",
                   "3", "--duration", "120", "--quiet"])
    ended = time.monotonic()
    saboteur.join(5)
    collector.close()
    err = capsys.readouterr().err
    assert status == 3
    assert sabotaged and 3.0 <= ended - sabotaged[0] < 60
    line = next(line for line in err.splitlines() if line.startswith("rt-physio: error:"))
    assert "session default: the EEG source brainflow:playback_file?file=" in line
    assert "gave up after 3 s (--give-up-after)" in line
    assert "Traceback" not in err
    last = collector.statuses[-1]
    assert last["state"] == "offline" and last["reason"] == "give_up"
    assert last["modalities"]["eeg"]["state"] == "lost"
    assert "gave up" in last["error"]
    _check_messages(collector)
    assert isinstance(SourceLostError("x"), SourceLostError) and SourceLostError.exit_status == 3


@pytest.mark.slow
@pytest.mark.parametrize("shift", [-30.0, 1e7])
def test_a_clock_jump_in_one_stream_predictions_resume_and_sigterm_exits(shift: float, tmp_path: Path) -> None:
    from tests.runtime.conftest import make_tiny_model

    make_tiny_model(tmp_path / "tiny")
    uid = uuid.uuid4().hex[:8]
    eeg = Pusher(f"rtp-eeg-{uid}", "EEG", 4, 128.0, source_id=f"eeg-{uid}").start()
    ecg = Pusher(f"rtp-ecg-{uid}", "ECG", 1, 256.0, source_id=f"ecg-{uid}").start()
    port = free_port()
    collector = Collector(port)
    window = 2.0
    proc = subprocess.Popen(
        [RT_PHYSIO, "run", "--eeg", f"lsl:rtp-eeg-{uid}", "--ecg", f"lsl:rtp-ecg-{uid}", "--model",
         str(tmp_path / "tiny"), "--window", str(window), "--hop", "0.5", "--device", "cpu", "--backend", "eager",
         "--publish", f"zmq://127.0.0.1:{port}", "--duration", "600"],  # ended by SIGTERM below
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        collector.wait(lambda: len(collector.preds) >= 2 or proc.poll() is not None, 90)
        assert proc.poll() is None
        before = collector.preds[-1][0]["seq"]
        eeg.shift = shift  # the EEG sender's clock jumps
        jumped_at = pylsl.local_clock()
        resumed = collector.wait(lambda: next(((m, t) for m, t in collector.preds
                                               if m["seq"] > before and t > jumped_at), None), 60)
        assert resumed[1] - jumped_at < window + 2.0
        collector.wait(lambda: sum(1 for m, t in collector.preds if t > jumped_at
                                   and m["modalities"] == ["eeg", "ecg"]) >= 3, 30)
        jump = collector.wait(collector.status_after(0, lambda s: s["modalities"]["eeg"]["clock_jumps"] == 1), 30)
        terminated = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)  # exits within 5 s
        assert time.monotonic() - terminated < 5.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        eeg.stop()
        ecg.stop()
        collector.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "clock jumped" in err
    assert jump["modalities"]["ecg"]["clock_jumps"] == 0
    _check_messages(collector)
    # the window grid went on, on the engine clock: whole hops apart, every window ending shortly before its
    # prediction arrived (not 30 s in the past, nor 10^7 s in the future, where the jumped stamps pointed)
    ends = np.array([m["t_end"] for m, _ in collector.preds])
    steps = np.diff(ends) / 0.5
    assert np.allclose(steps, np.round(steps), atol=1e-6) and (steps >= 1).all()
    assert all(0 <= t - m["t_end"] < 10.0 for m, t in collector.preds)
