"""`rt-physio run` as a real process: MQTT + ZeroMQ out, SIGTERM and kill -9, a broker restart, the recorder.

Everything is real: mosquitto on a free loopback port, paho and ZeroMQ subscribers, BrainFlow's synthetic board
or LSL outlets as sources. Runs use 2-s windows and a 0.5-s hop to stay short.
"""

from __future__ import annotations

import json
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest
import zmq

from rt_physio.cli import main
from rt_physio.io import read_sessions
from rt_physio.publish.mqtt import PASSWORD_ENV
from rt_physio.publish.schema import decode, validate, validate_status
from tests._zmq import ZmqCollector
from tests.conftest import RealTimeOutlet, free_port
from tests.publish._brokers import Mosquitto, Subscriber, count, last_state, status_state

RT_PHYSIO = str(Path(sys.executable).parent / "rt-physio")
EPOC = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]
HOP = 0.5


def _engine(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([RT_PHYSIO, "run", "--window", "2", "--hop", str(HOP), "--device", "cpu", "--threads",
                             "1", "--duration", "600", *args],  # a backstop: each test stops it
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=120)  # a clean stop on a loaded machine
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _stalled_mqtt_client(port: int) -> socket.socket:
    """A raw MQTT client that subscribes to everything and then never reads a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", port))
    cid = b"stalled"
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid  # MQTT 3.1.1, clean, keepalive 60
    sock.sendall(bytes([0x10, len(body)]) + body)
    topic = b"rt_physio/#"
    sub = b"\x00\x01" + len(topic).to_bytes(2, "big") + topic + b"\x01"
    sock.sendall(bytes([0x82, len(sub)]) + sub)
    return sock


def _stalled_zmq_subscriber(port: int) -> zmq.Socket[bytes]:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 1024)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def test_mqtt_and_zmq_retained_state_stalled_subscribers_and_sigterm(broker: Mosquitto, tmp_path: Path) -> None:
    zport = free_port()
    live = Subscriber(broker.port, "rt_physio/#")
    zmq_live = ZmqCollector(zport, clock=pylsl.local_clock)
    stalled = [_stalled_mqtt_client(broker.port)]
    stalled_zmq = _stalled_zmq_subscriber(zport)
    proc = _engine("--session", "e2e", "--publish", f"mqtt://127.0.0.1:{broker.port}?format=msgpack&qos=1",
                   "--publish", f"zmq://127.0.0.1:{zport}?hwm=4", "--record", str(tmp_path / "rec"))
    try:
        live.wait_for(count("/pred", 6), 60)
        preds = [decode(m.payload, "msgpack") for m in live.on("e2e/pred")]
        for msg in preds:
            validate(msg)
        assert [m["seq"] for m in preds] == list(range(len(preds)))
        live.wait_for(last_state("e2e/status", "online"), 30)  # every modality streams (JSON status, retained)
        # a subscriber that joins late gets the latest prediction and the presence immediately (retained)
        late = Subscriber(broker.port, "rt_physio/e2e/+")
        late.wait_for(lambda ms: any(m.topic.endswith("/state") for m in ms) and
                      any(m.topic.endswith("/status") for m in ms), 5)
        state = late.on("/state")[0]
        assert state.retain
        latest = decode(state.payload, "msgpack")
        validate(latest)
        assert latest["seq"] >= preds[-1]["seq"]
        # the retained status comes first; a heartbeat or change published meanwhile may follow it, never retained
        statuses = [(status_state(m.payload), m.retain) for m in late.on("/status")]
        assert statuses[0] == ("online", True), statuses
        assert not any(retained for _, retained in statuses[1:]), statuses
        validate_status(decode(late.on("/status")[0].payload, "msgpack"))
        late.close()
    finally:
        out, err = _finish(proc)
        for s in stalled:
            s.close()
        stalled_zmq.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    live.wait_for(last_state("e2e/status", "offline"), 5)
    zmq_live.close()
    live.close()
    # ZeroMQ: JSON, every window (no gaps despite the stalled subscribers), promptly, then offline
    zpreds = zmq_live.preds()
    assert len(zpreds) >= 5
    seqs = [m["seq"] for m, _ in zpreds]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    for msg, received in zpreds:
        validate(msg)
        assert received - msg["t_end"] < 1.0  # t_end is the newest sample: hop 0.5, model ~50 ms
    statuses = [m for topic, m, _ in zmq_live.got if topic.endswith("/status")]
    assert statuses[-1]["state"] == "offline"
    assert statuses[-1]["schema"] == "rt_physio.status/1"
    # the recording is complete and holds every prediction the engine made
    rec = read_sessions(tmp_path / "rec")["e2e"]
    assert rec.complete
    published = int(out.split(" windows, ")[1].split(" predictions")[0])
    assert [m["seq"] for m in rec.predictions] == list(range(published))
    assert set(seqs) <= {m["seq"] for m in rec.predictions}
    eeg = rec.signals["eeg"]
    assert eeg.data.shape[1] == len(eeg.channel_names) == 14
    assert eeg.sfreq == 250.0
    assert eeg.timestamps[-1] >= rec.predictions[-1]["t_end"] - 0.01
    assert f"recording: {rec.path}" in out


def test_kill9_publishes_the_last_will_and_the_recording_survives(broker: Mosquitto, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:8]
    eeg = RealTimeOutlet(f"rtp-eeg-{uid}", "EEG", 14, 128.0, chunk=4, labels=EPOC).start()
    ecg = RealTimeOutlet(f"rtp-ecg-{uid}", "ECG", 1, 256.0, chunk=8, seed=1).start()
    live = Subscriber(broker.port, "rt_physio/#")
    proc = _engine("--eeg", f"lsl:rtp-eeg-{uid}", "--ecg", f"lsl:rtp-ecg-{uid}", "--session", "k9", "--publish",
                   f"mqtt://127.0.0.1:{broker.port}", "--record", str(tmp_path / "rec"), "--quiet")
    try:
        live.wait_for(count("k9/pred", 4), 60)
        time.sleep(1.0)
        killed_at = pylsl.local_clock()
        proc.kill()
        proc.wait(10)
        t_kill = time.monotonic()
        live.wait_for(last_state("k9/status", "offline"), 10)
        will_after = time.monotonic() - t_kill
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        eeg.stop()
        ecg.stop()
    assert will_after < 5.0
    after = Subscriber(broker.port, "rt_physio/k9/status")
    after.wait_for(count("/status", 1), 5)
    will = json.loads(after.messages[0].payload)
    assert (will["state"], will["reason"], after.messages[0].retain) == ("offline", "connection lost", True)
    validate_status(will)
    after.close()
    received = [json.loads(m.payload) for m in live.on("k9/pred")]
    live.close()

    rec = read_sessions(tmp_path / "rec")["k9"]
    assert not rec.complete
    for outlet, modality in ((eeg, "eeg"), (ecg, "ecg")):
        got = rec.signals[modality]
        pushed_ts = np.asarray(outlet.pushed_ts)
        pushed = np.concatenate(outlet.pushed_data)
        first = int(np.argmin(np.abs(pushed_ts - got.timestamps[0])))
        n = got.n_samples
        # exactly the samples that were sent, contiguous, with their timestamps (same machine: tiny correction)
        np.testing.assert_array_equal(got.data, pushed[first:first + n])
        np.testing.assert_allclose(got.timestamps, pushed_ts[first:first + n], atol=2e-3)
        lost = killed_at - got.timestamps[-1]
        assert lost < 1.0, f"{modality}: the recording ends {lost:.2f} s before the kill"
        assert got.channel_names == (tuple(EPOC) if modality == "eeg" else ("ECG1",))
    recorded = {m["seq"] for m in rec.predictions}
    for msg in received:
        if msg["t_end"] < killed_at - 1.0:
            assert msg["seq"] in recorded


def test_broker_restart_reconnects_without_slowing_the_engine(broker: Mosquitto) -> None:
    zport = free_port()
    zmq_live = ZmqCollector(zport, clock=pylsl.local_clock)
    sub = Subscriber(broker.port, "rt_physio/#")
    proc = _engine("--publish", f"mqtt://127.0.0.1:{broker.port}", "--publish", f"zmq://127.0.0.1:{zport}",
                   "--quiet")
    try:
        sub.wait_for(count("/pred", 3), 60)
        sub.close()
        down_at = pylsl.local_clock()
        broker.stop(kill=True)
        time.sleep(3.0)
        up_at = pylsl.local_clock()
        broker.start()
        t_up = time.monotonic()
        after = Subscriber(broker.port, "rt_physio/#")
        after.wait_for(count("/pred", 2), 30)
        recovery = after.on("/pred")[0].at - t_up
        # the engine re-announced itself on the fresh broker (which lost every retained message)
        after.wait_for(lambda ms: any(m.topic.endswith("/status") and status_state(m.payload) == "online"
                                      for m in ms), 5)
        after.close()
    finally:
        out, err = _finish(proc)
        zmq_live.close()
    assert proc.returncode == 0, err
    assert recovery < 15.0
    assert "lost the broker connection" in err
    assert "reconnected after" in err
    zpreds = zmq_live.preds()
    seqs = [m["seq"] for m, _ in zpreds]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no window was lost while the broker was away"
    before = [m["latency_ms"]["total"] for m, _ in zpreds if m["t_end"] < down_at]
    during = [(m, t) for m, t in zpreds if down_at + 0.5 < m["t_end"] < up_at]
    assert len(before) >= 2 and len(during) >= 4
    # the engine's own latency and delivery to the other transport are unaffected by the dead broker
    assert statistics.median(m["latency_ms"]["total"] for m, _ in during) < 2 * statistics.median(before) + 50
    assert max(t - m["t_end"] for m, t in during) < 1.0
    assert "0 message(s) dropped" in out


def test_wrong_password_stops_rt_physio_run_with_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    broker = Mosquitto(tmp_path, free_port(), users={"alice": "right"}).start()
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    try:
        t0 = time.monotonic()
        status = main(["run", "--publish", f"mqtt://alice@127.0.0.1:{broker.port}", "--device", "cpu",
                       "--duration", "5"])
        elapsed = time.monotonic() - t0
    finally:
        broker.stop()
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("rt-physio: error: ")
    assert "refused user 'alice'" in err and PASSWORD_ENV in err
    assert "Traceback" not in err
    assert elapsed < 30
    assert "wrong" not in err  # the password itself is never printed
