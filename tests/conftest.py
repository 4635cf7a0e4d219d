"""Shared fixtures: the real-recordings folder and free loopback ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """Return ``$RT_PHYSIO_DATA`` (default ``../shared/data``), failing loudly when it is missing."""
    path = Path(os.environ.get("RT_PHYSIO_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (path / "MANIFEST.md").is_file():
        pytest.fail(
            f"Real recordings not found at {path} (no MANIFEST.md). Set RT_PHYSIO_DATA to the shared data folder.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-recordings folder (tests fail, never skip, when it is missing)."""
    return shared_data_dir()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    """A free loopback TCP port."""
    return free_port()


class RealTimeOutlet:
    """A real ``pylsl.StreamOutlet`` pushing a known signal in real time from its own thread.

    Samples go out in chunks of ``chunk`` samples on a drift-free schedule (chunk k at start + k·chunk/fs);
    each sample's timestamp is its scheduled time on ``pylsl.local_clock``. Everything pushed is recorded in
    ``pushed_ts`` / ``pushed_data`` so tests can compare what the engine saw with what was sent.
    """

    def __init__(self, name: str, stype: str, n_channels: int, sfreq: float, chunk: int = 4,
                 labels: list[str] | None = None, amplitude_uv: float = 20.0, seed: int = 0) -> None:
        import threading

        import pylsl

        self.sfreq = sfreq
        self.chunk = chunk
        self.n_channels = n_channels
        info = pylsl.StreamInfo(name, stype, n_channels, sfreq, "float32", f"{name}-uid")
        chans = info.desc().append_child("channels")
        for label in labels or [f"{stype}{i + 1}" for i in range(n_channels)]:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", "microvolts")
            ch.append_child_value("type", stype)
        self.outlet = pylsl.StreamOutlet(info, chunk_size=chunk)
        rng = np.random.default_rng(seed)
        self._freqs = rng.uniform(5, 20, n_channels)
        self._amp = amplitude_uv
        self._rng = rng
        self.pushed_ts: list[float] = []
        self.pushed_data: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _signal(self, k0: int, n: int) -> np.ndarray:
        import numpy as np

        t = (k0 + np.arange(n))[:, None] / self.sfreq
        x = self._amp * np.sin(2 * np.pi * self._freqs[None, :] * t) + self._rng.normal(0, 2, (n, self.n_channels))
        return x.astype(np.float32)

    def _run(self) -> None:
        import time

        import pylsl

        start = pylsl.local_clock() + 0.05
        k = 0
        while not self._stop.is_set():
            due = start + (k + self.chunk - 1) / self.sfreq
            delay = due - pylsl.local_clock()
            if delay > 0:
                time.sleep(delay)
            data = self._signal(k, self.chunk)
            stamps = start + (k + np.arange(self.chunk)) / self.sfreq
            self.outlet.push_chunk(data, stamps.tolist())
            self.pushed_ts.extend(stamps.tolist())
            self.pushed_data.append(data)
            k += self.chunk

    def start(self) -> RealTimeOutlet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
