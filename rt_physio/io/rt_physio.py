"""rt_physio's own recordings (``rt-physio run --record``), read back; the writer is :mod:`rt_physio.publish.recorder`.

:func:`read_sessions` reads every session of a recording folder into one :class:`~rt_physio.io.Recording` each
(raw signals with their engine-clock time stamps, the session's predictions, the folder's ``recording.json``);
:func:`read_rt_physio` hands one session to :func:`rt_physio.io.read_recording` for replay.
:func:`repair_recording` turns the journals a crash left behind into Parquet segments.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rt_physio.errors import ConfigError
from rt_physio.io._raw import RawChannel
from rt_physio.io.recording import Recording, Signal
from rt_physio.io.rt_physio_layout import (
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

__all__ = ["find_recording", "read_rt_physio", "read_sessions", "repair_recording"]

log = logging.getLogger(__name__)


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


def read_sessions(path: str | os.PathLike[str]) -> dict[str, Recording]:
    """Read every session of a recording (complete, or cut short by a crash) into memory.

    Parameters
    ----------
    path : path
        The recording folder (with ``recording.json``), or a ``--record`` folder holding exactly one recording.

    Returns
    -------
    dict[str, Recording]
        Session id -> its raw signals (``timestamps`` on the engine clock; ``offset`` from the session's first
        sample) and ``predictions``, in recorded order; ``meta`` is the folder's ``recording.json``.
    """
    folder = find_recording(path)
    meta = _load_meta(folder)
    sessions: dict[str, Recording] = {}
    for session, desc in meta["sessions"].items():
        signals: dict[str, Signal] = {}
        for modality, s in desc["streams"].items():
            table = _read_table(folder / session / modality, stream_schema(s["columns"]))
            stamps = table.column(0).to_numpy().astype(np.float64, copy=False)
            data = np.empty((table.num_rows, len(s["columns"])), dtype=np.float32)
            for c in range(len(s["columns"])):
                data[:, c] = table.column(c + 1).to_numpy()
            signals[modality] = Signal(modality, data, float(s["sfreq"]), tuple(s["channel_names"]),
                                       units=tuple(s["units"]), timestamps=stamps, name=s["name"],
                                       source_id=s["source_id"])
        starts = [float(sig.timestamps[0]) for sig in signals.values()
                  if sig.timestamps is not None and sig.n_samples]
        t0 = min(starts, default=0.0)
        signals = {m: _with_offset(sig, t0) for m, sig in signals.items()}
        table = _read_table(folder / session / PREDICTIONS, prediction_schema(desc["outputs"]))
        predictions = tuple(json.loads(m) for m in table.column("message").to_pylist())
        sessions[session] = Recording(folder, "rt_physio", signals, name=f"{folder.name}/{session}", session=session,
                                      predictions=predictions, meta=meta)
    return sessions


def _with_offset(sig: Signal, t0: float) -> Signal:
    if sig.timestamps is None or not sig.n_samples:
        return sig
    return Signal(sig.modality, sig.data, sig.sfreq, sig.channel_names, float(sig.timestamps[0]) - t0, sig.units,
                  sig.timestamps, sig.name, sig.source_id)


def read_rt_physio(path: Path, session: str | None) -> list[RawChannel]:
    """Read the raw channels of one session of a recording (already µV), for :func:`rt_physio.io.read_recording`.

    Raises
    ------
    ConfigError
        Several sessions and none chosen, or an unknown session.
    """
    sessions = read_sessions(path.parent if path.name == META_FILE else path)
    names = list(sessions)
    where = find_recording(path.parent if path.name == META_FILE else path).name
    if session is None:
        if len(names) != 1:
            raise ConfigError(f"{where} recorded sessions {names}; choose one with session=<id> (--session).")
        session = names[0]
    if session not in sessions:
        raise ConfigError(f"{where} has no session {session!r}; its sessions: {', '.join(names)}.")
    channels = []
    for sig in sessions[session].signals.values():
        if not sig.n_samples:
            continue
        assert sig.timestamps is not None  # read_sessions always sets them
        gaps = np.diff(sig.timestamps) > 1.5 / sig.sfreq
        if gaps.any():
            log.warning("%s: the %s stream has %d gaps; it is replayed on a regular %g Hz schedule without them",
                        where, sig.modality.upper(), int(gaps.sum()), sig.sfreq)
        channels += [RawChannel(label, sig.modality, sig.sfreq, "uV", sig.data[:, j], sig.offset)
                     for j, label in enumerate(sig.channel_names)]
    return channels


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
