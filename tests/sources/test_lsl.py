"""LslSource against real pylsl outlets in this process."""

from __future__ import annotations

import logging
import time
import uuid

import numpy as np
import pylsl
import pytest

from rt_physio.clock import local_clock
from rt_physio.errors import SourceError
from rt_physio.sources.base import Source
from rt_physio.sources.lsl import LslSource
from rt_physio.sources.spec import open_source

LABELS = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]
FS = 128.0


def push_known(outlet: pylsl.StreamOutlet, n_chunks: int = 24, chunk: int = 8, n_channels: int = 14,
               fs: float = FS) -> tuple[np.ndarray, np.ndarray]:
    """Push random samples with explicit, evenly spaced local_clock timestamps; return what was pushed."""
    rng = np.random.default_rng(7)
    data = (rng.standard_normal((n_chunks * chunk, n_channels)) * 50).astype(np.float32)
    t0 = local_clock() - n_chunks * chunk / fs  # a recent past, so every sample is stamped before it is pulled
    stamps = t0 + np.arange(n_chunks * chunk) / fs
    for k in range(n_chunks):
        sl = slice(k * chunk, (k + 1) * chunk)
        outlet.push_chunk(data[sl], stamps[sl].tolist())
        time.sleep(0.004)
    return data, stamps


def run_and_check(source: Source, outlet: pylsl.StreamOutlet, recorder) -> None:
    source.start(recorder)
    try:
        data, stamps = push_known(outlet)
        assert recorder.wait_samples(len(data), timeout=5.0), f"got {recorder.n_samples} of {len(data)} samples"
        time.sleep(0.05)
    finally:
        source.stop()
    got = recorder.data()
    assert got.dtype == np.float32
    assert got.shape == data.shape
    np.testing.assert_array_equal(got, data)  # exact values, in order
    ts = recorder.timestamps()
    assert ts.dtype == np.float64
    assert np.max(np.abs(ts - stamps)) < 1e-3
    assert all(c.received >= c.timestamps[-1] - 1e-3 for c in recorder.chunks)
    assert source.stats.samples == len(data)
    assert source.stats.errors == 0


def test_by_name_delivers_exactly_what_was_pushed(make_outlet, recorder):
    outlet, name = make_outlet(14, FS, labels=LABELS)
    source = open_source(f"lsl:{name}", "eeg", resolve_timeout=3.0)
    assert isinstance(source, LslSource)
    assert isinstance(source, Source)
    assert source.info.channel_names == tuple(LABELS)
    assert source.info.sfreq == FS
    assert source.info.modality == "eeg"
    assert source.info.source_id == f"sid-{name}"
    run_and_check(source, outlet, recorder)


def test_by_type_and_by_source_id(make_outlet, recorder):
    stype = f"EEG-{uuid.uuid4().hex[:8]}"
    outlet, name = make_outlet(14, FS, stype=stype)
    source = open_source(f"lsl:type={stype}", "eeg", resolve_timeout=3.0)
    assert source.info.name == name
    assert source.info.channel_names == tuple(f"Ch{i}" for i in range(1, 15))  # no labels in the XML
    run_and_check(source, outlet, recorder)
    other = open_source(f"lsl:source_id=sid-{name}", "ecg", resolve_timeout=3.0)
    try:
        assert other.info.name == name
        assert other.info.modality == "ecg"
    finally:
        other.stop()


def test_first_sample_is_visible_within_milliseconds(make_outlet, recorder):
    # Each sample is pushed after an idle gap, so the acquisition thread is blocked waiting: this is the
    # pull_chunk(timeout) trap, where the sample would sit until the timeout expired (~100 ms).
    outlet, name = make_outlet(14, FS)
    source = open_source(f"lsl:{name}", "eeg", resolve_timeout=3.0)
    source.start(recorder)
    latencies = []
    try:
        for k in range(20):
            time.sleep(0.03)
            before = len(recorder.chunks)
            pushed = local_clock()
            outlet.push_sample(np.full(14, k, np.float32), pushed)
            assert recorder.wait_samples(k + 1, timeout=2.0)
            latencies.append(recorder.arrivals[before] - pushed)
    finally:
        source.stop()
    lat_ms = np.array(latencies) * 1e3
    # the trap holds each sample ~100 ms; bounds well under it, with room for a loaded machine (the figure
    # itself, ~1 ms, is measured by `rt-physio bench latency`, stage acquire)
    assert np.median(lat_ms) < 30.0, lat_ms
    assert np.percentile(lat_ms, 90) < 75.0, lat_ms


def test_units_in_the_xml_are_converted_to_microvolts(make_outlet, recorder):
    outlet, name = make_outlet(2, 250.0, stype="ECG", labels=["I", "II"], unit="millivolts")
    source = open_source(f"lsl:{name}", "ecg", resolve_timeout=3.0)
    source.start(recorder)
    try:
        outlet.push_chunk(np.array([[1.5, -0.25], [0.001, 2.0]], np.float32), [local_clock() - 0.004, local_clock()])
        assert recorder.wait_samples(2)
    finally:
        source.stop()
    np.testing.assert_allclose(recorder.data(), [[1500.0, -250.0], [1.0, 2000.0]], rtol=1e-6)


def test_int16_stream_is_delivered_as_float32(make_outlet, recorder):
    outlet, name = make_outlet(3, 100.0, fmt=pylsl.cf_int16)
    source = open_source(f"lsl:{name}", "eeg", resolve_timeout=3.0)
    source.start(recorder)
    try:
        outlet.push_chunk(np.array([[1, -2, 300], [4, 5, -32768]], np.int16), [local_clock() - 0.01, local_clock()])
        assert recorder.wait_samples(2)
    finally:
        source.stop()
    assert recorder.data().dtype == np.float32
    np.testing.assert_array_equal(recorder.data(), [[1, -2, 300], [4, 5, -32768]])


def test_unknown_name_fails_after_the_timeout_naming_visible_streams(make_outlet):
    _, visible = make_outlet(4, 256.0, stype="EEG")
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    start = time.monotonic()
    with pytest.raises(SourceError) as err:
        open_source(f"lsl:{missing}", "eeg", resolve_timeout=0.5)
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 3.0
    msg = str(err.value)
    assert missing in msg
    assert visible in msg
    assert "4 ch" in msg
    assert "256 Hz" in msg


def test_irregular_rate_stream_is_rejected(make_outlet):
    _, name = make_outlet(1, pylsl.IRREGULAR_RATE, stype="Markers")
    with pytest.raises(SourceError, match="irregular sampling rate"):
        open_source(f"lsl:{name}", "eeg", resolve_timeout=3.0)


def test_text_stream_is_rejected(make_outlet):
    _, name = make_outlet(1, 10.0, fmt=pylsl.cf_string)
    with pytest.raises(SourceError, match="string samples"):
        open_source(f"lsl:{name}", "eeg", resolve_timeout=3.0)


def test_stop_before_start_releases_the_inlet(make_outlet):
    _outlet, name = make_outlet(2, 100.0)
    source = open_source(f"lsl:{name}", "eeg", resolve_timeout=3.0)
    source.stop()
    source.stop()  # idempotent
    with pytest.raises(RuntimeError):
        source.start(lambda chunk: None)


def test_a_stream_that_stops_and_comes_back_with_the_same_source_id(recorder):
    name = f"rtp-back-{uuid.uuid4().hex[:8]}"

    def outlet() -> pylsl.StreamOutlet:
        return pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 2, 100.0, "float32", f"sid-{name}"))

    def push(out: pylsl.StreamOutlet, seconds: float, value: float) -> None:
        end = local_clock() + seconds
        while local_clock() < end:
            now = local_clock()
            out.push_chunk(np.full((5, 2), value, np.float32), (now - 0.04 + np.arange(5) / 100).tolist())
            time.sleep(0.05)

    first = outlet()
    source = open_source(f"lsl:{name}", "eeg", resolve_timeout=3.0)
    source.start(recorder)
    try:
        push(first, 1.0, 1.0)
        del first  # the sender goes away
        time.sleep(1.6)  # a silence longer than stall_after (1 s): the gap measured below is at least this
        deadline = time.monotonic() + 20.0  # the source's own thread says so (later on a loaded machine)
        while not source.stalled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.stalled
        assert source.stats.extra["stalls"] == 1
        second = outlet()  # ... and a new one appears with the same source_id
        back = local_clock()
        push(second, 2.5, 2.0)
        assert not source.stalled  # data came within the last 50 ms (a wait here would race the next stall)
    finally:
        source.stop()
    values = recorder.data()[:, 0]
    assert set(np.unique(values)) == {1.0, 2.0}
    resumed = next(c for c in recorder.chunks if c.data[0, 0] == 2.0)
    assert resumed.received - back < 2.5  # liblsl recovered the inlet onto the new outlet
    assert source.stats.extra["gaps"] == 1
    assert source.stats.extra["gap_ms"] >= 1500
    assert source.stats.extra["dejitter_resets"] == 1  # the fit restarted instead of bridging the gap
    ts = recorder.timestamps()
    assert (np.diff(ts) > 0).all()
    assert source.failure is None


def test_a_stream_that_comes_back_with_another_source_id_is_found_again_by_its_name(recorder, caplog):
    """liblsl's recovery only follows the same source_id; ours re-resolves by the query the user gave."""
    name = f"rtp-newid-{uuid.uuid4().hex[:8]}"

    def outlet(source_id: str) -> pylsl.StreamOutlet:
        return pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 2, 100.0, "float32", source_id))

    first = outlet(f"first-{name}")
    source = open_source(f"lsl:{name}", "eeg", resolve_timeout=3.0)
    source.start(recorder)
    try:
        first.push_chunk(np.full((5, 2), 1.0, np.float32), (local_clock() - 0.04 + np.arange(5) / 100).tolist())
        assert recorder.wait_samples(5, timeout=5.0)
        del first  # the sender dies ...
        second = outlet(f"second-{name}")  # ... and its app comes back with a new source_id
        deadline = time.monotonic() + 30.0
        while recorder.n_samples < 15 and time.monotonic() < deadline:  # push until the source reads the new one
            now = local_clock()
            second.push_chunk(np.full((5, 2), 2.0, np.float32), (now - 0.04 + np.arange(5) / 100).tolist())
            time.sleep(0.05)
        assert recorder.n_samples >= 15, "the source never read the new outlet"
        assert source.stats.extra["stalls"] == 1
        caplog.set_level(logging.WARNING, logger="rt_physio.sources.lsl")
        while source.stats.extra["stalls"] < 2 and time.monotonic() < deadline + 30.0:  # the new sender goes quiet
            time.sleep(0.05)
    finally:
        source.stop()
    values = recorder.data()[:, 0]
    assert values[0] == 1.0 and values[-1] == 2.0
    assert source.stats.extra["reconnects"] >= 1
    assert source.stats.extra["stalls"] == 2
    stall = [r.getMessage() for r in caplog.records if "waiting for it to come back" in r.getMessage()][-1]
    assert f"source_id 'second-{name}'" in stall  # the stream it reads now, not the one that died
    assert source.failure is None


def test_a_stream_that_never_sends_is_reported_stalled_and_read_once_it_does(make_outlet, recorder):
    outlet, name = make_outlet(2, 100.0)
    source = open_source(f"lsl:{name}", "eeg", resolve_timeout=3.0)
    source.start(recorder)
    try:
        deadline = time.monotonic() + 20.0
        while not source.stalled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.stalled  # before any first sample
        outlet.push_chunk(np.full((4, 2), 3.0, np.float32), (local_clock() - 0.03 + np.arange(4) / 100).tolist())
        assert recorder.wait_samples(4, timeout=10.0)
    finally:
        source.stop()
    assert not source.stalled
    assert source.stats.extra["stalls"] == 1
