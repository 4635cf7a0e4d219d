"""The status message says what waits in the engine's queues and what memory it holds (the soak samples both)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import zmq

from rt_physio.config import EngineConfig, SessionConfig
from rt_physio.nn import LoadedModel
from rt_physio.publish.schema import validate_status
from rt_physio.runtime.engine import Engine
from tests.conftest import RealTimeOutlet, free_port


@pytest.mark.slow
def test_status_messages_carry_the_queue_depths_of_a_recording_engine(tmp_path: Path,
                                                                        tiny_model: LoadedModel) -> None:
    uid = uuid.uuid4().hex[:8]
    outlet = RealTimeOutlet(f"rtp-queues-{uid}", "EEG", 4, 128.0, chunk=8).start()
    port = free_port()
    sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"rt_physio/q/status")
    sub.connect(f"tcp://127.0.0.1:{port}")
    config = EngineConfig(sessions=(SessionConfig("q", eeg=f"lsl:rtp-queues-{uid}", ecg=None),), device="cpu",
                          threads=1, backend="eager", window_s=2, hop_s=0.5, publish=(f"zmq://127.0.0.1:{port}",),
                          record=str(tmp_path / "rec"), status_every_s=0.5)
    engine = Engine(config, model=tiny_model)
    runner = threading.Thread(target=engine.run, daemon=True)
    runner.start()
    statuses = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(s["state"] == "online" and s["reason"] == "heartbeat"
                                                      for s in statuses):
            if sub.poll(500):
                statuses.append(json.loads(sub.recv_multipart()[1]))
    finally:
        engine.request_stop()
        runner.join(30)
        outlet.stop()
        sub.close()
    assert not runner.is_alive()
    heartbeat = next(s for s in statuses if s["state"] == "online" and s["reason"] == "heartbeat")
    validate_status(heartbeat)
    queues = heartbeat["queues"]
    assert set(queues) == {"executor", "recorder", "recorder_bytes", "mqtt"}
    assert queues["mqtt"] == 0 and queues["executor"] <= 1  # no MQTT publisher; inference keeps up
    assert 0 <= queues["recorder_bytes"] < 1 << 20  # a quarter of a second of one stream at most
    assert engine.queue_depths("q") == {"executor": 0, "recorder": 0, "recorder_bytes": 0, "mqtt": 0}  # all drained
    memory = heartbeat["memory"]  # the engine process's memory, glibc heap included (Debian)
    assert {"rss_mb", "rss_anon_mb", "rss_file_mb", "heap_in_use_mb", "heap_free_mb", "arenas", "arrow_mb",
            "trims", "trimmed_mb"} <= set(memory)  # arrow_mb: this engine records, so Arrow's pool is in use
    assert 0 <= memory["arrow_mb"] < memory["rss_mb"]
    assert memory["rss_anon_mb"] + memory["rss_file_mb"] <= memory["rss_mb"] + 8  # parts of it (read apart)
    assert 0 < memory["heap_in_use_mb"] < memory["rss_mb"] * 4
