"""Subscribers the dashboard reads engines through: a ZeroMQ SUB socket or an MQTT client, one per ``--connect``.

``zmq://HOST:PORT`` connects a SUB socket to an engine's PUB (topics ``rt_physio/<session>/pred|status|preview``);
ZeroMQ reconnects by itself (every 0.2 s, backing off to 1 s), and a socket monitor tells when the engine is reached or
lost. ``mqtt://[USER@]HOST[:PORT][/PREFIX][?tls=1&cafile=…]`` subscribes to ``<prefix>/+/pred``, ``state``,
``status`` and ``preview`` (password in ``$RT_PHYSIO_MQTT_PASSWORD``, as for the engine); a lost broker is retried
with backoff. Each feed reports every message and every change of its link to the callbacks it runs with, on the
dashboard's asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiomqtt
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from rt_physio.errors import ConfigError
from rt_physio.publish.mqtt_url import PASSWORD_ENV, MqttUrl, parse_mqtt_url

__all__ = ["Feed", "LinkState", "MqttFeed", "ZmqFeed", "open_feed"]

log = logging.getLogger(__name__)

ZMQ_PREFIX = "rt_physio/"
BACKOFF = (0.5, 5.0)  # first and longest wait between attempts to reach a broker, seconds
ZMQ_RECONNECT_MS = (200, 1000)  # ZeroMQ's reconnect interval to an engine: a restarted engine is followed within 1 s

MessageSink = Callable[[str, bytes], None]  # (topic, payload)


@dataclass(slots=True)
class LinkState:
    """How a feed's connection stands, as the page shows it."""

    url: str
    connected: bool = False
    detail: str = "connecting"


LinkSink = Callable[[LinkState], None]


class Feed:
    """One ``--connect`` URL: :meth:`run` subscribes and forwards until cancelled, reconnecting as needed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.link = LinkState(url)

    async def run(self, on_message: MessageSink, on_link: LinkSink) -> None:  # pragma: no cover - overridden
        """Subscribe and forward messages and link changes until cancelled."""
        raise NotImplementedError

    def _set_link(self, on_link: LinkSink, connected: bool, detail: str) -> None:
        if (self.link.connected, self.link.detail) != (connected, detail):
            self.link = LinkState(self.url, connected, detail)
            log.info("dashboard feed %s: %s", self.url, detail)
            on_link(self.link)


class ZmqFeed(Feed):
    """Subscribe to an engine's ZeroMQ PUB socket (``zmq://HOST:PORT``)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "zmq" or not parts.hostname or not port or parts.path not in ("", "/") or parts.query:
            raise ConfigError(f"Invalid --connect URL {url!r}: expected zmq://HOST:PORT (an engine's --publish), "
                              "e.g. zmq://127.0.0.1:5556.")
        host = "127.0.0.1" if parts.hostname in ("0.0.0.0", "*") else parts.hostname
        self.endpoint = f"tcp://{host}:{port}"

    async def run(self, on_message: MessageSink, on_link: LinkSink) -> None:
        """Connect, subscribe to ``rt_physio/`` and forward until cancelled."""
        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, ZMQ_RECONNECT_MS[0])
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, ZMQ_RECONNECT_MS[1])
        sock.setsockopt(zmq.SUBSCRIBE, ZMQ_PREFIX.encode())
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED)
        watcher = asyncio.create_task(self._watch(monitor, on_link))
        try:
            sock.connect(self.endpoint)
            self._set_link(on_link, False, f"connecting to {self.endpoint}")
            while True:
                frames = await sock.recv_multipart()
                if len(frames) == 2:
                    on_message(frames[0].decode(errors="replace"), frames[1])
        finally:
            watcher.cancel()
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close(linger=0)

    async def _watch(self, monitor: zmq.asyncio.Socket, on_link: LinkSink) -> None:
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())["event"]
            if event == zmq.EVENT_CONNECTED:
                self._set_link(on_link, True, f"connected to {self.endpoint}")
            elif event == zmq.EVENT_DISCONNECTED:
                self._set_link(on_link, False, f"engine at {self.endpoint} went away; retrying")
            elif event == zmq.EVENT_CONNECT_RETRIED:
                self._set_link(on_link, False, f"no engine at {self.endpoint}; retrying")


class MqttFeed(Feed):
    """Subscribe to every session under an MQTT prefix (``mqtt://…/PREFIX``)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.mqtt: MqttUrl = parse_mqtt_url(url)
        self.password = os.environ.get(PASSWORD_ENV)

    def _tls(self) -> ssl.SSLContext | None:
        if not self.mqtt.tls:
            return None
        return ssl.create_default_context(cafile=self.mqtt.cafile)

    async def run(self, on_message: MessageSink, on_link: LinkSink) -> None:
        """Connect, subscribe and forward until cancelled; a lost broker is retried with backoff."""
        delay = BACKOFF[0]
        where = f"broker {self.mqtt.host}:{self.mqtt.port}"
        topics = [f"{self.mqtt.prefix}/+/{suffix}" for suffix in ("pred", "state", "status", "preview")]
        while True:
            try:
                async with aiomqtt.Client(self.mqtt.host, self.mqtt.port, username=self.mqtt.username,
                                          password=self.password if self.mqtt.username else None,
                                          tls_context=self._tls(), keepalive=self.mqtt.keepalive) as client:
                    for topic in topics:
                        await client.subscribe(topic, qos=1)
                    self._set_link(on_link, True, f"connected to {where}")
                    delay = BACKOFF[0]
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray):
                            on_message(message.topic.value, bytes(payload))
            except aiomqtt.MqttError as exc:
                self._set_link(on_link, False, f"{where} unreachable ({exc}); retrying")
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(2 * delay, BACKOFF[1])


def open_feed(url: str) -> Feed:
    """Return the feed for a ``--connect`` URL (``zmq://…`` or ``mqtt://…``), raising :class:`ConfigError`."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "zmq":
        return ZmqFeed(url)
    if scheme in ("mqtt", "mqtts"):
        return MqttFeed(url)
    raise ConfigError(f"Unknown --connect URL {url!r}: expected zmq://HOST:PORT or mqtt://[USER@]HOST[:PORT][/PREFIX].")
