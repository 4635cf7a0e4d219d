"""Recordings' offline preprocessing (the live engine's DSP path) and the windows models train on.

A loader returns :class:`rt_physio.io.Recording` objects: raw signals per modality in microvolts at their own rate,
labels, the subject and the condition. :func:`prepare` runs each signal through the same
:class:`~rt_physio.dsp.StreamProcessor` the engine uses live (band-pass, notch at the line frequency, resampling to
200 Hz), so a model trains on exactly the signal it will see at run time; results are cached as ``.npy`` files.
:class:`WindowDataset` cuts windows ``(C, N, 200)`` from the prepared signals on a grid, on demand (a 1-s training
hop does not multiply memory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rt_physio.errors import RtPhysioError
from rt_physio.io import Recording, Signal, scale_to_uv
from rt_physio.nn.fusion import MODALITIES
from rt_physio.nn.preprocessing import build_processor
from rt_physio.nn.spec import Preprocessing

__all__ = [
    "PATCH_SAMPLES",
    "Batch",
    "DatasetError",
    "PreparedRecording",
    "WindowDataset",
    "default_cache_dir",
    "prepare",
    "preprocess_signal",
    "to_microvolts",
]

log = logging.getLogger(__name__)

#: Samples per 1-s patch at the model rate (200 Hz).
PATCH_SAMPLES = 200
_CACHE_VERSION = 1  # bump when the preprocessing code changes what it produces


class DatasetError(RtPhysioError):
    """A data file or folder is missing, unreadable, or lacks what the task needs (the message names it)."""


@dataclass(frozen=True)
class PreparedRecording:
    """A recording after preprocessing: model-rate signals in model units.

    Attributes
    ----------
    subject, name, condition, labels, missing :
        As in :class:`rt_physio.io.Recording`.
    signals : dict[str, ndarray of float32, shape (channels, samples)]
        At 200 Hz, divided by the model's ``scale_uv``.
    """

    subject: str
    name: str
    condition: str
    labels: Mapping[str, float]
    signals: dict[str, NDArray[np.float32]]
    missing: Mapping[str, str] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        """Usable length in samples at 200 Hz: the shortest of the modalities."""
        return min(x.shape[1] for x in self.signals.values()) if self.signals else 0


def to_microvolts(unit: str, where: str) -> float:
    """Factor that converts ``unit`` to microvolts; DatasetError (naming ``where``) for a non-voltage unit."""
    factor = scale_to_uv(unit)
    if factor is None:
        raise DatasetError(f"{where}: unit {unit!r} is not a voltage (expected uV, mV or V).")
    return factor


def default_cache_dir() -> Path:
    """``$RT_PHYSIO_CACHE``, else ``$XDG_CACHE_HOME/rt_physio``, else ``~/.cache/rt_physio``."""
    env = os.environ.get("RT_PHYSIO_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "rt_physio"


def preprocess_signal(signal: Signal, preprocessing: Preprocessing | None, line_freq: float,
                      sfreq_out: float = 200.0) -> NDArray[np.float32]:
    """Filter and resample a whole signal exactly as the live engine does, aligned to the input's time.

    The signal goes through one :class:`~rt_physio.dsp.StreamProcessor` from
    :func:`rt_physio.nn.preprocessing.build_processor`, the builder the engine uses for each live stream
    (band-pass, notch at ``line_freq`` when the model asks for it, resampling to ``sfreq_out``). The resampler's
    group delay (:attr:`StreamProcessor.delay_s`) is removed, so output sample ``k`` describes input time
    ``k / sfreq_out``.

    Parameters
    ----------
    signal : Signal
        Raw µV samples.
    preprocessing : Preprocessing | None
        The model's ``[preprocessing.<modality>]``; None for no filtering.
    line_freq : float
        Mains frequency (Hz) for the notch.
    sfreq_out : float
        Output rate (the model's ``inputs.sfreq``).

    Returns
    -------
    ndarray of float32, shape (channels, samples_out)
        Microvolts at ``sfreq_out``.
    """
    n_in, n_ch = signal.data.shape
    duration = n_in / signal.sfreq
    n_out = math.floor(duration * sfreq_out + 1e-6)
    if n_in == 0 or n_out == 0:
        return np.zeros((n_ch, 0), dtype=np.float32)
    # a band edge clipped (or a notch skipped) for a low-rate input is expected here: no log line per recording
    proc = build_processor(preprocessing, signal.sfreq, n_ch, line_freq=line_freq, fs_out=sfreq_out,
                           capacity_s=duration + 4.0, max_fill_s=1.0, adjust_log_level=logging.DEBUG)
    # The resampler emits output k once input k * fs_in / fs_out has arrived, and its content lags by delay_s:
    # feed delay_s (and a margin) more of the last value so the last input instants get their output too.
    n_pad = math.ceil((proc.delay_s + 2.0 / sfreq_out) * signal.sfreq) + 1
    x = np.ascontiguousarray(signal.data)
    x = np.concatenate([x, np.repeat(x[-1:], n_pad, axis=0)])
    ts = np.arange(x.shape[0], dtype=np.float64) / signal.sfreq
    written = proc.push(x, ts)
    got = proc.read_until(math.inf, written) if written else None
    delay = proc.resampler.delay_out
    if got is None or written < delay + n_out:
        raise DatasetError(f"Internal error: the resampler produced {written} samples, expected {delay + n_out}.")
    return np.ascontiguousarray(got[0][delay:delay + n_out].T, dtype=np.float32)


def _cache_key(rec: Recording, modality: str, preprocessing: Preprocessing | None, line_freq: float,
               sfreq_out: float) -> str:
    sig = rec.signals[modality]
    try:
        st = rec.path.stat()
        file_id = [str(rec.path.resolve()), st.st_size, st.st_mtime_ns]
    except OSError:
        file_id = [str(rec.path)]
    # the key predates (samples, channels) signals: it hashes the (channels, samples) layout, so caches stay valid
    head = sig.data[: min(sig.n_samples, 4096)].T
    digest = hashlib.sha256(np.ascontiguousarray(head).tobytes())
    payload = json.dumps([_CACHE_VERSION, file_id, rec.name, modality, list(sig.channel_names),
                          (sig.n_channels, sig.n_samples),
                          sig.sfreq, None if preprocessing is None else [preprocessing.bandpass, preprocessing.notch],
                          line_freq, sfreq_out, digest.hexdigest()], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def prepare(recordings: Sequence[Recording], preprocessing: Mapping[str, Preprocessing | None], *,
            line_freq: float = 50.0, scale_uv: float = 100.0, sfreq_out: float = 200.0,
            cache_dir: Path | None = None) -> list[PreparedRecording]:
    """Preprocess every recording's modalities listed in ``preprocessing`` (others are dropped).

    Parameters
    ----------
    recordings : sequence of Recording
        From a loader.
    preprocessing : Mapping[str, Preprocessing | None]
        Modality -> filtering (the model's ``[preprocessing]``); its keys select the modalities kept.
    line_freq : float
        Mains frequency of the recordings (Hz), notched where the preprocessing asks for it.
    scale_uv : float
        The model sees µV / ``scale_uv``.
    sfreq_out : float
        Model rate in Hz.
    cache_dir : Path | None
        Where preprocessed signals are cached as ``.npy`` (None: no cache).

    Returns
    -------
    list of PreparedRecording
        Same order as ``recordings``.
    """
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only home must not stop an evaluation: work without the cache
            log.warning("cannot use the cache folder %s (%s); preprocessing without a cache", cache_dir, exc)
            cache_dir = None
    out: list[PreparedRecording] = []
    for rec in recordings:
        signals: dict[str, NDArray[np.float32]] = {}
        for modality, pre in preprocessing.items():
            if modality not in rec.signals:
                continue
            path = None
            if cache_dir is not None:
                path = cache_dir / f"{_cache_key(rec, modality, pre, line_freq, sfreq_out)}.npy"
                if path.is_file():
                    try:
                        signals[modality] = np.load(path) / np.float32(scale_uv)
                        continue
                    except (OSError, ValueError) as exc:  # a truncated cache file: recompute it
                        log.warning("ignoring unreadable cache file %s (%s)", path, exc)
            data = preprocess_signal(rec.signals[modality], pre, line_freq, sfreq_out)
            if path is not None:
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
                try:
                    np.save(tmp, data)
                    os.replace(tmp, path)
                except OSError as exc:
                    log.warning("cannot write the cache file %s (%s)", path, exc)
                    tmp.unlink(missing_ok=True)
            signals[modality] = data / np.float32(scale_uv)
        missing = {m: why for m, why in rec.missing.items() if m in preprocessing}
        out.append(PreparedRecording(rec.subject, rec.name, rec.condition, dict(rec.labels), signals, missing))
    return out


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
