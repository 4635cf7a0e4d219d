"""Unlabelled ECG corpora for pre-training: PhysioNet WFDB records and NeuroKit-style CSV files.

Both are read by :func:`rt_physio.io.read_recording`. WFDB records are read in physical units; only the ECG leads
are kept (typed by :func:`rt_physio.io.channel_kind`: lead names such as MLII, V5, aVR and anything named ECG, not
PLETH, RESP, ABP). NeuroKit CSV files have an ``ECG`` column and no time stamps; the rate comes from the file name
(``..._100hz.csv``) or the caller, and the values are taken as millivolts (NeuroKit's example data) unless told
otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

from rt_physio.errors import ConfigError, DatasetError, SourceError
from rt_physio.io import Recording, read_recording
from rt_physio.io.wfdb import wfdb_record_name

__all__ = ["load_neurokit_csv", "load_wfdb_record"]

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
    header = Path(wfdb_record_name(Path(path)) + ".hea")
    try:
        rec = read_recording(header, eeg_channels=[])
    except (ConfigError, SourceError) as exc:
        raise DatasetError(f"{header}: not a readable WFDB record, or no ECG lead in it ({exc}).") from exc
    base = header.with_suffix("")
    return Recording(header, rec.format, {"ecg": rec.signals["ecg"]}, name=base.name,
                     subject=base.name, condition="unlabelled")


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
    path = Path(path)
    if sfreq is None:
        match = _RATE_IN_NAME.search(path.stem)
        if match is None:
            raise DatasetError(f"{path}: no sampling rate in the file name (e.g. '_100hz'); pass sfreq.")
        sfreq = float(match.group(1))
    try:
        rec = read_recording(path, rate=sfreq, unit=unit, eeg_channels=[], ecg_channels=[column])
    except (ConfigError, SourceError) as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    return Recording(path, rec.format, {"ecg": rec.signals["ecg"]}, name=path.stem, subject=path.stem,
                     condition="unlabelled")
