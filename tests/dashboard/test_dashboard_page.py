"""The dashboard page in a real headless Chromium, fed by a real engine on BrainFlow's synthetic board."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
import zmq
from selenium import webdriver
from selenium.webdriver.common.by import By

from rt_physio.cli import main
from tests._zmq import ZmqCollector
from tests.conftest import free_port
from tests.dashboard._parts import (
    assert_shown_within,
    rows,
    seq_shown,
    start_dashboard,
    start_engine,
    stop,
    wait_for,
)

HEARTBEAT = 2.0  # --status-every of the engines start_engine runs


def test_page_follows_an_engine_through_a_stop_a_restart_and_a_kill(browser: webdriver.Chrome, artefacts: Path) -> None:
    eport, dport = free_port(), free_port()
    engine = start_engine(eport, "--session", "live", "--preview")
    watch = ZmqCollector(eport)
    dashboard = start_dashboard(dport, "--connect", f"zmq://127.0.0.1:{eport}")
    try:
        browser.get(f"http://127.0.0.1:{dport}/")
        wait_for("the engine's first prediction", lambda: watch.preds("live"), 120)
        wait_for("the session's row", lambda: seq_shown(browser, "live") >= 0, 10)
        # within 3 s of each prediction seen on ZeroMQ, the page shows its seq
        for _ in range(3):
            assert_shown_within(browser, watch, "live", 3.0)
        row = wait_for("the status", lambda: (r := rows(browser)["live"])["state"] in ("online", "degraded") and r, 10)
        assert re.search(r"eeg q [01]\.\d\d", row["mods"]) and re.search(r"ecg q [01]\.\d\d", row["mods"]), row
        assert "streaming" in row["mods"], row  # liveness, from the status topic
        # the charts are drawn by the plotly.min.js the server ships (no network here)
        wait_for("the outputs chart", lambda: browser.find_elements(By.CSS_SELECTOR, ".chart-outputs .main-svg"), 10)
        assert browser.find_elements(By.CSS_SELECTOR, ".chart-latency .main-svg")
        # --preview: the filtered EEG (14 channels of the synthetic board) and ECG (2) traces of the last seconds
        traces = wait_for("the preview traces", lambda: browser.execute_script(
            "const t = m => (document.querySelector(`.card[data-detail='live'] .chart-${m}`).data || []);"
            "return t('eeg').length && t('ecg').length && [t('eeg').length, t('ecg').length, t('eeg')[0].x.length];"
        ), 10)
        assert traces[:2] == [14, 2] and traces[2] >= 25, traces  # at least a second at 25 Hz
        assert any(topic.endswith("/preview") and len(m["streams"]["eeg"]["data"][0]) <= 50
                   for topic, m, _ in watch.got)
        shot = artefacts / "dashboard-live.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")

        # a clean stop publishes offline: the page shows it within the status heartbeat
        stop(engine)
        stopped = time.monotonic()
        wait_for("offline", lambda: rows(browser)["live"]["state"] == "offline", 10)
        assert time.monotonic() - stopped <= HEARTBEAT, "offline shown later than one status heartbeat"
        assert browser.find_element(By.CSS_SELECTOR, ".link[data-connected='false']")  # and the engine is gone

        # the same engine again: the page follows it without a reload
        n = len(watch.preds("live"))
        engine = start_engine(eport, "--session", "live")
        wait_for("a prediction after the restart", lambda: watch.preds("live")[n:n + 1], 120)
        assert_shown_within(browser, watch, "live", 3.0)
        # its state comes from the status topic: the next heartbeat at the latest (the first may come before the
        # dashboard's subscriber has reconnected)
        wait_for("the state after the restart", lambda: rows(browser)["live"]["state"] in ("online", "degraded"),
                 HEARTBEAT + 3)
        assert browser.find_element(By.CSS_SELECTOR, ".link[data-connected='true']")

        # killed (no offline message): its connection closes, and that is enough to show it offline at once
        engine.kill()
        engine.wait(30)
        killed = time.monotonic()
        wait_for("offline after kill -9", lambda: rows(browser)["live"]["state"] == "offline", 10)
        assert time.monotonic() - killed <= HEARTBEAT, "a killed engine shown offline later than one heartbeat"
    finally:
        watch.close()
        stop(engine)
        stop(dashboard)


def test_unknown_schema_and_garbage_are_error_rows(browser: webdriver.Chrome) -> None:
    pport, dport = free_port(), free_port()
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(f"tcp://127.0.0.1:{pport}")
    dashboard = start_dashboard(dport, "--connect", f"zmq://127.0.0.1:{pport}")
    try:
        browser.get(f"http://127.0.0.1:{dport}/")
        wait_for("the feed's link", lambda: browser.find_elements(By.CSS_SELECTOR, ".link[data-connected='true']"), 10)
        future = {"schema": "rt_physio.prediction/2", "session": "x", "seq": 1}
        status = {"schema": "rt_physio.status/1", "session": "x", "state": "degraded", "reason": "start"}

        def errors() -> list[str]:
            return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "tr.error-row")]

        def publish_all() -> bool:  # a SUB that just connected may miss the first messages: send until seen
            pub.send_multipart([b"rt_physio/x/pred", json.dumps(future).encode()])
            pub.send_multipart([b"rt_physio/x/pred", b"\xc1 not json, not msgpack"])
            pub.send_multipart([b"rt_physio/x/status", json.dumps(status).encode()])
            return len(errors()) >= 2 and "x" in rows(browser)

        wait_for("the error rows and the status", publish_all, 15, poll=0.2)
        text = "\n".join(errors())
        assert "unknown schema 'rt_physio.prediction/2'" in text
        assert "unreadable payload" in text
        assert rows(browser)["x"]["state"] == "degraded"  # the page goes on after bad messages
    finally:
        stop(dashboard)
        pub.close()


@pytest.mark.parametrize("bind", ["0.0.0.0:8050", "[::]:8050"])
def test_non_loopback_bind_needs_insecure(bind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "--bind", bind]) == 2
    err = capsys.readouterr().err
    assert "rt-physio: error: Refusing to serve the dashboard on non-loopback address" in err
    assert "--insecure" in err


def test_stopping_by_signal(tmp_path: Path) -> None:
    dashboard = start_dashboard(free_port(), "--connect", f"zmq://127.0.0.1:{free_port()}")
    _, err = stop(dashboard, signal.SIGINT)
    assert dashboard.returncode == 0, err


def test_an_unreachable_engine_is_shown_and_retried(browser: webdriver.Chrome) -> None:
    eport, dport = free_port(), free_port()
    dashboard = start_dashboard(dport, "--connect", f"zmq://127.0.0.1:{eport}")
    pub = None
    try:
        browser.get(f"http://127.0.0.1:{dport}/")
        link = wait_for("the unreachable engine", lambda: browser.find_elements(
            By.CSS_SELECTOR, ".link[data-connected='false']"), 10)[0]
        wait_for("'retrying'", lambda: "retrying" in link.text, 10)
        pub = zmq.Context.instance().socket(zmq.PUB)  # an engine appears on that port: the feed connects by itself
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind(f"tcp://127.0.0.1:{eport}")
        wait_for("the connection", lambda: browser.find_elements(By.CSS_SELECTOR, ".link[data-connected='true']"), 10)
    finally:
        stop(dashboard)
        if pub is not None:
            pub.close()
