"""Fixtures for source tests: real LSL outlets with unique names, and a sink that records chunks."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pylsl
import pytest

from rt_physio.clock import local_clock
from rt_physio.sources.base import Chunk
from rt_physio.sources.lsl_streams import quiet_liblsl

quiet_liblsl()


def unique(prefix: str = "rtp") -> str:
    """A stream name/type nobody else on this machine uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Recorder:
    """A sink that keeps every chunk and the engine-clock time it arrived."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.arrivals: list[float] = []
        self._cond = threading.Condition()

    def __call__(self, chunk: Chunk) -> None:
        now = local_clock()
        with self._cond:
            self.chunks.append(chunk)
            self.arrivals.append(now)
            self._cond.notify_all()

    @property
    def n_samples(self) -> int:
        return sum(c.n_samples for c in self.chunks)

    def wait_samples(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.n_samples < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def data(self) -> np.ndarray:
        return np.concatenate([c.data for c in self.chunks])

    def timestamps(self) -> np.ndarray:
        return np.concatenate([c.timestamps for c in self.chunks])


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


OutletFactory = Callable[..., tuple[pylsl.StreamOutlet, str]]


@pytest.fixture
def make_outlet() -> Iterator[OutletFactory]:
    """Create real LSL outlets with a unique name (returned with the outlet); destroyed after the test."""
    outlets: list[pylsl.StreamOutlet] = []

    def make(n_channels: int = 14, sfreq: float = 128.0, *, stype: str = "EEG", labels: list[str] | None = None,
             unit: str | None = None, fmt: int = pylsl.cf_float32, name: str | None = None,
             source_id: str | None = None) -> tuple[pylsl.StreamOutlet, str]:
        name = name or unique()
        info = pylsl.StreamInfo(name, stype, n_channels, sfreq, fmt, source_id or f"sid-{name}")
        if labels is not None:
            info.set_channel_labels(labels)
        if unit is not None:
            info.set_channel_units(unit)
        outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)
        outlets.append(outlet)
        return outlet, name

    yield make
    outlets.clear()
