"""What the page shows, kept on the server: recent messages per session, feed links and error rows.

:class:`Hub` receives decoded messages (on the dashboard's asyncio loop, one thread) and fans each out as an event
to every connected page. A page that connects later first gets a replay of what the hub keeps: each session's last
status, its recent predictions (:data:`HISTORY` of them, minutes at a 1-s hop) and the last 10 s of previews, the
feeds' links and the recent error rows. Each page has a bounded queue: a page that does not keep up is dropped
(its browser reconnects and gets a fresh replay), so a slow or closed tab never holds up the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rt_physio.dashboard.feeds import LinkState
from rt_physio.dashboard.messages import Message

__all__ = ["HISTORY", "Hub"]

log = logging.getLogger(__name__)

HISTORY = 300  # predictions kept per session for the page's time series and latency histograms
PREVIEW_S = 10.0  # seconds of preview messages kept per session
ERRORS = 50  # error rows kept
PAGE_QUEUE = 4096  # events waiting for one page before it is dropped


@dataclass(slots=True)
class _Session:
    preds: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    previews: deque[tuple[float, dict[str, Any]]] = field(default_factory=deque)
    status: dict[str, Any] | None = None
    last_seen: float = 0.0  # monotonic time of the last message
    silent: bool = False
    source: str = ""  # the feed it was last heard on


def _event(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), allow_nan=False)


class Hub:
    """Keep recent state and fan events out to pages (see the module docstring).

    Parameters
    ----------
    stale_after : float
        Seconds without any message from a session after which it is shown ``offline`` (reason ``silent``): an
        engine killed without a clean stop sends no ``offline`` over ZeroMQ. Longer than the engines' status
        heartbeat (``--status-every``, default 5 s).
    """

    def __init__(self, stale_after: float = 12.0) -> None:
        self.stale_after = stale_after
        self.sessions: dict[str, _Session] = {}
        self.links: dict[str, LinkState] = {}
        self.errors: deque[str] = deque(maxlen=ERRORS)
        self._pages: set[asyncio.Queue[str | None]] = set()
        self.received = 0

    # -- input ------------------------------------------------------------------------------------------------
    def on_message(self, message: Message, source: str) -> None:
        """Take one decoded message from the feed ``source``."""
        self.received += 1
        now = time.monotonic()
        if message.kind == "error":
            event = _event("error", session=message.session, topic=message.topic, error=message.error,
                           source=source, t_wall=time.time())
            self.errors.append(event)
            self._send(event)
            return
        session = self.sessions.setdefault(message.session, _Session())
        session.last_seen = now
        session.silent = False
        session.source = source
        event = _event(message.kind, session=message.session, source=source, msg=message.body)
        if message.kind == "pred":
            session.preds.append(message.body)
        elif message.kind == "status":
            session.status = message.body
        else:
            session.previews.append((now, message.body))
            while session.previews and session.previews[0][0] < now - PREVIEW_S:
                session.previews.popleft()
        self._send(event)

    def on_link(self, link: LinkState) -> None:
        """Take a feed's new link state; the sessions of an engine that went away are shown offline at once."""
        self.links[link.url] = link
        self._send(_event("link", url=link.url, connected=link.connected, detail=link.detail))
        if link.connected:
            return
        now = time.monotonic()
        for session_id, session in self.sessions.items():
            # A ZeroMQ engine that died (kill -9, a crash) closes its connection: no need to wait for silence. (An
            # MQTT broker that went away says nothing about the engines behind it: their sessions wait for silence
            # or the engine's last will.)
            if session.source == link.url and not session.silent and link.url.lower().startswith("zmq://"):
                session.silent = True
                self._send(_event("silent", session=session_id, seconds=round(now - session.last_seen, 1),
                                  why=link.detail))

    def check_silence(self) -> None:
        """Show sessions silent for longer than :attr:`stale_after` as offline (called periodically)."""
        now = time.monotonic()
        for session_id, session in self.sessions.items():
            if not session.silent and now - session.last_seen > self.stale_after:
                session.silent = True
                self._send(_event("silent", session=session_id, seconds=round(now - session.last_seen, 1)))

    # -- pages ------------------------------------------------------------------------------------------------
    def replay(self) -> Iterator[str]:
        """Yield the events that bring a newly connected page up to date."""
        for link in self.links.values():
            yield _event("link", url=link.url, connected=link.connected, detail=link.detail)
        for session_id, session in self.sessions.items():
            if session.status is not None:
                yield _event("status", session=session_id, msg=session.status)
            for body in session.preds:
                yield _event("pred", session=session_id, msg=body)
            for _, body in session.previews:
                yield _event("preview", session=session_id, msg=body)
            if session.silent:
                yield _event("silent", session=session_id, seconds=round(time.monotonic() - session.last_seen, 1))
        yield from self.errors

    def subscribe(self) -> asyncio.Queue[str | None]:
        """Return a new page's queue, already holding the replay; ``None`` in it means "reconnect"."""
        events = list(self.replay())
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=len(events) + 1 + PAGE_QUEUE)
        for event in events:
            queue.put_nowait(event)
        queue.put_nowait(_event("ready"))
        self._pages.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None:
        """Forget a page (its connection closed)."""
        self._pages.discard(queue)

    @property
    def pages(self) -> int:
        """Pages connected now."""
        return len(self._pages)

    def _send(self, event: str) -> None:
        for queue in list(self._pages):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # this page is not keeping up: end its stream; the browser reconnects and gets a fresh replay
                log.warning("dashboard: a page fell %d events behind; dropping its connection", PAGE_QUEUE)
                self._pages.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
