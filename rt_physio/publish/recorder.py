"""Record raw streams and predictions to disk, crash-safely, off the hot path; read recordings back.

Writing (``rt-physio run --record DIR``): :class:`Recorder` makes a new folder ``DIR/<UTC start>`` per run. The
engine hands it every raw chunk (before any filtering) and every prediction; both calls only append to a queue
bounded in items and in bytes (when the disk stalls, the oldest queued data are dropped, counted per session and
logged) and a writer thread does the I/O.

Layout of one recording::

    recording.json                       what was recorded (see below); "complete": false until a clean stop
    <session>/<modality>/part-00000.parquet, part-00001.parquet, …     raw samples, one segment per minute
    <session>/<modality>/_journal-00002.arrows                          the segment being written (live / crash)
    <session>/predictions/part-….parquet (+ _journal-….arrows)          every prediction of the session

Raw tables: column 0 ``timestamp`` (float64, engine clock: ``pylsl.local_clock()`` seconds), then one float32
column per channel, in microvolts, in the stream's channel order (columns are named after the channels; the exact
names and units are in ``recording.json``). Prediction tables: ``seq``, ``t_start``, ``t_end``, ``t_wall``, one
``out_<name>`` column per model output, ``modalities``, ``quality_<modality>``, ``latency_total_ms`` and
``message`` (the full ``rt_physio.prediction/1`` JSON).

Crash safety: Parquet files are only readable once their footer is written, so the current segment is journaled
in the Arrow IPC *streaming* format (same schema), appended every ``flush_s`` (0.25 s) with unbuffered writes
that reach the kernel at once (and are fsync'ed every second): a ``kill -9`` loses what was queued or pending,
at most about half a second. Each minute the segment is written as Parquet (temporary file, fsync, rename) and
its journal removed. A journal cut short by a crash is readable up to its last complete batch. Journal names
start with ``_`` so Parquet tools that read a folder (pandas, pyarrow.dataset, Spark) skip them;
:func:`rt_physio.io.repair_recording` turns the journals of a crashed recording into Parquet.

``recording.json``: ``format`` (``rt_physio.recording/1``), ``complete``, ``t0_local`` / ``t0_wall`` (the same
instant on the engine clock and in Unix time: ``wall = t + t0_wall - t0_local``), ``model``, ``window_s``,
``hop_s``, and ``sessions``: ``{session: {"streams": {modality: {"name", "source_id", "sfreq",
"channel_names", "units", "columns"}}, "outputs": [...]}}``; after a clean stop also ``t_stop_local``,
``chunks``, ``predictions``, ``dropped``, ``dropped_by_session``, ``write_errors``.

Reading (for analysis and for ``rt-physio replay``)::

    from rt_physio.io import read_sessions
    sessions = read_sessions("recordings/20260101T120000Z")  # or the --record DIR when it holds one recording
    rec = sessions["default"]                                # rt_physio.io.Recording of one session
    eeg = rec.signals["eeg"]                                 # rt_physio.io.Signal
    eeg.data            # float32 (samples, channels), µV, as the source delivered it
    eeg.timestamps      # float64 (samples,), engine clock; rec.to_wall(eeg.timestamps) gives Unix time
    eeg.channel_names, eeg.units, eeg.sfreq, eeg.name, eeg.source_id
    rec.predictions                                          # the rt_physio.prediction/1 dicts, by seq
    rec.complete                                             # False: the engine was killed (data up to ~0.5 s before)

Any Parquet reader works too, e.g. ``pandas.read_parquet("…/default/eeg")``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from rt_physio.clock import local_clock
from rt_physio.errors import ConfigError
from rt_physio.io.rt_physio_layout import (
    FORMAT_ID,
    META_FILE,
    PREDICTIONS,
    channel_columns,
    fsync_dir,
    journal_path,
    part_path,
    prediction_schema,
    stream_schema,
    write_json_atomic,
    write_parquet,
)
from rt_physio.publish.schema import Prediction
from rt_physio.queues import DropOldestQueue
from rt_physio.sources.base import MODALITIES, Chunk, Modality, StreamInfo

# The reader is rt_physio.io.read_sessions (rt_physio.io.read_recording for one session).
__all__ = ["FORMAT_ID", "Recorder"]

log = logging.getLogger(__name__)


class _Table:
    """One append-only table (a raw stream or a session's predictions): Parquet segments + the live journal."""

    def __init__(self, folder: Path, schema: pa.Schema, segment_s: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.schema = schema
        self.segment_s = segment_s
        self.k = 0
        self.rows = 0
        self._batches: list[pa.RecordBatch] = []
        self._file: Any = None
        self._writer: Any = None
        self._opened = 0.0

    def append(self, batch: pa.RecordBatch, now: float) -> None:
        if self._writer is None:
            self._file = journal_path(self.folder, self.k).open("wb", buffering=0)  # every write reaches the kernel
            fsync_dir(self.folder)  # the journal's name must survive a power cut too
            self._writer = pa.ipc.new_stream(self._file, self.schema)
            self._opened = now
        self._writer.write_batch(batch)
        self._batches.append(batch)
        self.rows += batch.num_rows
        if now - self._opened >= self.segment_s:
            self.seal()

    def sync(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())

    def seal(self) -> None:
        """Turn the current segment into ``part-k.parquet`` and remove its journal."""
        if self._writer is None:
            return
        self._writer.close()
        self._file.close()
        self._writer = self._file = None
        write_parquet(pa.Table.from_batches(self._batches, schema=self.schema), part_path(self.folder, self.k))
        journal_path(self.folder, self.k).unlink()
        self._batches = []
        self.k += 1

    def abandon(self) -> None:
        """After a failed write: leave the current journal as it is (readable up to the failure), start anew.

        Appending after a torn batch would hide everything after it from readers, so the next batch goes to a
        fresh segment instead.
        """
        for closable in (self._writer, self._file):
            try:
                if closable is not None:
                    closable.close()
            except Exception:  # the stream is broken anyway (disk full, I/O error)
                pass
        self._writer = self._file = None
        self._batches = []
        self.k += 1


_ITEM_OVERHEAD = 256  # bytes of a queued item besides its arrays (objects, references)
_PREDICTION_BYTES = 4096  # a queued prediction: the object and the message it becomes, generously


@dataclass(slots=True)
class _Item:
    key: tuple[str, str]
    data: NDArray[np.float32] | None = None
    timestamps: NDArray[np.float64] | None = None
    prediction: Prediction | None = None

    @property
    def nbytes(self) -> int:
        """Memory the item holds while it waits in the queue (about)."""
        if self.prediction is not None:
            return _PREDICTION_BYTES
        arrays = (self.data.nbytes if self.data is not None else 0) + (
            self.timestamps.nbytes if self.timestamps is not None else 0)
        return _ITEM_OVERHEAD + arrays


class Recorder:
    """Write raw chunks and predictions of every session to ``root/<UTC start>/`` from a dedicated thread.

    Parameters
    ----------
    root : path
        Folder for recordings (created if missing); each run gets its own sub-folder (:attr:`path`).
    streams : mapping
        ``{session: {modality: StreamInfo}}`` of everything that will be recorded.
    outputs : sequence of str
        The model's output names (one prediction column each).
    info : mapping, optional
        Extra metadata for ``recording.json`` (model, window, hop …).
    flush_s : float
        Interval at which queued data are appended to the journals.
    segment_s : float
        Length of one Parquet segment (wall-clock seconds of recording).
    queue_size : int
        Chunks/predictions waiting for the writer before the oldest is dropped (and counted).
    queue_bytes : int
        Bytes of chunks/predictions waiting for the writer before the oldest is dropped (and counted); the
        default, 64 MiB, holds about two minutes of four sessions of 64-channel EEG at 500 Hz while the disk
        stalls.
    """

    def __init__(self, root: str | os.PathLike[str], streams: Mapping[str, Mapping[Modality, StreamInfo]],
                 outputs: Sequence[str], *, info: Mapping[str, Any] | None = None, flush_s: float = 0.25,
                 segment_s: float = 60.0, queue_size: int = 65536, queue_bytes: int = 64 << 20) -> None:
        if not 0 < flush_s <= 1.0:
            raise ValueError(f"The 'flush_s' parameter must be in (0, 1] s, got {flush_s}.")
        if segment_s < flush_s:
            raise ValueError(f"The 'segment_s' parameter must be at least flush_s, got {segment_s}.")
        bad = [sid for sid in streams if sid in (".", "..") or "/" in sid]
        if bad:
            raise ConfigError(f"Session id(s) {bad} cannot name a folder of the recording.")
        self.path = _new_folder(Path(root))
        self.flush_s = flush_s
        self._dropped_by_session: Counter[str] = Counter()
        self._queue: DropOldestQueue[_Item] = DropOldestQueue(
            queue_size, max_bytes=queue_bytes, size=lambda item: item.nbytes, on_drop=self._count_drop)
        self._outputs = list(outputs)
        self._tables: dict[tuple[str, str], _Table] = {}
        sessions: dict[str, Any] = {}
        for session, by_modality in streams.items():
            described = {}
            for modality, stream in by_modality.items():
                columns = channel_columns(stream.channel_names)
                described[modality] = {
                    "name": stream.name, "source_id": stream.source_id, "sfreq": stream.sfreq,
                    "channel_names": list(stream.channel_names), "units": [stream.units] * stream.n_channels,
                    "columns": columns,
                }
                self._tables[(session, modality)] = _Table(self.path / session / modality, stream_schema(columns),
                                                           segment_s)
            sessions[session] = {"streams": described, "outputs": self._outputs}
            self._tables[(session, PREDICTIONS)] = _Table(self.path / session / PREDICTIONS,
                                                          prediction_schema(self._outputs), segment_s)
        t0_local, t0_wall = local_clock(), time.time()
        self.meta: dict[str, Any] = {"format": FORMAT_ID, "complete": False, "t0_local": t0_local,
                                     "t0_wall": t0_wall, **(info or {}), "sessions": sessions}
        try:
            write_json_atomic(self.path / META_FILE, self.meta)
        except OSError as exc:
            raise ConfigError(f"Cannot write the recording in {self.path}: {exc.strerror or exc}.") from exc
        self.chunks = 0
        self.predictions = 0
        self.write_errors = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()
        log.info("recording to %s", self.path)

    @property
    def dropped(self) -> int:
        """Items dropped because the writer fell behind (disk too slow or stalled), all sessions."""
        return self._queue.dropped

    def dropped_for(self, session: str) -> int:
        """Items of ``session`` (raw chunks and predictions) dropped because the writer fell behind."""
        return self._dropped_by_session.get(session, 0)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for the writer now (bounded by ``queue_bytes``)."""
        return self._queue.bytes

    @property
    def queued(self) -> int:
        """Items (raw chunks and predictions, all sessions) waiting for the writer now."""
        return len(self._queue)

    def _count_drop(self, item: _Item) -> None:  # under the queue's lock: producers of every session call put
        self._dropped_by_session[item.key[0]] += 1

    # -- producers (any thread, never block) ---------------------------------------------------------------------
    def record_chunk(self, session: str, modality: Modality, chunk: Chunk) -> None:
        """Queue a raw chunk (copied: the source may reuse its buffers)."""
        self._put(_Item((session, modality), chunk.data.copy(), chunk.timestamps.copy()))

    def record_prediction(self, prediction: Prediction) -> None:
        """Queue a prediction (it must not be modified afterwards)."""
        self._put(_Item((prediction.session, PREDICTIONS), prediction=prediction))

    def _put(self, item: _Item) -> None:
        if self._queue.put(item) is not None:
            n = self._queue.dropped
            if n == 1 or n % 1000 == 0:
                log.error("recorder: the writer is behind (disk slow?), dropped the oldest queued data (%d so far)", n)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, seal every segment as Parquet and mark the recording complete."""
        if self._closed:
            return
        self._closed = True
        self._queue.close()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("recorder: writer did not finish within %.0f s; %s stays readable (journals)", timeout,
                      self.path)

    # -- writer thread -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        pending: dict[tuple[str, str], list[_Item]] = {}
        next_flush = local_clock() + self.flush_s
        next_sync = local_clock() + 1.0
        while True:
            item = self._queue.get(timeout=max(0.0, next_flush - local_clock()))
            if item is not None:
                pending.setdefault(item.key, []).append(item)
            now = local_clock()
            finished = item is None and self._queue.closed
            if now >= next_flush or finished:
                self._flush(pending, now, sync=now >= next_sync or finished)
                pending.clear()
                next_flush = now + self.flush_s
                if now >= next_sync:
                    next_sync = now + 1.0
            if finished:
                break
        self._finish()

    def _flush(self, pending: Mapping[tuple[str, str], list[_Item]], now: float, sync: bool) -> None:
        for key, items in pending.items():
            table = self._tables.get(key)
            try:
                if table is None:
                    raise KeyError(f"nothing was declared for {key}")
                table.append(self._batch(key, items, table.schema), now)
                if key[1] == PREDICTIONS:
                    self.predictions += len(items)
                else:
                    self.chunks += len(items)
            except Exception:
                self.write_errors += 1
                if self.write_errors == 1 or self.write_errors % 100 == 0:
                    log.exception("recorder: could not write %s/%s (%d write errors)", *key, self.write_errors)
                if table is not None:
                    table.abandon()
        if sync:
            for table in self._tables.values():
                try:
                    table.sync()
                except OSError:
                    self.write_errors += 1

    def _batch(self, key: tuple[str, str], items: Sequence[_Item], schema: pa.Schema) -> pa.RecordBatch:
        if key[1] != PREDICTIONS:
            data = np.concatenate([i.data for i in items if i.data is not None])
            stamps = np.concatenate([i.timestamps for i in items if i.timestamps is not None])
            columns = np.ascontiguousarray(data.T)  # (channels, samples): each column a contiguous row
            return pa.record_batch([pa.array(stamps), *(pa.array(c) for c in columns)], schema=schema)
        msgs = [i.prediction.to_message() for i in items if i.prediction is not None]
        cols: dict[str, list[Any]] = {name: [] for name in schema.names}
        for m in msgs:
            for name in ("seq", "t_start", "t_end", "t_wall"):
                cols[name].append(m[name])
            for out in self._outputs:
                cols[f"out_{out}"].append(m["outputs"].get(out, float("nan")))
            cols["modalities"].append(",".join(m["modalities"]))
            for modality in MODALITIES:
                cols[f"quality_{modality}"].append(m["quality"].get(modality, float("nan")))
            cols["latency_total_ms"].append(m["latency_ms"].get("total", float("nan")))
            cols["message"].append(json.dumps(m, separators=(",", ":")))
        return pa.record_batch([pa.array(cols[n], type=schema.field(n).type) for n in schema.names], schema=schema)

    def _finish(self) -> None:
        for key, table in self._tables.items():
            try:
                table.seal()
            except Exception:
                self.write_errors += 1
                log.exception("recorder: could not seal %s/%s (its journal stays readable)", *key)
        self.meta.update(complete=True, t_stop_local=local_clock(), chunks=self.chunks,
                         predictions=self.predictions, dropped=self.dropped,
                         dropped_by_session=dict(self._dropped_by_session), write_errors=self.write_errors)
        try:
            write_json_atomic(self.path / META_FILE, self.meta)
        except OSError:
            log.exception("recorder: could not update %s", self.path / META_FILE)
        log.info("recording finished: %s (%d chunks, %d predictions, %d dropped)", self.path, self.chunks,
                 self.predictions, self.dropped)


def _new_folder(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Cannot create the recording folder {root}: {exc.strerror}.") from exc
    if not os.access(root, os.W_OK):
        raise ConfigError(f"The recording folder {root} is not writable.")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1000):
        path = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"Cannot create a new recording folder in {root}.")
