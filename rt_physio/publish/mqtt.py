"""MQTT publisher (aiomqtt): predictions, the retained latest state, and the retained session status with a last will.

URL: ``mqtt://[USER@]HOST[:PORT][/PREFIX][?qos=0&tls=1&cafile=PATH&format=json|msgpack&queue=N&keepalive=S]``
(``mqtts://`` means ``tls=1``; default ports 1883 and 8883; default prefix ``rt_physio``). The password is read
from the environment variable ``RT_PHYSIO_MQTT_PASSWORD`` and never from the URL or the command line, where
``ps`` and shell history would show it.

Topics, per session:

``<prefix>/<session>/pred``    every prediction, QoS from the URL (default 0), not retained
``<prefix>/<session>/state``   the latest prediction, retained, QoS 1: a subscriber that joins late gets it at once
``<prefix>/<session>/status``  the session's ``rt_physio.status/1`` message (in the URL's format), retained,
                               QoS 1: the engine's latest (published on every change and heartbeat, and again on
                               every connect; ``{"state": "degraded", "reason": "connected"}`` until the engine's
                               first); ``offline`` at a clean stop and, as the connection's last will
                               (``{"state": "offline", "reason": "connection lost"}``), when the engine dies or its
                               connection drops
``<prefix>/<session>/control`` commands for the session (only with ``on_control``): subscribed at QoS 1 on every
                               connect; retained messages are ignored, so a stale command never fires on reconnect
``<prefix>/<session>/control/reply``  the reply to each command, QoS 1, not retained

Each session has its own MQTT connection, because MQTT allows one last will per connection and every session's
``status`` must turn ``offline`` when the engine dies.

Threading: the connections live in one asyncio event loop on the publisher's own thread. The engine's
:meth:`MqttPublisher.prediction` only appends to a bounded drop-oldest queue (``queue``, default 1000 messages per
session, drops counted) and wakes the loop, so the engine never waits on the broker. While the broker is
unreachable the queue buffers; the connection is retried with exponential backoff (0.5 s doubling to 5 s, ±20 %
jitter) and the buffered predictions are sent on reconnect, followed by the latest ``state``.

Errors: at construction the publisher waits (up to ``connect_timeout``, default 5 s) for each connection's first
attempt. Refused credentials (CONNACK "bad user name or password" / "not authorized") and TLS failures cannot fix
themselves by retrying, so they raise :class:`ConfigError` there and ``rt-physio run`` exits with a clear message
before any source starts. A broker that is merely down or slow is logged as a warning and retried in the
background; the engine starts anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import ssl
import threading
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar, cast

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from rt_physio.clock import local_clock
from rt_physio.errors import ConfigError
from rt_physio.publish.base import (
    PREVIEW_SCHEMA_ID,
    STATUS_SCHEMA_ID,
    control_reply_topic,
    control_topic,
    pred_topic,
    preview_topic,
    state_topic,
    status_topic,
)
from rt_physio.publish.control import (
    CommandError,
    ControlHandler,
    ControlInbox,
    InboxStats,
    OversizedMessage,
    encode_reply,
    parse_session_command,
    run_command,
    too_large,
)
from rt_physio.publish.mqtt_url import PASSWORD_ENV, MqttUrl, parse_mqtt_url
from rt_physio.publish.schema import Format, encode
from rt_physio.queues import DropOldestQueue

__all__ = ["PASSWORD_ENV", "MqttPublisher", "MqttUrl", "parse_mqtt_url"]

log = logging.getLogger(__name__)

# Control messages received and not answered yet, per connection: a flood costs at most this much memory (and
# one message of any size, so an oversized command gets its error reply). Answering takes a reply's round trip.
CONTROL_INBOX = 32
CONTROL_INBOX_BYTES = 1 << 20
# CONNACK codes meaning "these credentials will never work": MQTT 3.1.1 (4, 5) and MQTT 5 reason codes (134, 135)
_AUTH_CODES = frozenset({4, 5, 134, 135})
_T = TypeVar("_T")


class _Link:
    """One session's connection state. Counters are written on the loop thread and read anywhere."""

    def __init__(self, session_id: str, queue_size: int) -> None:
        self.session_id = session_id
        self.queue: DropOldestQueue[bytes] = DropOldestQueue(queue_size)
        self.latest: bytes | None = None  # newest prediction, for the retained state
        self.state_sent: bytes | None = None
        self.retry: bytes | None = None  # a prediction whose publish was cut by a disconnection
        self.wake: asyncio.Event | None = None
        self.wake_pending = False  # a wake-up is on its way to the loop: later predictions need not send another
        self.connected = False
        self.connects = 0
        self.sent = 0
        self.first_attempt = threading.Event()
        self.first_error: BaseException | None = None
        self.down_since: float | None = None
        self.control_errors = 0  # control messages that were not valid commands
        self.status: bytes | None = None  # the engine's latest status message, encoded (retained on the broker)
        self.status_sent: bytes | None = None
        self.stopped = False  # the engine's latest status says offline
        self.preview: bytes | None = None  # the latest signal preview (--preview): only the newest is sent
        self.preview_sent: bytes | None = None
        self.inbox = InboxStats()  # the control inbox of every connection of this session


class _ConnectionLost(aiomqtt.MqttError):
    """The broker connection dropped while we were waiting or publishing."""


def _auth_code(exc: BaseException) -> int | None:
    rc = getattr(exc, "rc", None)
    value = getattr(rc, "value", rc)
    return value if isinstance(exc, MqttConnectError) and isinstance(value, int) else None


def _is_tls_error(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError) or isinstance(exc.__context__, ssl.SSLError)


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSL socket that closes itself when its handshake fails (paho would leave it to the garbage collector)."""

    def do_handshake(self, block: bool = False) -> None:
        """Run the TLS handshake; on failure close the socket, then raise."""
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def _quiet_stale_sockets(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log at debug level aiomqtt's late add_reader/add_writer on a socket paho already closed.

    When a connection drops, paho may ask aiomqtt to watch a socket it closes right after; the loop then fails
    to register the stale descriptor. The disconnection itself is handled (and logged) by the publisher.
    """
    exc = context.get("exception")
    if isinstance(exc, OSError) and any(name in repr(context.get("handle")) for name in ("add_writer", "add_reader")):
        log.debug("mqtt: ignored a stale socket registration after a disconnection (%s)", exc)
        return
    loop.default_exception_handler(context)


class MqttPublisher:
    """Publish predictions, retained state and presence of each session to an MQTT broker.

    Parameters
    ----------
    url : str
        ``mqtt://[USER@]HOST[:PORT][/PREFIX][?qos=…&tls=1&cafile=…&format=…&queue=N&keepalive=S]``.
    session_ids : sequence of str
        Sessions to publish; each gets its own connection (and last will).
    insecure : bool
        Required to talk to a non-loopback broker without TLS (predictions and password would cross the
        network in clear).
    password : str, optional
        Overrides ``$RT_PHYSIO_MQTT_PASSWORD`` (for library use; the CLI only reads the environment).
    connect_timeout : float
        Seconds to wait at construction for the first connection attempts.
    backoff : (float, float)
        First and longest delay between reconnection attempts, seconds.
    on_control : ControlHandler, optional
        Answers the commands published to ``<prefix>/<session>/control``; called on the publisher's loop thread,
        so it must return quickly. Without it the control topics are not subscribed.
    """

    def __init__(self, url: str, session_ids: Sequence[str], *, insecure: bool = False, password: str | None = None,
                 connect_timeout: float = 5.0, backoff: tuple[float, float] = (0.5, 5.0),
                 on_control: ControlHandler | None = None) -> None:
        self.url = parse_mqtt_url(url)
        if not session_ids:
            raise ValueError("MqttPublisher needs at least one session id.")
        if not self.url.tls and not self.url.is_loopback and not insecure:
            raise ConfigError(
                f"Refusing to publish to MQTT broker {self.url.host!r} without TLS: predictions (and the password) "
                "would cross the network in clear. Use mqtts:// or ?tls=1, or pass --insecure to accept that."
            )
        if not 0 < backoff[0] <= backoff[1]:
            raise ValueError(f"The 'backoff' parameter must be (first, longest), 0 < first <= longest; got {backoff}.")
        self._password = password if password is not None else os.environ.get(PASSWORD_ENV)
        if self._password is not None and self.url.username is None:
            log.info("%s is set but %s names no user: connecting without credentials", PASSWORD_ENV, self.url)
        self._tls_context = self._make_tls_context()
        self._backoff = backoff
        self._on_control = on_control
        self._timeout = max(1.0, connect_timeout)
        self._links = {sid: _Link(sid, self.url.queue) for sid in session_ids}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._closed_event: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._thread_main, name=f"mqtt-{self.url.host}:{self.url.port}",
                                        daemon=True)
        self._thread.start()
        self._await_first_connect(connect_timeout)

    # -- the engine's side (any thread, never blocks) ----------------------------------------------------------
    @property
    def format(self) -> Format:
        """Payload encoding (from the URL's ``format``)."""
        return self.url.format

    @property
    def dropped(self) -> int:
        """Predictions dropped because the buffer was full (broker down or too slow)."""
        return sum(link.queue.dropped for link in self._links.values())

    @property
    def connected(self) -> bool:
        """True while every session's connection is up."""
        return all(link.connected for link in self._links.values())

    @property
    def connects(self) -> int:
        """Successful connections so far, all sessions together (more than one per session means reconnects)."""
        return sum(link.connects for link in self._links.values())

    @property
    def sent(self) -> int:
        """Predictions handed to the broker connection."""
        return sum(link.sent for link in self._links.values())

    @property
    def control_errors(self) -> int:
        """Control messages answered with an error because they were not valid commands."""
        return sum(link.control_errors for link in self._links.values())

    def drop_counts(self, session_id: str) -> dict[str, int]:
        """Return ``session_id``'s losses: predictions and incoming control messages dropped.

        ``mqtt``: predictions dropped from its full buffer; ``mqtt_control``: commands dropped from its full inbox.
        """
        link = self._links[session_id]
        return {"mqtt": link.queue.dropped, "mqtt_control": link.inbox.dropped}

    def queued(self, session_id: str) -> int:
        """Predictions of ``session_id`` waiting in its buffer for the broker now."""
        return len(self._links[session_id].queue)

    def prediction(self, session_id: str, payload: bytes) -> None:
        """Queue a prediction for ``pred`` and make it the retained ``state``; never blocks."""
        link = self._links[session_id]
        link.latest = payload
        if link.queue.put(payload) is not None:
            n = link.queue.dropped
            if n == 1 or n % 100 == 0:
                log.warning("mqtt %s: session %s buffer full (broker down or slow), dropped the oldest prediction "
                            "(%d so far)", self.url, session_id, n)
        self._wake(link)

    def status(self, session_id: str, message: Mapping[str, Any]) -> None:
        """Make ``message`` the session's retained ``status`` (sent by the loop, after queued predictions)."""
        link = self._links[session_id]
        link.status = self._status_payload(session_id, message)
        link.stopped = message.get("state") == "offline"
        self._wake(link)

    def preview(self, session_id: str, message: Mapping[str, Any]) -> None:
        """Send a signal preview on ``preview`` (QoS 0, not retained; a newer one replaces one not sent yet)."""
        link = self._links[session_id]
        link.preview = encode({"schema": PREVIEW_SCHEMA_ID, "session": session_id, **message}, self.format)
        self._wake(link)

    def _status_payload(self, session_id: str, message: Mapping[str, Any]) -> bytes:
        return encode({"schema": STATUS_SCHEMA_ID, "session": session_id, **message}, self.format)

    def close(self, timeout: float = 3.0) -> None:
        """Send the buffered predictions and the latest state, publish ``offline``, disconnect (bounded wait)."""
        self._closing = True
        self._call_in_loop(self._wake_all)
        self._thread.join(timeout)
        left = sum(len(link.queue) for link in self._links.values())
        if self._thread.is_alive() or left:
            log.warning("mqtt %s: closed with %d prediction(s) not delivered (broker unreachable or slow)",
                        self.url, left)

    # -- construction helpers ----------------------------------------------------------------------------------
    def _make_tls_context(self) -> ssl.SSLContext | None:
        if not self.url.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.url.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"Cannot load CA certificates from {self.url.cafile}: {exc}.") from exc
        context.sslsocket_class = _ClosingSSLSocket
        return context

    def _await_first_connect(self, timeout: float) -> None:
        deadline = local_clock() + timeout
        for link in self._links.values():
            link.first_attempt.wait(max(0.0, deadline - local_clock()))
        fatal = [(link, link.first_error) for link in self._links.values()
                 if link.first_error is not None and self._is_fatal(link.first_error)]
        if fatal:
            self.close(timeout=1.0)
            raise self._explain(fatal[0][1])
        down = [link for link in self._links.values() if not link.connected]
        if down:
            why = next((str(link.first_error) for link in down if link.first_error is not None), "no answer yet")
            log.warning("mqtt %s: broker not reachable (%s); running anyway, retrying with backoff and buffering "
                        "up to %d predictions per session", self.url, why, self.url.queue)

    def _is_fatal(self, exc: BaseException) -> bool:
        code = _auth_code(exc)
        return (code is not None and code in _AUTH_CODES) or _is_tls_error(exc)

    def _explain(self, exc: BaseException) -> ConfigError:
        where = f"MQTT broker {self.url.host}:{self.url.port}"
        if _is_tls_error(exc):
            ca = f"cafile={self.url.cafile}" if self.url.cafile else "the system's CA certificates"
            return ConfigError(
                f"TLS connection to {where} failed: {exc}. Check that the broker speaks TLS on that port and that "
                f"its certificate is signed by {ca} and names {self.url.host!r}."
            )
        who = f"user {self.url.username!r}" if self.url.username else "an anonymous client (no user in the URL)"
        pw = "is set" if self._password is not None else "is NOT set"
        return ConfigError(
            f"{where} refused {who}: bad user name or password, or not authorised ({exc}). Check the user in the "
            f"URL (mqtt://USER@HOST) and the password in ${PASSWORD_ENV} (it {pw})."
        )

    # -- the loop's side ---------------------------------------------------------------------------------------
    def _call_in_loop(self, fn: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already finished
            loop.call_soon_threadsafe(fn)

    def _wake(self, link: _Link) -> None:
        # One wake-up per drain: each costs a syscall and a GIL hand-over on the engine's thread.
        wake = link.wake
        if wake is not None and not link.wake_pending:
            link.wake_pending = True
            self._call_in_loop(wake.set)

    def _wake_all(self) -> None:
        if self._closed_event is not None:
            self._closed_event.set()
        for link in self._links.values():
            if link.wake is not None:
                link.wake.set()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.exception("mqtt %s: publisher thread failed", self.url)
        finally:
            for link in self._links.values():
                link.connected = False
                link.first_attempt.set()

    async def _main(self) -> None:
        self._closed_event = asyncio.Event()
        for link in self._links.values():
            link.wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_stale_sockets)
        self._loop = loop
        if self._closing:
            return
        await asyncio.gather(*(self._run_link(link) for link in self._links.values()))

    async def _run_link(self, link: _Link) -> None:
        assert self._closed_event is not None
        delay = self._backoff[0]
        while not self._closing:
            try:
                await self._connection(link)
                return
            except (aiomqtt.MqttError, OSError) as exc:
                was_up = link.connected
                link.connected = False
                if not link.first_attempt.is_set():
                    link.first_error = exc
                    link.first_attempt.set()
                    if self._is_fatal(exc):
                        return  # the constructor turns this into a ConfigError
                if was_up:
                    link.down_since = local_clock()
                    log.warning("mqtt %s: session %s lost the broker connection (%s); reconnecting with backoff",
                                self.url, link.session_id, exc)
                    delay = self._backoff[0]
                elif self._is_fatal(exc):
                    log.error("mqtt %s: %s", self.url, self._explain(exc))
                else:
                    log.debug("mqtt %s: session %s connect failed (%s); next try in %.1f s", self.url,
                              link.session_id, exc, delay)
            with contextlib.suppress(TimeoutError):  # woken early only by close()
                await asyncio.wait_for(self._closed_event.wait(), delay * random.uniform(0.8, 1.2))
            delay = min(2 * delay, self._backoff[1])

    def _client(self, link: _Link) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self.url.host, self.url.port, username=self.url.username,
            password=self._password if self.url.username is not None else None,
            identifier=f"rt_physio-{uuid.uuid4().hex[:12]}", clean_session=True, keepalive=self.url.keepalive,
            will=aiomqtt.Will(status_topic(link.session_id, self.url.prefix), self._status_payload(
                link.session_id, {"state": "offline", "reason": "connection lost"}), qos=1, retain=True),
            tls_context=self._tls_context, timeout=self._timeout, max_queued_incoming_messages=CONTROL_INBOX,
            queue_type=cast("type[asyncio.Queue[aiomqtt.Message]]", functools.partial(
                ControlInbox, max_bytes=CONTROL_INBOX_BYTES, stats=link.inbox,
                name=control_topic(link.session_id, self.url.prefix))),
        )
        # paho's TCP connect runs in an executor thread; bound it so shutdown is never held up for long
        client._client.connect_timeout = self._timeout
        return client

    async def _connection(self, link: _Link) -> None:
        status = status_topic(link.session_id, self.url.prefix)
        client = self._client(link)
        async with client:
            link.connected = True
            link.connects += 1
            link.first_attempt.set()
            if link.down_since is not None:
                log.warning("mqtt %s: session %s reconnected after %.1f s (%d predictions buffered)", self.url,
                            link.session_id, local_clock() - link.down_since, len(link.queue))
                link.down_since = None
            else:
                log.info("mqtt %s: session %s connected", self.url, link.session_id)
            control = None
            if self._on_control is not None:  # subscribed before "online": once online shows, commands work
                await self._subscribe_control(link, client)
                control = asyncio.ensure_future(self._serve_control(link, client, self._on_control))
            # the broker may hold the last will's offline (or nothing, after a restart): say where we are again
            engine_status = link.status  # (the engine may give a newer one while this is sent: _drain sends it)
            current = engine_status or self._status_payload(link.session_id, {"state": "degraded",
                                                                              "reason": "connected"})
            await self._publish(client, status, current, qos=1, retain=True)
            link.status_sent = engine_status
            try:
                await self._pump(link, client)
            finally:  # the receive loop lives and dies with this connection
                if control is not None:
                    control.cancel()
                    await asyncio.wait({control})  # it catches its own errors; this only lets it finish
            # clean shutdown: a DISCONNECT suppresses the will, so say offline ourselves
            final = link.status if link.stopped and link.status is not None else self._status_payload(
                link.session_id, {"state": "offline", "reason": "stop"})
            if final is not link.status_sent:
                await self._publish(client, status, final, qos=1, retain=True)
            link.connected = False

    async def _pump(self, link: _Link, client: aiomqtt.Client) -> None:
        assert link.wake is not None
        disconnected = client._disconnected  # aiomqtt's own "connection lost" future
        while True:
            link.wake.clear()
            link.wake_pending = False  # before draining: a prediction queued after this point wakes us again
            await self._drain(link, client)
            if self._closing:
                await self._drain(link, client)
                return
            waiter = asyncio.ensure_future(link.wake.wait())
            either: set[asyncio.Future[Any]] = {waiter, disconnected}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if disconnected.done():
                raise self._lost(client)

    async def _drain(self, link: _Link, client: aiomqtt.Client) -> None:
        pred = pred_topic(link.session_id, self.url.prefix)
        while True:
            payload = link.retry if link.retry is not None else link.queue.get(timeout=0)
            if payload is None:
                break
            link.retry = payload
            await self._publish(client, pred, payload, qos=self.url.qos, retain=False)
            link.retry = None
            link.sent += 1
        latest = link.latest
        if latest is not None and latest is not link.state_sent:
            await self._publish(client, state_topic(link.session_id, self.url.prefix), latest, qos=1, retain=True)
            link.state_sent = latest
        current = link.status
        if current is not None and current is not link.status_sent:
            await self._publish(client, status_topic(link.session_id, self.url.prefix), current, qos=1, retain=True)
            link.status_sent = current
        preview = link.preview
        if preview is not None and preview is not link.preview_sent:
            await self._publish(client, preview_topic(link.session_id, self.url.prefix), preview, qos=0,
                                retain=False)
            link.preview_sent = preview

    async def _subscribe_control(self, link: _Link, client: aiomqtt.Client) -> None:
        topic = control_topic(link.session_id, self.url.prefix)
        granted = await self._until_lost(client, client.subscribe(topic, qos=1))
        if any(getattr(code, "value", code) >= 128 for code in granted):  # SUBACK failure: e.g. an ACL forbids it
            log.error("mqtt %s: broker refused the subscription to %s: commands for session %s will not arrive",
                      self.url, topic, link.session_id)

    async def _serve_control(self, link: _Link, client: aiomqtt.Client, handler: ControlHandler) -> None:
        """Answer the session's control commands until the connection ends (runs beside the pump)."""
        topic = control_topic(link.session_id, self.url.prefix)
        reply_topic = control_reply_topic(link.session_id, self.url.prefix)
        try:
            async for message in client.messages:
                if not message.topic.matches(topic):
                    continue
                if message.retain:  # kept by the broker from some earlier time, not a command sent now
                    log.warning("mqtt %s: ignored a retained control message on %s; clear it with "
                                "`mosquitto_pub -t %s -r -n` and send commands without the retain flag",
                                self.url, topic, topic)
                    continue
                try:
                    payload = self._answer(link, topic, handler, message)
                except Exception:  # a bug of ours: this message gets a generic answer, the next ones theirs
                    log.exception("mqtt %s: could not answer a control message on %s", self.url, topic)
                    payload = encode_reply({"ok": False, "error": "internal error while answering the request",
                                            "session": link.session_id})
                await self._publish(client, reply_topic, payload, qos=1, retain=False)
        except aiomqtt.MqttError:
            pass  # the connection dropped: the pump sees it too and reconnects, which restarts this loop
        except Exception:
            log.exception("mqtt %s: session %s control loop failed; commands stop until the next reconnect",
                          self.url, link.session_id)

    def _answer(self, link: _Link, topic: str, handler: ControlHandler, message: Any) -> bytes:
        """Turn one control message (an aiomqtt message or an :class:`OversizedMessage`) into its encoded reply."""
        try:
            if isinstance(message, OversizedMessage):
                raise too_large(message.size)
            raw = message.payload
            payload = bytes(raw) if isinstance(raw, bytes | bytearray) else b"" if raw is None else str(raw).encode()
            command = parse_session_command(payload, link.session_id)
        except CommandError as exc:
            link.control_errors += 1
            log.warning("mqtt %s: bad control message on %s (%d so far): %s", self.url, topic, link.control_errors,
                        exc)
            return encode_reply({"ok": False, "error": str(exc), "session": link.session_id})
        return encode_reply(run_command(handler, link.session_id, command))

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        """Publish, giving up as soon as the connection drops (aiomqtt would wait for its timeout)."""
        await self._until_lost(client, client.publish(topic, payload, qos=qos, retain=retain))

    async def _until_lost(self, client: aiomqtt.Client, request: Coroutine[Any, Any, _T]) -> _T:
        """Await a publish or subscribe, raising :class:`_ConnectionLost` as soon as the connection drops."""
        disconnected = client._disconnected
        task = asyncio.ensure_future(request)
        either: set[asyncio.Future[Any]] = {task, disconnected}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        raise self._lost(client)

    @staticmethod
    def _lost(client: aiomqtt.Client) -> _ConnectionLost:
        disconnected = client._disconnected
        cause = disconnected.exception() if disconnected.done() and not disconnected.cancelled() else None
        return _ConnectionLost(f"connection lost ({cause or 'broker closed it'})")
