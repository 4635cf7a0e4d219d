"""Polar H10 chest strap over Bluetooth LE: the PMD ECG stream (130 Hz, µV) and the standard heart rate.

BrainFlow cannot read the H10 (its issue #670), so rt_physio talks to it directly. The decoding follows
Polar's published BLE SDK (polarofficial/polar-ble-sdk, ``PmdDataFrame`` and ``EcgData``):

- PMD data notification (characteristic ``FB005C82-…``): a 10-byte header — byte 0 the measurement type
  (0 = ECG), bytes 1-8 the timestamp of the frame's *last* sample (uint64 little-endian, nanoseconds since
  2000-01-01 on the strap's clock), byte 9 the frame type (bit 7 set = delta-compressed) — then the samples.
  ECG frame type 0: one 3-byte signed little-endian integer per sample, in µV.
- Start ECG on the PMD control point (``FB005C81-…``): ``02 00 | 00 01 82 00 | 01 01 0E 00`` = request
  measurement start, type ECG, setting sample rate (1 value: 130), setting resolution (1 value: 14 bits).
- Heart rate measurement (Bluetooth SIG characteristic 0x2A37): flags byte (bit 0: 16-bit rate, bits 1-2:
  sensor contact supported/detected, bit 3: energy expended present, bit 4: RR intervals present), the rate,
  optionally energy expended (uint16, kJ), then RR intervals (uint16, 1/1024 s each).

Timing. The strap stamps frames on its own clock. Sample times within a frame are spread back from the frame's
timestamp by the period measured between consecutive frames (as the SDK does); the strap clock is mapped onto
the engine clock by an offset ``arrival − strap time`` that keeps the smallest value seen over a sliding
horizon (Bluetooth only ever delays a frame, so the least-delayed frame is the best estimate of the offset),
slewed by at most half a millisecond per frame once settled so that a better estimate never tears the grid.

The BLE layer (bleak) is kept thin: :class:`PolarH10Source` runs one asyncio loop on its own thread, connects
on :func:`open_polar` (so a wrong address is an error before the engine starts) and reconnects after a drop, or
after 5 s without an ECG frame while the link still looks connected (a :class:`~rt_physio.sources.link_watch.
LinkWatch` decides; reconnection attempts back off from 1 s to 10 s and never give up: the engine decides, with
``--give-up-after``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import re
import struct
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.clock import local_clock
from rt_physio.errors import ConfigError, SourceError
from rt_physio.sources.base import Chunk, ChunkSink, Modality, SourceStats, StreamInfo, deliver
from rt_physio.sources.link_watch import LinkWatch

__all__ = [
    "ECG_START",
    "HR_MEASUREMENT",
    "PMD_CONTROL",
    "PMD_DATA",
    "POLAR_ECG_RATE",
    "BleDevice",
    "HeartRate",
    "PmdFrame",
    "PolarH10Source",
    "StrapClock",
    "decode_ecg",
    "open_polar",
    "parse_heart_rate",
    "parse_pmd_frame",
    "scan_ble",
]

log = logging.getLogger(__name__)

PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
HR_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
#: PMD measurement type of ECG.
PMD_ECG = 0
#: The H10's ECG rate, Hz.
POLAR_ECG_RATE = 130.0
#: Control-point command starting ECG at 130 Hz, 14-bit resolution.
ECG_START = bytes([0x02, PMD_ECG, 0x00, 0x01, 0x82, 0x00, 0x01, 0x01, 0x0E, 0x00])
#: Control-point command stopping ECG.
ECG_STOP = bytes([0x03, PMD_ECG])
#: Seconds between 1970-01-01 and 2000-01-01, the PMD timestamp epoch.
PMD_EPOCH_UNIX = 946684800.0

_HEADER = struct.Struct("<BQB")  # measurement type, timestamp (ns), frame type


@dataclass(frozen=True, slots=True)
class PmdFrame:
    """One PMD data notification.

    Attributes
    ----------
    measurement_type : int
        0 = ECG, 1 = PPG, 2 = ACC, 3 = PPI, 5 = gyro, 6 = magnetometer.
    timestamp_ns : int
        Strap-clock time of the frame's last sample, nanoseconds since 2000-01-01.
    frame_type : int
        Sample encoding (0 = raw 3-byte ECG for the H10), without the compression bit.
    compressed : bool
        Delta-compressed frame (bit 7 of the frame-type byte).
    payload : bytes
        The samples.
    """

    measurement_type: int
    timestamp_ns: int
    frame_type: int
    compressed: bool
    payload: bytes


def parse_pmd_frame(data: bytes | bytearray | memoryview) -> PmdFrame:
    """Split a PMD data notification into its header fields and payload.

    Raises
    ------
    ValueError
        For a notification shorter than the 10-byte header.
    """
    raw = bytes(data)
    if len(raw) < _HEADER.size:
        raise ValueError(f"A PMD frame has a {_HEADER.size}-byte header; got {len(raw)} bytes.")
    mtype, stamp, ftype = _HEADER.unpack_from(raw)
    return PmdFrame(mtype, stamp, ftype & 0x7F, bool(ftype & 0x80), raw[_HEADER.size:])


def decode_ecg(frame: PmdFrame) -> NDArray[np.int32]:
    """Return the ECG samples (µV) of a raw type-0 ECG frame.

    Raises
    ------
    ValueError
        For a frame that is not ECG, is compressed or of another frame type, or whose payload is not a whole
        number of 3-byte samples.
    """
    if frame.measurement_type != PMD_ECG:
        raise ValueError(f"Not an ECG frame: measurement type {frame.measurement_type}.")
    if frame.compressed or frame.frame_type != 0:
        raise ValueError(f"ECG frame type {frame.frame_type}{' (compressed)' if frame.compressed else ''} is not "
                         "supported; the H10 sends raw frame type 0.")
    if len(frame.payload) % 3:
        raise ValueError(f"An ECG frame's payload is 3 bytes per sample; got {len(frame.payload)} bytes.")
    b = np.frombuffer(frame.payload, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    return np.where(value >= 1 << 23, value - (1 << 24), value).astype(np.int32)


@dataclass(frozen=True, slots=True)
class HeartRate:
    """One heart rate measurement (Bluetooth SIG 0x2A37).

    Attributes
    ----------
    bpm : int
        Heart rate, beats per minute.
    rr_s : tuple of float
        RR intervals since the last notification, seconds.
    contact : bool or None
        Skin contact detected; None when the sensor does not report contact.
    energy_kj : int or None
        Energy expended, kJ, when present.
    """

    bpm: int
    rr_s: tuple[float, ...] = ()
    contact: bool | None = None
    energy_kj: int | None = None


def parse_heart_rate(data: bytes | bytearray | memoryview) -> HeartRate:
    """Decode a heart rate measurement notification.

    Raises
    ------
    ValueError
        For a truncated notification.
    """
    raw = bytes(data)
    if not raw:
        raise ValueError("An empty heart rate measurement.")
    flags = raw[0]
    pos = 1
    wide = flags & 0x01
    need = pos + (2 if wide else 1)
    if len(raw) < need:
        raise ValueError(f"A heart rate measurement with flags {flags:#04x} needs {need} bytes, got {len(raw)}.")
    bpm = int.from_bytes(raw[pos:need], "little")
    pos = need
    contact = bool(flags & 0x04) if flags & 0x02 else None
    energy = None
    if flags & 0x08:
        if len(raw) < pos + 2:
            raise ValueError("A heart rate measurement announces energy expended but ends before it.")
        energy = int.from_bytes(raw[pos:pos + 2], "little")
        pos += 2
    rr: tuple[float, ...] = ()
    if flags & 0x10:
        body = raw[pos:]
        if len(body) % 2:
            raise ValueError("A heart rate measurement's RR intervals are 2 bytes each; the payload is odd.")
        rr = tuple(v / 1024.0 for v in struct.unpack(f"<{len(body) // 2}H", body))
    return HeartRate(bpm, rr, contact, energy)


class StrapClock:
    """Map strap-clock nanoseconds onto the engine clock and spread a frame's samples in time.

    Parameters
    ----------
    sfreq : float
        Nominal rate, used for the first frame (and after a gap) to space its samples.
    horizon : float
        Seconds over which the minimal offset ``arrival − strap time`` is kept.
    settle : float
        Seconds after the first frame during which the offset follows that minimum at once; afterwards it slews
        towards it by at most ``max_step`` per frame, so an improved estimate never tears the sample grid.
    max_step : float
        Largest change of the applied offset between two frames after settling, seconds.
    """

    def __init__(self, sfreq: float = POLAR_ECG_RATE, horizon: float = 30.0, settle: float = 5.0,
                 max_step: float = 0.5e-3) -> None:
        self.sfreq = sfreq
        self.horizon = horizon
        self.settle = settle
        self.max_step = max_step
        self._applied = math.nan
        self._first_arrival = math.nan
        self._offsets: collections.deque[tuple[float, float]] = collections.deque()
        self._previous_ns: int | None = None
        self._origin_ns: int | None = None  # strap times are kept relative to this (exact integer arithmetic)

    def reset(self) -> None:
        """Forget the previous frame (after a reconnection)."""
        self._previous_ns = None
        self._origin_ns = None
        self._offsets.clear()
        self._applied = math.nan
        self._first_arrival = math.nan

    @property
    def offset(self) -> float:
        """Applied offset engine clock − strap clock since the first frame, seconds (nan before it)."""
        return self._applied

    def sample_times(self, timestamp_ns: int, n: int, arrival: float) -> NDArray[np.float64]:
        """Return the engine-clock times of a frame's ``n`` samples (stamped ``timestamp_ns``, received ``arrival``).

        The offset is updated with this frame first.
        """
        if self._origin_ns is None:
            self._origin_ns = timestamp_ns
        strap = (timestamp_ns - self._origin_ns) * 1e-9
        self._offsets.append((arrival, arrival - strap))
        while self._offsets and self._offsets[0][0] < arrival - self.horizon:
            self._offsets.popleft()
        target = min(o for _, o in self._offsets)
        if math.isnan(self._applied) or arrival - self._first_arrival < self.settle:
            if math.isnan(self._first_arrival):
                self._first_arrival = arrival
            self._applied = target
        else:
            self._applied += max(-self.max_step, min(self.max_step, target - self._applied))
        period = 1.0 / self.sfreq
        previous = self._previous_ns
        if previous is not None and timestamp_ns > previous:
            measured = (timestamp_ns - previous) * 1e-9 / n
            if abs(measured - period) < 0.1 * period:  # else a frame was lost: keep the nominal spacing
                period = measured
        self._previous_ns = timestamp_ns
        return strap + self.offset - period * np.arange(n - 1, -1, -1, dtype=np.float64)


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
        timeout = float(params.get("timeout", 10.0))
    except ValueError:
        raise ConfigError(f"The Polar H10 timeout must be a number of seconds, got {params['timeout']!r}.") from None
    if not timeout > 0:
        raise ConfigError(f"The Polar H10 timeout must be positive, got {timeout!r}.")
    address, name = _find_address(target.strip(), timeout)
    return PolarH10Source(address, name, connect_timeout=timeout)
