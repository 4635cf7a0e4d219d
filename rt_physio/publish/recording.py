"""Reading rt_physio recordings back (see :mod:`rt_physio.publish.recorder` for the format and an example)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from rt_physio.errors import ConfigError
from rt_physio.publish._layout import (
    FORMAT_ID,
    META_FILE,
    PREDICTIONS,
    journal_path,
    part_path,
    prediction_schema,
    read_journal,
    stream_schema,
    write_parquet,
)
from rt_physio.sources.base import Modality

__all__ = ["RecordedStream", "Recording", "find_recording", "read_recording", "repair_recording"]


@dataclass(frozen=True, slots=True)
class RecordedStream:
    """One recorded raw stream: samples as the source delivered them, with engine-clock timestamps."""

    session: str
    modality: Modality
    name: str
    source_id: str
    sfreq: float
    channel_names: tuple[str, ...]
    units: tuple[str, ...]
    data: NDArray[np.float32]  # (samples, channels)
    timestamps: NDArray[np.float64]  # (samples,)

    @property
    def n_samples(self) -> int:
        """Number of recorded samples."""
        return int(self.timestamps.shape[0])


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording read back by :func:`read_recording`."""

    path: Path
    meta: dict[str, Any]
    streams: dict[str, dict[Modality, RecordedStream]] = field(default_factory=dict)
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """False when the engine did not stop cleanly (killed, crashed, power cut)."""
        return bool(self.meta.get("complete", False))

    @property
    def sessions(self) -> list[str]:
        """Recorded session ids."""
        return list(self.meta["sessions"])

    def to_wall(self, t: NDArray[np.float64] | float) -> NDArray[np.float64] | float:
        """Convert engine-clock times to Unix time."""
        return t + (float(self.meta["t0_wall"]) - float(self.meta["t0_local"]))


def find_recording(path: str | os.PathLike[str]) -> Path:
    """Return the recording folder at ``path``: the folder itself, or the only recording inside a --record DIR."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    found = sorted(p.parent for p in path.glob(f"*/{META_FILE}")) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigError(f"No rt_physio recording at {path} (no {META_FILE} in it or in its sub-folders).")
    raise ConfigError(f"{path} holds {len(found)} recordings; pick one: {', '.join(p.name for p in found)}.")


def _load_meta(folder: Path) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{folder / META_FILE} is unreadable: {exc}.") from exc
    if meta.get("format") != FORMAT_ID:
        raise ConfigError(f"{folder / META_FILE}: unsupported format {meta.get('format')!r} (expected {FORMAT_ID}).")
    return meta


def _read_table(folder: Path, schema: pa.Schema) -> pa.Table:
    """All segments in order: each one's Parquet file when it was sealed, else its journal."""
    parts: list[pa.Table] = []
    indices = sorted({int(p.stem.split("-")[1]) for p in folder.glob("part-*.parquet")}
                     | {int(p.stem.split("-")[1]) for p in folder.glob("_journal-*.arrows")})
    for k in indices:
        if part_path(folder, k).is_file():
            parts.append(pq.read_table(part_path(folder, k), schema=schema))
        else:
            parts.append(read_journal(journal_path(folder, k), schema))
    return pa.concat_tables(parts) if parts else schema.empty_table()


def read_recording(path: str | os.PathLike[str]) -> Recording:
    """Read a recording (complete, or cut short by a crash) into memory.

    Parameters
    ----------
    path : path
        The recording folder (with ``recording.json``), or a ``--record`` folder holding exactly one recording.
    """
    folder = find_recording(path)
    meta = _load_meta(folder)
    streams: dict[str, dict[Modality, RecordedStream]] = {}
    predictions: dict[str, list[dict[str, Any]]] = {}
    for session, desc in meta["sessions"].items():
        streams[session] = {}
        for modality, s in desc["streams"].items():
            table = _read_table(folder / session / modality, stream_schema(s["columns"]))
            stamps = table.column(0).to_numpy().astype(np.float64, copy=False)
            data = np.empty((table.num_rows, len(s["columns"])), dtype=np.float32)
            for c in range(len(s["columns"])):
                data[:, c] = table.column(c + 1).to_numpy()
            streams[session][modality] = RecordedStream(
                session=session, modality=modality, name=s["name"], source_id=s["source_id"], sfreq=s["sfreq"],
                channel_names=tuple(s["channel_names"]), units=tuple(s["units"]), data=data, timestamps=stamps)
        table = _read_table(folder / session / PREDICTIONS, prediction_schema(desc["outputs"]))
        predictions[session] = [json.loads(m) for m in table.column("message").to_pylist()]
    return Recording(path=folder, meta=meta, streams=streams, predictions=predictions)


def repair_recording(path: str | os.PathLike[str]) -> list[Path]:
    """Turn the journals a crash left behind into Parquet segments, so any Parquet tool sees all the data.

    Returns the Parquet files written. Safe to run twice; do not run it on a recording that is still being
    written.
    """
    folder = find_recording(path)
    meta = _load_meta(folder)
    written: list[Path] = []
    for session, desc in meta["sessions"].items():
        tables = {m: stream_schema(s["columns"]) for m, s in desc["streams"].items()}
        tables[PREDICTIONS] = prediction_schema(desc["outputs"])
        for name, schema in tables.items():
            for journal in sorted((folder / session / name).glob("_journal-*.arrows")):
                k = int(journal.stem.split("-")[1])
                if not part_path(folder / session / name, k).is_file():
                    write_parquet(read_journal(journal, schema), part_path(folder / session / name, k))
                    written.append(part_path(folder / session / name, k))
                journal.unlink()
    return written
