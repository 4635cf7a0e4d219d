"""The one in-memory form of a recording: :class:`Signal` per modality, gathered in a :class:`Recording`.

Every reader of :mod:`rt_physio.io` returns it; replay pushes its signals into LSL outlets, training cuts windows
from them after preprocessing, and the engine's own recordings read back into it (one :class:`Recording` per
recorded session, with its predictions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.io.channels import Modality

__all__ = ["Recording", "Signal"]


@dataclass(frozen=True, slots=True)
class Signal:
    """The channels of one modality of a recording, at one rate.

    Attributes
    ----------
    modality : {"eeg", "ecg"}
        What the channels are.
    data : ndarray of float32, shape (samples, channels)
        Values in microvolts (the same layout as a :class:`~rt_physio.sources.base.Chunk`).
    sfreq : float
        Sampling rate, Hz.
    channel_names : tuple of str
        Channel labels, one per column (EDF+ type prefixes removed).
    offset : float
        Seconds from the start of the recording to this signal's first sample (XDF streams start apart).
    units : tuple of str
        The units the file declared (or that were assumed) per channel, before conversion to µV.
    timestamps : ndarray of float64, shape (samples,), or None
        Per-sample clock times where the file keeps them (rt_physio recordings: the engine clock).
    name, source_id : str
        The stream's name and source id where the file keeps them (rt_physio recordings, XDF), else ''.
    """

    modality: Modality
    data: NDArray[np.float32]
    sfreq: float
    channel_names: tuple[str, ...]
    offset: float = 0.0
    units: tuple[str, ...] = ()
    timestamps: NDArray[np.float64] | None = None
    name: str = ""
    source_id: str = ""

    def __post_init__(self) -> None:
        if self.data.ndim != 2 or self.data.shape[1] != len(self.channel_names):
            raise ValueError(f"Signal data must be (samples, channels) with {len(self.channel_names)} channels, "
                             f"got {self.data.shape}.")

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.data.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.data.shape[1])

    @property
    def duration(self) -> float:
        """Seconds from the first sample to one period after the last."""
        return self.n_samples / self.sfreq


@dataclass(frozen=True, slots=True)
class Recording:
    """The signals of one recording, with what is known about it.

    Attributes
    ----------
    path : Path
        The file (or rt_physio recording folder) it was read from.
    format : str
        The reader that read it (a key of :data:`rt_physio.io.FORMATS`).
    signals : Mapping[str, Signal]
        The usable modalities. A modality the file has but that cannot be used is left out and explained in
        ``missing``.
    name : str
        A name unique within a dataset (``"Subject07_2"``); '' where none was given (see :attr:`title`).
    subject : str
        The person recorded (``"Subject07"``, ``"S03"``); dataset splits are made on it.
    labels : Mapping[str, float]
        Training targets per output name (0 / 1 for binary tasks); empty for unlabelled recordings.
    condition : str
        What the person was doing (``"rest"``, ``"task"``, ``"stimulus"``, ``"baseline"``), or a record label.
    missing : Mapping[str, str]
        Modality -> why it is not in ``signals``.
    session : str
        rt_physio recordings: the engine session the signals belong to.
    predictions : tuple of dict
        rt_physio recordings: the session's ``rt_physio.prediction/1`` messages, by ``seq``.
    meta : Mapping[str, Any]
        rt_physio recordings: the folder's ``recording.json``.
    """

    path: Path
    format: str
    signals: Mapping[str, Signal] = field(default_factory=dict)
    name: str = ""
    subject: str = ""
    labels: Mapping[str, float] = field(default_factory=dict)
    condition: str = ""
    missing: Mapping[str, str] = field(default_factory=dict)
    session: str = ""
    predictions: tuple[dict[str, Any], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The name, else the file's stem."""
        return self.name or self.path.stem

    @property
    def duration(self) -> float:
        """Seconds until the end of the longest signal (0 without signals)."""
        return max((s.offset + s.duration for s in self.signals.values()), default=0.0)

    @property
    def complete(self) -> bool:
        """rt_physio recordings: False when the engine did not stop cleanly (killed, crashed, power cut)."""
        return bool(self.meta.get("complete", False))

    def to_wall(self, t: NDArray[np.float64] | float) -> NDArray[np.float64] | float:
        """rt_physio recordings: convert engine-clock times to Unix time."""
        return t + (float(self.meta["t0_wall"]) - float(self.meta["t0_local"]))

    def describe(self) -> str:
        """Return a one-line summary: ``Subject00_2.edf (edf): EEG 20 ch at 500 Hz, ECG 1 ch at 500 Hz, 62.0 s``."""
        parts = [f"{m.upper()} {s.n_channels} ch at {s.sfreq:g} Hz" for m, s in self.signals.items()]
        return f"{self.path.name} ({self.format}): {', '.join(parts)}, {self.duration:.1f} s"
