"""Decoding what engines publish, and the hub's fan-out to pages (no browser, no engine)."""

from __future__ import annotations

import asyncio
import json

import msgpack

from rt_physio.dashboard.feeds import LinkState
from rt_physio.dashboard.messages import decode_message
from rt_physio.dashboard.state import PAGE_QUEUE, Hub
from rt_physio.publish.schema import encode
from tests.publish._brokers import sample_prediction

STATUS = {"schema": "rt_physio.status/1", "session": "s1", "state": "online", "reason": "heartbeat"}


def test_json_and_msgpack_payloads_decode_to_the_same_message() -> None:
    body = sample_prediction(seq=3).to_message()
    as_json = decode_message("rt_physio/s1/pred", encode(body, "json"))
    as_msgpack = decode_message("lab/eeg/s1/state", encode(body, "msgpack"))  # MQTT's retained latest, 2-level prefix
    assert as_json is not None and as_msgpack is not None
    assert (as_json.kind, as_json.session, as_json.body) == ("pred", "s1", body)
    assert (as_msgpack.kind, as_msgpack.session, as_msgpack.body) == ("pred", "s1", body)
    status = decode_message("rt_physio/s1/status", json.dumps(STATUS).encode())
    assert status is not None and status.kind == "status" and status.body["state"] == "online"


def test_what_cannot_be_read_is_an_error_message_never_an_exception() -> None:
    body = sample_prediction().to_message()
    cases = {
        b"\xc1": "unreadable payload",
        b"{not json": "unreadable payload",
        msgpack.packb([1, 2]): "payload is not a map but list",
        json.dumps({**body, "schema": "rt_physio.prediction/2"}).encode(): "unknown schema 'rt_physio.prediction/2'",
        json.dumps({k: v for k, v in body.items() if k != "schema"}).encode(): "unknown schema None",
        json.dumps(STATUS).encode(): "a rt_physio.status/1 message on a 'pred' topic",
        json.dumps({**body, "seq": -1}).encode(): "does not follow its schema at seq",
    }
    for payload, why in cases.items():
        message = decode_message("rt_physio/s1/pred", payload)
        assert message is not None and message.kind == "error", payload
        assert why in message.error, (payload, message.error)
    assert decode_message("rt_physio/s1/control/reply", b"{}") is None  # not something the page shows
    assert decode_message("nonsense", b"{}") is None


def test_a_page_that_falls_behind_is_dropped_and_others_keep_their_events() -> None:
    async def scenario() -> tuple[int, str | None, int]:
        hub = Hub()
        hub.on_link(LinkState("zmq://127.0.0.1:1", True, "connected"))
        slow, fast = hub.subscribe(), hub.subscribe()
        status = decode_message("rt_physio/s1/status", json.dumps(STATUS).encode())
        assert status is not None
        received = 0
        for _ in range(PAGE_QUEUE + 10):
            hub.on_message(status, "zmq://127.0.0.1:1")
            while not fast.empty():  # this page keeps up
                fast.get_nowait()
                received += 1
        last = None
        while not slow.empty():
            last = slow.get_nowait()
        return hub.pages, last, received

    pages, last, received = asyncio.run(scenario())
    assert pages == 1  # the slow page was dropped (its browser reconnects and gets a fresh replay)
    assert last is None  # its stream ends
    assert received == PAGE_QUEUE + 10 + 2  # the other page got every event (after its replay: link + ready)
