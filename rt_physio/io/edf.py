"""EDF / EDF+ / BDF files (``.edf``, ``.bdf``, ``.rec``), read with pyedflib in physical units."""

from __future__ import annotations

from pathlib import Path

from rt_physio.errors import SourceError
from rt_physio.io._raw import RawChannel
from rt_physio.io.channels import channel_kind

__all__ = ["read_edf"]


def read_edf(path: Path) -> list[RawChannel]:
    """Read every signal of an EDF/BDF file, in the physical unit its header declares.

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    list of RawChannel
        One per signal, in file order; EDF+ labels (``EEG Fp1``, ``ECG ECG``) give the kind.

    Raises
    ------
    SourceError
        The file is not a readable EDF/BDF file.
    """
    import pyedflib

    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise SourceError(f"Cannot read {str(path)!r} as EDF/BDF: {exc}") from exc
    try:
        channels = []
        for i in range(reader.signals_in_file):
            label = str(reader.getLabel(i))
            channels.append(RawChannel(label, channel_kind(label), float(reader.getSampleFrequency(i)),
                                       str(reader.getPhysicalDimension(i)).strip(), reader.readSignal(i)))
        return channels
    finally:
        reader.close()
