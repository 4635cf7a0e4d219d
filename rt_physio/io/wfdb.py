"""PhysioNet WFDB records (a ``.hea`` header with its signal files), read with the wfdb package in physical units."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from rt_physio.errors import ConfigError
from rt_physio.io._raw import RawChannel
from rt_physio.io.channels import channel_kind

__all__ = ["read_wfdb", "wfdb_record_name"]


def wfdb_record_name(path: Path) -> str:
    """Return the record name (path without ``.hea``/``.dat``/``.mat``) wfdb reads a record by."""
    return str(path.with_suffix("")) if path.suffix.lower() in (".hea", ".dat", ".mat") else str(path)


def read_wfdb(path: Path) -> list[RawChannel]:
    """Read every signal of a WFDB record.

    Parameters
    ----------
    path : Path
        The record's ``.hea``, ``.dat`` or ``.mat`` (signal) file, or its name without a suffix.

    Returns
    -------
    list of RawChannel
        One per signal, in header order, in the header's units; WFDB's missing samples are NaN.

    Raises
    ------
    ConfigError
        The record has no header file.
    """
    with warnings.catch_warnings():  # wfdb 4.3.1 uses pandas APIs that pandas 3 deprecates, at import
        warnings.simplefilter("ignore", DeprecationWarning)
        import wfdb

    name = wfdb_record_name(path)
    if not Path(name + ".hea").is_file():
        raise ConfigError(f"WFDB record {name!r} has no header file {Path(name + '.hea').name}.")
    record = wfdb.rdrecord(name)
    signals = np.asarray(record.p_signal, dtype=np.float64)
    fs = float(record.fs)
    units = list(record.units or [""] * len(record.sig_name))
    return [RawChannel(str(label), channel_kind(str(label)), fs, str(units[j] or ""), signals[:, j])
            for j, label in enumerate(record.sig_name)]
