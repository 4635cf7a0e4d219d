"""Unlabelled ECG corpora for pre-training: PhysioNet WFDB records and NeuroKit-style CSV files.

WFDB records are read with the ``wfdb`` package in physical units; only the ECG leads are kept (signals in a
voltage unit whose name is not a known non-ECG signal such as PLETH, RESP, ABP). NeuroKit CSV files have an
``ECG`` column and no time stamps; the rate comes from the file name (``..._100hz.csv``) or the caller, and the
values are taken as millivolts (NeuroKit's example data) unless told otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rt_physio.training.datasets.base import DatasetError, Recording, Signal, to_microvolts

__all__ = ["load_neurokit_csv", "load_wfdb_record"]

_NON_ECG = re.compile(r"^(pleth|resp|abp|art|pap|cvp|icp|spo2|co2|bp|eeg|emg|eog|ppg|rsp|eda|gsr)", re.IGNORECASE)
_RATE_IN_NAME = re.compile(r"(\d+(?:\.\d+)?)\s*hz", re.IGNORECASE)


def load_wfdb_record(path: str | Path) -> Recording:
    """Load the ECG leads of a WFDB record.

    Parameters
    ----------
    path : str | Path
        The record's ``.hea`` file, or its path without extension.

    Returns
    -------
    Recording
        ``signals["ecg"]`` with every ECG lead in µV (NaN samples stay NaN: the engine's hygiene repairs them).

    Raises
    ------
    DatasetError
        Unreadable record, or no ECG lead in it.
    """
    import wfdb

    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".hea", ".dat") else path
    try:
        record = wfdb.rdrecord(str(base), physical=True)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{base}.hea: not a readable WFDB record ({exc}).") from exc
    names = list(record.sig_name or [])
    units = list(record.units or [""] * len(names))
    rows: list[np.ndarray] = []
    leads: list[str] = []
    for i, (name, unit) in enumerate(zip(names, units, strict=True)):
        if _NON_ECG.match(name):
            continue
        try:
            factor = to_microvolts(unit, f"{base}.hea: signal {name!r}")
        except DatasetError:
            continue  # not a voltage (NU, mmHg, ...): not an ECG lead
        rows.append(np.asarray(record.p_signal[:, i], dtype=np.float64) * factor)
        leads.append(str(name))
    if not rows:
        raise DatasetError(f"{base}.hea: no ECG lead (signals {names} in units {units}).")
    data = np.stack(rows).astype(np.float32)
    return Recording(subject=base.name, name=base.name, source=base.with_suffix(".hea"),
                     signals={"ecg": Signal(data, float(record.fs), tuple(leads))}, labels={}, condition="unlabelled")


def load_neurokit_csv(path: str | Path, sfreq: float | None = None, unit: str = "mV",
                      column: str = "ECG") -> Recording:
    """Load the ECG column of a NeuroKit-style CSV file.

    Parameters
    ----------
    path : str | Path
        The CSV file (header row, one column per signal).
    sfreq : float | None
        Sampling rate; by default parsed from the file name (``ecg_1000hz.csv``).
    unit : str
        Unit of the values (NeuroKit's example data are in mV).
    column : str
        Column to read (case-insensitive).

    Raises
    ------
    DatasetError
        No such column, no rate, or non-numeric values.
    """
    import pandas as pd

    path = Path(path)
    if sfreq is None:
        match = _RATE_IN_NAME.search(path.stem)
        if match is None:
            raise DatasetError(f"{path}: no sampling rate in the file name (e.g. '_100hz'); pass sfreq.")
        sfreq = float(match.group(1))
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc}).") from exc
    lookup = {str(c).strip().lower(): c for c in frame.columns}
    if column.lower() not in lookup:
        raise DatasetError(f"{path}: channel {column!r} is missing (columns: {list(frame.columns)}).")
    try:
        values = frame[lookup[column.lower()]].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: column {column!r} is not numeric ({exc}).") from exc
    data = (values * to_microvolts(unit, f"{path}: column {column!r}"))[None, :].astype(np.float32)
    return Recording(subject=path.stem, name=path.stem, source=path,
                     signals={"ecg": Signal(data, float(sfreq), (column,))}, labels={}, condition="unlabelled")
