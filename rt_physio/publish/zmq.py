"""ZeroMQ PUB publisher: multipart ``[topic, payload]`` on a socket bound to loopback by default.

URL: ``zmq://HOST:PORT[?hwm=N&format=json|msgpack]``. Topics: ``rt_physio/<session>/pred``,
``rt_physio/<session>/status`` (the ``rt_physio.status/1`` map: ``state`` ``online`` / ``degraded`` /
``offline``, each modality's liveness and counters, in the URL's format) and, with ``--preview``,
``rt_physio/<session>/preview`` (``rt_physio.preview/1``). ZeroMQ has no retained messages or
last will: a subscriber that joins late gets the next prediction, and a vanished engine shows as silence (the
status heartbeat, every ``--status-every`` seconds, lets a subscriber notice it).

The engine never waits on subscribers: a message is sent on the caller's thread with ``NOBLOCK`` (under a
lock, so the socket is used by one thread at a time), which only copies it into ZeroMQ's queue for its I/O
thread; a PUB socket never blocks a sender. There is no hand-over to a publisher thread of ours: that
hand-over was a thread wake-up (~0.1–0.2 ms on a 2-core VM) on every prediction's path. A subscriber whose
high-water mark (``hwm``) is reached loses messages inside ZeroMQ — its documented slow-subscriber behaviour;
a send ZeroMQ refuses is counted in :attr:`ZmqPublisher.dropped`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import zmq
from zmq.utils.monitor import recv_monitor_message

from rt_physio.errors import ConfigError
from rt_physio.publish.base import PREVIEW_SCHEMA_ID, STATUS_SCHEMA_ID, pred_topic, preview_topic, status_topic
from rt_physio.publish.schema import Format, encode
from rt_physio.publish.url_query import is_loopback_host, parse_query, query_format, query_int

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


def close_bound_socket(sock: zmq.Socket[bytes], linger_ms: int, timeout_s: float = 2.0) -> bool:
    """Unbind ``sock``, wait until its listening port is closed, then close it; True when the port was seen free.

    ``zmq_close`` hands the listening descriptor to ZeroMQ's I/O thread and returns before it is closed, so an
    engine restarted at once on the same port could find it busy. Unbinding under a socket monitor and waiting
    for ``EVENT_CLOSED`` makes "closed" mean "the port is free again".
    """
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    freed = not endpoint
    if endpoint:
        monitor = sock.get_monitor_socket(zmq.EVENT_CLOSED)
        try:
            sock.unbind(endpoint)
            deadline = time.monotonic() + timeout_s
            while not freed and monitor.poll(max(1, round(1e3 * (deadline - time.monotonic())))):
                freed = recv_monitor_message(monitor)["event"] == zmq.EVENT_CLOSED
        except zmq.ZMQError as exc:
            log.warning("could not unbind %s before closing: %s", endpoint, exc)
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
        if not freed:
            log.warning("%s: the port was not seen closed within %.1f s", endpoint, timeout_s)
    sock.close(linger=linger_ms)
    return freed


class ZmqPublisher:
    """Publish ``[topic, payload]`` frames on a PUB socket, sent on the caller's thread without blocking.

    Parameters
    ----------
    url : str
        ``zmq://HOST:PORT[?hwm=N&format=json|msgpack]``; the socket is bound there at construction, so a busy
        port is reported before the engine starts.
    insecure : bool
        Required to bind a non-loopback address (messages are unauthenticated and unencrypted).
    """

    def __init__(self, url: str = DEFAULT_URL, *, insecure: bool = False) -> None:
        self.url = parse_zmq_url(url)
        if not self.url.is_loopback and not insecure:
            raise ConfigError(
                f"Refusing to publish on non-loopback address {self.url.host!r} without encryption: anyone on the "
                "network could read the predictions. Bind 127.0.0.1, or pass --insecure to accept that."
            )
        self._sock = bind_socket(zmq.PUB, self.url.endpoint, {zmq.SNDHWM: self.url.hwm, zmq.LINGER: 1000},
                                 f"Cannot bind ZeroMQ publisher on {self.url.endpoint}",
                                 "Is another rt-physio running? Choose another port with --publish zmq://127.0.0.1:PORT.")
        self._lock = threading.Lock()
        self._closed = False
        self.sent = 0
        self.send_errors = 0
        log.info("publishing on %s", self.url.endpoint)

    @property
    def format(self) -> Format:
        """Payload encoding (from the URL's ``format``)."""
        return self.url.format

    @property
    def dropped(self) -> int:
        """Messages ZeroMQ refused to queue (or that came after :meth:`close`)."""
        return self.send_errors

    def send(self, topic: str, payload: bytes) -> None:
        """Send one message now, on the caller's thread; never blocks."""
        frames = (topic.encode(), payload)
        with self._lock:
            if self._closed:
                self.send_errors += 1
                return
            try:
                self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
                self.sent += 1
                return
            except zmq.Again:
                self.send_errors += 1
                error = "ZeroMQ's queue is full"
            except zmq.ZMQError as exc:
                self.send_errors += 1
                error = str(exc)
        n = self.send_errors
        if n == 1 or n % 100 == 0:  # the first failure and then every 100th: a stuck socket must not flood logs
            log.warning("zmq publisher %s: message dropped (%s; %d so far)", self.url.endpoint, error, n)

    def prediction(self, session_id: str, payload: bytes) -> None:
        """Publish a prediction on ``rt_physio/<session>/pred``; never blocks."""
        self.send(pred_topic(session_id), payload)

    def status(self, session_id: str, message: Mapping[str, Any]) -> None:
        """Publish a status map on ``rt_physio/<session>/status`` in this publisher's format; never blocks."""
        body = {"schema": STATUS_SCHEMA_ID, "session": session_id, **message}
        self.send(status_topic(session_id), encode(body, self.format))

    def preview(self, session_id: str, message: Mapping[str, Any]) -> None:
        """Publish a signal preview map on ``rt_physio/<session>/preview`` in this publisher's format; never blocks."""
        body = {"schema": PREVIEW_SCHEMA_ID, "session": session_id, **message}
        self.send(preview_topic(session_id), encode(body, self.format))

    def close(self) -> None:
        """Close the socket; ZeroMQ still delivers what it holds for up to 1 s (``LINGER``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._sock.close()
