"""End to end with real parts: LSL outlets / BrainFlow's synthetic board → `rt-physio run` → a real ZMQ SUB."""

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
EPOC = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]


def _subscriber(port: int) -> zmq.Socket[bytes]:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"rt_physio/")
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def _collect(sock: zmq.Socket[bytes], proc: subprocess.Popen[str], n_pred: int, timeout: float
             ) -> tuple[list[tuple[dict[str, Any], float]], list[dict[str, Any]]]:
    """Receive until n_pred predictions arrived; return (prediction, local_clock at receipt) and statuses."""
    preds: list[tuple[dict[str, Any], float]] = []
    statuses: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(preds) < n_pred and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if sock.poll(200):
            topic, payload = sock.recv_multipart()
            received = pylsl.local_clock()
            msg = json.loads(payload)
            if topic.endswith(b"/pred"):
                preds.append((msg, received))
            else:
                statuses.append(msg)
    return preds, statuses


def _stop(proc: subprocess.Popen[str], sock: zmq.Socket[bytes]) -> tuple[str, str, list[dict[str, Any]]]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    statuses = []
    while sock.poll(500):
        topic, payload = sock.recv_multipart()
        if topic.endswith(b"/status"):
            statuses.append(json.loads(payload))
    return out, err, statuses


def test_lsl_eeg_and_ecg_to_zmq(port: int) -> None:
    uid = uuid.uuid4().hex[:8]
    eeg = RealTimeOutlet(f"rtp-eeg-{uid}", "EEG", 14, 128.0, chunk=4, labels=EPOC).start()
    ecg = RealTimeOutlet(f"rtp-ecg-{uid}", "ECG", 1, 256.0, chunk=8, seed=1).start()
    sock = _subscriber(port)
    hop, window = 0.5, 2.0
    proc = subprocess.Popen(
        [RT_PHYSIO, "run", "--eeg", f"lsl:rtp-eeg-{uid}", "--ecg", f"lsl:rtp-ecg-{uid}", "--window", str(window),
         "--hop", str(hop), "--publish", f"zmq://127.0.0.1:{port}", "--device", "cpu", "--session", "lsl-e2e",
         "--model", "untrained-demo",
         "--duration", "600"],  # a backstop: the test stops it once it has its predictions
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        preds, _ = _collect(sock, proc, n_pred=4, timeout=120)
        out, err, statuses = _stop(proc, sock)
    finally:
        if proc.poll() is None:
            proc.kill()
        eeg.stop()
        ecg.stop()
        sock.close()
    assert len(preds) >= 3, f"got {len(preds)} predictions\nstdout:\n{out}\nstderr:\n{err}"
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    pushed = sorted(eeg.pushed_ts)
    seqs = []
    for msg, received in preds:
        validate(msg)
        assert msg["session"] == "lsl-e2e"
        assert msg["modalities"] == ["eeg", "ecg"]
        assert msg["model"]["trained"] is False
        assert "warning" in msg
        assert msg["t_end"] - msg["t_start"] == pytest.approx(window, abs=1e-6)
        # t_end lies on the pushed data: within one hop of a pushed sample, and before we received the message
        nearest = min(pushed, key=lambda t: abs(t - msg["t_end"]))
        assert abs(nearest - msg["t_end"]) < hop
        assert pushed[0] + window - hop <= msg["t_end"] <= received + 0.01
        assert 0 < msg["latency_ms"]["total"] < 1000 * hop
        assert set(msg["quality"]) == {"eeg", "ecg"}
        seqs.append(msg["seq"])
    assert seqs == sorted(seqs)
    ends = [m["t_end"] for m, _ in preds]
    assert all(b - a == pytest.approx(hop, abs=1e-6) for a, b in itertools.pairwise(ends))
    assert "[UNTRAINED]" in out
    assert any(s["state"] == "offline" for s in statuses)


def test_default_run_uses_brainflow_synthetic_board(port: int) -> None:
    sock = _subscriber(port)
    hop = 0.5
    proc = subprocess.Popen(
        [RT_PHYSIO, "run", "--window", "2", "--hop", str(hop), "--publish", f"zmq://127.0.0.1:{port}",
         "--device", "cpu", "--duration", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        preds, _ = _collect(sock, proc, n_pred=3, timeout=120)
        out, err, _ = _stop(proc, sock)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    assert len(preds) >= 3, f"got {len(preds)} predictions\nstdout:\n{out}\nstderr:\n{err}"
    assert proc.returncode == 0, err
    for msg, received in preds:
        validate(msg)
        assert msg["modalities"] == ["eeg", "ecg"]
        # BrainFlow's wall-clock timestamps were mapped onto the engine clock: t_end is just before receipt
        assert -0.01 <= received - msg["t_end"] < hop
        # the default model is the trained EEGMAT fusion model: no untrained warning
        assert msg["model"]["name"] == "eegmat-fusion"
        assert msg["model"]["trained"] is True
        assert "warning" not in msg
    # the printed lines are the same predictions the subscriber got
    printed = [line for line in out.splitlines() if line.startswith("default #")]
    assert len(printed) >= len(preds)
