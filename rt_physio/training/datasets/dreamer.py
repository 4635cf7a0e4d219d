"""DREAMER (Katsigiannis & Ramzan 2018): EEG + ECG recorded during film clips, with emotion self-reports.

23 subjects x 18 film clips, Emotiv EEG 14 ch at 128 Hz, ECG 2 leads at 256 Hz, self-reports 1-5 of valence,
arousal and dominance.

``DREAMER.mat`` holds one struct ``DREAMER`` (layout: ``shared/reference/dreamer.md``). It is read with
:func:`scipy.io.loadmat`, and :func:`read_dreamer` accepts both forms scipy can return: nested object arrays
(the default, ``mat['DREAMER'][0, 0]['Data'][0, i]...``) and ``squeeze_me=True, struct_as_record=False``
(attributes, ``D.Data[i].EEG.stimuli[j]``). Anything else fails with a message naming the field.

Each clip gives two recordings: ``condition="stimulus"`` (the film clip) and ``condition="baseline"`` (the
neutral clip shown before it), both labelled with the clip's self-reports binarised as ``score > threshold``
(outputs ``arousal``, ``valence``, ``dominance``). The Emotiv's DC offset (~4200 µV) is removed by the band-pass
of the preprocessing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.training.datasets.base import DatasetError, Recording, Signal, to_microvolts

__all__ = ["AMPLITUDE_RANGES", "DREAMER_LABELS", "check_amplitudes", "load_dreamer", "read_dreamer"]

#: Output names of DREAMER models, in this order.
DREAMER_LABELS = ("arousal", "valence", "dominance")
_SCORES = {"arousal": "ScoreArousal", "valence": "ScoreValence", "dominance": "ScoreDominance"}
#: Plausible typical amplitude (µV) per modality: the median over clips and channels of the 1st-99th percentile
#: range. EEG (Emotiv, DC removed by the percentile range) is tens of µV, ECG R waves 0.1-5 mV; the bounds are wide,
#: but a unit wrong by a factor of 1000 falls outside them.
AMPLITUDE_RANGES = {"eeg": (1.0, 10_000.0), "ecg": (20.0, 50_000.0)}


def load_dreamer(path: str | Path, *, threshold: float = 3.0, ecg_unit: str = "uV",
                 eeg_unit: str = "uV", check_units: bool = True) -> list[Recording]:
    """Read ``DREAMER.mat`` into recordings (see the module docstring).

    Parameters
    ----------
    path : str | Path
        The ``.mat`` file.
    threshold : float
        A self-report is "high" (label 1) when ``score > threshold`` (3 by default; some papers use >= 3).
    ecg_unit, eeg_unit : str
        Units of the stored samples (uV, mV or V).
    check_units : bool
        Check that the amplitudes are plausible for the stated units (:func:`check_amplitudes`).

    Raises
    ------
    DatasetError
        Missing or unreadable file, a structure that is not DREAMER's (the missing field is named), or amplitudes
        implausible for the stated unit.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: DREAMER file not found (expected DREAMER.mat).")
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, NotImplementedError) as exc:
        raise DatasetError(f"{path}: not a readable MATLAB file ({exc}).") from exc
    recordings = read_dreamer(mat, source=path, threshold=threshold, ecg_unit=ecg_unit, eeg_unit=eeg_unit)
    if check_units:
        check_amplitudes(recordings, {"eeg": eeg_unit, "ecg": ecg_unit}, source=path)
    return recordings


def check_amplitudes(recordings: Sequence[Recording], units: Mapping[str, str], *,
                     source: Path = Path("DREAMER.mat")) -> dict[str, float]:
    """Check that each modality's typical amplitude is plausible (:data:`AMPLITUDE_RANGES`) for its stated unit.

    Parameters
    ----------
    recordings : sequence of Recording
        Loaded with the stated units (samples in µV).
    units : Mapping[str, str]
        Modality -> the unit the user stated (for the message).
    source : Path
        The file (for the message).

    Returns
    -------
    dict[str, float]
        Modality -> observed typical amplitude in µV (median over clips and channels of the 1st-99th percentile
        range, every 4th sample).

    Raises
    ------
    DatasetError
        A modality's amplitude is outside its range; the message names the modality, the stated unit, the observed
        scale and the unit that would make it plausible.
    """
    observed: dict[str, float] = {}
    for modality, (low, high) in AMPLITUDE_RANGES.items():
        spans = [float(np.ptp(np.percentile(ch[::4], [1.0, 99.0])))
                 for rec in recordings if modality in rec.signals
                 for ch in rec.signals[modality].data if ch.size >= 8]
        if not spans:
            continue
        typical = float(np.median(spans))
        observed[modality] = typical
        if low <= typical <= high:
            continue
        unit = units.get(modality, "uV")
        stated = typical / to_microvolts(unit, f"{source}: {modality.upper()}")
        hint = [u for u, f in (("uV", 1.0), ("mV", 1e3), ("V", 1e6)) if low <= stated * f <= high]
        raise DatasetError(
            f"{source}: {modality.upper()} amplitudes are implausible for unit {unit!r}: the typical 1st-99th "
            f"percentile range is {stated:.3g} {unit} ({typical:.3g} µV), expected {low:g}-{high:g} µV. "
            f"State the file's unit with --{modality}-unit"
            + (f" (this scale suggests {hint[0]})." if hint else ".")
        )
    return observed


def read_dreamer(mat: Mapping[str, Any], *, source: Path = Path("DREAMER.mat"), threshold: float = 3.0,
                 ecg_unit: str = "uV", eeg_unit: str = "uV") -> list[Recording]:
    """Turn the result of ``scipy.io.loadmat`` (either form) into recordings; see :func:`load_dreamer`."""
    if "DREAMER" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{source}: no 'DREAMER' struct (variables: {keys}).")
    root = mat["DREAMER"]
    eeg_fs = float(_scalar(_field(root, "EEG_SamplingRate", source, "DREAMER"), source, "EEG_SamplingRate"))
    ecg_fs = float(_scalar(_field(root, "ECG_SamplingRate", source, "DREAMER"), source, "ECG_SamplingRate"))
    electrodes = tuple(str(_unwrap(e)) for e in _cells(_field(root, "EEG_Electrodes", source, "DREAMER")))
    eeg_factor = to_microvolts(eeg_unit, f"{source}: EEG")
    ecg_factor = to_microvolts(ecg_unit, f"{source}: ECG")
    recordings: list[Recording] = []
    for i, subject in enumerate(_cells(_field(root, "Data", source, "DREAMER"))):
        sid = f"S{i + 1:02d}"
        where = f"DREAMER.Data[{i}]"
        eeg = _field(subject, "EEG", source, where)
        ecg = _field(subject, "ECG", source, where)
        scores = {k: np.asarray(_field(subject, f, source, where), dtype=np.float64).reshape(-1)
                  for k, f in _SCORES.items()}
        for part, condition in (("stimuli", "stimulus"), ("baseline", "baseline")):
            eeg_clips = _cells(_field(eeg, part, source, f"{where}.EEG"))
            ecg_clips = _cells(_field(ecg, part, source, f"{where}.ECG"))
            if len(eeg_clips) != len(ecg_clips) or any(len(s) != len(eeg_clips) for s in scores.values()):
                raise DatasetError(
                    f"{source}: {where} has {len(eeg_clips)} EEG {part}, {len(ecg_clips)} ECG {part} and "
                    f"{[len(s) for s in scores.values()]} scores; they must match (one per clip)."
                )
            for j, (x_eeg, x_ecg) in enumerate(zip(eeg_clips, ecg_clips, strict=True)):
                e = _matrix(x_eeg, len(electrodes), source, f"{where}.EEG.{part}[{j}]") * np.float32(eeg_factor)
                c = _matrix(x_ecg, None, source, f"{where}.ECG.{part}[{j}]") * np.float32(ecg_factor)
                leads = tuple(f"ECG{k + 1}" for k in range(c.shape[0]))
                recordings.append(Recording(
                    subject=sid, name=f"{sid}_clip{j + 1:02d}_{condition}", source=source,
                    signals={"eeg": Signal(e, eeg_fs, electrodes), "ecg": Signal(c, ecg_fs, leads)},
                    labels={k: float(scores[k][j] > threshold) for k in DREAMER_LABELS},
                    condition=condition,
                ))
    if not recordings:
        raise DatasetError(f"{source}: DREAMER.Data holds no subject.")
    return recordings


def _unwrap(x: Any) -> Any:
    """Strip the 1x1 object / struct arrays scipy wraps MATLAB cells and structs in."""
    while isinstance(x, np.ndarray) and x.size == 1 and (x.dtype == object or x.dtype.names):
        x = x.reshape(-1)[0]
    return x


def _field(x: Any, name: str, source: Path, where: str) -> Any:
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
        raise DatasetError(f"{source}: {where} is not a struct (got {type(x).__name__}); is this DREAMER.mat?")
    raise DatasetError(f"{source}: {where} has no field {name!r} (fields: {names}); is this DREAMER.mat?")


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
        raise DatasetError(f"{source}: {where} must be one number, got {arr.size} values.")
    return float(arr[0])


def _matrix(x: Any, n_channels: int | None, source: Path, where: str) -> NDArray[np.float32]:
    arr = np.asarray(_unwrap(x), dtype=np.float64)
    if arr.ndim == 1 and n_channels in (None, 1):
        arr = arr[:, None]
    if arr.ndim != 2 or (n_channels is not None and arr.shape[1] != n_channels):
        raise DatasetError(f"{source}: {where} must be (samples x {n_channels or 'leads'}), got shape {arr.shape}.")
    return np.ascontiguousarray(arr.T, dtype=np.float32)  # (channels, samples)
