"""Replay of recordings into real LSL outlets: exact samples, drift-free timing, one clock for EEG and ECG."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyedflib
import pytest

from rt_physio.clock import local_clock
from rt_physio.errors import ConfigError
from rt_physio.io import Recording, Signal, read_recording
from rt_physio.sources import replay as replay_mod
from rt_physio.sources.lsl import LslSource
from rt_physio.sources.replay import Player, ReplaySource
from rt_physio.sources.spec import open_source
from tests.sources.conftest import Recorder

RT_PHYSIO = str(Path(sys.executable).parent / "rt-physio")


def _edf(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    reader = pyedflib.EdfReader(str(path))
    try:
        eeg = np.stack([reader.readSignal(i) for i in range(20)], axis=1)[:n].astype(np.float32)
        ecg = (reader.readSignal(20)[:n] * 1000).astype(np.float32)
    finally:
        reader.close()
    return eeg, ecg


def test_eegmat_replay_through_lsl_is_exact_and_on_time(data_dir):
    """EEG and ECG of one EDF through two real outlets at 1×: the file's samples, 1/fs steps, no drift."""
    path = data_dir / "eegmat" / "Subject00_2.edf"
    seconds = 5.0
    spec = f"replay:{path}?duration={seconds:g}"
    eeg = open_source(spec, "eeg", resolve_timeout=5.0)
    ecg = open_source(spec, "ecg", resolve_timeout=5.0)
    eeg_rec, ecg_rec = Recorder(), Recorder()
    try:
        assert isinstance(eeg, ReplaySource)
        assert isinstance(ecg, ReplaySource)
        assert eeg.player is ecg.player  # one replay clock for both modalities
        assert eeg.info.sfreq == ecg.info.sfreq == 500.0
        assert eeg.info.n_channels == 20
        assert eeg.info.channel_names[:3] == ("Fp1", "Fp2", "F3")
        assert ecg.info.channel_names == ("ECG",)
        eeg.start(eeg_rec)
        assert not eeg.player.running  # waits until the ECG inlet has subscribed too
        ecg.start(ecg_rec)
        player = eeg.player
        assert player.running
        n = int(seconds * 500)
        assert eeg_rec.wait_samples(n, timeout=seconds + 10)
        assert ecg_rec.wait_samples(n, timeout=5)
        assert player.wait(2.0)
    finally:
        eeg.stop()
        ecg.stop()
    assert not replay_mod._PLAYERS  # the last stop released the player and destroyed its outlets
    want_eeg, want_ecg = _edf(path, n)
    np.testing.assert_array_equal(eeg_rec.data(), want_eeg)  # the file's samples, as float32, in order
    np.testing.assert_array_equal(ecg_rec.data()[:, 0], want_ecg)  # mV in the file → µV
    for rec, source in ((eeg_rec, eeg), (ecg_rec, ecg)):
        ts = rec.timestamps() - source._lsl.time_correction
        steps = np.diff(ts)
        assert np.abs(steps - 1 / 500).max() < 1e-3  # jitter below 1 ms (it is ~1e-12: scheduled stamps)
        # sample k was stamped with its due time t0 + k/fs
        np.testing.assert_allclose(ts, player.t0 + np.arange(n) / 500, atol=1e-6)
        # ... and arrived then: never before, and (on a loaded 2-core machine) within a generous bound
        lateness = np.array([c.received - (c.timestamps[-1] - source._lsl.time_correction) for c in rec.chunks])
        assert lateness.min() > -1e-3
        assert np.median(lateness) < 0.02
    scheduled = (n - 1) / 500
    assert abs((player.finished_at - player.t0) - scheduled) < 0.05  # ends within 50 ms of the file's length
    assert abs((eeg_rec.arrivals[-1] - player.t0) - scheduled) < 0.05
    assert eeg.stats.extra["gaps"] == 0


def test_a_60_s_recording_replayed_fast_ends_on_schedule(data_dir):
    """No drift over a whole minute of data: the same schedule at 12× takes 5 s; the end is within 50 ms."""
    rec = read_recording(data_dir / "eegmat" / "Subject03_2.edf", duration=60.0)
    player = Player(rec, name=f"rtp-fast-{uuid.uuid4().hex[:6]}", speed=12.0, chunk=5)
    track = player.tracks["eeg"]
    source = LslSource.open({"source_id": track.source_id}, "eeg", timeout=5.0, dejitter=False)
    got = Recorder()
    try:
        source.start(got)
        t0 = player.start()
        assert player.wait(15.0)
        assert got.wait_samples(30000, timeout=5.0)
    finally:
        source.stop()
        player.stop()
    expected = (30000 - 1) / 500 / 12
    assert abs((player.finished_at - t0) - expected) < 0.05
    assert abs((got.arrivals[-1] - t0) - expected) < 0.05
    ts = got.timestamps() - source.time_correction
    np.testing.assert_allclose(ts, t0 + np.arange(30000) / 500 / 12, atol=1e-6)  # stamps follow the playback
    np.testing.assert_array_equal(got.data(), rec.signals["eeg"].data)
    assert player.tracks["ecg"].next_index == 30000


def test_loop_goes_on_with_the_first_sample_and_keeps_the_clock():
    data = np.arange(40, dtype=np.float32).reshape(20, 2)
    rec = Recording(Path("tiny.csv"), "csv", {"ecg": Signal("ecg", data, 100.0, ("A", "B"))})
    player = Player(rec, name=f"rtp-loop-{uuid.uuid4().hex[:6]}", loop=True, chunk=7)
    source = LslSource.open({"source_id": player.tracks["ecg"].source_id}, "ecg", timeout=5.0)
    got = Recorder()
    try:
        source.start(got)
        t0 = player.start()
        assert got.wait_samples(70, timeout=5.0)  # three and a half times through the file
        assert player.running  # a loop never finishes by itself
        assert not player.finished
    finally:
        source.stop()
        player.stop()
    values = got.data()[:70]
    np.testing.assert_array_equal(values, data[np.arange(70) % 20])
    ts = got.timestamps()[:70] - source.time_correction
    np.testing.assert_allclose(ts, t0 + np.arange(70) / 100, atol=1e-6)
    assert player.loops >= 3


def test_invalid_samples_go_out_as_the_previous_valid_value(data_dir):
    rec = read_recording(data_dir / "wfdb" / "v102s")
    raw = rec.signals["ecg"].data
    bad_rows, bad_cols = np.nonzero(~np.isfinite(raw))
    assert len(bad_rows) == 5 and bad_rows.min() > 0  # WFDB "missing" samples, read as NaN
    player = Player(rec, name=f"rtp-nan-{uuid.uuid4().hex[:6]}")
    try:
        held = player.tracks["ecg"].signal.data
        assert np.isfinite(held).all()
        for r, c in zip(bad_rows, bad_cols, strict=True):
            previous = r - 1
            while not np.isfinite(raw[previous, c]):
                previous -= 1
            assert held[r, c] == raw[previous, c]
        finite = np.isfinite(raw)
        np.testing.assert_array_equal(held[finite], raw[finite])
    finally:
        player.stop()


def test_replay_command_pushes_a_csv_into_lsl(data_dir):
    name = f"rtp-cli-{uuid.uuid4().hex[:6]}"
    path = data_dir / "neurokit" / "ecg_1000hz.csv"
    proc = subprocess.Popen([RT_PHYSIO, "replay", str(path), "--rate", "1000", "--duration", "2", "--speed", "2",
                             "--name", name, "--wait", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got = Recorder()
    source = None
    try:
        source = open_source(f"lsl:{name}-ECG", "ecg", resolve_timeout=20.0)
        assert source.info.sfreq == 2000.0  # at 2× the stream runs at twice the recorded rate, stamps to match
        assert source.info.channel_names == ("ECG",)
        source.start(got)
        out, err = proc.communicate(timeout=30)
        assert got.wait_samples(2000, timeout=5.0)
    finally:
        if source is not None:
            source.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"ECG → LSL stream '{name}-ECG'" in out
    assert "done: ECG 2000 samples" in out
    column = np.loadtxt(path, delimiter=",", skiprows=1)[:2000]
    np.testing.assert_array_equal(got.data()[:, 0], (column * 1000).astype(np.float32))
    assert np.abs(np.diff(got.timestamps()) - 1 / 2000).max() < 1e-3  # 2× playback: half-period steps


def test_replay_spec_errors_are_clear(data_dir, tmp_path):
    edf = data_dir / "eegmat" / "Subject00_2.edf"
    with pytest.raises(ConfigError, match="'speed' is for `rt-physio replay"):
        open_source(f"replay:{edf}?speed=2", "eeg")
    with pytest.raises(ConfigError, match=r"Unknown replay options \['sped'\]"):
        open_source(f"replay:{edf}?sped=2", "eeg")
    with pytest.raises(ConfigError, match="has no EEG channels"):
        open_source(f"replay:{data_dir / 'wfdb' / '100'}", "eeg")
    assert not replay_mod._PLAYERS
    with pytest.raises(ConfigError, match="does not exist"):
        open_source(f"replay:{tmp_path / 'nope.edf'}", "ecg")
    with pytest.raises(ConfigError, match="'loop' must be true or false"):
        open_source(f"replay:{edf}?loop=maybe", "ecg")
    with pytest.raises(ConfigError, match="speed"):
        Player(read_recording(edf, duration=1.0), speed=0)


def test_replay_command_rejects_a_missing_file(tmp_path):
    proc = subprocess.run([RT_PHYSIO, "replay", str(tmp_path / "none.edf")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_player_waits_for_start_and_timestamps_on_the_engine_clock(data_dir):
    rec = read_recording(data_dir / "neurokit" / "bio_resting_5min_100hz.csv", rate=100, duration=1.0)
    player = Player(rec, name=f"rtp-at-{uuid.uuid4().hex[:6]}")
    source = LslSource.open({"source_id": player.tracks["ecg"].source_id}, "ecg", timeout=5.0)
    got = Recorder()
    try:
        source.start(got)
        time.sleep(0.3)
        assert got.n_samples == 0  # nothing before start
        at = local_clock() + 0.2
        assert player.start(at) == at
        assert player.wait(5.0)
        assert got.wait_samples(100, timeout=3.0)
    finally:
        source.stop()
        player.stop()
    assert got.chunks[0].received >= at - 1e-3
    assert got.timestamps()[0] - source.time_correction == pytest.approx(at, abs=1e-6)


def test_an_rt_physio_recording_replays_with_its_streams_offsets(tmp_path):
    """A recording written by rt_physio's own Recorder comes back through LSL sample for sample."""
    from rt_physio.publish.recorder import Recorder as EngineRecorder
    from rt_physio.sources.base import Chunk, StreamInfo

    eeg_info = StreamInfo("Headset", "eeg", 128.0, ("Fz", "Cz"), "hs-1")
    ecg_info = StreamInfo("Strap", "ecg", 130.0, ("ECG",), "strap-1")
    recorder = EngineRecorder(tmp_path, {"s1": {"eeg": eeg_info, "ecg": ecg_info}}, ["arousal"])
    rng = np.random.default_rng(5)
    eeg = rng.standard_normal((256, 2)).astype(np.float32)
    ecg = rng.standard_normal((130, 1)).astype(np.float32)
    t0 = 1000.0
    for k in range(0, 256, 32):
        recorder.record_chunk("s1", "eeg", Chunk(eeg[k:k + 32], t0 + np.arange(k, k + 32) / 128.0, 0.0))
    recorder.record_chunk("s1", "ecg", Chunk(ecg, t0 + 0.25 + np.arange(130) / 130.0, 0.0))
    recorder.close()

    rec = read_recording(recorder.path)
    assert rec.format == "rt_physio"
    assert rec.signals["eeg"].channel_names == ("Fz", "Cz")
    assert rec.signals["ecg"].offset == pytest.approx(0.25)
    player = Player(rec, name=f"rtp-own-{uuid.uuid4().hex[:6]}", speed=4.0)
    sources = {m: LslSource.open({"source_id": t.source_id}, m, timeout=5.0) for m, t in player.tracks.items()}
    got = {m: Recorder() for m in sources}
    try:
        for m, s in sources.items():
            s.start(got[m])
        start = player.start()
        assert player.wait(5.0)
        assert got["eeg"].wait_samples(256, timeout=3.0)
        assert got["ecg"].wait_samples(130, timeout=3.0)
    finally:
        for s in sources.values():
            s.stop()
        player.stop()
    np.testing.assert_array_equal(got["eeg"].data(), eeg)
    np.testing.assert_array_equal(got["ecg"].data(), ecg)
    first_ecg = got["ecg"].timestamps()[0] - sources["ecg"].time_correction
    assert first_ecg - start == pytest.approx(0.25 / 4, abs=1e-6)  # the streams keep their relative start


