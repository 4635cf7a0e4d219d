"""A ZeroMQ subscriber for tests: every message an engine publishes, with the time it arrived."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq


class ZmqCollector:
    """A ZeroMQ SUB on its own thread keeping ``(topic, message, clock() at receipt)`` for every JSON message.

    ``clock`` is the time base the caller compares against (``time.monotonic`` by default; ``pylsl.local_clock``
    to compare with the engine's ``t_*`` fields).
    """

    def __init__(self, port: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.got: list[tuple[str, dict[str, Any], float]] = []
        self._port = port
        self._clock = clock
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"rt_physio/")
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{self._port}")
        self._ready.set()
        while not self._stop.is_set():
            if sock.poll(50):
                topic, payload = sock.recv_multipart()
                self.got.append((topic.decode(), json.loads(payload), self._clock()))
        sock.close()

    def preds(self, session: str | None = None) -> list[tuple[dict[str, Any], float]]:
        """The predictions received so far (of one session, or all), with their arrival times."""
        return [(m, t) for topic, m, t in list(self.got)
                if topic.endswith("/pred") and (session is None or m["session"] == session)]

    def close(self) -> None:
        """Stop the subscriber thread."""
        self._stop.set()
        self._thread.join(5)
