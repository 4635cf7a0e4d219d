from __future__ import annotations

import json
import time

import pytest
import zmq

from rt_physio.cli import format_prediction
from rt_physio.errors import ConfigError
from rt_physio.publish.schema import Format, Prediction, decode, encode, validate
from rt_physio.publish.zmq import ZmqPublisher, parse_zmq_url


def _prediction(seq: int = 0, trained: bool = False) -> Prediction:
    return Prediction(
        session="s1", seq=seq, t_start=10.0, t_end=15.0, t_wall=time.time(), outputs={"arousal": 0.25},
        model_name="m", model_sha256="ab" * 32, trained=trained, modalities=["eeg"], quality={"eeg": 0.9},
        latency_ms={"infer": 1.5, "total": 3.25},
    )


def test_message_validates_and_untrained_carries_warning() -> None:
    msg = _prediction().to_message()
    validate(msg)
    assert msg["warning"].startswith("untrained")
    assert "warning" not in _prediction(trained=True).to_message()


def test_unused_modalities_are_listed_and_a_warning_says_when_nothing_was_usable() -> None:
    pred = _prediction(trained=True)
    pred.modalities, pred.quality, pred.unused = ["eeg", "ecg"], {"eeg": 0.9, "ecg": 1.0}, ["ecg"]
    partly = pred.to_message()
    validate(partly)
    assert partly["unused_modalities"] == ["ecg"]
    assert "warning" not in partly  # the outputs come from the EEG alone: as good as an EEG-only session's
    assert format_prediction(partly).endswith("(ecg unused)  | eeg+ecg q(eeg:0.90 ecg:1.00) | 3.2 ms")
    pred.modalities, pred.quality = ["ecg"], {"ecg": 1.0}
    nothing = pred.to_message()
    validate(nothing)
    assert nothing["unused_modalities"] == ["ecg"]
    assert nothing["warning"].startswith("no modality the model could use in this window (ecg")
    assert "(no usable input: ecg)" in format_prediction(nothing)
    assert "unused_modalities" not in _prediction(trained=True).to_message()


def test_schema_rejects_probability_out_of_range() -> None:
    import jsonschema

    msg = _prediction().to_message()
    msg["outputs"]["arousal"] = 1.5
    with pytest.raises(jsonschema.ValidationError):
        validate(msg)


def test_publisher_sends_multipart_topic_and_json(port: int) -> None:
    pub = ZmqPublisher(f"zmq://127.0.0.1:{port}")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"rt_physio/s1/")
    sub.connect(f"tcp://127.0.0.1:{port}")
    try:
        got = None
        deadline = time.monotonic() + 5
        seq = 0
        while got is None and time.monotonic() < deadline:  # PUB/SUB slow joiner: resend until one arrives
            pub.send("rt_physio/s1/pred", _prediction(seq).to_json())
            seq += 1
            if sub.poll(100):
                got = sub.recv_multipart()
        assert got is not None
        topic, payload = got
        assert topic == b"rt_physio/s1/pred"
        msg = json.loads(payload)
        validate(msg)
        assert msg["session"] == "s1"
    finally:
        sub.close(linger=0)
        pub.close()
    assert pub.sent >= 1


def test_busy_port_is_a_clear_error(port: int) -> None:
    first = ZmqPublisher(f"zmq://127.0.0.1:{port}")
    try:
        with pytest.raises(ConfigError, match=f"Cannot bind.*{port}"):
            ZmqPublisher(f"zmq://127.0.0.1:{port}")
    finally:
        first.close()


def test_non_loopback_bind_needs_insecure(port: int) -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        ZmqPublisher(f"zmq://0.0.0.0:{port}")
    pub = ZmqPublisher(f"zmq://0.0.0.0:{port}", insecure=True)
    pub.close()


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:5556", "zmq://127.0.0.1", "zmq://127.0.0.1:abc",
                                 "zmq://127.0.0.1:5556?foo=1", "zmq://127.0.0.1:5556?hwm=0",
                                 "zmq://127.0.0.1:5556?format=pickle", "zmq://127.0.0.1:5556/prefix"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_zmq_url(url)


def test_url_options() -> None:
    url = parse_zmq_url("zmq://localhost:7000?hwm=5&format=msgpack")
    assert (url.port, url.hwm, url.is_loopback, url.format) == (7000, 5, True, "msgpack")


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_both_formats_round_trip_and_validate(fmt: Format) -> None:
    msg = _prediction(3).to_message()
    back = decode(encode(msg, fmt), fmt)
    validate(back)
    assert back == msg


def test_msgpack_publisher_sends_predictions_and_status(port: int) -> None:
    pub = ZmqPublisher(f"zmq://127.0.0.1:{port}?format=msgpack")
    assert pub.format == "msgpack"
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"rt_physio/s1/")
    sub.connect(f"tcp://127.0.0.1:{port}")
    try:
        got: dict[bytes, bytes] = {}
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:  # slow joiner: repeat until both topics arrived
            pub.prediction("s1", encode(_prediction().to_message(), "msgpack"))
            pub.status("s1", {"state": "online"})
            while sub.poll(50):
                topic, payload = sub.recv_multipart()
                got[topic] = payload
        validate(decode(got[b"rt_physio/s1/pred"], "msgpack"))
        status = decode(got[b"rt_physio/s1/status"], "msgpack")
        assert status == {"schema": "rt_physio.status/1", "session": "s1", "state": "online"}
    finally:
        sub.close(linger=0)
        pub.close()
