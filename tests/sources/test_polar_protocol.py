"""Polar H10 protocol: PMD ECG frames and heart rate notifications built byte by byte (no radio), per the SDK."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_physio.sources.polar_protocol import (
    ECG_START,
    PMD_EPOCH_UNIX,
    StrapClock,
    decode_ecg,
    parse_heart_rate,
    parse_pmd_frame,
)


def ecg_frame(samples_uv: list[int], timestamp_ns: int, frame_type: int = 0, measurement: int = 0) -> bytes:
    """A PMD data notification: type, uint64 LE timestamp (ns since 2000), frame type, 3-byte LE signed µV."""
    body = b"".join(int(v).to_bytes(3, "little", signed=True) for v in samples_uv)
    return bytes([measurement]) + struct.pack("<Q", timestamp_ns) + bytes([frame_type]) + body


def test_ecg_frame_type_0_decodes_signed_microvolts():
    ts = 599_000_000_123_456_789  # ~19 years after 2000-01-01, in ns
    samples = [0, 1, -1, 8_388_607, -8_388_608, 1234, -56789]
    frame = parse_pmd_frame(ecg_frame(samples, ts))
    assert frame.measurement_type == 0
    assert frame.timestamp_ns == ts
    assert frame.frame_type == 0
    assert not frame.compressed
    values = decode_ecg(frame)
    assert values.dtype == np.int32
    assert values.tolist() == samples


def test_a_real_looking_73_sample_frame():
    # The H10 sends 73 samples per notification at 130 Hz (229 bytes); little-endian, two's complement
    payload = bytes.fromhex("00") + (12345678).to_bytes(8, "little") + bytes([0x00]) + bytes.fromhex("38ffff") * 73
    assert len(payload) == 229
    values = decode_ecg(parse_pmd_frame(payload))
    assert len(values) == 73
    assert (values == -200).all()  # 0xFFFF38 = -200 µV


@given(st.lists(st.integers(-(2**23), 2**23 - 1), min_size=1, max_size=80), st.integers(0, 2**64 - 1))
@settings(max_examples=200, deadline=None)
def test_any_frame_round_trips(samples, ts):
    frame = parse_pmd_frame(ecg_frame(samples, ts))
    assert frame.timestamp_ns == ts
    assert decode_ecg(frame).tolist() == samples


def test_frames_that_are_not_raw_ecg_are_refused():
    with pytest.raises(ValueError, match="10-byte header"):
        parse_pmd_frame(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="measurement type 2"):
        decode_ecg(parse_pmd_frame(ecg_frame([1, 2], 5, measurement=2)))
    compressed = parse_pmd_frame(ecg_frame([1, 2], 5, frame_type=0x80))
    assert compressed.compressed
    with pytest.raises(ValueError, match="compressed"):
        decode_ecg(compressed)
    with pytest.raises(ValueError, match="3 bytes per sample"):
        decode_ecg(parse_pmd_frame(ecg_frame([1], 5) + b"\x00"))


def test_start_command_asks_for_ecg_at_130_hz_14_bit():
    assert ECG_START[:2] == b"\x02\x00"  # REQUEST_MEASUREMENT_START, ECG
    assert ECG_START[2:6] == bytes([0x00, 0x01]) + struct.pack("<H", 130)  # SAMPLE_RATE, 1 value, 130
    assert ECG_START[6:] == bytes([0x01, 0x01]) + struct.pack("<H", 14)  # RESOLUTION, 1 value, 14


@pytest.mark.parametrize(("payload", "bpm", "rr", "contact", "energy"), [
    (bytes([0x00, 72]), 72, (), None, None),  # uint8 rate, nothing else
    (bytes([0x01]) + struct.pack("<H", 300), 300, (), None, None),  # uint16 rate
    (bytes([0x06, 65]), 65, (), True, None),  # contact supported and detected
    (bytes([0x02, 65]), 65, (), False, None),  # contact supported, not detected
    (bytes([0x10, 60]) + struct.pack("<2H", 1024, 512), 60, (1.0, 0.5), None, None),  # RR in 1/1024 s
    (bytes([0x1E, 80]) + struct.pack("<H", 1500) + struct.pack("<H", 768), 80, (0.75,), True, 1500),
])
def test_heart_rate_measurement(payload, bpm, rr, contact, energy):
    hr = parse_heart_rate(payload)
    assert hr.bpm == bpm
    assert hr.rr_s == pytest.approx(rr)
    assert hr.contact is contact
    assert hr.energy_kj == energy


def test_truncated_heart_rate_measurements_are_refused():
    for bad in (b"", bytes([0x01, 60]), bytes([0x08, 60, 1]), bytes([0x10, 60, 1])):
        with pytest.raises(ValueError, match="heart rate measurement"):
            parse_heart_rate(bad)


def test_strap_clock_spreads_samples_and_maps_them_onto_the_engine_clock():
    clock = StrapClock()
    period_ns = round(1e9 / 130.0 * (1 + 30e-6))  # a strap clock 30 ppm off
    strap0 = 700_000_000 * 10**9  # ns since 2000
    offset = 1234.5 - strap0 * 1e-9  # engine = strap + offset
    rng = np.random.default_rng(0)
    all_times = []
    for k in range(1, 40):
        last_ns = strap0 + (73 * k - 1) * period_ns
        arrival = last_ns * 1e-9 + offset + 0.015 + rng.uniform(0, 0.03)  # BLE delays 15-45 ms
        times = clock.sample_times(last_ns, 73, arrival)
        all_times.append(times)
    settled = 12  # frames after the 5 s settling time (a frame is 73 / 130 s)
    t = np.concatenate(all_times[settled:])
    steps = np.diff(t)
    assert np.abs(steps - period_ns * 1e-9).max() < 1e-3  # regular within a millisecond across frames
    truth = (strap0 + (73 * settled + np.arange(len(t))) * period_ns) * 1e-9 + offset
    err = t - truth
    assert err.min() > 0.0
    assert err.max() < 0.02  # late by about the least BLE delay seen, never early
    first_frame = (strap0 + 72 * period_ns) * 1e-9
    assert clock.offset - (offset + first_frame) == pytest.approx(0.015, abs=0.005)


def test_pmd_epoch_is_2000_01_01():
    import datetime

    assert datetime.datetime.fromtimestamp(PMD_EPOCH_UNIX, datetime.UTC) == datetime.datetime(
        2000, 1, 1, tzinfo=datetime.UTC)
