"""The dashboard's web server: a Starlette app served by uvicorn on a thread of its own.

Routes: ``/`` (the page), ``/static/…`` (its script and style, and ``plotly.min.js`` from the installed ``plotly``
package: the page needs no network), ``/events`` (server-sent events: a replay of recent state, then every message
as it arrives; see :class:`~rt_physio.dashboard.state.Hub`), ``/api/config`` and, with a control URL,
``POST /api/calibrate`` (sends ``{"cmd": "calibrate"}`` for one session; see :mod:`.control`).

Everything runs on one asyncio loop in one thread (feeds, the silence check, the HTTP server), so a dashboard
started inside an engine (``rt-physio run --dashboard``) takes nothing from the engine's threads but the GIL for its
own, light work; the engine sees it as one more subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket
import threading
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rt_physio.dashboard import DEFAULT_BIND
from rt_physio.dashboard.control import open_control
from rt_physio.dashboard.feeds import Feed, open_feed
from rt_physio.dashboard.messages import decode_message
from rt_physio.dashboard.state import Hub
from rt_physio.errors import ConfigError
from rt_physio.publish.url_query import is_loopback_host

__all__ = ["Dashboard", "parse_bind"]

log = logging.getLogger(__name__)

CONTROL_TIMEOUT_S = 5.0
_STATIC = resources.files("rt_physio.dashboard").joinpath("static")


def parse_bind(text: str, *, insecure: bool = False) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (port 0: any free port); a non-loopback host needs ``insecure``."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"Invalid --bind {text!r}: expected HOST:PORT, e.g. {DEFAULT_BIND}.")
    if not is_loopback_host(host) and not insecure:
        raise ConfigError(
            f"Refusing to serve the dashboard on non-loopback address {host!r}: anyone on the network could watch "
            "the sessions (and calibrate them, with --control). Bind 127.0.0.1, or pass --insecure to accept that.")
    return host, int(port_text)


def _plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")
    locations = spec.submodule_search_locations if spec is not None else None
    path = Path(next(iter(locations or []), "")) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ConfigError(f"plotly.min.js not found ({path}): reinstall rt_physio's dependencies (pip install plotly).")
    return path


class Dashboard:
    """Serve the dashboard page for the engines at ``connect`` (see the module docstring).

    Construction checks every URL and binds the listening socket, so a bad URL or a busy port is a
    :class:`ConfigError` before anything runs; :meth:`start` starts the thread, :meth:`close` stops it.

    Parameters
    ----------
    connect : sequence of str
        Engines to read: ``zmq://HOST:PORT`` (an engine's ``--publish``) or ``mqtt://…/PREFIX``.
    bind : str
        ``HOST:PORT`` to serve on (port 0: any free port; :attr:`url` says which).
    control : str, optional
        An engine's ``--control zmq://HOST:PORT``, or the ``mqtt://…/PREFIX`` it publishes to: enables the
        calibrate button.
    insecure : bool
        Allow a non-loopback ``bind``.
    stale_after : float
        Seconds of silence after which a session is shown offline.
    """

    def __init__(self, connect: Sequence[str], bind: str = DEFAULT_BIND, *, control: str | None = None,
                 insecure: bool = False, stale_after: float = 12.0) -> None:
        if not connect:
            raise ConfigError("The dashboard needs at least one --connect URL.")
        self.feeds: list[Feed] = [open_feed(url) for url in connect]
        self.control = None if control is None else open_control(control)
        self.hub = Hub(stale_after=stale_after)
        self._plotly = _plotly_js()
        host, port = parse_bind(bind, insecure=insecure)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise ConfigError(f"Cannot serve the dashboard on {host}:{port}: {exc.strerror}. Is another dashboard "
                              "running? Choose another address with --bind HOST:PORT.") from exc
        self._sock.listen(128)
        bound = self._sock.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        self.url = f"http://{shown}:{bound[1]}/"
        self._server = uvicorn.Server(uvicorn.Config(self.app(), log_level="warning", access_log=False,
                                                     timeout_graceful_shutdown=1, lifespan="off"))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None

    # -- the app ----------------------------------------------------------------------------------------------
    def app(self) -> Starlette:
        """Build the ASGI app (routes in the module docstring)."""
        static = StaticFiles(directory=str(_STATIC))
        return Starlette(routes=[
            Route("/", self._index),
            Route("/static/plotly.min.js", self._plotly_file),
            Mount("/static", app=static),
            Route("/events", self._events),
            Route("/api/config", self._config),
            Route("/api/calibrate", self._calibrate, methods=["POST"]),
        ])

    async def _index(self, request: Request) -> Response:
        return Response(_STATIC.joinpath("index.html").read_bytes(), media_type="text/html; charset=utf-8")

    async def _plotly_file(self, request: Request) -> Response:
        return FileResponse(self._plotly, media_type="text/javascript")

    async def _config(self, request: Request) -> Response:
        return JSONResponse({"connect": [feed.url for feed in self.feeds], "control": self.control is not None,
                             "stale_after": self.hub.stale_after})

    async def _events(self, request: Request) -> Response:
        queue = self.hub.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), timeout=15.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"  # lets a proxy (and us) notice a closed tab
                        continue
                    if event is None:
                        return
                    yield f"data: {event}\n\n"
            finally:
                self.hub.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _calibrate(self, request: Request) -> Response:
        if self.control is None:
            return JSONResponse({"ok": False, "error": "this dashboard was started without --control"}, 404)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"ok": False, "error": "the request body is not JSON"}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("session"), str):
            return JSONResponse({"ok": False, "error": "expected {\"session\": \"<id>\"}"}, 400)
        command: dict[str, Any] = {"cmd": "calibrate"}
        if "seconds" in body:
            command["seconds"] = body["seconds"]
        reply = await self.control.send(body["session"], command)
        return JSONResponse(reply, 200 if reply.get("ok") else 502)

    # -- running ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the server thread and wait until it accepts connections."""
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="dashboard", daemon=True)
        self._thread.start()
        while not started.wait(0.05):
            if not self._thread.is_alive():
                raise ConfigError(f"The dashboard could not start: {self._failure}")
        log.info("dashboard on %s", self.url)

    def _run(self, started: threading.Event) -> None:
        try:
            asyncio.run(self._main(started))
        except BaseException as exc:
            self._failure = exc
            log.exception("dashboard stopped")

    async def _main(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(self._read(feed)) for feed in self.feeds]
        tasks.append(asyncio.create_task(self._watch_silence()))
        server = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started and not server.done():
            await asyncio.sleep(0.01)
        started.set()
        try:
            await server
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _read(self, feed: Feed) -> None:
        hub = self.hub

        def on_message(topic: str, payload: bytes) -> None:
            message = decode_message(topic, payload)
            if message is not None:
                hub.on_message(message, feed.url)

        try:
            await feed.run(on_message, hub.on_link)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dashboard feed %s stopped", feed.url)

    async def _watch_silence(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.hub.check_silence()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server thread ends (or ``timeout``); True when it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Stop serving (open pages see their stream end) and wait for the thread (bounded)."""
        self._server.should_exit = True
        if not self.wait(5.0):
            log.warning("dashboard: the server thread did not stop within 5 s")
        self._sock.close()
