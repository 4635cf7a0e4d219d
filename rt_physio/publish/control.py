"""Control messages: commands an application sends to a running session, and the ZeroMQ REP server that takes them.

A command is a JSON object with a string ``cmd``, e.g. ``{"cmd": "calibrate", "seconds": 60}``. Two transports
carry it:

- ZeroMQ: :class:`ControlServer`, a REP socket (``--control zmq://127.0.0.1:5557``). The request names its session,
  ``{"session": "s1", "cmd": "ping"}`` (``session`` may be left out when the engine runs exactly one session); the
  reply is the handler's JSON object plus ``"session"``.
- MQTT: the publisher's per-session connection subscribes to ``<prefix>/<session>/control`` and answers on
  ``<prefix>/<session>/control/reply`` (see :mod:`rt_physio.publish.mqtt`).

Either way, a request may carry an ``"id"`` (any JSON value), echoed in the reply so a client can match replies to
its requests. ``session`` and ``id`` belong to the transport: the handler's ``command`` holds the other keys.

The engine's :data:`ControlHandler` runs on the transport's own thread and must return quickly. Whatever it raises
is answered, never propagated: a transport does not die because of a command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import zmq

from rt_physio.checks import show_value
from rt_physio.errors import ConfigError
from rt_physio.publish.zmq import ZmqUrl, bind_socket, close_bound_socket, parse_zmq_url

__all__ = ["MAX_COMMAND_BYTES", "MAX_DIGITS", "CommandError", "ControlHandler", "ControlInbox", "ControlServer",
           "InboxStats", "OversizedMessage", "encode_reply", "parse_command", "parse_session_command", "run_command",
           "too_large"]

log = logging.getLogger(__name__)

ControlHandler = Callable[[str, Mapping[str, Any]], dict[str, Any]]
"""``handler(session_id, command) -> reply``; the reply is ``{"ok": True, ...}`` or ``{"ok": False, "error": ...}``.

Called on the transport's thread; it must return quickly. It may raise :class:`ValueError` or
:class:`~rt_physio.errors.ConfigError` for a bad command (answered ``{"ok": false, "error": str(exc)}``); any other
exception is logged with its traceback and answered as an internal error.
"""

MAX_COMMAND_BYTES = 64 * 1024
MAX_DIGITS = 30  # digits of an integer in a command (Python refuses to read more than 4300 at all)
_TRANSPORT_KEYS = ("session", "id")  # taken out of the command before the handler sees it
# ZeroMQ drops (disconnects) a peer that sends more: the memory bound. Anything from 64 KiB to this is received
# and answered politely, so a client that sends a few megabytes by mistake learns why.
_RECEIVE_LIMIT = 16 << 20


class CommandError(ValueError):
    """A control message that is not a valid command (the message says what was wrong)."""


def parse_command(payload: bytes) -> dict[str, Any]:
    """Decode a control message: a UTF-8 JSON object of at most 64 KiB with a string ``"cmd"``.

    Raises
    ------
    CommandError
        Naming what was wrong: too large, not UTF-8, not JSON (``NaN`` and ``Infinity`` included), an integer of
        more than :data:`MAX_DIGITS` digits, not an object, ``cmd`` missing or not a string.
    """
    if len(payload) > MAX_COMMAND_BYTES:
        raise too_large(len(payload))
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"control message is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    try:
        command = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except CommandError:
        raise
    except json.JSONDecodeError as exc:
        raise CommandError(f"control message is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                           'expected an object such as {"cmd": "ping"}.') from None
    except RecursionError:
        raise CommandError("control message is not JSON (nested too deeply).") from None
    except ValueError as exc:  # anything else the decoder cannot turn into Python values
        raise CommandError(f"control message cannot be read: {exc}.") from None
    if not isinstance(command, dict):
        raise CommandError(f'control message must be a JSON object such as {{"cmd": "ping"}}, got a JSON '
                           f"{_json_type(command)}.")
    if "cmd" not in command:
        raise CommandError(f'control message has no "cmd" (keys: {", ".join(sorted(command)) or "none"}); '
                           'expected e.g. {"cmd": "ping"}.')
    if not isinstance(command["cmd"], str):
        raise CommandError(f'"cmd" must be a string, got a JSON {_json_type(command["cmd"])}: {command["cmd"]!r}.')
    return command


def too_large(size: int) -> CommandError:
    """Return the error for a control message of ``size`` bytes, over :data:`MAX_COMMAND_BYTES`."""
    return CommandError(f"control message is {size} bytes; the limit is {MAX_COMMAND_BYTES} bytes.")


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise CommandError(f"control message holds an integer of {digits} digits; numbers in commands have at most "
                           f"{MAX_DIGITS}.")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise CommandError(f"control message holds the number {show_value(text)}, too large for a float.")
    return value


def _parse_constant(name: str) -> Any:
    raise CommandError(f"control message holds {name}, which is not a JSON number; send a finite number.")


def parse_session_command(payload: bytes, session_id: str) -> dict[str, Any]:
    """Decode a command received on ``session_id``'s own channel (an MQTT control topic).

    A ``"session"`` in the message is optional there, but must then name that same session.
    """
    command = parse_command(payload)
    named = command.get("session", session_id)
    if named != session_id:
        raise CommandError(f"control message names session {named!r} but was sent to session {session_id!r}'s "
                           "control topic; send it to that session's topic or leave \"session\" out.")
    return command


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def run_command(handler: ControlHandler, session_id: str, command: Mapping[str, Any]) -> dict[str, Any]:
    """Call ``handler`` for one decoded command and return its reply, whatever happens.

    ``session`` (set to ``session_id``) and the request's ``id``, when it has one, are added to the reply; they are
    removed from the command the handler sees.
    """
    request = {k: v for k, v in command.items() if k not in _TRANSPORT_KEYS}
    cmd = request.get("cmd")
    try:
        reply = handler(session_id, request)
        if not isinstance(reply, dict):
            raise TypeError(f"control handler returned {type(reply).__name__}, not a dict")
        reply = dict(reply)
    except (ValueError, ConfigError) as exc:
        log.info("control: session %s: command %r refused: %s", session_id, cmd, exc)
        reply = {"ok": False, "error": str(exc)}
    except Exception as exc:
        log.exception("control: session %s: command %r failed", session_id, cmd)
        reply = {"ok": False, "error": f"internal error while running {cmd!r}: {type(exc).__name__}: {exc}"}
    reply["session"] = session_id
    if "id" in command:
        reply["id"] = command["id"]
    return reply


def encode_reply(reply: Mapping[str, Any]) -> bytes:
    """Encode a reply as JSON; a reply that JSON cannot represent becomes an error reply (and is logged)."""
    try:
        return json.dumps(reply, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        log.error("control: reply %r is not JSON-serialisable: %s", reply, exc)
        fallback = {k: reply[k] for k in ("session", "id") if k in reply}
        return json.dumps({"ok": False, "error": f"internal error: reply not JSON-serialisable ({exc})",
                           **fallback}, default=str).encode()


@dataclass(slots=True)
class InboxStats:
    """What a :class:`ControlInbox` went through, kept across the inboxes of one session's reconnections."""

    dropped: int = 0  # messages that found the inbox full
    peak: int = 0  # most messages waiting at once
    peak_bytes: int = 0  # most payload bytes waiting at once


@dataclass(frozen=True, slots=True)
class OversizedMessage:
    """A received message over :data:`MAX_COMMAND_BYTES`, without its payload.

    It is refused anyway, so its payload is not kept while it waits for its error reply (a few such messages
    would otherwise fill the inbox's bytes).
    """

    topic: Any
    retain: bool
    size: int


class ControlInbox(asyncio.Queue[Any]):
    """The queue of received control messages not yet answered, bounded in messages and in payload bytes.

    A flood of commands, or a few large ones, then costs a bounded amount of memory. A message that does not fit
    is dropped (the newest: those queued first are answered in order), counted in ``stats`` and logged. A
    message over :data:`MAX_COMMAND_BYTES` waits as an :class:`OversizedMessage` (its size, not its payload), so
    it is answered with an error and costs nothing. One message is always taken when the inbox is empty. Lives
    in one event loop (``put_nowait`` from the transport's callbacks).

    Parameters
    ----------
    maxsize : int
        Messages waiting at most (as :class:`asyncio.Queue`; 0 would mean unbounded, so at least 1 is required).
    max_bytes : int
        Payload bytes waiting at most (besides the one message an empty inbox always takes).
    stats : InboxStats
        Counters to update.
    name : str
        For log messages (e.g. the session's control topic).
    """

    def __init__(self, maxsize: int = 0, *, max_bytes: int, stats: InboxStats, name: str) -> None:
        if maxsize < 1:
            raise ValueError(f"The 'maxsize' parameter must be at least 1, got {maxsize}.")
        super().__init__(maxsize)
        self.max_bytes = max_bytes
        self.bytes = 0
        self.stats = stats
        self.name = name

    @staticmethod
    def _size(message: Any) -> int:
        payload = getattr(message, "payload", b"")
        return len(payload) if isinstance(payload, bytes | bytearray | str) else 0

    def put_nowait(self, item: Any) -> None:
        """Queue ``item``, or drop and count it when the inbox is full (never raises :class:`asyncio.QueueFull`)."""
        size = self._size(item)
        if size > MAX_COMMAND_BYTES:
            item = OversizedMessage(getattr(item, "topic", None), bool(getattr(item, "retain", False)), size)
            size = 0
        if self.full() or (not self.empty() and self.bytes + size > self.max_bytes):
            self.stats.dropped += 1
            n = self.stats.dropped
            if n == 1 or n % 100 == 0:
                log.warning("control %s: inbox full (%d messages, %d bytes waiting), dropped a command (%d so far)",
                            self.name, self.qsize(), self.bytes, n)
            return
        super().put_nowait(item)
        self.bytes += size
        self.stats.peak = max(self.stats.peak, self.qsize())
        self.stats.peak_bytes = max(self.stats.peak_bytes, self.bytes)

    def get_nowait(self) -> Any:
        """Take the oldest message (``get`` comes here too)."""
        item = super().get_nowait()
        self.bytes -= self._size(item)
        return item


class ControlServer:
    """Answer control requests on a ZeroMQ REP socket from a dedicated thread.

    Parameters
    ----------
    url : str
        ``zmq://HOST:PORT``; bound at construction, so a busy port is reported before the engine starts.
    handler : ControlHandler
        Carries out one command; called on this server's thread.
    session_ids : sequence of str
        The engine's sessions. A request without ``"session"`` is meant for the only session, when there is one.
    insecure : bool
        Required to bind a non-loopback address (anyone who reaches the port could send commands).
    poll_s : float
        How often the thread checks for :meth:`close`; bounds how long closing takes.
    """

    def __init__(self, url: str, handler: ControlHandler, session_ids: Sequence[str], *, insecure: bool = False,
                 poll_s: float = 0.1) -> None:
        self.url: ZmqUrl = parse_zmq_url(url)
        if self.url.format != "json":
            raise ConfigError(f"Control URL {url!r}: control messages are JSON; remove format={self.url.format}.")
        if not session_ids:
            raise ValueError("The 'session_ids' parameter must name at least one session, got none.")
        if not 0 < poll_s <= 1:
            raise ValueError(f"The 'poll_s' parameter must be in (0, 1] seconds, got {poll_s}.")
        if not self.url.is_loopback and not insecure:
            raise ConfigError(
                f"Refusing to accept control commands on non-loopback address {self.url.host!r} without "
                "authentication: anyone on the network could command the sessions. Bind 127.0.0.1, or pass "
                "--insecure to accept that."
            )
        self._handler = handler
        self._sessions = tuple(session_ids)
        self._poll_ms = round(1e3 * poll_s)
        self.handled = 0  # requests answered by the handler (ok or not)
        self.errors = 0  # requests answered without reaching the handler: malformed, unknown session
        self._stop = threading.Event()
        self._sock = bind_socket(zmq.REP, self.url.endpoint, {zmq.LINGER: 0, zmq.MAXMSGSIZE: _RECEIVE_LIMIT},
                                 f"Cannot bind the control server on {self.url.endpoint}",
                                 "Is another rt-physio running, or is it the --publish port? Choose another port with "
                                 "--control zmq://127.0.0.1:PORT.")
        self._thread = threading.Thread(target=self._run, name=f"zmq-control-{self.url.port}", daemon=True)
        self._thread.start()
        log.info("control: accepting commands on %s for session(s) %s", self.url.endpoint, ", ".join(self._sessions))

    def answer(self, frames: Sequence[bytes]) -> dict[str, Any]:
        """Turn one request into its reply (public for tests and other transports; never raises)."""
        try:
            if len(frames) != 1:
                raise CommandError(f"control request must be one message frame, got {len(frames)}.")
            command = parse_command(frames[0])
            session_id = self._session_of(command)
        except CommandError as exc:
            self.errors += 1
            log.warning("control %s: bad request (%d so far): %s", self.url.endpoint, self.errors, exc)
            return {"ok": False, "error": str(exc)}
        self.handled += 1
        return run_command(self._handler, session_id, command)

    def _session_of(self, command: Mapping[str, Any]) -> str:
        known = ", ".join(self._sessions)
        if "session" not in command:
            if len(self._sessions) == 1:
                return self._sessions[0]
            raise CommandError(f'control request has no "session" and the engine runs several; sessions: {known}.')
        session_id = command["session"]
        if not isinstance(session_id, str):
            raise CommandError(f'"session" must be a string, got {session_id!r}; sessions: {known}.')
        if session_id not in self._sessions:
            raise CommandError(f"unknown session {session_id!r}; sessions: {known}.")
        return session_id

    def _run(self) -> None:
        sock = self._sock
        try:
            while not self._stop.is_set():
                if not sock.poll(self._poll_ms):
                    continue
                frames = sock.recv_multipart()
                try:
                    reply = encode_reply(self.answer(frames))
                except Exception:  # a bug of ours; a REP socket must answer before it can take the next request
                    log.exception("control %s: could not answer a request", self.url.endpoint)
                    reply = b'{"ok": false, "error": "internal error while answering the request"}'
                try:
                    sock.send(reply, flags=zmq.NOBLOCK)  # REP to a vanished peer drops; it never needs to wait
                except zmq.Again:
                    log.warning("control %s: could not send a reply (peer gone)", self.url.endpoint)
        except zmq.ZMQError as exc:
            if not self._stop.is_set():
                log.error("control %s: socket failed, no more commands will be answered: %s", self.url.endpoint, exc)
        except Exception:
            log.exception("control %s: server thread failed, no more commands will be answered", self.url.endpoint)
        finally:
            close_bound_socket(sock, linger_ms=0)  # returns once the port is free: a restart can bind it at once

    @property
    def running(self) -> bool:
        """True while the server thread answers requests."""
        return self._thread.is_alive()

    def close(self, timeout: float = 2.0) -> None:
        """Stop answering and close the socket, leaving the port free (returns within about ``poll_s``; idempotent)."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("control %s: server thread did not stop within %.1f s", self.url.endpoint, timeout)
