"""DREAMER.mat (Katsigiannis & Ramzan 2018): EEG + ECG of 23 people watching 18 film clips, with self-reports.

``DREAMER.mat`` holds one struct ``DREAMER`` (layout: ``shared/reference/dreamer.md``): per subject, EEG (Emotiv,
14 ch at 128 Hz) and ECG (2 leads at 256 Hz) of every film clip (``stimuli``) and of the neutral clip shown before
it (``baseline``), and the 1-5 self-reports ``ScoreValence``, ``ScoreArousal``, ``ScoreDominance``. The values are
used as they are, i.e. as µV (the unit can be stated otherwise by the training loader).

:class:`DreamerFile` reads both forms :func:`scipy.io.loadmat` can return: nested object arrays (the default,
``mat['DREAMER'][0, 0]['Data'][0, i]...``) and ``squeeze_me=True, struct_as_record=False`` (attributes,
``D.Data[i].EEG.stimuli[j]``). Anything else fails with a :class:`~rt_physio.errors.SourceError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.errors import ConfigError, SourceError
from rt_physio.io._raw import RawChannel
from rt_physio.io.channels import Modality

__all__ = ["DREAMER_PARTS", "DreamerFile", "load_dreamer_mat", "read_dreamer_clip"]

#: The two recordings of each clip: the film clip and the neutral clip shown before it.
DREAMER_PARTS = ("stimuli", "baseline")
#: Self-report fields per output name.
DREAMER_SCORES = {"arousal": "ScoreArousal", "valence": "ScoreValence", "dominance": "ScoreDominance"}


def load_dreamer_mat(path: Path) -> dict[str, Any]:
    """Load a ``.mat`` file the way :class:`DreamerFile` expects it (``squeeze_me``, attribute structs).

    Raises
    ------
    SourceError
        The file is not a readable MATLAB file.
    """
    import scipy.io

    try:
        mat: dict[str, Any] = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, NotImplementedError) as exc:
        raise SourceError(f"{path}: not a readable MATLAB file ({exc}).") from exc
    return mat


class DreamerFile:
    """The ``DREAMER`` struct of a loaded ``.mat`` file, checked field by field.

    Parameters
    ----------
    mat : Mapping[str, Any]
        What :func:`scipy.io.loadmat` returned (either form).
    source : Path
        The file (for messages).

    Attributes
    ----------
    eeg_rate, ecg_rate : float
        Sampling rates, Hz.
    electrodes : tuple of str
        EEG channel names, in column order.
    subjects : list
        One struct per subject.

    Raises
    ------
    SourceError
        No ``DREAMER`` variable, or a missing field (named).
    """

    def __init__(self, mat: Mapping[str, Any], source: Path) -> None:
        if "DREAMER" not in mat:
            keys = sorted(k for k in mat if not k.startswith("__"))
            raise SourceError(f"{source}: no 'DREAMER' struct (variables: {keys}); is this DREAMER.mat?")
        self.source = source
        root = mat["DREAMER"]
        self.eeg_rate = _scalar(self.field(root, "EEG_SamplingRate", "DREAMER"), source, "EEG_SamplingRate")
        self.ecg_rate = _scalar(self.field(root, "ECG_SamplingRate", "DREAMER"), source, "ECG_SamplingRate")
        self.electrodes = tuple(str(_unwrap(e)) for e in _cells(self.field(root, "EEG_Electrodes", "DREAMER")))
        self.subjects = _cells(self.field(root, "Data", "DREAMER"))

    def field(self, x: Any, name: str, where: str) -> Any:
        """Return field ``name`` of the struct ``x`` (at ``where``, for the message)."""
        x = _unwrap(x)
        names: list[str] = []
        if isinstance(x, np.void) and x.dtype.names:
            names = list(x.dtype.names)
            if name in names:
                return x[name]
        elif isinstance(x, Mapping):
            names = [str(k) for k in x]
            if name in x:
                return x[name]
        elif hasattr(x, "_fieldnames"):  # scipy.io.matlab.mat_struct
            names = list(x._fieldnames)
            if name in names:
                return getattr(x, name)
        else:
            raise SourceError(f"{self.source}: {where} is not a struct (got {type(x).__name__}); is this DREAMER.mat?")
        raise SourceError(f"{self.source}: {where} has no field {name!r} (fields: {names}); is this DREAMER.mat?")

    def clips(self, subject: int, kind: str, part: str) -> list[Any]:
        """Return the raw clip arrays of 0-based ``subject``'s ``kind`` (``"EEG"``/``"ECG"``) and ``part``."""
        where = f"DREAMER.Data[{subject}]"
        return _cells(self.field(self.field(self.subjects[subject], kind, where), part, f"{where}.{kind}"))

    def scores(self, subject: int) -> dict[str, NDArray[np.float64]]:
        """Return the self-reports of 0-based ``subject`` per output name, one per clip."""
        where = f"DREAMER.Data[{subject}]"
        return {k: np.asarray(self.field(self.subjects[subject], f, where), dtype=np.float64).reshape(-1)
                for k, f in DREAMER_SCORES.items()}

    def matrix(self, x: Any, n_channels: int | None, where: str) -> NDArray[np.float64]:
        """Return a clip as ``(samples, channels)`` float64 (a 1-D clip is one channel)."""
        arr = np.asarray(_unwrap(x), dtype=np.float64)
        if arr.ndim == 1 and n_channels in (None, 1):
            arr = arr[:, None]
        if arr.ndim != 2 or (n_channels is not None and arr.shape[1] != n_channels):
            raise SourceError(f"{self.source}: {where} must be (samples x {n_channels or 'leads'}), got shape "
                              f"{arr.shape}.")
        return arr


def read_dreamer_clip(path: Path, subject: int | None, clip: int | None, part: str) -> list[RawChannel]:
    """Read the EEG and ECG of one clip of one subject (both 1-based), as channels in µV.

    Raises
    ------
    ConfigError
        No subject or clip chosen, or one out of range, or an unknown ``part``.
    SourceError
        Not a DREAMER file.
    """
    if subject is None or clip is None:
        raise ConfigError(f"{path.name} is DREAMER.mat: choose a recording with subject=N (1-23) and clip=N (1-18) "
                          "(--subject / --clip).")
    if part not in DREAMER_PARTS:
        raise ConfigError(f"The 'part' option must be 'stimuli' or 'baseline', got {part!r}.")
    dreamer = DreamerFile(load_dreamer_mat(path), path)
    if not 1 <= subject <= len(dreamer.subjects):
        raise ConfigError(f"DREAMER subject must be 1..{len(dreamer.subjects)}, got {subject}.")
    channels = []
    for kind, rate in (("EEG", dreamer.eeg_rate), ("ECG", dreamer.ecg_rate)):
        clips = dreamer.clips(subject - 1, kind, part)
        if not 1 <= clip <= len(clips):
            raise ConfigError(f"DREAMER clip must be 1..{len(clips)}, got {clip}.")
        n_eeg = len(dreamer.electrodes)
        x = dreamer.matrix(clips[clip - 1], n_eeg if kind == "EEG" else None,
                           f"DREAMER.Data[{subject - 1}].{kind}.{part}[{clip - 1}]")
        names = dreamer.electrodes if kind == "EEG" else tuple(f"ECG{i + 1}" for i in range(x.shape[1]))
        modality: Modality = "eeg" if kind == "EEG" else "ecg"
        channels += [RawChannel(name, modality, rate, "uV", x[:, j]) for j, name in enumerate(names)]
    return channels


def _unwrap(x: Any) -> Any:
    """Strip the 1x1 object / struct arrays scipy wraps MATLAB cells and structs in."""
    while isinstance(x, np.ndarray) and x.size == 1 and (x.dtype == object or x.dtype.names):
        x = x.reshape(-1)[0]
    return x


def _cells(x: Any) -> list[Any]:
    """Elements of a cell array (MATLAB column-major order), each unwrapped."""
    x = _unwrap(x) if not (isinstance(x, np.ndarray) and x.dtype == object and x.size > 1) else x
    if isinstance(x, np.ndarray) and x.dtype == object:
        return [_unwrap(e) for e in x.reshape(-1, order="F")]
    if isinstance(x, list | tuple):
        return [_unwrap(e) for e in x]
    return [x]


def _scalar(x: Any, source: Path, where: str) -> float:
    arr = np.asarray(_unwrap(x), dtype=np.float64).reshape(-1)
    if arr.size != 1:
        raise SourceError(f"{source}: {where} must be one number, got {arr.size} values.")
    return float(arr[0])
