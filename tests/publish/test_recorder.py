"""Recorder: what goes in comes back out, segments seal into Parquet, and a crash at any byte leaves a prefix."""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rt_physio.errors import ConfigError
from rt_physio.io import read_sessions, repair_recording
from rt_physio.io.rt_physio_layout import journal_path, parse_journal, stream_schema
from rt_physio.publish.recorder import Recorder
from rt_physio.publish.schema import validate
from rt_physio.sources.base import Chunk, Modality, StreamInfo
from tests.publish._brokers import sample_prediction

EEG = StreamInfo("eeg-dev", "eeg", 128.0, ("Fz", "Cz", "Pz", "Oz"), source_id="eeg-uid")
ECG = StreamInfo("strap", "ecg", 130.0, ("ECG", "ECG"), units="uV")  # duplicate names: columns get disambiguated
F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity


def _chunks(info: StreamInfo, n: int, size: int, seed: int, t0: float = 100.0) -> list[Chunk]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        data = rng.normal(0, 50, (size, info.n_channels)).astype(np.float32)
        stamps = t0 + (k * size + np.arange(size)) / info.sfreq
        out.append(Chunk(data, stamps, received=float(stamps[-1])))
    return out


def _recorder(root: Path, **kwargs: float) -> Recorder:
    return Recorder(root, {"alice": {"eeg": EEG, "ecg": ECG}}, ["arousal", "valence"],
                    info={"window_s": 2.0}, **kwargs)  # type: ignore[arg-type]


def _feed(rec: Recorder, modality: Modality, chunks: list[Chunk], pause: float = 0.0) -> None:
    for chunk in chunks:
        rec.record_chunk("alice", modality, chunk)
        if pause:
            time.sleep(pause)


def test_round_trip_from_two_threads(tmp_path: Path) -> None:
    rec = _recorder(tmp_path / "recs")
    eeg, ecg = _chunks(EEG, 50, 4, seed=1), _chunks(ECG, 20, 13, seed=2)
    threads = [threading.Thread(target=_feed, args=(rec, "eeg", eeg)),
               threading.Thread(target=_feed, args=(rec, "ecg", ecg))]
    for t in threads:
        t.start()
    for seq in range(3):
        rec.record_prediction(sample_prediction(seq, session="alice"))
    for t in threads:
        t.join()
    rec.close()
    back = read_sessions(tmp_path / "recs")  # the --record folder holding one recording
    assert list(back) == ["alice"]
    assert back["alice"].path == rec.path
    assert back["alice"].complete
    got = back["alice"].signals["eeg"]
    assert (got.name, got.source_id, got.sfreq, got.channel_names, got.units) == (
        "eeg-dev", "eeg-uid", 128.0, ("Fz", "Cz", "Pz", "Oz"), ("uV",) * 4)
    np.testing.assert_array_equal(got.data, np.concatenate([c.data for c in eeg]))
    np.testing.assert_array_equal(got.timestamps, np.concatenate([c.timestamps for c in eeg]))
    ecg_back = back["alice"].signals["ecg"]
    assert ecg_back.channel_names == ("ECG", "ECG")
    np.testing.assert_array_equal(ecg_back.data, np.concatenate([c.data for c in ecg]))
    assert [p["seq"] for p in back["alice"].predictions] == [0, 1, 2]
    for message in back["alice"].predictions:
        validate(message)
    meta = back["alice"].meta
    assert meta["window_s"] == 2.0
    assert meta["chunks"] == 70 and meta["predictions"] == 3 and meta["dropped"] == 0
    # any Parquet reader sees the same data; the prediction table has one column per output
    table = pq.read_table(rec.path / "alice" / "eeg")
    assert table.column_names == ["timestamp", "Fz", "Cz", "Pz", "Oz"]
    assert table.num_rows == 200
    preds = pq.read_table(rec.path / "alice" / "predictions")
    assert preds.column("out_arousal").to_pylist() == [0.25, 0.25, 0.25]
    assert pq.read_table(rec.path / "alice" / "ecg").column_names == ["timestamp", "ch0_ECG", "ch1_ECG"]
    assert list(rec.path.rglob("_journal-*")) == []


def test_segments_seal_into_parquet_while_recording(tmp_path: Path) -> None:
    rec = _recorder(tmp_path, flush_s=0.05, segment_s=0.2)
    eeg = _chunks(EEG, 60, 4, seed=3)
    _feed(rec, "eeg", eeg, pause=0.01)
    deadline = time.monotonic() + 30.0  # the writer thread seals on its own schedule (later on a loaded machine)
    while len(list((rec.path / "alice" / "eeg").glob("part-*.parquet"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    sealed = sorted((rec.path / "alice" / "eeg").glob("part-*.parquet"))
    assert len(sealed) >= 2, "segments are sealed during the recording, not only at the end"
    rec.close()
    back = read_sessions(rec.path)
    np.testing.assert_array_equal(back["alice"].signals["eeg"].data, np.concatenate([c.data for c in eeg]))


def test_snapshot_of_a_live_recording_holds_all_but_the_last_second(tmp_path: Path) -> None:
    """A copy taken while the writer runs is what a kill -9 leaves behind."""
    rec = _recorder(tmp_path / "live", flush_s=0.1, segment_s=0.5)
    eeg = _chunks(EEG, 200, 4, seed=4)
    fed_at: list[float] = []
    for chunk in eeg[:150]:
        rec.record_chunk("alice", "eeg", chunk)
        fed_at.append(time.monotonic())
        time.sleep(0.005)
    snapshot_at = time.monotonic()
    shutil.copytree(rec.path, tmp_path / "crashed")
    rec.close()
    crashed = read_sessions(tmp_path / "crashed")
    assert not crashed["alice"].complete
    got = crashed["alice"].signals["eeg"]
    n_chunks = got.n_samples // 4
    assert got.n_samples % 4 == 0
    np.testing.assert_array_equal(got.data, np.concatenate([c.data for c in eeg[:n_chunks]]))  # a prefix
    older = sum(t < snapshot_at - 1.0 for t in fed_at)
    assert n_chunks >= older, f"lost chunks older than 1 s: kept {n_chunks}, {older} were older"
    # the journals a crash leaves behind can be turned into Parquet for other tools
    written = repair_recording(tmp_path / "crashed")
    assert written
    assert list((tmp_path / "crashed").rglob("_journal-*")) == []
    np.testing.assert_array_equal(read_sessions(tmp_path / "crashed")["alice"].signals["eeg"].data, got.data)


def test_a_journal_cut_at_any_byte_reads_as_a_prefix(tmp_path: Path) -> None:
    rec = _recorder(tmp_path / "full", flush_s=0.02, segment_s=60)
    eeg = _chunks(EEG, 12, 4, seed=5)
    _feed(rec, "eeg", eeg, pause=0.03)
    full = np.concatenate([c.data for c in eeg])
    schema = stream_schema(["Fz", "Cz", "Pz", "Oz"])
    deadline = time.monotonic() + 30.0  # until the writer thread has journalled every chunk (its own pace)
    content = b""
    while time.monotonic() < deadline:
        journals = list((rec.path / "alice" / "eeg").glob("_journal-*.arrows"))
        content = journals[0].read_bytes() if journals else b""
        if content and parse_journal(content, schema).num_rows == len(full):
            break
        time.sleep(0.02)
    journal = next((rec.path / "alice" / "eeg").glob("_journal-*.arrows"))
    rec.close()
    seen = set()
    for cut in range(len(content) + 1):
        table = parse_journal(content[:cut], schema)
        data = np.stack([table.column(c).to_numpy() for c in range(1, 5)], axis=1) if table.num_rows else full[:0]
        np.testing.assert_array_equal(data, full[: len(data)])
        np.testing.assert_array_equal(table.column(0).to_numpy(), np.concatenate([c.timestamps for c in eeg])[
            : table.num_rows])
        seen.add(len(data))
    assert len(seen) > 3  # several batch boundaries were crossed
    assert max(seen) == len(full)
    # and through the reader: a recording whose journal was cut mid-batch
    cut = (rec.path / "alice" / "eeg" / "part-00000.parquet")
    cut.unlink()
    journal.write_bytes(content[: len(content) - 5])
    data = read_sessions(rec.path)["alice"].signals["eeg"].data
    assert 0 < len(data) < len(full)
    np.testing.assert_array_equal(data, full[: len(data)])


def test_sealed_segment_wins_over_a_leftover_journal(tmp_path: Path) -> None:
    """A crash between writing part-k.parquet and removing its journal must not duplicate data."""
    rec = _recorder(tmp_path)
    _feed(rec, "eeg", _chunks(EEG, 10, 4, seed=6))
    rec.close()
    folder = rec.path / "alice" / "eeg"
    shutil.copy(folder / "part-00000.parquet", folder / "_journal-00000.arrows")  # unreadable as a journal
    assert read_sessions(rec.path)["alice"].signals["eeg"].n_samples == 40


def test_bad_places_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match="Cannot create the recording folder"):
        _recorder(tmp_path / "file")
    with pytest.raises(ConfigError, match="No rt_physio recording"):
        read_sessions(tmp_path)
    a, b = _recorder(tmp_path / "two"), _recorder(tmp_path / "two")
    a.close()
    b.close()
    with pytest.raises(ConfigError, match="holds 2 recordings"):
        read_sessions(tmp_path / "two")


def test_a_failed_write_costs_that_batch_only(tmp_path: Path) -> None:
    """After an I/O error the writer starts a new segment, so later data are not hidden behind a torn batch."""
    rec = _recorder(tmp_path, flush_s=0.05)
    chunks = _chunks(EEG, 30, 4, seed=7)
    first, lost, later = chunks[:10], chunks[10:20], chunks[20:]
    _feed(rec, "eeg", first)
    table = rec._tables[("alice", "eeg")]
    deadline = time.monotonic() + 5
    while table.rows < 40 and time.monotonic() < deadline:  # all of `first` is in the journal
        time.sleep(0.01)
    table._file.close()  # the journal's file breaks under the writer (as on an I/O error)
    _feed(rec, "eeg", lost)
    while rec.write_errors == 0 and time.monotonic() < deadline + 5:
        time.sleep(0.01)
    _feed(rec, "eeg", later)
    rec.close()
    assert rec.write_errors == 1
    got = read_sessions(rec.path)["alice"].signals["eeg"].data
    np.testing.assert_array_equal(got, np.concatenate([c.data for c in first + later]))


def test_a_stalled_disk_costs_at_most_the_byte_bound_and_every_drop_is_counted(tmp_path: Path) -> None:
    bound = 64 * 1024
    rec = _recorder(tmp_path / "recs", queue_bytes=bound)
    # The EEG journal is a FIFO of one page whose reader does not read, like a disk that stalls: the writer
    # thread gets its Arrow schema in, then blocks writing the first batch.
    fifo = journal_path(rec.path / "alice" / "eeg", 0)
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, F_SETPIPE_SZ, 4096)
    [first] = _chunks(EEG, 1, 1024, seed=3, t0=100.0)  # 24 KiB of samples and timestamps: more than the FIFO holds
    rec.record_chunk("alice", "eeg", first)
    deadline = time.monotonic() + 30
    while _unread(reader) == 0:  # the schema is in: the writer is now inside that one batch's write
        assert time.monotonic() < deadline, "the writer never opened its journal"
        time.sleep(0.01)
    later = _chunks(EEG, 200, 64, seed=4, t0=200.0)  # 1792 bytes each in the queue: 36 fit in the bound
    for chunk in later:
        rec.record_chunk("alice", "eeg", chunk)
        assert rec.queued_bytes <= bound
    assert rec.dropped == 200 - 36  # the oldest went, the newest 36 wait
    assert rec.queued == 36 and rec.queued_bytes == 36 * 1792
    assert rec.dropped_for("alice") == rec.dropped and rec.dropped_for("bob") == 0
    fcntl.fcntl(reader, fcntl.F_SETFL, 0)  # the disk comes back: drain the FIFO until the writer is done with it
    drain = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(reader, 65536), b"")])
    drain.start()
    rec.close()
    drain.join(30)
    os.close(reader)
    back = read_sessions(rec.path)
    got = back["alice"].signals["eeg"]
    expected = [first, *later[-36:]]
    np.testing.assert_array_equal(got.timestamps, np.concatenate([c.timestamps for c in expected]))
    np.testing.assert_array_equal(got.data, np.concatenate([c.data for c in expected]))
    assert back["alice"].meta["dropped"] == 164 and back["alice"].meta["dropped_by_session"] == {"alice": 164}


def _unread(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
