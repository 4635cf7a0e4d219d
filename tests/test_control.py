"""Control messages against real transports: a ZeroMQ REQ client, a real mosquitto, and a running Engine."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import zmq
from paho.mqtt.enums import CallbackAPIVersion

from rt_physio.config import EngineConfig, SessionConfig, load_engine_config
from rt_physio.errors import ConfigError
from rt_physio.publish.base import control_reply_topic, control_topic
from rt_physio.publish.control import MAX_COMMAND_BYTES, CommandError, ControlServer, parse_command
from rt_physio.publish.mqtt import MqttPublisher
from rt_physio.runtime.engine import Engine
from tests.conftest import REPO_ROOT, free_port
from tests.publish._brokers import Mosquitto, Subscriber, count, last_state

FAST = (0.05, 0.2)  # reconnect backoff for tests: first, longest (s)


class Recorder:
    """A control handler that keeps every call; ``calibrate`` needs a positive ``seconds``, ``boom`` crashes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self._lock = threading.Lock()

    def __call__(self, session_id: str, command: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append((session_id, dict(command), threading.current_thread().name))
        if command["cmd"] == "boom":
            raise RuntimeError("handler bug")
        if command["cmd"] == "calibrate":
            seconds = command.get("seconds")
            if not isinstance(seconds, int | float) or seconds <= 0:
                raise ValueError(f"'seconds' must be a positive number, got {seconds!r}")
            return {"ok": True, "cmd": "calibrate", "seconds": seconds}
        if command["cmd"] == "ping":
            return {"ok": True, "cmd": "ping"}
        raise ValueError(f"unknown command {command['cmd']!r}")


# -- parse_command -------------------------------------------------------------------------------------------------
def test_parse_command_returns_the_object() -> None:
    assert parse_command(b'{"cmd": "calibrate", "seconds": 60}') == {"cmd": "calibrate", "seconds": 60}
    assert parse_command('{"cmd": "ping", "note": "é"}'.encode()) == {"cmd": "ping", "note": "é"}


@pytest.mark.parametrize(("payload", "match"), [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{cmd: ping}", "not JSON"),
    (b"", "not JSON"),
    (b'["ping"]', "JSON object.*got a JSON array"),
    (b'"ping"', "got a JSON string"),
    (b'{"command": "ping"}', 'no "cmd" \\(keys: command\\)'),
    (b'{"cmd": 3}', '"cmd" must be a string, got a JSON number'),
    (b'{"cmd": null}', '"cmd" must be a string, got a JSON null'),
    (b'{"cmd": "ping", "pad": "' + b"x" * MAX_COMMAND_BYTES + b'"}', "limit is 65536 bytes"),
    (b"[" * 100_000 + b"]" * 100_000, "limit is 65536 bytes"),
    (b"[" * 30_000 + b"]" * 30_000, "not JSON \\(nested too deeply\\)"),
    # Python refuses to read an integer of more than 4300 digits (a ValueError json does not wrap)
    (b'{"cmd": "calibrate", "seconds": ' + b"1" * 5000 + b"}", "an integer of 5000 digits; numbers in commands "
                                                                 "have at most 30"),
    (b'{"cmd": "ping", "id": -' + b"9" * 31 + b"}", "an integer of 31 digits"),
    (b'{"cmd": "calibrate", "seconds": NaN}', "holds NaN, which is not a JSON number"),
    (b'{"cmd": "calibrate", "seconds": -Infinity}', "holds -Infinity, which is not a JSON number"),
    (b'{"cmd": "calibrate", "seconds": 1e400}', "holds the number '1e400', too large for a float"),
])
def test_parse_command_names_what_is_wrong(payload: bytes, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        parse_command(payload)


# -- ZeroMQ REP server ---------------------------------------------------------------------------------------------
@pytest.fixture
def req() -> Iterator[zmq.Socket[bytes]]:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    yield sock
    sock.close()


def _ask(sock: zmq.Socket[bytes], request: dict[str, Any] | bytes, timeout: float = 5.0) -> dict[str, Any]:
    sock.send(request if isinstance(request, bytes) else json.dumps(request).encode())
    assert sock.poll(int(timeout * 1e3)), "no reply from the control server"
    reply: dict[str, Any] = json.loads(sock.recv())
    return reply


def _server(handler: Recorder, sessions: list[str], **kwargs: Any) -> tuple[ControlServer, str]:
    url = f"zmq://127.0.0.1:{free_port()}"
    return ControlServer(url, handler, sessions, **kwargs), url


def test_zmq_ping_reaches_the_handler_on_the_server_thread(req: zmq.Socket[bytes]) -> None:
    handler = Recorder()
    server, url = _server(handler, ["s1", "s2"])
    try:
        req.connect(url.replace("zmq://", "tcp://"))
        assert _ask(req, {"session": "s2", "cmd": "ping", "id": 7}) == {"ok": True, "cmd": "ping", "session": "s2",
                                                                          "id": 7}
        assert _ask(req, {"session": "s1", "cmd": "calibrate", "seconds": 60}) == {
            "ok": True, "cmd": "calibrate", "seconds": 60, "session": "s1"}
        # the transport keys are not part of the command the handler sees
        assert [(sid, cmd) for sid, cmd, _ in handler.calls] == [
            ("s2", {"cmd": "ping"}), ("s1", {"cmd": "calibrate", "seconds": 60})]
        assert {thread for _, _, thread in handler.calls} == {f"zmq-control-{server.url.port}"}
        assert (server.handled, server.errors) == (2, 0)
    finally:
        server.close()


def test_zmq_session_may_be_left_out_only_when_there_is_one(req: zmq.Socket[bytes]) -> None:
    handler = Recorder()
    one, url = _server(handler, ["only"])
    try:
        req.connect(url.replace("zmq://", "tcp://"))
        assert _ask(req, {"cmd": "ping"}) == {"ok": True, "cmd": "ping", "session": "only"}
    finally:
        one.close()
    several, url = _server(handler, ["s1", "s2"])
    try:
        with zmq.Context.instance().socket(zmq.REQ) as sock:
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(url.replace("zmq://", "tcp://"))
            reply = _ask(sock, {"cmd": "ping"})
        assert reply["ok"] is False
        assert reply["error"] == 'control request has no "session" and the engine runs several; sessions: s1, s2.'
        assert several.errors == 1
    finally:
        several.close()


def test_zmq_unknown_session_is_answered(req: zmq.Socket[bytes]) -> None:
    handler = Recorder()
    server, url = _server(handler, ["s1", "s2"])
    try:
        req.connect(url.replace("zmq://", "tcp://"))
        assert _ask(req, {"session": "x", "cmd": "ping"}) == {
            "ok": False, "error": "unknown session 'x'; sessions: s1, s2."}
        assert handler.calls == []
        assert server.errors == 1
    finally:
        server.close()


def test_zmq_bad_requests_are_answered_counted_and_the_server_goes_on(req: zmq.Socket[bytes],
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder()
    server, url = _server(handler, ["s1"])
    try:
        req.connect(url.replace("zmq://", "tcp://"))
        reply = _ask(req, b"{not json")
        assert reply["ok"] is False
        assert reply["error"].startswith("control message is not JSON")
        assert _ask(req, b'{"session": "s1"}')["error"].startswith('control message has no "cmd"')
        req.send_multipart([b'{"cmd": "ping"}', b"extra"])
        assert req.poll(5000)
        assert json.loads(req.recv())["error"] == "control request must be one message frame, got 2."
        assert server.errors == 3
        assert sum("bad request" in r.getMessage() for r in caplog.records) == 3
        # the handler's own refusals and crashes are answered too, and the server still works afterwards
        assert _ask(req, {"cmd": "calibrate", "seconds": -1}) == {
            "ok": False, "error": "'seconds' must be a positive number, got -1", "session": "s1"}
        crash = _ask(req, {"cmd": "boom"})
        assert crash["ok"] is False
        assert "RuntimeError: handler bug" in crash["error"]
        assert any(r.exc_info is not None for r in caplog.records)  # logged with its traceback
        assert _ask(req, {"cmd": "ping"}) == {"ok": True, "cmd": "ping", "session": "s1"}
        assert server.running
        assert (server.handled, server.errors) == (3, 3)
    finally:
        server.close()


def test_zmq_server_closes_promptly_and_frees_the_port() -> None:
    server, url = _server(Recorder(), ["s1"], poll_s=0.1)
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 1.0
    assert not server.running
    again = ControlServer(url, Recorder(), ["s1"])  # the port is free again
    again.close()


def test_zmq_busy_port_is_a_clear_error() -> None:
    server, url = _server(Recorder(), ["s1"])
    try:
        with pytest.raises(ConfigError, match=r"Cannot bind the control server on tcp://127\.0\.0\.1:.*--control"):
            ControlServer(url, Recorder(), ["s1"])
    finally:
        server.close()


def test_zmq_non_loopback_bind_needs_insecure() -> None:
    with pytest.raises(ConfigError, match=r"non-loopback address '0\.0\.0\.0'.*--insecure"):
        ControlServer(f"zmq://0.0.0.0:{free_port()}", Recorder(), ["s1"])
    server = ControlServer(f"zmq://0.0.0.0:{free_port()}", Recorder(), ["s1"], insecure=True)
    server.close()


@pytest.mark.parametrize(("url", "match"), [
    ("mqtt://127.0.0.1:5557", "Invalid publish URL"),
    ("zmq://127.0.0.1", "has no port"),
    ("zmq://127.0.0.1:5557?format=msgpack", "control messages are JSON"),
])
def test_zmq_bad_control_urls(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ControlServer(url, Recorder(), ["s1"])


# -- MQTT ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path, free_port()).start()
    yield b
    b.stop()


def _send(port: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish one message at QoS 1 from a fresh paho client and wait for the broker's PUBACK."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"app-{uuid.uuid4().hex[:10]}")
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def _replies(sub: Subscriber, session: str = "s1") -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.on(control_reply_topic(session))]


def test_mqtt_command_is_handled_and_answered_on_the_reply_topic(broker: Mosquitto) -> None:
    handler = Recorder()
    sub = Subscriber(broker.port, "rt_physio/#")
    pub = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}", ["s1", "s2"], on_control=handler)
    try:
        sub.wait_for(count("/status", 2), 5)  # the status is published once the control topic is subscribed
        _send(broker.port, control_topic("s2"), b'{"cmd": "calibrate", "seconds": 60, "id": "a1"}')
        sub.wait_for(count("s2/control/reply", 1), 5)
        [reply] = sub.on(control_reply_topic("s2"))
        assert json.loads(reply.payload) == {"ok": True, "cmd": "calibrate", "seconds": 60, "session": "s2",
                                             "id": "a1"}
        assert not reply.retain
        assert [(sid, cmd) for sid, cmd, _ in handler.calls] == [("s2", {"cmd": "calibrate", "seconds": 60})]
        # errors are answered on the same topic; a malformed message is counted
        _send(broker.port, control_topic("s1"), b"calibrate please")
        _send(broker.port, control_topic("s1"), b'{"cmd": "calibrate", "session": "s2"}')
        _send(broker.port, control_topic("s1"), b'{"cmd": "boom"}')
        _send(broker.port, control_topic("s1"), b'{"cmd": "ping"}')
        sub.wait_for(count("s1/control/reply", 4), 5)
        replies = _replies(sub)
        assert replies[0]["ok"] is False
        assert replies[0]["error"].startswith("control message is not JSON")
        assert "names session 's2' but was sent to session 's1'" in replies[1]["error"]
        assert "RuntimeError: handler bug" in replies[2]["error"]
        assert replies[3] == {"ok": True, "cmd": "ping", "session": "s1"}
        assert pub.control_errors == 2
        assert pub.connected
    finally:
        pub.close()
        sub.close()


def test_mqtt_without_on_control_does_not_subscribe(broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "rt_physio/#")
    pub = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}", ["s1"])
    try:
        sub.wait_for(count("/status", 1), 5)
        _send(broker.port, control_topic("s1"), b'{"cmd": "ping"}')
        time.sleep(0.5)
        assert sub.on("/control/reply") == []
    finally:
        pub.close()
        sub.close()


def test_mqtt_retained_control_message_is_ignored(broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder()
    _send(broker.port, control_topic("s1"), b'{"cmd": "calibrate", "seconds": 60}', retain=True)
    sub = Subscriber(broker.port, "rt_physio/s1/#")
    pub = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}", ["s1"], on_control=handler)
    try:
        sub.wait_for(last_state("s1/status", "degraded"), 5)
        _send(broker.port, control_topic("s1"), b'{"cmd": "ping"}')
        sub.wait_for(count("s1/control/reply", 1), 5)
        time.sleep(0.3)  # room for a (wrong) second reply
        assert _replies(sub) == [{"ok": True, "cmd": "ping", "session": "s1"}]
        assert [cmd for _, cmd, _ in handler.calls] == [{"cmd": "ping"}]
        assert any("ignored a retained control message" in r.getMessage() for r in caplog.records)
    finally:
        pub.close()
        sub.close()


def test_mqtt_control_works_again_after_a_broker_restart(tmp_path: Path) -> None:
    handler = Recorder()
    broker = Mosquitto(tmp_path, free_port()).start()
    pub = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}", ["s1"], on_control=handler, backoff=FAST)
    try:
        sub = Subscriber(broker.port, "rt_physio/s1/#")
        sub.wait_for(last_state("s1/status", "degraded"), 5)
        _send(broker.port, control_topic("s1"), b'{"cmd": "ping", "id": 1}')
        sub.wait_for(count("s1/control/reply", 1), 5)
        sub.close()
        broker.stop()
        broker.start()
        # a fresh broker holds no retained status: it shows up again only after the new connection
        # has subscribed to the control topic
        sub = Subscriber(broker.port, "rt_physio/s1/#")
        sub.wait_for(last_state("s1/status", "degraded"), 10)
        assert pub.connects >= 2
        _send(broker.port, control_topic("s1"), b'{"cmd": "ping", "id": 2}')
        sub.wait_for(count("s1/control/reply", 1), 5)
        assert _replies(sub) == [{"ok": True, "cmd": "ping", "session": "s1", "id": 2}]
        assert [cmd for _, cmd, _ in handler.calls] == [{"cmd": "ping"}, {"cmd": "ping"}]
        sub.close()
    finally:
        pub.close()
        broker.stop()


# -- the example client (what users copy) -------------------------------------------------------------------------
def _example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "examples/control.py", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=30, check=False)


def test_control_example_over_zmq() -> None:
    handler = Recorder()
    server, _ = _server(handler, ["s1", "s2"])
    try:
        port = str(server.url.port)
        done = _example("calibrate", "seconds=60", "--session", "s2", "--port", port)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"ok": True, "cmd": "calibrate", "seconds": 60, "session": "s2"}
        refused = _example("calibrate", "seconds=-1", "--session", "s2", "--port", port)
        assert refused.returncode == 2
        assert json.loads(refused.stdout)["error"] == "'seconds' must be a positive number, got -1"
    finally:
        server.close()
    assert [cmd for _, cmd, _ in handler.calls] == [{"cmd": "calibrate", "seconds": 60},
                                                    {"cmd": "calibrate", "seconds": -1}]


def test_control_example_over_mqtt(broker: Mosquitto) -> None:
    handler = Recorder()
    sub = Subscriber(broker.port, "lab/eeg/#")
    pub = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}/lab/eeg", ["s1"], on_control=handler)
    try:
        sub.wait_for(count("/status", 1), 5)
        done = _example("ping", "--mqtt", "--port", str(broker.port), "--prefix", "lab/eeg", "--session", "s1")
    finally:
        pub.close()
        sub.close()
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply.pop("id")  # the example's own id came back
    assert reply == {"ok": True, "cmd": "ping", "session": "s1"}


def test_control_example_says_when_nobody_answers() -> None:
    done = _example("ping", "--port", str(free_port()))
    assert done.returncode == 1
    assert "no reply within 5 s" in done.stderr


# -- configuration and the engine ----------------------------------------------------------------------------------
def test_control_option_in_config(tmp_path: Path) -> None:
    assert EngineConfig().control is None
    assert EngineConfig(control="zmq://127.0.0.1:5557").control == "zmq://127.0.0.1:5557"
    with pytest.raises(ConfigError, match="'control' parameter must be a zmq://HOST:PORT URL"):
        EngineConfig(control="mqtt://127.0.0.1:1883")
    with pytest.raises(ConfigError, match="also a --publish URL"):
        EngineConfig(publish=("zmq://127.0.0.1:5556",), control="zmq://127.0.0.1:5556")
    toml = tmp_path / "engine.toml"
    toml.write_text('control = "zmq://127.0.0.1:6000"\n[[sessions]]\nid = "a"\neeg = "synthetic"\n')
    assert load_engine_config(toml).control == "zmq://127.0.0.1:6000"
    assert load_engine_config(toml, control="zmq://127.0.0.1:6001").control == "zmq://127.0.0.1:6001"


@pytest.mark.slow
def test_running_engine_answers_control_commands(tmp_path: Path, req: zmq.Socket[bytes]) -> None:
    from tests.runtime.conftest import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny")
    control = f"zmq://127.0.0.1:{free_port()}"
    config = EngineConfig(sessions=(SessionConfig("s1", eeg="synthetic", ecg="synthetic"),),
                          model=str(tmp_path / "tiny"), device="cpu", threads=1, window_s=2, hop_s=0.5,
                          publish=(f"zmq://127.0.0.1:{free_port()}",), control=control, duration_s=60)
    engine = Engine(config, model=model)
    runner = threading.Thread(target=engine.run, args=(60,), daemon=True)
    runner.start()
    try:
        req.connect(control.replace("zmq://", "tcp://"))
        deadline = time.monotonic() + 60
        while engine.predictions == 0 and time.monotonic() < deadline:  # a running session, not just a built one
            time.sleep(0.1)
        assert engine.predictions > 0
        assert _ask(req, {"session": "s1", "cmd": "ping"}) == {"ok": True, "cmd": "ping", "session": "s1"}
        assert _ask(req, {"cmd": "ping"}) == {"ok": True, "cmd": "ping", "session": "s1"}
        reply = _ask(req, {"cmd": "selfdestruct"})
        assert reply == {"ok": False, "error": "unknown command 'selfdestruct'; known: ping, calibrate",
                         "session": "s1"}
        assert _ask(req, {"cmd": "__init__"})["ok"] is False
    finally:
        engine.request_stop()
        runner.join(30)
    assert not runner.is_alive()
    assert engine.control is not None and not engine.control.running
