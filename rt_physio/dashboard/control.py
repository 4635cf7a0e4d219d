"""The calibrate button's way to an engine: its documented control commands, over ZeroMQ or MQTT.

``zmq://HOST:PORT`` is an engine's ``--control`` REP socket: one REQ socket per command, one reply (the engine
answers every message). ``mqtt://[USER@]HOST[:PORT][/PREFIX]`` is the broker of an engine that publishes there:
the command goes to ``<prefix>/<session>/control`` (QoS 1, not retained) with an ``id``, and the reply with that
``id`` is read from ``<prefix>/<session>/control/reply``. Either way a missing reply is an error after
:data:`TIMEOUT_S`, never a hang.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import uuid
from typing import Any

import aiomqtt
import zmq
import zmq.asyncio

from rt_physio.errors import ConfigError
from rt_physio.publish.base import control_reply_topic, control_topic
from rt_physio.publish.mqtt_url import PASSWORD_ENV, parse_mqtt_url
from rt_physio.publish.zmq import parse_zmq_url

__all__ = ["TIMEOUT_S", "Control", "open_control"]

TIMEOUT_S = 5.0


class Control:
    """Send one command to a session and return the engine's reply (a map with ``ok``)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def send(self, session: str, command: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - overridden
        """Send ``command`` to ``session``; return the reply, or ``{"ok": false, "error": …}``."""
        raise NotImplementedError


class ZmqControl(Control):
    """An engine's ZeroMQ REP control socket."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.endpoint = parse_zmq_url(url).endpoint.replace("tcp://*:", "tcp://127.0.0.1:")

    async def send(self, session: str, command: dict[str, Any]) -> dict[str, Any]:
        """Send ``command`` (with ``session``) on a fresh REQ socket and wait for the reply."""
        sock = zmq.asyncio.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.endpoint)
            await sock.send(json.dumps({**command, "session": session}).encode())
            if not await sock.poll(round(1e3 * TIMEOUT_S)):
                return {"ok": False, "error": f"no reply from the engine's control socket {self.endpoint} within "
                                              f"{TIMEOUT_S:g} s"}
            reply = json.loads(await sock.recv())
            return reply if isinstance(reply, dict) else {"ok": False, "error": "the engine's reply is not a map"}
        finally:
            sock.close(linger=0)


class MqttControl(Control):
    """The control topics of the sessions under an MQTT prefix."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.mqtt = parse_mqtt_url(url)
        self.password = os.environ.get(PASSWORD_ENV)

    async def send(self, session: str, command: dict[str, Any]) -> dict[str, Any]:
        """Publish ``command`` with a fresh ``id`` on the session's control topic; wait for its reply."""
        request_id = uuid.uuid4().hex
        tls = ssl.create_default_context(cafile=self.mqtt.cafile) if self.mqtt.tls else None
        try:
            async with asyncio.timeout(TIMEOUT_S), aiomqtt.Client(
                    self.mqtt.host, self.mqtt.port, username=self.mqtt.username,
                    password=self.password if self.mqtt.username else None, tls_context=tls) as client:
                await client.subscribe(control_reply_topic(session, self.mqtt.prefix), qos=1)
                await client.publish(control_topic(session, self.mqtt.prefix),
                                     json.dumps({**command, "id": request_id}), qos=1, retain=False)
                async for message in client.messages:
                    payload = message.payload
                    reply = json.loads(payload) if isinstance(payload, bytes | bytearray | str) else None
                    if isinstance(reply, dict) and reply.get("id") == request_id:
                        return reply
        except TimeoutError:
            return {"ok": False, "error": f"no reply from session {session!r} on {self.mqtt} within {TIMEOUT_S:g} s"}
        except aiomqtt.MqttError as exc:
            return {"ok": False, "error": f"cannot reach the broker {self.mqtt}: {exc}"}
        return {"ok": False, "error": "the broker closed the connection before the reply"}


def open_control(url: str) -> Control:
    """Return the control for a ``--control`` URL (``zmq://…`` or ``mqtt://…``), raising :class:`ConfigError`."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "zmq":
        return ZmqControl(url)
    if scheme in ("mqtt", "mqtts"):
        return MqttControl(url)
    raise ConfigError(f"Unknown --control URL {url!r}: expected an engine's zmq://HOST:PORT, or the "
                      "mqtt://[USER@]HOST[:PORT][/PREFIX] it publishes to.")
