"""Polar H10 chest strap over Bluetooth LE as a source: scanning, the link and :class:`PolarH10Source`.

BrainFlow cannot read the H10 (its issue #670), so rt_physio talks to it directly; the frames and the strap
clock are decoded by :mod:`rt_physio.sources.polar_protocol`.

The BLE layer (bleak) is kept thin: :class:`PolarH10Source` runs one asyncio loop on its own thread, connects
on :func:`open_polar` (so a wrong address is an error before the engine starts) and reconnects after a drop, or
after 5 s without an ECG frame while the link still looks connected (a :class:`~rt_physio.sources.link_watch.
LinkWatch` decides; reconnection attempts back off from 1 s to 10 s and never give up: the engine decides, with
``--give-up-after``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rt_physio.checks import parse_number
from rt_physio.clock import local_clock
from rt_physio.errors import ConfigError, SourceError
from rt_physio.sources.base import Chunk, ChunkSink, Modality, SourceStats, StreamInfo, deliver
from rt_physio.sources.link_watch import LinkWatch
from rt_physio.sources.polar_protocol import (
    ECG_START,
    ECG_STOP,
    HR_MEASUREMENT,
    PMD_CONTROL,
    PMD_DATA,
    PMD_ECG,
    POLAR_ECG_RATE,
    HeartRate,
    StrapClock,
    decode_ecg,
    parse_heart_rate,
    parse_pmd_frame,
)

__all__ = ["BleDevice", "PolarH10Source", "open_polar", "scan_ble"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BleDevice:
    """A Bluetooth LE device seen by a scan."""

    name: str
    address: str
    rssi: int | None = None

    @property
    def is_polar(self) -> bool:
        """True for Polar sensors (their names start with "Polar")."""
        return self.name.lower().startswith("polar")


def _ble_error(exc: BaseException) -> SourceError:
    return SourceError(f"Bluetooth LE is not available here ({type(exc).__name__}: {exc or 'no details'}). On Linux "
                       "BlueZ must be running with a powered adapter (bluetoothctl show).")


async def _scan(timeout: float) -> list[BleDevice]:
    from bleak import BleakScanner

    found = await BleakScanner.discover(timeout=timeout, return_adv=True)
    return sorted((BleDevice(d.name or "", d.address, adv.rssi) for d, adv in found.values()),
                  key=lambda d: (not d.is_polar, d.name, d.address))


def scan_ble(timeout: float = 3.0) -> list[BleDevice]:
    """Scan for Bluetooth LE devices for ``timeout`` seconds (Polar sensors first).

    Raises
    ------
    SourceError
        When there is no usable Bluetooth adapter.
    """
    try:
        return asyncio.run(_scan(timeout))
    except Exception as exc:
        raise _ble_error(exc) from exc


_ADDRESS = re.compile(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$")


@dataclass(slots=True)
class _Link:
    """What the asyncio loop owns: the client and the frame handler state."""

    client: Any = None
    clock: StrapClock = field(default_factory=StrapClock)
    hr: HeartRate | None = None


class PolarH10Source:
    """ECG of a Polar H10 over Bluetooth LE, as a :class:`~rt_physio.sources.Source`.

    Use :func:`open_polar`. The source connects at construction, starts the ECG stream on :meth:`start`,
    delivers each PMD frame as one chunk (73 samples at 130 Hz, about every 0.56 s), keeps the latest heart rate
    in :attr:`heart_rate`, and reconnects (every ``retry`` seconds) when the strap drops the link.

    Parameters
    ----------
    address : str
        Bluetooth address (``AA:BB:CC:DD:EE:FF``; a UUID on macOS).
    name : str
        Device name shown in logs.
    connect_timeout : float
        Seconds to wait for the first connection.
    """

    #: Seconds between reconnection attempts.
    retry: float = 2.0

    def __init__(self, address: str, name: str = "", *, connect_timeout: float = 10.0) -> None:
        self._info = StreamInfo(name=name or f"Polar H10 {address}", modality="ecg", sfreq=POLAR_ECG_RATE,
                                channel_names=("ECG",), source_id=f"polar:{address}")
        self.address = address
        self._stats = SourceStats(extra={"frames_rejected": 0, "reconnects": 0})
        self._link = _Link()
        self._watch = LinkWatch(first_delay=min(self.retry, 10.0))
        self.last_error: str | None = None  # why the latest reconnection attempt failed (None while connected)
        self._sink: ChunkSink | None = None
        self._stopped = False
        self.failure: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"src-polar-{address}", daemon=True)
        self._thread.start()
        try:
            self._call(self._connect(), connect_timeout + 5.0)
        except BaseException:
            self._shutdown()
            raise

    @property
    def info(self) -> StreamInfo:
        """What the source delivers: one ECG lead at 130 Hz in µV."""
        return self._info

    @property
    def stats(self) -> SourceStats:
        """Live counters (``frames_rejected``, ``reconnects``)."""
        return self._stats

    @property
    def heart_rate(self) -> HeartRate | None:
        """The latest heart rate measurement, if any."""
        return self._link.hr

    @property
    def running(self) -> bool:
        """True while started and not stopped."""
        return self._sink is not None and not self._stopped and self._thread.is_alive()

    def _call(self, coro: Any, timeout: float) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    async def _connect(self) -> None:
        from bleak import BleakClient

        try:
            client = BleakClient(self.address, disconnected_callback=self._on_disconnect)
            await client.connect()
        except Exception as exc:
            if type(exc).__name__ in ("BleakDBusError", "FileNotFoundError", "BleakBluetoothNotAvailableError"):
                raise _ble_error(exc) from exc
            raise SourceError(f"Could not connect to the Polar H10 at {self.address}: {type(exc).__name__}: {exc}. "
                              "Is it worn (the strap only wakes up on skin) and not connected to a phone?") from exc
        self._link.client = client
        self._link.clock.reset()
        self._watch.connected()
        await client.start_notify(HR_MEASUREMENT, self._on_hr)
        if self._sink is not None:
            await self._start_ecg()

    async def _start_ecg(self) -> None:
        client = self._link.client
        await client.start_notify(PMD_DATA, self._on_pmd)
        await client.write_gatt_char(PMD_CONTROL, ECG_START, response=True)
        self._watch.streaming(local_clock())

    def _check_silence(self) -> None:
        """Once a second on the loop: a link that stays connected but sends no ECG is dropped and re-opened."""
        if self._stopped:
            return
        if self._watch.silent(local_clock()):
            self.last_error = f"no ECG frame for {self._watch.silence_after:g} s while connected"
            log.warning("Polar H10 %s: %s; dropping the link to reconnect", self.address, self.last_error)
            client = self._link.client
            if client is not None:
                self._loop.create_task(client.disconnect())  # its disconnected callback starts the reconnection
        self._loop.call_later(1.0, self._check_silence)

    def _on_disconnect(self, client: Any) -> None:
        if self._stopped:
            return
        log.warning("Polar H10 %s disconnected; reconnecting (backing off from %g s to %g s)", self.address,
                    self._watch.first_delay, self._watch.max_delay)
        self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self._watch.next_delay())
            try:
                await self._connect()
            except Exception as exc:
                self.last_error = f"reconnection failed: {exc}"
                log.debug("Polar H10 %s: %s", self.address, self.last_error)
                continue
            self._stats.extra["reconnects"] += 1
            self.last_error = None
            log.info("Polar H10 %s reconnected", self.address)
            return

    def _on_hr(self, _: Any, data: bytearray) -> None:
        try:
            self._link.hr = parse_heart_rate(data)
        except ValueError as exc:
            log.debug("Polar H10 %s: bad heart rate notification: %s", self.address, exc)

    def _on_pmd(self, _: Any, data: bytearray) -> None:
        received = local_clock()
        try:
            frame = parse_pmd_frame(data)
            if frame.measurement_type != PMD_ECG:
                return
            values = decode_ecg(frame)
        except ValueError as exc:
            self._stats.extra["frames_rejected"] += 1
            log.warning("Polar H10 %s: frame rejected: %s", self.address, exc)
            return
        if len(values) == 0 or self._sink is None:
            return
        self._watch.frame(received)
        stamps = self._link.clock.sample_times(frame.timestamp_ns, len(values), received)
        chunk = Chunk(values.astype(np.float32)[:, None], stamps, received)
        deliver(self._sink, chunk, self._stats, self._info.name)

    def start(self, sink: ChunkSink) -> None:
        """Start the ECG stream; each PMD frame goes to ``sink`` (on the source's asyncio thread)."""
        if self._sink is not None or self._stopped:
            raise RuntimeError(f"source {self._info.name!r} already started or stopped; open a new one")
        self._sink = sink
        try:
            self._call(self._start_ecg(), 10.0)
        except Exception as exc:
            raise SourceError(f"The Polar H10 at {self.address} refused to start ECG: {exc}") from exc
        self._loop.call_soon_threadsafe(self._loop.call_later, 1.0, self._check_silence)

    def stop(self) -> None:
        """Stop ECG, disconnect and end the source's thread (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._shutdown()

    def _shutdown(self) -> None:
        async def close() -> None:
            client = self._link.client
            if client is not None and client.is_connected:
                try:
                    await client.write_gatt_char(PMD_CONTROL, ECG_STOP, response=True)
                finally:
                    await client.disconnect()

        if self._loop.is_running():
            try:
                self._call(close(), 5.0)
            except Exception as exc:
                log.debug("Polar H10 %s: while disconnecting: %s", self.address, exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=2.0)
        if not self._loop.is_running():
            self._loop.close()


def _find_address(target: str, timeout: float) -> tuple[str, str]:
    if _ADDRESS.match(target):
        return target, f"Polar H10 {target}"
    devices = scan_ble(timeout)
    matches = [d for d in devices if target.lower() in d.name.lower()]
    if not matches:
        seen = ", ".join(f"{d.name or '?'} ({d.address})" for d in devices) or "none"
        raise SourceError(f"No Bluetooth LE device named like {target!r} within {timeout:g} s (seen: {seen}). Wear "
                          "the strap (it sleeps without skin contact) or give its address.")
    return matches[0].address, matches[0].name




def open_polar(target: str, params: dict[str, str], modality: Modality) -> PolarH10Source:
    """Connect to a Polar H10 by address or (part of its) name and return its ECG source.

    Parameters
    ----------
    target : str
        ``AA:BB:CC:DD:EE:FF`` (or a macOS UUID), or a name such as ``Polar H10 1A2B3C4D`` or ``1A2B3C4D``.
    params : dict
        ``timeout`` (seconds to scan and connect, default 10).
    modality : {"eeg", "ecg"}
        Must be ``ecg``.

    Raises
    ------
    ConfigError
        For EEG, an unknown parameter or a bad timeout.
    SourceError
        No Bluetooth, the strap not found, or the connection failed.
    """
    if modality != "ecg":
        raise ConfigError("A Polar H10 is an ECG chest strap: use it as --ecg polar:<address>.")
    unknown = sorted(set(params) - {"timeout"})
    if unknown:
        raise ConfigError(f"Unknown Polar H10 parameters {unknown}; valid ones: timeout.")
    try:
        timeout = parse_number(params["timeout"]) if "timeout" in params else 10.0
    except ValueError as exc:
        raise ConfigError(f"The Polar H10 option 'timeout' (seconds): {exc}.") from None
    address, name = _find_address(target.strip(), timeout)
    return PolarH10Source(address, name, connect_timeout=timeout)
