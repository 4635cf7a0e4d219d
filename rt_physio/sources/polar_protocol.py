"""The Polar H10's Bluetooth LE protocol: PMD ECG frames (130 Hz, µV), the standard heart rate, the strap clock.

Pure decoding, no radio: :mod:`rt_physio.sources.polar` owns the Bluetooth link. The decoding follows
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
"""

from __future__ import annotations

import collections
import math
import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ECG_START",
    "ECG_STOP",
    "HR_MEASUREMENT",
    "PMD_CONTROL",
    "PMD_DATA",
    "PMD_ECG",
    "PMD_EPOCH_UNIX",
    "PMD_SERVICE",
    "POLAR_ECG_RATE",
    "HeartRate",
    "PmdFrame",
    "StrapClock",
    "decode_ecg",
    "parse_heart_rate",
    "parse_pmd_frame",
]

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
