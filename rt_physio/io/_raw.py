"""A channel as a format reader hands it over: file units, its own rate, before grouping into signals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.io.channels import Modality


@dataclass(slots=True)
class RawChannel:
    """One channel of a file.

    Attributes
    ----------
    label : str
        As in the file.
    kind : {"eeg", "ecg"} or None
        From the file's declared type or the label (:func:`~rt_physio.io.channels.channel_kind`).
    sfreq : float
        Hz.
    unit : str
        As declared (or assumed); '' when the file says nothing.
    values : ndarray of float, shape (samples,)
        In ``unit``.
    offset : float
        Seconds from the start of the file to the first sample.
    name, source_id : str
        The stream it belongs to, where the file names one.
    """

    label: str
    kind: Modality | None
    sfreq: float
    unit: str
    values: NDArray[np.floating[Any]]
    offset: float = 0.0
    name: str = ""
    source_id: str = ""
