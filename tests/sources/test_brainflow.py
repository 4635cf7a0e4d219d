"""BrainFlow sources on BrainFlow's real synthetic board (and a real failing Cyton prepare)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rt_physio.clock import local_clock
from rt_physio.errors import ConfigError, SourceError
from rt_physio.sources import brainflow as bf
from rt_physio.sources.brainflow import BrainFlowSource
from rt_physio.sources.brainflow_boards import BoardShim, BrainFlowInputParams, PackageCounter, board_from_name
from rt_physio.sources.spec import open_source

SYNTHETIC = -1
EEG_NAMES = ("Fz", "C3", "Cz", "C4", "Pz", "PO7", "Oz", "PO8", "F5", "F7", "F3", "F1", "F2", "F4")


def assert_board_free(board_id: int = SYNTHETIC) -> None:
    """The board can be prepared by someone else: our session released it."""
    board = BoardShim(board_id, BrainFlowInputParams())
    board.prepare_session()
    board.release_session()


@pytest.fixture
def two_recorders(recorder):
    return recorder, type(recorder)()


def test_synthetic_eeg_and_ecg_from_one_session(two_recorders):
    eeg_rec, ecg_rec = two_recorders
    eeg = open_source("synthetic", "eeg")
    ecg = open_source("synthetic", "ecg")
    try:
        assert isinstance(eeg, BrainFlowSource)
        assert isinstance(ecg, BrainFlowSource)
        assert eeg.session is ecg.session  # one BoardShim: BrainFlow refuses a second one on the same board
        assert eeg.info.channel_names == EEG_NAMES
        assert eeg.info.sfreq == 250
        assert ecg.info.channel_names == ("ECG1", "ECG2")
        assert ecg.info.modality == "ecg"
        eeg.start(eeg_rec)
        ecg.start(ecg_rec)
        time.sleep(3.0)
        end = local_clock()
    finally:
        eeg.stop()
        stopping = time.monotonic()
        ecg.stop()  # the last one: stops the thread and releases the board
        stop_s = time.monotonic() - stopping
    assert stop_s < 0.5
    assert eeg.session.failure is None
    assert not eeg.running
    assert not ecg.running
    assert_board_free()

    for rec, n_ch in ((eeg_rec, 14), (ecg_rec, 2)):
        data, ts = rec.data(), rec.timestamps()
        assert data.dtype == np.float32
        assert data.shape[1] == n_ch
        assert np.isfinite(data).all()
        assert 2.6 * 250 <= len(ts) <= 3.4 * 250
        steps = np.diff(ts)
        assert (steps > 0).all()  # monotonic
        assert abs(np.median(steps) - 0.004) < 0.0005  # 250 Hz
        assert abs(ts[-1] - end) < 0.1  # on the engine clock, not the wall clock
        assert all(c.received >= c.timestamps[-1] - 0.005 for c in rec.chunks)
    # the same board samples feed both modalities: every ECG sample is one of the EEG samples
    assert np.isin(ecg_rec.timestamps(), eeg_rec.timestamps()).all()
    # ... but the ECG leads are other rows (15-16) than any EEG channel (rows 1-14)
    _, in_eeg, in_ecg = np.intersect1d(eeg_rec.timestamps(), ecg_rec.timestamps(), return_indices=True)
    eeg_common, ecg_common = eeg_rec.data()[in_eeg], ecg_rec.data()[in_ecg]
    assert len(in_eeg) > 500
    for lead in range(2):
        assert all(not np.allclose(ecg_common[:, lead], eeg_common[:, ch]) for ch in range(14))
    assert eeg.stats.extra["lost_samples"] == 0
    assert ecg.stats.extra["lost_samples"] == 0
    assert eeg.stats.samples == eeg_rec.n_samples
    assert eeg.stats.errors == 0


def test_one_modality_gets_only_its_rows(recorder):
    source = open_source("brainflow:SYNTHETIC_BOARD", "eeg")
    try:
        source.start(recorder)
        assert recorder.wait_samples(25, timeout=3.0)
    finally:
        source.stop()
    assert recorder.data().shape[1] == 16  # the descriptor's EEG rows, none of the other 16 rows
    assert source.info.channel_names[:3] == ("Fz", "C3", "Cz")
    assert_board_free()


def test_stopping_one_modality_keeps_the_other_running(two_recorders):
    eeg_rec, ecg_rec = two_recorders
    eeg = open_source("synthetic", "eeg")
    ecg = open_source("brainflow:synthetic", "ecg")  # same board, same params: joins the session
    assert ecg.session is eeg.session
    assert ecg.info.n_channels == 16
    eeg.start(eeg_rec)
    ecg.start(ecg_rec)
    try:
        assert ecg_rec.wait_samples(10)
        eeg.stop()
        n = ecg_rec.n_samples
        assert ecg_rec.wait_samples(n + 25, timeout=2.0)
    finally:
        ecg.stop()
    assert_board_free()


def test_never_started_source_releases_the_board():
    source = open_source("synthetic", "eeg")
    with pytest.raises(Exception, match="ANOTHER_BOARD_IS_CREATED"):
        assert_board_free()
    source.stop()
    source.stop()
    assert_board_free()
    assert not bf._REGISTRY


def test_other_parameters_mean_another_board_session():
    eeg = open_source("synthetic", "eeg")
    ecg = open_source("brainflow:synthetic?timeout=3", "ecg")  # BrainFlow allows it: a different "board"
    try:
        assert ecg.session is not eeg.session
    finally:
        eeg.stop()
        ecg.stop()
    assert not bf._REGISTRY


def test_a_failing_sink_does_not_stop_acquisition(recorder):
    calls = []

    def bad_sink(chunk):
        calls.append(chunk.n_samples)
        if len(calls) <= 3:
            raise ValueError("downstream bug")
        recorder(chunk)

    source = open_source("synthetic", "ecg")
    try:
        source.start(bad_sink)
        assert recorder.wait_samples(10, timeout=3.0)
    finally:
        source.stop()
    assert source.stats.extra["sink_errors"] == 3


@pytest.mark.parametrize("spec", ["brainflow:cyton", "brainflow:0", "brainflow:Cyton_Board", "brainflow:cyton-daisy"])
def test_board_names_and_ids(spec):
    assert board_from_name(spec.split(":")[1]) in (0, 2)


def test_unknown_board_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        open_source("brainflow:cytron", "eeg")
    assert "cytron" in str(err.value)
    assert "synthetic (-1)" in str(err.value)
    assert "cyton (0)" in str(err.value)
    with pytest.raises(ConfigError, match="unknown BrainFlow board"):
        open_source("brainflow:9999", "eeg")


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        open_source("brainflow:cyton?port=/dev/ttyUSB0", "eeg")
    assert "'port'" in str(err.value)
    assert "serial_port" in str(err.value)
    assert "mac_address" in str(err.value)
    with pytest.raises(ConfigError, match="ip_port must be an integer"):
        open_source("brainflow:synthetic?ip_port=eighty", "eeg")
    with pytest.raises(ConfigError, match="serial_port"):
        open_source("profile:brainflow-synthetic?serialport=x", "eeg")


def test_board_without_ecg_rows_says_so():
    with pytest.raises(ConfigError, match="no ECG rows"):
        open_source("brainflow:muse_2", "ecg")


def test_board_that_fails_to_prepare_gives_a_clear_error():
    port = f"/dev/ttyRTP{uuid.uuid4().hex[:6]}"
    with pytest.raises(SourceError) as err:
        open_source(f"brainflow:cyton?serial_port={port}", "eeg")
    msg = str(err.value)
    assert msg.startswith(f"board cyton on {port} failed to prepare: UNABLE_TO_OPEN_PORT_ERROR.")
    assert "BrainFlow says:" in msg  # BrainFlow's own explanation, captured from its logger
    assert not bf._REGISTRY  # nothing half-open is left behind
    with pytest.raises(SourceError, match="UNABLE_TO_OPEN_PORT_ERROR"):
        open_source(f"profile:openbci-cyton?serial_port={port}", "eeg")


def test_playback_file_board_replays_a_recording_with_fresh_timestamps(tmp_path, recorder):
    from brainflow.data_filter import DataFilter

    board = BoardShim(SYNTHETIC, BrainFlowInputParams())
    board.prepare_session()
    board.start_stream()
    time.sleep(0.6)
    recorded = board.get_board_data()
    board.stop_stream()
    board.release_session()
    path = tmp_path / "recording.csv"
    DataFilter.write_file(recorded, str(path), "w")

    source = open_source(f"brainflow:playback_file?file={path}&master_board=synthetic", "eeg")
    assert source.info.sfreq == 250  # the layout of the master board
    assert source.info.channel_names[:2] == ("Fz", "C3")
    source.start(recorder)
    try:
        assert recorder.wait_samples(100, timeout=3.0)
    finally:
        source.stop()
    got = recorder.data()
    np.testing.assert_allclose(got, recorded[1:17, : len(got)].T, atol=1e-4)  # BrainFlow's CSV keeps 6 decimals
    assert abs(recorder.timestamps()[-1] - local_clock()) < 0.5  # stamped when played, on the engine clock


def test_playback_without_master_board_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="master_board"):
        open_source(f"brainflow:playback_file?file={tmp_path / 'x.csv'}", "eeg")


@given(start=st.integers(0, 255), length=st.integers(300, 1500), data=st.data())
@settings(max_examples=100, deadline=None)
def test_package_counter_counts_every_lost_sample_under_any_chunking(start, length, data):
    counter = (start + np.arange(length)) % 256  # a uint8 package counter, as the synthetic board and Cyton have
    # keep the first full cycle (the counter shows its maximum) and the last sample (a loss shows when the next
    # sample arrives), drop any others, at most 254 in a row (a whole counter cycle lost is invisible)
    keep = np.ones(length, bool)
    drops = data.draw(st.lists(st.integers(256, length - 2), max_size=length // 3, unique=True))  # last kept
    keep[drops] = False
    runs = np.diff(np.flatnonzero(np.concatenate(([True], keep, [True]))))
    assume(runs.max() <= 255)
    kept = counter[keep].astype(np.float64)
    cuts = sorted(data.draw(st.lists(st.integers(1, len(kept) - 1), max_size=20, unique=True)))
    packages = PackageCounter()
    total = sum(packages.update(part) for part in np.split(kept, cuts))
    assert total == packages.lost == len(drops)


@pytest.mark.slow
def test_synthetic_board_for_30_s_loses_no_sample(two_recorders):
    """Every sample drained: the board's own package counter (row 0) steps by exactly one, wrapping at 256."""
    from rt_physio.sources.brainflow import open_brainflow
    from rt_physio.sources.profiles import ModalityProfile

    counter_rec, ecg_rec = two_recorders
    counter = open_brainflow("synthetic", {}, "eeg", ModalityProfile("eeg", channels=("package",), rows=(0,)))
    ecg = open_source("synthetic", "ecg")
    assert ecg.session is counter.session
    try:
        counter.start(counter_rec)
        ecg.start(ecg_rec)
        started = local_clock()
        time.sleep(30.0)
        elapsed = local_clock() - started
    finally:
        counter.stop()
        ecg.stop()
    packages = counter_rec.data()[:, 0].astype(np.int64)
    steps = np.diff(packages) % 256
    assert (steps == 1).all(), f"{int((steps != 1).sum())} discontinuities in the package counter"
    assert abs(len(packages) - 250 * elapsed) < 250 * 0.5  # the board's 250 Hz, give or take its start-up
    assert counter.stats.extra["lost_samples"] == 0
    assert ecg.stats.extra["lost_samples"] == 0
    # one board session feeds both (each misses at most the chunks delivered before it attached / after it left)
    assert abs(ecg_rec.n_samples - counter_rec.n_samples) < 25
    ts = counter_rec.timestamps()
    assert (np.diff(ts) > 0).all()
    assert abs(ts[-1] - local_clock()) < 1.0
    assert_board_free()


def test_release_all_sessions_mid_run_the_board_is_prepared_again_and_samples_resume(recorder):
    source = open_source("synthetic", "eeg")
    try:
        source.start(recorder)
        assert recorder.wait_samples(50, timeout=5.0)
        BoardShim.release_all_sessions()  # what a crashed driver or another program can do to the board
        released_at = local_clock()
        n = recorder.n_samples
        assert recorder.wait_samples(n + 250, timeout=30.0), "no samples after the board was released"
    finally:
        source.stop()
    assert source.stats.extra["reconnects"] == 1
    assert source.last_error is None
    assert source.failure is None
    later = [c for c in recorder.chunks if c.received > released_at]
    assert later and all(abs(c.timestamps[-1] - c.received) < 0.5 for c in later)  # still on the engine clock
    assert_board_free()
    assert not bf._REGISTRY
