"""``rt-physio run`` with a stdout that nobody reads: predictions keep flowing, and the run still ends.

A real process on the BrainFlow synthetic board, a real ZeroMQ subscriber, a real pipe as stdout. A pipe holds
64 KiB: at a 0.1-s hop, about 45 s of prediction lines, after which every write to it waits.
"""

from __future__ import annotations

import fcntl
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from tests.conftest import free_port
from tests.runtime.conftest import make_tiny_model

RT_PHYSIO = str(Path(sys.executable).parent / "rt-physio")
F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity


def _start(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    make_tiny_model(tmp_path / "tiny")  # a small model keeps 10 windows a second easy on a loaded 2-core machine
    argv = [RT_PHYSIO, "run", "--model", str(tmp_path / "tiny"), "--device", "cpu", "--threads", "1",
            "--window", "2", "--hop", "0.1", "--publish", f"zmq://127.0.0.1:{port}", *extra]
    with (tmp_path / "stderr.txt").open("wb") as stderr:  # a file: only stdout is the pipe nobody reads
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr)


def _subscriber(port: int) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"rt_physio/default/pred")
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


@pytest.mark.slow
def test_unread_stdout_does_not_hold_up_predictions_for_90_s(tmp_path: Path) -> None:
    port = free_port()
    sock = _subscriber(port)
    proc = _start(tmp_path, port)
    try:
        seqs: list[int] = []
        arrivals: list[float] = []
        deadline = time.monotonic() + 120  # start-up: model load, warm-up, board
        end = None
        while end is None or time.monotonic() < end:
            assert time.monotonic() < deadline, "no prediction arrived"
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            if sock.poll(1000):
                _, payload = sock.recv_multipart()
                seqs.append(json.loads(payload)["seq"])
                arrivals.append(time.monotonic())
                if end is None:
                    end = arrivals[0] + 90
                    deadline = end + 30
        # the pipe filled after about 45 s of lines; what came after still flowed, every window, in order
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert arrivals[-1] > end - 5, "predictions stopped arriving"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)  # reading at last: the printer catches up and reports its drops
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        sock.close()
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    text = out.decode()
    assert "line(s) not printed: the output was not read fast enough" in text
    summary = [line for line in text.splitlines() if line.startswith("printer: ")]
    assert len(summary) == 1 and int(summary[0].split()[1]) > 0, text[-2000:]


@pytest.mark.slow
def test_a_run_ends_on_time_while_stdout_is_stuck(tmp_path: Path) -> None:
    port = free_port()
    proc = _start(tmp_path, port, "--duration", "15")
    try:
        assert proc.stdout is not None
        fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, 4096)  # full after some 30 lines
        proc.wait(timeout=180)  # nobody reads stdout, ever: the run must still end (no hang on exit)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "the output is not being read" in err
    assert proc.stdout is not None
    lines = proc.stdout.read().decode().splitlines()
    assert lines[0].startswith("rt-physio ")  # the banner, then predictions in order
    seqs = [int(line.split("#")[1].split()[0]) for line in lines[1:] if "#" in line]
    assert seqs == sorted(seqs) and len(seqs) > 5
    proc.stdout.close()
