"""Delimited text files (``.csv``, ``.tsv``, ``.txt``; NeuroKit's example data).

A header row names one column per channel; there is no timing, so the caller gives the rate.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from rt_physio.errors import ConfigError, SourceError
from rt_physio.io._raw import RawChannel
from rt_physio.io.channels import UNIT_SCALES, channel_kind, scale_to_uv

__all__ = ["read_csv"]

_NOT_CHANNELS = ("", "index", "time", "timestamp", "timestamps", "t")


def read_csv(path: Path, rate: float | None, unit: str | None) -> list[RawChannel]:
    """Read every column of a delimited text file (``,``, ``;`` or tab, sniffed) as a channel.

    Parameters
    ----------
    path : Path
        The file.
    rate : float
        Sampling rate, Hz (the file has none).
    unit : str, optional
        The unit of every column; by default ECG columns are mV (NeuroKit's ECG) and every other column µV.

    Returns
    -------
    list of RawChannel
        One per column except index / time columns.

    Raises
    ------
    ConfigError
        No rate, a rate that is not positive, or an unknown unit.
    SourceError
        No header row, or rows that do not match it.
    """
    if rate is None:
        raise ConfigError(f"{path.name} is a CSV file, which has no timing: give its sampling rate (--rate HZ, or "
                          "rate=HZ in a replay: SPEC).")
    if isinstance(rate, bool) or not rate > 0:
        raise ConfigError(f"The 'rate' option must be a positive number of Hz, got {rate!r}.")
    if unit is not None and scale_to_uv(unit) is None:
        raise ConfigError(f"Unknown unit {unit!r}; use one of {sorted(UNIT_SCALES)}.")
    with path.open(newline="") as fh:
        sample = fh.read(4096)
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
        fh.seek(0)
        header = next(csv.reader(fh, delimiter=delimiter))
    header = [h.strip() for h in header]
    if not header or all(_is_number(h) for h in header):
        raise SourceError(f"{path.name} has no header row naming its columns (ECG, EEG channel names, …).")
    values = np.loadtxt(path, delimiter=delimiter, skiprows=1, ndmin=2, dtype=np.float64)
    if values.shape[1] != len(header):
        raise SourceError(f"{path.name}: the header names {len(header)} columns but the rows have {values.shape[1]}.")
    channels = []
    for j, label in enumerate(header):
        if label.lower() in _NOT_CHANNELS:
            continue
        kind = channel_kind(label)
        chosen = unit if unit is not None else ("mV" if kind == "ecg" else "uV")
        channels.append(RawChannel(label, kind, float(rate), chosen, values[:, j]))
    return channels


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
