"""MqttPublisher against a real mosquitto: topics, retained state, presence, buffering, reconnects, TLS, passwords."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rt_physio.errors import ConfigError
from rt_physio.publish.mqtt import PASSWORD_ENV, MqttPublisher, parse_mqtt_url
from rt_physio.publish.schema import decode, encode, validate, validate_status
from tests.conftest import free_port
from tests.publish._brokers import (
    Mosquitto,
    Subscriber,
    count,
    last_state,
    make_certificates,
    sample_prediction,
    status_state,
)

FAST = (0.05, 0.2)  # reconnect backoff for tests: first, longest (s)


def test_topics_retained_state_and_presence(broker: Mosquitto) -> None:
    live = Subscriber(broker.port, "home/eeg/#")
    pub = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}/home/eeg?qos=1&format=msgpack", ["s1", "s2"])
    try:
        assert pub.connected
        payloads = [sample_prediction(seq).to_message() for seq in range(3)]
        for msg in payloads:
            pub.prediction("s1", encode(msg, "msgpack"))
        pub.status("s1", {"state": "online", "reason": "start"})  # the engine's status of s1; s2 has none yet
        live.wait_for(count("s1/pred", 3), 5)
        live.wait_for(last_state("s1/status", "online"), 5)
        preds = live.on("home/eeg/s1/pred")
        assert [decode(m.payload, "msgpack")["seq"] for m in preds] == [0, 1, 2]
        for m in preds:
            validate(decode(m.payload, "msgpack"))
            assert not m.retain
        # a subscriber that joins now gets the latest state and the presence at once (retained)
        late = Subscriber(broker.port, "home/eeg/#")
        late.wait_for(count("s1/state", 1), 5)
        state = late.on("s1/state")[-1]
        assert state.retain
        assert decode(state.payload, "msgpack")["seq"] == 2
        late.wait_for(count("s2/status", 1), 5)
        late.wait_for(count("s1/status", 1), 5)
        s1 = [(decode(m.payload, "msgpack"), m.retain) for m in late.on("s1/status")]
        assert s1 == [({"schema": "rt_physio.status/1", "session": "s1", "state": "online", "reason": "start"}, True)]
        s2 = decode(late.on("s2/status")[0].payload, "msgpack")
        assert (s2["state"], s2["reason"]) == ("degraded", "connected")  # connected, the session not reported yet
        for m in (*late.on("s1/status"), *late.on("s2/status")):
            validate_status(decode(m.payload, "msgpack"))
        assert late.on("s2/state") == []  # nothing predicted for s2 yet: no state
        late.close()
    finally:
        pub.close()
    live.wait_for(last_state("s1/status", "offline"), 5)
    live.wait_for(last_state("s2/status", "offline"), 5)
    after = Subscriber(broker.port, "home/eeg/+/status")
    after.wait_for(count("status", 2), 5)
    assert {(m.topic, status_state(m.payload), m.retain) for m in after.messages} == {
        ("home/eeg/s1/status", "offline", True), ("home/eeg/s2/status", "offline", True)}
    after.close()
    live.close()


def test_broker_down_buffers_drops_oldest_and_reconnects(tmp_path: Path) -> None:
    # a persistent broker and subscriber: the subscription survives the restart, so nothing sent after the
    # publisher reconnects can slip past the subscriber, whichever of the two reconnects first
    broker = Mosquitto(tmp_path, free_port(), persistence=True).start()
    sub = Subscriber(broker.port, "rt_physio/#", persistent=True)
    pub = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}?queue=3&qos=1", ["s1"], backoff=FAST)
    try:
        sub.wait_for(count("/status", 1), 5)
        broker.stop()
        deadline = time.monotonic() + 5
        while pub.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pub.connected
        slowest = 0.0
        for seq in range(5):
            t0 = time.perf_counter()
            pub.prediction("s1", sample_prediction(seq).to_json())
            slowest = max(slowest, time.perf_counter() - t0)
        assert slowest < 0.05, "prediction() must not wait on the broker"
        assert pub.dropped == 2  # seq 0 and 1: the buffer holds the newest 3
        assert pub.queued("s1") == 3
        broker.start()
        sub.wait_for(count("/pred", 3), 10)
        assert [json.loads(m.payload)["seq"] for m in sub.on("/pred")] == [2, 3, 4]
        sub.wait_for(count("/state", 1), 5)
        assert json.loads(sub.on("/state")[-1].payload)["seq"] == 4
        assert pub.connects == 2
        assert pub.queued("s1") == 0
    finally:
        pub.close()
        sub.close()
        broker.stop()


def test_broker_absent_at_start_is_not_fatal(tmp_path: Path) -> None:
    port = free_port()
    t0 = time.monotonic()
    pub = MqttPublisher(f"mqtt://127.0.0.1:{port}", ["s1"], backoff=FAST)
    try:
        assert time.monotonic() - t0 < 4.0
        assert not pub.connected
        pub.prediction("s1", sample_prediction(7).to_json())
        broker = Mosquitto(tmp_path, port).start()
        try:
            sub = Subscriber(port, "rt_physio/s1/state")
            sub.wait_for(count("/state", 1), 10)
            sub.close()
        finally:
            broker.stop()
    finally:
        pub.close()


def test_username_password_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key, _ = make_certificates(tmp_path)
    broker = Mosquitto(tmp_path, free_port(), users={"alice": "s3cret pass"}, tls=(cert, key)).start()
    monkeypatch.setenv(PASSWORD_ENV, "s3cret pass")
    try:
        pub = MqttPublisher(f"mqtt://alice@127.0.0.1:{broker.port}?tls=1&cafile={ca}", ["s1"])
        try:
            sub = Subscriber(broker.port, "rt_physio/#", username="alice", password="s3cret pass", cafile=ca)
            pub.prediction("s1", sample_prediction(1).to_json())
            sub.wait_for(count("/pred", 1), 5)
            sub.close()
        finally:
            pub.close()
    finally:
        broker.stop()


def test_wrong_password_is_a_clear_error_at_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = Mosquitto(tmp_path, free_port(), users={"alice": "right"}).start()
    try:
        monkeypatch.setenv(PASSWORD_ENV, "wrong")
        t0 = time.monotonic()
        with pytest.raises(ConfigError, match=rf"refused user 'alice'.*{PASSWORD_ENV} \(it is set\)"):
            MqttPublisher(f"mqtt://alice@127.0.0.1:{broker.port}", ["s1"])
        assert time.monotonic() - t0 < 4.0
        monkeypatch.delenv(PASSWORD_ENV)
        with pytest.raises(ConfigError, match="is NOT set"):
            MqttPublisher(f"mqtt://alice@127.0.0.1:{broker.port}", ["s1"])
    finally:
        broker.stop()


def test_untrusted_broker_certificate_is_a_clear_error(tmp_path: Path) -> None:
    _, cert, key, other_ca = make_certificates(tmp_path)
    broker = Mosquitto(tmp_path, free_port(), tls=(cert, key)).start()
    try:
        with pytest.raises(ConfigError, match=r"TLS connection .* failed"):
            MqttPublisher(f"mqtt://127.0.0.1:{broker.port}?tls=1&cafile={other_ca}", ["s1"])
    finally:
        broker.stop()


def test_url_parsing() -> None:
    url = parse_mqtt_url("mqtt://bob@localhost/a/b?qos=2&format=msgpack&queue=5&keepalive=30")
    assert (url.host, url.port, url.username, url.prefix, url.qos, url.format, url.queue, url.keepalive) == (
        "localhost", 1883, "bob", "a/b", 2, "msgpack", 5, 30)
    assert not url.tls and url.is_loopback
    secure = parse_mqtt_url("mqtts://broker.example")
    assert (secure.port, secure.tls, secure.prefix) == (8883, True, "rt_physio")


@pytest.mark.parametrize(("url", "match"), [
    ("mqtt://bob:hunter2@127.0.0.1", PASSWORD_ENV),
    ("mqtt://127.0.0.1?qos=3", "qos"),
    ("mqtt://127.0.0.1?nope=1", "Unknown option 'nope'"),
    ("mqtt://127.0.0.1/a/#", "prefix"),
    ("mqtt://127.0.0.1/a/+/b", "prefix"),
    ("mqtt://127.0.0.1/a//b", "prefix"),
    ("mqtt://127.0.0.1?tls=0&cafile=/etc/hostname", "needs tls=1"),
    ("mqtt://127.0.0.1?cafile=/no/such/ca.pem", "is not a file"),
    ("mqtt://127.0.0.1?format=pickle", "format"),
    ("mqtt://", "Invalid publish URL"),
])
def test_bad_urls_name_the_problem(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_mqtt_url(url)
    assert "hunter2" not in str(info.value)  # a password typed into the URL is not echoed back


def test_plaintext_to_a_remote_broker_needs_insecure() -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        MqttPublisher("mqtt://192.0.2.1:1883", ["s1"])
