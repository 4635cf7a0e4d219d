"""On-disk layout of an rt_physio recording, shared by its writer and its reader.

The format itself is described in :mod:`rt_physio.publish.recorder` (the writer); reading is
:mod:`rt_physio.io.rt_physio`. Both import this module, so neither imports the other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rt_physio.io.channels import MODALITIES

FORMAT_ID = "rt_physio.recording/1"
META_FILE = "recording.json"
PREDICTIONS = "predictions"


def part_path(folder: Path, k: int) -> Path:
    """Sealed segment ``k`` of a table."""
    return folder / f"part-{k:05d}.parquet"


def journal_path(folder: Path, k: int) -> Path:
    """Live (or crash-left) journal of segment ``k``."""
    return folder / f"_journal-{k:05d}.arrows"


def channel_columns(channel_names: Sequence[str]) -> list[str]:
    """Column names for the channels: the names themselves when usable, else ``ch<i>_<name>``."""
    ok = len(set(channel_names)) == len(channel_names) and "timestamp" not in channel_names and all(channel_names)
    return list(channel_names) if ok else [f"ch{i}_{name}" for i, name in enumerate(channel_names)]


def stream_schema(columns: Sequence[str]) -> pa.Schema:
    """Arrow schema of a raw stream table."""
    return pa.schema([("timestamp", pa.float64()), *((c, pa.float32()) for c in columns)])


def prediction_schema(outputs: Sequence[str]) -> pa.Schema:
    """Arrow schema of a session's prediction table."""
    return pa.schema([("seq", pa.int64()), ("t_start", pa.float64()), ("t_end", pa.float64()),
                      ("t_wall", pa.float64()), *((f"out_{o}", pa.float64()) for o in outputs),
                      ("modalities", pa.string()), *((f"quality_{m}", pa.float64()) for m in MODALITIES),
                      ("latency_total_ms", pa.float64()), ("message", pa.string())])


def write_json_atomic(path: Path, obj: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``obj`` as JSON so that a crash leaves the old or the new file, never half of one."""
    tmp = path.with_name(f"_{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (new and renamed files) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_journal(path: Path, schema: pa.Schema) -> pa.Table:
    """Every complete batch of a journal file (a crash may have cut the last one short)."""
    return parse_journal(path.read_bytes(), schema)


def parse_journal(content: bytes, schema: pa.Schema) -> pa.Table:
    """Every complete batch of a journal's bytes; a torn last batch (or schema) is left out."""
    batches: list[pa.RecordBatch] = []
    try:
        reader = pa.ipc.open_stream(pa.BufferReader(content))
        while True:
            batches.append(reader.read_next_batch())
    except StopIteration:
        pass
    except (pa.ArrowInvalid, OSError, EOFError):
        pass  # torn tail (or no complete schema message yet): keep what came before
    return pa.Table.from_batches(batches, schema=schema)


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f"_{path.name}.tmp")
    pq.write_table(table, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
