"""The windows models train on: fixed-length ``(C, N, 200)`` windows cut on a grid from prepared recordings.

:class:`WindowDataset` indexes the windows of :class:`~rt_physio.training.datasets.prepare.PreparedRecording`
objects and materialises them on demand as a :class:`Batch` (a 1-s training hop does not multiply memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rt_physio.errors import DatasetError
from rt_physio.nn.fusion import MODALITIES
from rt_physio.training.datasets.prepare import PreparedRecording

__all__ = ["PATCH_SAMPLES", "Batch", "WindowDataset"]

#: Samples per 1-s patch at the model rate (200 Hz).
PATCH_SAMPLES = 200


@dataclass(frozen=True)
class Batch:
    """Windows ready for a :class:`~rt_physio.nn.FusionModel`.

    Attributes
    ----------
    inputs : dict[str, ndarray of float32, shape (B, C, N, 200)]
        Per modality; rows where the modality is absent are zeros.
    present : ndarray of bool, shape (B, 2)
        Whether each modality (order: eeg, ecg) is present in each row.
    labels : ndarray of float32, shape (B, n_outputs)
        Targets.
    """

    inputs: dict[str, NDArray[np.float32]]
    present: NDArray[np.bool_]
    labels: NDArray[np.float32]


class WindowDataset:
    """Fixed-length windows cut on a grid from prepared recordings (non-overlapping when ``hop_s == window_s``).

    Parameters
    ----------
    recordings : sequence of PreparedRecording
        Model-rate signals. Within a modality every recording must have the same channel count.
    label_names : sequence of str
        Outputs, in the model's order; every recording must have a label for each.
    window_s : float
        Window length (whole seconds: whole 200-sample patches).
    hop_s : float
        Grid step in seconds. Windows start at ``offset_s + k * hop_s`` and must fit in the recording.
    modalities : sequence of str
        Modalities to cut (others are ignored); a recording without a modality gets zeros and a 0 flag there.
    offset_s : float
        Start of the grid (e.g. a random sub-hop shift per training epoch).

    Attributes
    ----------
    subjects, names, conditions : ndarray of str, shape (n,)
        Per window.
    starts : ndarray of float64, shape (n,)
        Window start in seconds from the start of its recording.
    labels : ndarray of float32, shape (n, n_outputs)
        Per window.
    """

    def __init__(self, recordings: Sequence[PreparedRecording], label_names: Sequence[str], *, window_s: float,
                 hop_s: float, modalities: Sequence[str] = MODALITIES, offset_s: float = 0.0) -> None:
        n_patches = round(window_s)
        if n_patches < 1 or abs(window_s - n_patches) > 1e-9:
            raise ValueError(f"The 'window_s' parameter must be a whole number of seconds >= 1, got {window_s}.")
        if hop_s <= 0:
            raise ValueError(f"The 'hop_s' parameter must be positive, got {hop_s}.")
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown:
            raise ValueError(f"Unknown modalities {unknown}; choose from {list(MODALITIES)}.")
        self.recordings = list(recordings)
        self.label_names = tuple(label_names)
        self.modalities = tuple(m for m in MODALITIES if m in modalities)
        self.n_patches = n_patches
        self.window = n_patches * PATCH_SAMPLES
        self.channels: dict[str, int] = {}
        for rec in self.recordings:
            absent = [name for name in self.label_names if name not in rec.labels]
            if absent:
                raise DatasetError(f"Recording {rec.name} has no label for {absent}.")
            for m in self.modalities:
                if m in rec.signals:
                    n_ch = rec.signals[m].shape[0]
                    if self.channels.setdefault(m, n_ch) != n_ch:
                        raise DatasetError(
                            f"Recording {rec.name}: {m.upper()} has {n_ch} channels, others have {self.channels[m]}; "
                            "a dataset needs one montage per modality."
                        )
        hop = hop_s * PATCH_SAMPLES
        offset = round(offset_s * PATCH_SAMPLES)
        index: list[tuple[int, int]] = []
        for r, rec in enumerate(self.recordings):
            usable = {m: x for m, x in rec.signals.items() if m in self.modalities}
            if not usable:
                continue
            length = min(x.shape[1] for x in usable.values())
            k = 0
            while (start := offset + round(k * hop)) + self.window <= length:
                index.append((r, start))
                k += 1
        self._index = np.array(index, dtype=np.int64).reshape(-1, 2)
        recs = self.recordings
        rows = self._index[:, 0]
        self.subjects = np.array([recs[r].subject for r in rows], dtype=object)
        self.names = np.array([recs[r].name for r in rows], dtype=object)
        self.conditions = np.array([recs[r].condition for r in rows], dtype=object)
        self.starts = self._index[:, 1] / float(PATCH_SAMPLES)
        self.labels = np.array([[recs[r].labels[k] for k in self.label_names] for r in rows],
                               dtype=np.float32).reshape(len(rows), len(self.label_names))
        self.present = np.array([[m in recs[r].signals and m in self.modalities for m in MODALITIES] for r in rows],
                                dtype=bool).reshape(len(rows), len(MODALITIES))

    def __len__(self) -> int:
        return int(self._index.shape[0])

    def batch(self, indices: Sequence[int] | NDArray[np.int64]) -> Batch:
        """Materialise the windows ``indices`` as one :class:`Batch`."""
        idx = np.asarray(indices, dtype=np.int64)
        inputs: dict[str, NDArray[np.float32]] = {}
        for m in self.modalities:
            if m not in self.channels:
                continue
            out = np.zeros((len(idx), self.channels[m], self.n_patches, PATCH_SAMPLES), dtype=np.float32)
            for i, j in enumerate(idx):
                r, start = self._index[j]
                x = self.recordings[r].signals.get(m)
                if x is not None:
                    # (C, W) -> (C, N, 200): consecutive 1-s patches, as the engine's windower reshapes
                    out[i] = x[:, start:start + self.window].reshape(x.shape[0], self.n_patches, PATCH_SAMPLES)
            inputs[m] = out
        return Batch(inputs, self.present[idx].copy(), self.labels[idx].copy())
