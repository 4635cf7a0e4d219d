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

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import zmq

from rt_physio.errors import ConfigError
from rt_physio.publish.zmq import ZmqUrl, bind_socket, parse_zmq_url

__all__ = ["MAX_COMMAND_BYTES", "CommandError", "ControlHandler", "ControlServer", "encode_reply", "parse_command",
           "parse_session_command", "run_command"]

log = logging.getLogger(__name__)

ControlHandler = Callable[[str, Mapping[str, Any]], dict[str, Any]]
"""``handler(session_id, command) -> reply``; the reply is ``{"ok": True, ...}`` or ``{"ok": False, "error": ...}``.

Called on the transport's thread; it must return quickly. It may raise :class:`ValueError` or
:class:`~rt_physio.errors.ConfigError` for a bad command (answered ``{"ok": false, "error": str(exc)}``); any other
exception is logged with its traceback and answered as an internal error.
"""

MAX_COMMAND_BYTES = 64 * 1024
DEFAULT_CONTROL_URL = "zmq://127.0.0.1:5557"
_TRANSPORT_KEYS = ("session", "id")  # taken out of the command before the handler sees it
_RECEIVE_LIMIT = 1 << 20  # ZeroMQ drops a peer that sends more: bounds memory; 64 KiB-1 MiB is answered politely


class CommandError(ValueError):
    """A control message that is not a valid command (the message says what was wrong)."""


def parse_command(payload: bytes) -> dict[str, Any]:
    """Decode a control message: a UTF-8 JSON object of at most 64 KiB with a string ``"cmd"``.

    Raises
    ------
    CommandError
        Naming what was wrong: too large, not UTF-8, not JSON, not an object, ``cmd`` missing or not a string.
    """
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"control message is {len(payload)} bytes; the limit is {MAX_COMMAND_BYTES} bytes.")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"control message is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    try:
        command = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"control message is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                           'expected an object such as {"cmd": "ping"}.') from None
    except RecursionError:
        raise CommandError("control message is not JSON (nested too deeply).") from None
    if not isinstance(command, dict):
        raise CommandError(f'control message must be a JSON object such as {{"cmd": "ping"}}, got a JSON '
                           f"{_json_type(command)}.")
    if "cmd" not in command:
        raise CommandError(f'control message has no "cmd" (keys: {", ".join(sorted(command)) or "none"}); '
                           'expected e.g. {"cmd": "ping"}.')
    if not isinstance(command["cmd"], str):
        raise CommandError(f'"cmd" must be a string, got a JSON {_json_type(command["cmd"])}: {command["cmd"]!r}.')
    return command


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
                reply = encode_reply(self.answer(frames))
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
            sock.close(linger=0)

    @property
    def running(self) -> bool:
        """True while the server thread answers requests."""
        return self._thread.is_alive()

    def close(self, timeout: float = 2.0) -> None:
        """Stop answering and close the socket (returns within about ``poll_s``; idempotent)."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("control %s: server thread did not stop within %.1f s", self.url.endpoint, timeout)
