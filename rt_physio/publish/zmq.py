"""ZeroMQ PUB publisher: multipart ``[topic, payload]`` on a socket bound to loopback by default.

URL: ``zmq://HOST:PORT[?hwm=N&format=json|msgpack]``. Topics: ``rt_physio/<session>/pred`` and
``rt_physio/<session>/status`` (a status map with ``state`` ``online`` / ``offline`` and counters, in the URL's
format). ZeroMQ has no retained messages or last will: a subscriber that joins late gets the next prediction,
and a vanished engine shows as silence.

The engine never waits on subscribers: messages are handed to a bounded queue and sent by the publisher's own
thread with ``NOBLOCK``; when the queue overflows the oldest message is dropped and counted. (A PUB socket
itself drops messages for a subscriber whose high-water mark is reached; that is ZeroMQ's documented
slow-subscriber behaviour.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import zmq

from rt_physio.errors import ConfigError
from rt_physio.publish.base import (
    STATUS_SCHEMA_ID,
    is_loopback_host,
    parse_query,
    pred_topic,
    query_format,
    query_int,
    status_topic,
)
from rt_physio.publish.schema import Format, encode
from rt_physio.runtime.queues import DropOldestQueue

__all__ = ["ZmqPublisher", "ZmqUrl", "parse_zmq_url"]

log = logging.getLogger(__name__)

DEFAULT_URL = "zmq://127.0.0.1:5556"


@dataclass(frozen=True, slots=True)
class ZmqUrl:
    """A parsed ``zmq://HOST:PORT[?hwm=N&format=json|msgpack]`` publish URL."""

    host: str
    port: int
    hwm: int = 1000
    format: Format = "json"

    @property
    def endpoint(self) -> str:
        """The ZeroMQ endpoint to bind."""
        host = "*" if self.host in ("0.0.0.0", "*") else self.host
        return f"tcp://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True when the socket is reachable only from this machine."""
        return is_loopback_host(self.host)


def parse_zmq_url(url: str) -> ZmqUrl:
    """Parse ``zmq://HOST:PORT[?hwm=N&format=…]``, raising :class:`ConfigError` with the expected form."""
    parts = urlsplit(url)
    expected = "expected zmq://HOST:PORT, e.g. zmq://127.0.0.1:5556"
    if parts.scheme != "zmq" or not parts.hostname:
        raise ConfigError(f"Invalid publish URL {url!r}: {expected}.")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"Invalid port in publish URL {url!r}: {expected}.") from exc
    if port is None or port == 0:
        raise ConfigError(f"Publish URL {url!r} has no port: {expected}.")
    if parts.path not in ("", "/"):
        raise ConfigError(f"Publish URL {url!r} has a path; ZeroMQ topics are fixed (rt_physio/<session>/…): "
                          f"{expected}.")
    options = parse_query(url, parts.query, ("hwm", "format"))
    hwm = query_int(url, options, "hwm", 1000, 1, 10_000_000)
    return ZmqUrl(host=parts.hostname, port=port, hwm=hwm, format=query_format(url, options))


def bind_socket(kind: int, endpoint: str, options: dict[int, int], failure: str, hint: str) -> zmq.Socket[bytes]:
    """Create a socket of ``kind`` with ``options`` and bind it; a failed bind is a :class:`ConfigError`.

    The message is ``"<failure>: <reason>. <hint>"``; the socket is closed before raising.
    """
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(kind)
    for option, value in options.items():
        sock.setsockopt(option, value)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise ConfigError(f"{failure}: {exc.strerror}. {hint}") from exc
    return sock


class ZmqPublisher:
    """Publish ``[topic, payload]`` frames on a PUB socket from a dedicated thread.

    Parameters
    ----------
    url : str
        ``zmq://HOST:PORT[?hwm=N&format=json|msgpack]``; the socket is bound there at construction, so a busy
        port is reported before the engine starts.
    insecure : bool
        Required to bind a non-loopback address (messages are unauthenticated and unencrypted).
    queue_size : int
        Messages waiting for the sender thread before the oldest is dropped.
    """

    def __init__(self, url: str = DEFAULT_URL, *, insecure: bool = False, queue_size: int = 1024) -> None:
        self.url = parse_zmq_url(url)
        if not self.url.is_loopback and not insecure:
            raise ConfigError(
                f"Refusing to publish on non-loopback address {self.url.host!r} without encryption: anyone on the "
                "network could read the predictions. Bind 127.0.0.1, or pass --insecure to accept that."
            )
        self._sock = bind_socket(zmq.PUB, self.url.endpoint, {zmq.SNDHWM: self.url.hwm, zmq.LINGER: 1000},
                                 f"Cannot bind ZeroMQ publisher on {self.url.endpoint}",
                                 "Is another rt-physio running? Choose another port with --publish zmq://127.0.0.1:PORT.")
        self._queue: DropOldestQueue[tuple[bytes, bytes]] = DropOldestQueue(queue_size)
        self._thread = threading.Thread(target=self._run, name=f"zmq-pub-{self.url.port}", daemon=True)
        self.sent = 0
        self.send_errors = 0
        self._thread.start()
        log.info("publishing on %s", self.url.endpoint)

    @property
    def format(self) -> Format:
        """Payload encoding (from the URL's ``format``)."""
        return self.url.format

    @property
    def dropped(self) -> int:
        """Messages dropped because the sender thread fell behind."""
        return self._queue.dropped

    def send(self, topic: str, payload: bytes) -> None:
        """Queue one message; never blocks."""
        if self._queue.put((topic.encode(), payload)) is not None:
            n = self._queue.dropped
            if n == 1 or n % 100 == 0:  # the first drop and then every 100th: a stuck sender must not flood logs
                log.warning("zmq publisher %s: queue full, dropped the oldest message (%d so far)",
                            self.url.endpoint, n)

    def prediction(self, session_id: str, payload: bytes) -> None:
        """Publish a prediction on ``rt_physio/<session>/pred``; never blocks."""
        self.send(pred_topic(session_id), payload)

    def status(self, session_id: str, message: Mapping[str, Any]) -> None:
        """Publish a status map on ``rt_physio/<session>/status`` in this publisher's format; never blocks."""
        body = {"schema": STATUS_SCHEMA_ID, "session": session_id, **message}
        self.send(status_topic(session_id), encode(body, self.format))

    def _run(self) -> None:
        while True:
            item = self._queue.get(timeout=0.5)
            if item is None:
                if self._queue.closed:
                    break
                continue
            try:
                self._sock.send_multipart(item, flags=zmq.NOBLOCK)
                self.sent += 1
            except zmq.Again:
                self.send_errors += 1
            except zmq.ZMQError as exc:
                self.send_errors += 1
                log.warning("zmq publisher %s: send failed: %s", self.url.endpoint, exc)
        self._sock.close()

    def close(self) -> None:
        """Send what is queued, then close the socket (waits up to ~2 s)."""
        self._queue.close()
        self._thread.join(timeout=2.0)
