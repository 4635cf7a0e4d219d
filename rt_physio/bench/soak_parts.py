"""The soak's real parts outside the engine: a mosquitto it can restart, and LSL outlets it can break.

:class:`Broker` runs a real mosquitto on a free loopback port, with persistence on, so that a clean restart
keeps the subscribers' sessions and the QoS 1 messages queued for them (what a production broker does).

:class:`SoakOutlet` is one LSL stream pushed in real time from its own thread, whose faults the soak injects:
the outlet destroyed and created again (with the same or a new source_id), NaN bursts, a flat line, and a jump
of its clock. Channel 0 of every stream is a **sample counter**: ``(k mod 4096) * 0.01`` µV for sample ``k``
(a slow 0–41 µV sawtooth, harmless to the model), exact in float32, so the recording can be checked sample by
sample: a lost or repeated sample inside a continuous stretch changes ``counter - position``. The other
channels carry sines and noise (EEG) or a crude ECG. Sample ``k`` is due at ``start + k / sfreq`` whether or not
the outlet exists at that moment (a device keeps sampling while its app is down), so the counter jumps across
an outage by exactly the samples that were never sent.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pylsl
from numpy.typing import NDArray

__all__ = ["COUNTER_MOD", "COUNTER_STEP", "FLAT_UV", "Broker", "Incarnation", "SoakOutlet", "decode_counter",
           "free_port"]

log = logging.getLogger(__name__)

#: The counter channel holds ``(k % COUNTER_MOD) * COUNTER_STEP`` µV.
COUNTER_MOD = 4096
COUNTER_STEP = 0.01
#: Value of every channel during an injected flat line (outside the counter's range, so never mistaken for it).
FLAT_UV = -187.5


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def decode_counter(values: NDArray[np.float32]) -> NDArray[np.int64]:
    """Counter values (``k mod COUNTER_MOD``) of a recorded channel 0; -1 where unreadable (NaN, flat line)."""
    v = values.astype(np.float64)
    code = np.rint(v / COUNTER_STEP)
    readable = np.isfinite(v) & (code >= 0) & (code < COUNTER_MOD) & (np.abs(v - code * COUNTER_STEP) < 1e-4)
    return np.where(readable, code, -1).astype(np.int64)


class Broker:
    """A real mosquitto on 127.0.0.1:``port`` with persistence (sessions and queued QoS 1 messages survive a restart).

    Parameters
    ----------
    folder : Path
        Where its config, log and persistence file go.
    port : int, optional
        Loopback port (default: a free one).
    """

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if binary is None:
            raise RuntimeError("mosquitto is not installed (make test installs Debian's mosquitto)")
        self.binary = binary
        self.folder = folder
        self.port = free_port() if port is None else port
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence true",
                 f"persistence_location {folder}/", f"persistence_file mosquitto-{self.port}.db",
                 "max_queued_messages 100000", "log_dest stderr", "log_type error", "log_type warning"]
        if os.geteuid() == 0:
            lines.append("user root")  # mosquitto drops root for 'mosquitto', who may not read this folder
        self.config = folder / f"mosquitto-{self.port}.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = folder / f"mosquitto-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 20.0) -> float:
        """Start it and wait until it accepts connections; return that moment (engine clock)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    self.starts += 1
                    return float(pylsl.local_clock())
            except OSError:
                time.sleep(0.02)  # polling a port: there is no event to wait on
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout:g} s")

    def stop(self) -> float:
        """Stop it cleanly (SIGTERM: it saves its persistence file); return when it is gone (engine clock)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return float(pylsl.local_clock())

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


@dataclass(slots=True)
class Incarnation:
    """One life of an outlet: its source_id and the samples it pushed (``k_first`` … ``k_last`` inclusive)."""

    source_id: str
    created: float  # engine clock
    k_first: int = -1
    k_last: int = -1
    first_push: float = float("nan")
    last_push: float = float("nan")
    destroyed: float = float("nan")


@dataclass(slots=True)
class _Overlay:
    kind: str  # "nan" or "flat"
    t0: float  # sample times (engine clock, without the clock shift) in [t0, t1)
    t1: float


@dataclass(slots=True)
class _Log:
    incarnations: list[Incarnation] = field(default_factory=list)
    overlays: list[_Overlay] = field(default_factory=list)
    shifts: list[tuple[float, float]] = field(default_factory=list)  # (engine time, total shift after it)


class SoakOutlet:
    """An LSL stream pushed in real time from its own thread, with injectable faults (see the module docstring).

    Parameters
    ----------
    name, stype : str
        LSL stream name and type (``EEG`` / ``ECG``).
    n_channels : int
        Channels (channel 0 is the counter).
    sfreq : float
        Nominal rate, Hz.
    source_id : str
        The first outlet's source_id.
    chunk : int
        Samples per push.
    seed : int
        Signal content.
    """

    def __init__(self, name: str, stype: str, n_channels: int, sfreq: float, source_id: str, *, chunk: int = 8,
                 seed: int = 0) -> None:
        self.name, self.stype, self.n_channels, self.sfreq, self.chunk = name, stype, n_channels, sfreq, chunk
        self._lock = threading.Lock()
        self._outlet: pylsl.StreamOutlet | None = None
        self._incarnation: Incarnation | None = None
        self.log = _Log()
        self._shift = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"soak-outlet-{name}", daemon=True)
        self._table = self._signal_table(seed)
        self.start_time = float("nan")
        self._create(source_id)

    # -- faults (any thread) -----------------------------------------------------------------------------------
    def kill(self) -> float:
        """Destroy the outlet (its app crashed); return when (engine clock)."""
        with self._lock:
            outlet, self._outlet = self._outlet, None
            now = float(pylsl.local_clock())
            if self._incarnation is not None:
                self._incarnation.destroyed = now
        del outlet  # liblsl destroys the outlet with its last reference
        return now

    def restore(self, source_id: str) -> float:
        """Create the outlet again (same name and type, ``source_id`` as given); return when (engine clock)."""
        return self._create(source_id)

    def overlay(self, kind: str, seconds: float) -> tuple[float, float]:
        """Make the samples of the next ``seconds`` NaN (``kind="nan"``) or flat (``"flat"``); return the span."""
        t0 = float(pylsl.local_clock())
        with self._lock:
            self.log.overlays.append(_Overlay(kind, t0, t0 + seconds))
        return t0, t0 + seconds

    def shift_clock(self, delta: float) -> float:
        """Move the outlet's timestamps by ``delta`` seconds from now on (its clock jumped); return when."""
        with self._lock:
            self._shift += delta
            now = float(pylsl.local_clock())
            self.log.shifts.append((now, self._shift))
        return now

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> SoakOutlet:
        """Start pushing (sample 0 is due now)."""
        self.start_time = float(pylsl.local_clock())
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop pushing and destroy the outlet."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.kill()

    # -- inside ------------------------------------------------------------------------------------------------
    def _create(self, source_id: str) -> float:
        info = pylsl.StreamInfo(self.name, self.stype, self.n_channels, self.sfreq, "float32", source_id)
        channels = info.desc().append_child("channels")
        for i in range(self.n_channels):
            ch = channels.append_child("channel")
            ch.append_child_value("label", "counter" if i == 0 else f"{self.stype}{i}")
            ch.append_child_value("unit", "microvolts")
            ch.append_child_value("type", self.stype)
        outlet = pylsl.StreamOutlet(info, chunk_size=self.chunk)
        now = float(pylsl.local_clock())
        with self._lock:
            self._outlet = outlet
            self._incarnation = Incarnation(source_id, now)
            self.log.incarnations.append(self._incarnation)
        return now

    def _signal_table(self, seed: int) -> NDArray[np.float32]:
        """Make a few seconds of signal per channel, read cyclically (no per-push random generation)."""
        rng = np.random.default_rng(seed)
        n = int(8 * self.sfreq)
        t = np.arange(n) / self.sfreq
        if self.stype == "ECG":  # R-like spikes at 72 bpm on a little noise
            phase = (t * 1.2) % 1.0
            beat = (800.0 * np.exp(-0.5 * ((phase - 0.5) / 0.012) ** 2)
                    - 120.0 * np.exp(-0.5 * ((phase - 0.56) / 0.02) ** 2))
            x = beat[:, None] + rng.normal(0, 8, (n, self.n_channels))
        else:
            freqs = rng.uniform(4, 20, self.n_channels)
            x = 20 * np.sin(2 * np.pi * freqs[None, :] * t[:, None]) + rng.normal(0, 5, (n, self.n_channels))
        return x.astype(np.float32)

    def _samples(self, k: int, n: int) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
        ks = np.arange(k, k + n)
        rows = self._table[ks % self._table.shape[0]]  # fancy indexing copies
        rows[:, 0] = ((ks % COUNTER_MOD) * COUNTER_STEP).astype(np.float32)
        times = self.start_time + ks / self.sfreq
        for ov in self.log.overlays[-4:]:  # only the latest ones can still be running
            hit = (times >= ov.t0) & (times < ov.t1)
            if hit.any():
                rows[hit] = np.float32("nan") if ov.kind == "nan" else np.float32(FLAT_UV)
        return rows, times

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            due = self.start_time + (k + self.chunk - 1) / self.sfreq  # a chunk goes out when its last sample exists
            delay = due - pylsl.local_clock()
            if delay > 0 and self._stop.wait(delay):
                break
            data, times = self._samples(k, self.chunk)
            with self._lock:
                outlet, shift, inc = self._outlet, self._shift, self._incarnation
                if outlet is not None and inc is not None:
                    outlet.push_chunk(data, (times + shift).tolist())
                    now = float(pylsl.local_clock())
                    if inc.k_first < 0:
                        inc.k_first, inc.first_push = k, now
                    inc.k_last, inc.last_push = k + self.chunk - 1, now
            k += self.chunk
