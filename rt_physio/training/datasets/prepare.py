"""Recordings' offline preprocessing: the live engine's DSP path over whole signals, cached.

:func:`prepare` runs each signal of a :class:`rt_physio.io.Recording` through a
:class:`~rt_physio.dsp.StreamProcessor` made by :func:`rt_physio.nn.preprocessing.build_processor`, the builder the
engine uses live (band-pass, notch at the line frequency, resampling to 200 Hz), so a model trains on exactly the
signal it will see at run time. Results are cached as ``.npy`` files (:func:`default_cache_dir`) and returned as
:class:`PreparedRecording` objects, from which :class:`~rt_physio.training.datasets.windows.WindowDataset` cuts
windows.
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

from rt_physio.errors import DatasetError
from rt_physio.io import Recording, Signal
from rt_physio.nn.preprocessing import build_processor
from rt_physio.nn.spec import Preprocessing

__all__ = ["PreparedRecording", "default_cache_dir", "prepare", "preprocess_signal"]

log = logging.getLogger(__name__)

_CACHE_VERSION = 1  # bump when the preprocessing code changes what it produces


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
