"""The dashboard served by an engine (`run --dashboard`), its calibrate button, and 16 sessions of two engines."""

from __future__ import annotations

import socket
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By

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
from tests.publish._brokers import Mosquitto


def test_run_serves_the_page_and_its_calibrate_button_calibrates(browser: webdriver.Chrome) -> None:
    eport, cport, dport = free_port(), free_port(), free_port()
    engine = start_engine(eport, "--session", "cal", "--control", f"zmq://127.0.0.1:{cport}",
                          "--dashboard", f"127.0.0.1:{dport}")
    watch = ZmqCollector(eport)
    try:
        assert engine.stdout is not None
        first = engine.stdout.readline()
        assert f"dashboard on http://127.0.0.1:{dport}/" in first, first
        browser.get(f"http://127.0.0.1:{dport}/")
        wait_for("the engine's first prediction", lambda: watch.preds("cal"), 120)
        assert_shown_within(browser, watch, "cal", 3.0)
        assert not any(m.get("calibrating") for m, _ in watch.preds("cal"))  # no --calibrate: not calibrating
        n = len(watch.preds("cal"))
        browser.find_element(By.CSS_SELECTOR, "tr.session[data-session='cal'] button.calibrate").click()
        # the next messages report the calibration (a window already in flight may come before it)
        calibrating = wait_for("a prediction that reports the calibration",
                               lambda: [m for m, _ in watch.preds("cal")[n:] if m.get("calibrating")], 30)[0]
        assert calibrating["calibration"]["seconds"] > 0 and calibrating["outputs"] == {}
        assert len(watch.preds("cal")[n:]) <= 4, "the calibration started more than 3 predictions after the click"
        wait_for("the page showing it", lambda: rows(browser)["cal"]["cal"].startswith("calibrating"), 10)
        engine.kill()  # no clean stop: the page's process still ends with its engine
        wait_for("the page's server to end with the engine", lambda: not _listening(dport), 30, poll=0.2)
    finally:
        watch.close()
        stop(engine)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _config(folder: Path, name: str, n: int, port: int) -> Path:
    lines = ['model = "eegmat-fusion"', f'publish = ["zmq://127.0.0.1:{port}"]']
    for i in range(n):  # every session reads the one synthetic board the engine opens (a shared BoardShim)
        lines += ["[[sessions]]", f'id = "{name}{i:02d}"', 'eeg = "synthetic"', 'ecg = "synthetic"']
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sixteen_sessions_of_two_engines_all_update(browser: webdriver.Chrome, tmp_path: Path,
                                                    artefacts: Path) -> None:
    ports = free_port(), free_port()
    dport = free_port()
    engines = [start_engine(port, "--config", str(_config(tmp_path, name, 8, port)), "--hop", "1")
               for name, port in zip(("a", "b"), ports, strict=True)]
    dashboard = start_dashboard(dport, *(arg for port in ports for arg in ("--connect", f"zmq://127.0.0.1:{port}")))
    try:
        browser.get(f"http://127.0.0.1:{dport}/")
        ids = [f"{name}{i:02d}" for name in "ab" for i in range(8)]
        first = wait_for("all 16 sessions' predictions on the page",
                         lambda: (r := rows(browser)) and all(r.get(s, {}).get("seq") for s in ids) and r, 180)
        seen = {s: int(first[s]["seq"]) for s in ids}
        # every session updates: each shows a later seq than before
        wait_for("every session's next predictions",
                 lambda: all(seq_shown(browser, s) >= seen[s] + 2 for s in ids), 30, poll=0.2)
        assert all(rows(browser)[s]["state"] in ("online", "degraded") for s in ids)
        # compact: one row per session, charts only for the selected one
        assert len(browser.find_elements(By.CSS_SELECTOR, "#details .card")) == 1
        shot = artefacts / "dashboard-16-sessions.png"
        assert browser.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
    finally:
        stop(dashboard)
        for engine in engines:
            stop(engine)


def test_run_dashboard_on_a_non_loopback_address_needs_insecure() -> None:
    engine = start_engine(free_port(), "--dashboard", f"0.0.0.0:{free_port()}")
    try:
        _, err = engine.communicate(timeout=120)  # it exits by itself
    finally:
        stop(engine)
    assert engine.returncode == 2, err
    assert "rt-physio: error: --dashboard: Refusing to serve the dashboard on non-loopback address '0.0.0.0'" in err


def test_mqtt_msgpack_engine_and_a_broker_that_goes_away(browser: webdriver.Chrome, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, free_port()).start()
    eport, dport = free_port(), free_port()
    engine = start_engine(eport, "--session", "mq", "--preview",
                          "--publish", f"mqtt://127.0.0.1:{broker.port}/lab/eeg?format=msgpack")
    watch = ZmqCollector(eport)
    mqtt = f"mqtt://127.0.0.1:{broker.port}/lab/eeg"
    dashboard = start_dashboard(dport, "--connect", mqtt, "--control", mqtt)
    try:
        browser.get(f"http://127.0.0.1:{dport}/")
        wait_for("the engine's first prediction", lambda: watch.preds("mq"), 120)
        assert_shown_within(browser, watch, "mq", 3.0)  # msgpack over MQTT, under a two-level prefix
        wait_for("the status and the EEG preview", lambda: rows(browser)["mq"]["state"] in ("online", "degraded")
                 and browser.execute_script("return (document.querySelector('.chart-eeg') || {}).data || []"), 10)
        broker.stop()
        wait_for("the page saying the broker is gone",
                 lambda: browser.find_elements(By.CSS_SELECTOR, ".link[data-connected='false']"), 15)
        broker.start()  # the same port: the dashboard (and the engine) reconnect by themselves
        wait_for("the page reconnected", lambda: browser.find_elements(By.CSS_SELECTOR, ".link[data-connected='true']"),
                 30)
        assert_shown_within(browser, watch, "mq", 3.0)
        # calibrate over MQTT: the command goes to lab/eeg/mq/control, the next predictions report it
        n = len(watch.preds("mq"))
        browser.find_element(By.CSS_SELECTOR, "tr.session[data-session='mq'] button.calibrate").click()
        wait_for("a prediction that reports the calibration",
                 lambda: [m for m, _ in watch.preds("mq")[n:] if m.get("calibrating")], 30)
        assert len(watch.preds("mq")[n:]) <= 6, "the calibration started more than 3 s after the click"
    finally:
        watch.close()
        stop(dashboard)
        stop(engine)
        broker.stop()
