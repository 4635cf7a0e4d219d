"""The example subscribers work against the real publishers (they are what users copy)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

from rt_physio.publish.mqtt import MqttPublisher
from rt_physio.publish.schema import encode
from rt_physio.publish.zmq import ZmqPublisher
from tests.conftest import REPO_ROOT
from tests.publish._brokers import Mosquitto, sample_prediction


def _run_while_publishing(args: list[str], publish: Callable[[int], None]) -> str:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT)
    stop = threading.Event()

    def keep_publishing() -> None:
        seq = 0
        while not stop.wait(0.1):
            publish(seq)
            seq += 1

    thread = threading.Thread(target=keep_publishing, daemon=True)
    thread.start()
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        stop.set()
        thread.join()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    return out


def test_subscribe_mqtt_example(broker: Mosquitto) -> None:
    pub = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}?format=msgpack", ["s1"])
    try:
        pub.prediction("s1", encode(sample_prediction(0).to_message(), "msgpack"))  # retained before it subscribes
        pub.status("s1", {"state": "online", "reason": "start", "modalities": {}})
        out = _run_while_publishing(
            ["examples/subscribe_mqtt.py", "--port", str(broker.port), "--msgpack", "--count", "2"],
            lambda seq: pub.prediction("s1", encode(sample_prediction(seq + 1).to_message(), "msgpack")))
    finally:
        pub.close()
    lines = out.splitlines()
    assert lines[0] == "s1: online (retained)"
    assert lines[1].startswith("s1 state #")  # the retained latest prediction comes first
    assert lines[1].endswith("arousal 0.250  valence 0.500")
    assert out.count("s1 pred  #") == 2


def test_subscribe_zmq_example(port: int) -> None:
    pub = ZmqPublisher(f"zmq://127.0.0.1:{port}")
    try:
        out = _run_while_publishing(["examples/subscribe_zmq.py", "--port", str(port), "--count", "2"],
                                    lambda seq: pub.prediction("s1", sample_prediction(seq).to_json()))
    finally:
        pub.close()
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("s1 #") and "arousal 0.250" in line and "[untrained model]" in line for line in lines)
