"""ThreadedSource: the acquisition-thread contract every threaded source relies on."""

from __future__ import annotations

import threading
import time

import numpy as np

from rt_physio.clock import local_clock
from rt_physio.sources.base import Chunk, StreamInfo, ThreadedSource


class CountingSource(ThreadedSource):
    """Emits one 1-sample chunk per poll; optionally fails the first polls."""

    def __init__(self, fail_polls: int = 0) -> None:
        super().__init__(StreamInfo("counter", "eeg", 100.0, ("a",)))
        self.fail_polls = fail_polls
        self.polls = 0
        self.closed_on: list[str] = []

    def _poll(self) -> Chunk | None:
        self.polls += 1
        if self.polls <= self.fail_polls:
            raise OSError("device hiccup")
        time.sleep(0.002)
        now = local_clock()
        return Chunk(np.full((1, 1), self.polls, np.float32), np.array([now]), now)

    def _close(self) -> None:
        self.closed_on.append(threading.current_thread().name)


def test_stop_before_start_closes_once_on_the_caller():
    src = CountingSource()
    src.stop()
    src.stop()
    assert src.closed_on == [threading.current_thread().name]


def test_close_runs_on_the_acquisition_thread(recorder):
    src = CountingSource()
    src.start(recorder)
    assert recorder.wait_samples(5)
    src.stop()
    assert not src.running
    assert len(src.closed_on) == 1
    assert src.closed_on[0].startswith("src-eeg-counter")


def test_read_errors_are_counted_and_retried(recorder):
    src = CountingSource(fail_polls=2)
    src.start(recorder)
    assert recorder.wait_samples(3, timeout=3.0)
    src.stop()
    assert src.stats.errors == 2
    assert src.failure is None


def test_sink_errors_do_not_stop_the_source(recorder):
    src = CountingSource()
    seen = []

    def sink(chunk: Chunk) -> None:
        seen.append(chunk)
        if len(seen) == 1:
            raise RuntimeError("boom")
        recorder(chunk)

    src.start(sink)
    assert recorder.wait_samples(3)
    src.stop()
    assert src.stats.extra["sink_errors"] == 1
    assert src.failure is None
    assert src.stats.chunks == len(seen)
