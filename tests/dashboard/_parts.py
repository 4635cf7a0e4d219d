"""Real parts for the dashboard tests: engines and dashboards as processes, a ZeroMQ watcher, page readers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from selenium import webdriver

from tests._zmq import ZmqCollector

RT_PHYSIO = str(Path(sys.executable).parent / "rt-physio")
T = TypeVar("T")


def start_engine(port: int, *args: str) -> subprocess.Popen[str]:
    """`rt-physio run` on the synthetic board, 2-s windows, 0.5-s hop, publishing on zmq://127.0.0.1:port."""
    return subprocess.Popen([RT_PHYSIO, "run", "--window", "2", "--hop", "0.5", "--device", "cpu", "--threads", "1",
                             "--duration", "600", "--quiet", "--status-every", "2", "--publish",
                             f"zmq://127.0.0.1:{port}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_dashboard(port: int, *args: str) -> subprocess.Popen[str]:
    """`rt-physio dashboard --bind 127.0.0.1:port …`, returned once it says where it serves."""
    proc = subprocess.Popen([RT_PHYSIO, "dashboard", "--bind", f"127.0.0.1:{port}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the first line says where it serves (or nothing, when it failed)
    assert f"http://127.0.0.1:{port}/" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[str, str]:
    """Stop a process (SIGTERM: a clean stop) and return its output."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for(what: str, check: Callable[[], T | None], timeout: float, poll: float = 0.05) -> T:
    """Return ``check()`` once it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def rows(driver: webdriver.Chrome) -> dict[str, dict[str, str]]:
    """Every session row's contract attributes and visible texts, read in one script call."""
    result: dict[str, dict[str, str]] = driver.execute_script("""
        const out = {};
        for (const row of document.querySelectorAll('tr.session[data-session]')) {
            out[row.dataset.session] = {seq: row.dataset.seq, state: row.dataset.state,
                                        mods: row.querySelector('.mods').textContent,
                                        cal: row.querySelector('.cal').textContent,
                                        text: row.textContent};
        }
        return out;""")
    return result


def seq_shown(driver: webdriver.Chrome, session: str) -> int:
    """The seq the page shows for ``session`` (-1: none yet)."""
    row = rows(driver).get(session)
    return int(row["seq"]) if row and row["seq"] else -1


def assert_shown_within(driver: webdriver.Chrome, watch: ZmqCollector, session: str, limit: float) -> int:
    """Wait for ``session``'s next prediction on ZeroMQ; assert the page shows its seq within ``limit`` seconds."""
    n = len(watch.preds(session))
    msg, received = wait_for(f"the next prediction of {session}", lambda: watch.preds(session)[n:n + 1], 30)[0]
    seq = msg["seq"]

    def shown() -> bool:  # this seq or a later one of the same run (an engine restarted counts from 0 again)
        return seq <= seq_shown(driver, session) <= max(m["seq"] for m, _ in watch.preds(session)[n:])

    wait_for(f"seq {seq} of {session} on the page", shown, limit + 10)
    late = time.monotonic() - received
    assert late <= limit, f"{session}: seq {seq} shown {late:.2f} s after it was published (limit {limit:g} s)"
    return int(seq)
