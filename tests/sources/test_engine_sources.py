"""The engine on sources that misbehave or replay: `rt-physio run` in a subprocess, a real ZMQ subscriber."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pylsl
import pytest
import zmq

from rt_physio.publish.schema import validate
from tests.conftest import RealTimeOutlet

RT_PHYSIO = str(Path(sys.executable).parent / "rt-physio")


class Subscriber:
    """A ZMQ SUB on the engine's predictions, keeping every message with its arrival time."""

    def __init__(self, port: int) -> None:
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"rt_physio/")
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.preds: list[tuple[dict[str, Any], float]] = []

    def until(self, proc: subprocess.Popen[str], done, timeout: float) -> bool:
        """Receive until ``done(preds)`` is true (or the engine exits, or ``timeout``); return whether it is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if done(self.preds):
                return True
            if self.sock.poll(100):
                topic, payload = self.sock.recv_multipart()
                if topic.endswith(b"/pred"):
                    self.preds.append((json.loads(payload), pylsl.local_clock()))
        return bool(done(self.preds))

    def close(self) -> None:
        self.sock.close()


def _engine(port: int, eeg: str, ecg: str, session: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [RT_PHYSIO, "run", "--eeg", eeg, "--ecg", ecg, "--window", "2", "--hop", "0.5", "--publish",
         f"zmq://127.0.0.1:{port}", "--device", "cpu", "--session", session, "--duration", "600",
         # eager: a traced backend builds a runner for each new modality subset (ECG alone, here) on the hot path,
         # and on a busy 2-core machine that build starves the acquisition threads for seconds
         "--backend", "eager", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:  # a clean stop publishes and records every queued window: generous on a loaded machine
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()


def _mods(preds: list[tuple[dict[str, Any], float]], start: int = 0) -> list[list[str]]:
    return [m["modalities"] for m, _ in preds[start:]]


@pytest.mark.slow
def test_eeg_outlet_destroyed_and_recreated_with_the_same_source_id(port):
    """The engine marks EEG missing, keeps publishing ECG-only predictions, then resumes with both."""
    uid = uuid.uuid4().hex[:8]
    eeg_name, ecg_name = f"rtp-eeg-{uid}", f"rtp-ecg-{uid}"
    eeg = RealTimeOutlet(eeg_name, "EEG", 8, 250.0, chunk=5).start()
    ecg = RealTimeOutlet(ecg_name, "ECG", 1, 130.0, chunk=13, seed=1).start()
    sub = Subscriber(port)
    proc = _engine(port, f"lsl:{eeg_name}", f"lsl:{ecg_name}", "recover")
    eeg2 = None
    try:
        both = ["eeg", "ecg"]
        assert sub.until(proc, lambda p: _mods(p).count(both) >= 2, timeout=120), _finish(proc)
        # the EEG sender dies: its outlet is destroyed
        eeg.stop()
        eeg.outlet = None
        killed_at = pylsl.local_clock()
        mark = len(sub.preds)
        assert sub.until(proc, lambda p: _mods(p, mark).count(["ecg"]) >= 3, timeout=60), _finish(proc)
        ecg_only_at = sub.preds[-1][1]
        # ... and comes back: a new outlet with the same source_id (RealTimeOutlet uses "<name>-uid")
        eeg2 = RealTimeOutlet(eeg_name, "EEG", 8, 250.0, chunk=5, seed=2).start()
        restarted_at = pylsl.local_clock()
        mark2 = len(sub.preds)
        assert sub.until(proc, lambda p: _mods(p, mark2).count(both) >= 2, timeout=60), _finish(proc)
        resumed_at = next(t for m, t in sub.preds[mark2:] if m["modalities"] == both)
    finally:
        out, err = _finish(proc)
        eeg.stop()
        ecg.stop()
        if eeg2 is not None:
            eeg2.stop()
        sub.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    messages = [m for m, _ in sub.preds]
    for msg in messages:
        validate(msg)
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(seqs)
    # publishing never stopped: the ECG-only predictions kept the hop grid going while EEG was away
    missing = [m for m in messages if m["modalities"] == ["ecg"]]
    assert len(missing) >= 3
    assert all(m["t_end"] > killed_at - 2.5 for m in missing)
    assert all("eeg" not in m["quality"] for m in missing)
    assert ecg_only_at - killed_at < 8.0  # missing after missing_after (1 s) + three hops, on a loaded machine
    # both again within: LSL recovery (~1 s) + one full window of fresh EEG (2 s) + margins for a loaded machine
    assert resumed_at - restarted_at < 12.0
    last = messages[-1]
    assert last["modalities"] == ["eeg", "ecg"]
    assert f"LSL stream {eeg_name}: no data" in err  # the stall was reported
    assert "missing {'eeg': " in out


def test_run_replays_one_file_into_both_modalities(data_dir, port):
    path = data_dir / "eegmat" / "Subject05_2.edf"
    spec = f"replay:{path}?duration=30"
    sub = Subscriber(port)
    # missing_after 5 s: this test is about wiring (one file, one clock, both modalities), not about how the
    # engine copes when another test run starves this 2-core machine
    proc = _engine(port, spec, spec, "replay", "--missing-after", "5")
    try:
        assert sub.until(proc, lambda p: len(p) >= 4, timeout=120), _finish(proc)
    finally:
        _, err = _finish(proc)
        sub.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    ends = []
    assert _mods(sub.preds) == [["eeg", "ecg"]] * len(sub.preds), (_mods(sub.preds), err)
    for msg, received in sub.preds:
        validate(msg)
        assert msg["t_end"] <= received + 0.01
        ends.append(msg["t_end"])
    assert all(b - a == pytest.approx(0.5, abs=1e-6) for a, b in itertools.pairwise(ends))
