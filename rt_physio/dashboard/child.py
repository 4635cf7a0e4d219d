"""``rt-physio run --dashboard``: the dashboard as a child process of the engine, subscribed to its publisher.

A child process rather than a thread: the page's server, its feeds and the schema checks never hold the engine's
GIL, so they can add nothing to a prediction's path, and a crash of the page cannot take the engine down. The child
is ``rt-physio dashboard --connect <the engine's own first publish URL>`` (ZeroMQ preferred: no broker in between),
with the engine's ZeroMQ ``--control`` (else its MQTT publish URL, whose control topics it serves) for the calibrate
button. It ends when the engine closes its stdin (or dies,
which closes it too), and it runs in its own session so that a Ctrl-C meant for the engine stops the engine first.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
from typing import IO

from rt_physio.errors import ConfigError

__all__ = ["EngineDashboard"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # importing the web stack on a loaded 2-core machine


class EngineDashboard:
    """Start ``rt-physio dashboard`` for an engine's own messages (see the module docstring).

    Parameters
    ----------
    publish : sequence of str
        The engine's publish URLs; the first ZeroMQ one (else the first) is read.
    bind : str
        ``HOST:PORT`` to serve the page on.
    control : str, optional
        The engine's ``--control`` URL: a ZeroMQ one (or else an MQTT publish URL) enables the calibrate button.
    insecure : bool
        Allow a non-loopback ``bind`` (the engine's ``--insecure``).
    """

    def __init__(self, publish: tuple[str, ...] | list[str], bind: str, *, control: str | None = None,
                 insecure: bool = False) -> None:
        urls = [url for url in publish if url.lower().startswith("zmq://")] or list(publish)
        if not urls:
            raise ConfigError("--dashboard reads the engine's own messages: give it a --publish URL.")
        feed = urls[0].split("?", 1)[0] if urls[0].lower().startswith("zmq://") else urls[0]
        feed = feed.replace("://0.0.0.0:", "://127.0.0.1:").replace("://*:", "://127.0.0.1:")
        args = [sys.executable, "-m", "rt_physio.cli", "dashboard", "--exit-with-stdin", "--connect", feed,
                "--bind", bind]
        mqtt = [url for url in publish if url.lower().startswith(("mqtt://", "mqtts://"))]
        if control is not None and control.lower().startswith("zmq://"):
            args += ["--control", control]
        elif mqtt:  # an engine that publishes on MQTT takes commands there too
            args += ["--control", mqtt[0]]
        if insecure:
            args.append("--insecure")
        self.args = args
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._errors: list[str] = []

    def start(self) -> None:
        """Start the child; :meth:`wait_ready` says when it serves."""
        self._proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._lines), daemon=True,
                         name="dashboard-out").start()
        threading.Thread(target=self._relay, args=(self._proc.stderr,), daemon=True, name="dashboard-err").start()

    def _pump(self, stream: IO[str], lines: queue.Queue[str | None]) -> None:
        proc = self._proc
        for line in stream:
            lines.put(line)
        lines.put(None)
        if proc is not None and self._proc is proc:  # not asked to close: the page is gone, the engine goes on
            log.error("the dashboard process ended on its own (exit %s); the engine keeps running without its page",
                      proc.wait())

    def _relay(self, stream: IO[str]) -> None:
        for line in stream:  # the child's log lines and errors, shown as the engine's
            self._errors.append(line.rstrip())
            del self._errors[:-20]
            sys.stderr.write(line)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> str:
        """Wait until the child serves and return the page's URL; :class:`ConfigError` when it could not start."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None or " on http" not in line:
            self.close()
            why = next((e.removeprefix("rt-physio: error: ") for e in reversed(self._errors) if "error" in e),
                       "it did not start")
            raise ConfigError(f"--dashboard: {why}")
        self.url = line.split(" on ", 1)[1].split(" ", 1)[0]
        return self.url

    def close(self) -> None:
        """End the child (closing its stdin), waiting up to 5 s before killing it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            log.warning("the dashboard process did not stop within 5 s; killing it")
            proc.kill()
            proc.wait()
