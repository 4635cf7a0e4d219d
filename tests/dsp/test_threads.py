"""The kernels release the GIL: two streams really filter at once, with the results of one thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from numba import njit

from rt_physio.dsp import SosFilter, StreamProcessor, sos_step

from ._signals import eeg_sos


def test_two_threads_filtering_different_streams_match_one_thread():
    rng = np.random.default_rng(0)
    signals = [rng.standard_normal((60_000, 32)).astype(np.float32) for _ in range(2)]
    sos = eeg_sos(250.0)
    expected = [SosFilter(sos, 32).process(x) for x in signals]

    results: list[np.ndarray | None] = [None, None]
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        filt = SosFilter(sos, 32)
        barrier.wait()
        results[i] = np.concatenate([filt.process(signals[i][a:a + 16]) for a in range(0, 60_000, 16)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        assert got is not None and np.array_equal(got, want)


def test_two_processors_on_two_threads_match_one_thread():
    rng = np.random.default_rng(1)
    x = [(rng.standard_normal((20_000, 14)) * 20).astype(np.float32) for _ in range(2)]
    ts = 10.0 + np.arange(20_000) / 256.0

    def run(proc: StreamProcessor, data: np.ndarray) -> None:
        for a in range(0, len(data), 8):
            proc.push(data[a:a + 8], ts[a:a + 8])

    def make() -> StreamProcessor:
        return StreamProcessor(256.0, 14, bandpass=(0.5, 45.0), notch=50.0, capacity_s=100.0)

    alone = [make(), make()]
    for proc, data in zip(alone, x, strict=True):
        run(proc, data)
    together = [make(), make()]
    threads = [threading.Thread(target=run, args=(p, d)) for p, d in zip(together, x, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        assert np.array_equal(a.ring.latest(a.ring.capacity)[0], b.ring.latest(b.ring.capacity)[0])


def longest_stall_while_kernel_runs(kernel, sos: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Run ``kernel`` on a worker thread; return (kernel seconds, longest pause of this thread meanwhile)."""
    state = np.zeros((sos.shape[0], 2, x.shape[1]))
    y = np.empty((x.shape[0], x.shape[1]))
    kernel(sos, state, x[:10], y[:10])  # compiled before timing
    started = threading.Event()
    span = [0.0, 0.0]

    def work() -> None:
        started.set()
        span[0] = time.perf_counter()
        kernel(sos, state, x, y)
        span[1] = time.perf_counter()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    ticks = []
    while worker.is_alive():
        ticks.append(time.perf_counter())  # pure Python: needs the GIL for every iteration
    worker.join()
    inside = np.array([t for t in ticks if span[0] <= t <= span[1]] or [span[0]])
    stalls = np.diff(np.concatenate([[span[0]], inside, [span[1]]]))
    return span[1] - span[0], float(stalls.max())


@pytest.mark.slow
def test_the_filter_kernel_really_releases_the_gil():
    sos = eeg_sos(250.0)
    x = np.random.default_rng(2).standard_normal((400_000, 32))
    duration, stall = longest_stall_while_kernel_runs(sos_step, sos, x)
    assert duration > 0.05
    assert stall < 0.5 * duration  # this thread kept running Python while the kernel ran

    # the same kernel compiled without nogil=True holds the GIL: the check above would fail for it. Only the
    # moment between the worker's start mark and the call itself can hand this thread the GIL (a switch interval,
    # longer when the OS deschedules a thread on a loaded machine), so most, not all, of the span is one stall.
    holding = njit(nogil=False)(sos_step.py_func)
    duration, stall = longest_stall_while_kernel_runs(holding, sos, x)
    assert stall > 0.7 * duration
