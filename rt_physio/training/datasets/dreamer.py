"""DREAMER (Katsigiannis & Ramzan 2018): EEG + ECG recorded during film clips, with emotion self-reports.

23 subjects x 18 film clips, Emotiv EEG 14 ch at 128 Hz, ECG 2 leads at 256 Hz, self-reports 1-5 of valence,
arousal and dominance.

``DREAMER.mat`` holds one struct ``DREAMER`` (layout: ``shared/reference/dreamer.md``), read by
:class:`rt_physio.io.dreamer.DreamerFile` (both forms :func:`scipy.io.loadmat` can return; anything else fails with
a message naming the field).

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

from rt_physio.errors import DatasetError, SourceError
from rt_physio.io import Recording, Signal, scale_to_uv
from rt_physio.io.dreamer import DREAMER_PARTS, DreamerFile, load_dreamer_mat

__all__ = ["AMPLITUDE_RANGES", "DREAMER_LABELS", "check_amplitudes", "load_dreamer", "read_dreamer", "to_microvolts"]

#: Output names of DREAMER models, in this order.
DREAMER_LABELS = ("arousal", "valence", "dominance")
#: Plausible typical amplitude (µV) per modality: the median over clips and channels of the 1st-99th percentile
#: range. EEG (Emotiv, DC removed by the percentile range) is tens of µV, ECG R waves 0.1-5 mV; the bounds are wide,
#: but a unit wrong by a factor of 1000 falls outside them.
AMPLITUDE_RANGES = {"eeg": (1.0, 10_000.0), "ecg": (20.0, 50_000.0)}


def to_microvolts(unit: str, where: str) -> float:
    """Return the factor from ``unit`` to microvolts; DatasetError (naming ``where``) for a non-voltage unit."""
    factor = scale_to_uv(unit)
    if factor is None:
        raise DatasetError(f"{where}: unit {unit!r} is not a voltage (expected uV, mV or V).")
    return factor


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
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: DREAMER file not found (expected DREAMER.mat).")
    try:
        mat = load_dreamer_mat(path)
    except SourceError as exc:
        raise DatasetError(str(exc)) from exc
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
                 for ch in rec.signals[modality].data.T if ch.size >= 8]
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
    try:
        return _recordings(DreamerFile(mat, source), source, threshold, ecg_unit, eeg_unit)
    except SourceError as exc:
        raise DatasetError(str(exc)) from exc


def _recordings(dreamer: DreamerFile, source: Path, threshold: float, ecg_unit: str,
                eeg_unit: str) -> list[Recording]:
    electrodes = dreamer.electrodes
    eeg_factor = np.float32(to_microvolts(eeg_unit, f"{source}: EEG"))
    ecg_factor = np.float32(to_microvolts(ecg_unit, f"{source}: ECG"))
    recordings: list[Recording] = []
    for i in range(len(dreamer.subjects)):
        sid = f"S{i + 1:02d}"
        where = f"DREAMER.Data[{i}]"
        for kind in ("EEG", "ECG"):  # a missing modality is named before missing scores
            dreamer.field(dreamer.subjects[i], kind, where)
        scores = dreamer.scores(i)
        for part, condition in zip(DREAMER_PARTS, ("stimulus", "baseline"), strict=True):
            eeg_clips = dreamer.clips(i, "EEG", part)
            ecg_clips = dreamer.clips(i, "ECG", part)
            if len(eeg_clips) != len(ecg_clips) or any(len(s) != len(eeg_clips) for s in scores.values()):
                raise DatasetError(
                    f"{source}: {where} has {len(eeg_clips)} EEG {part}, {len(ecg_clips)} ECG {part} and "
                    f"{[len(s) for s in scores.values()]} scores; they must match (one per clip)."
                )
            for j, (x_eeg, x_ecg) in enumerate(zip(eeg_clips, ecg_clips, strict=True)):
                # (samples, channels) float32 first, then the unit: the float32 product the loader always made
                e = dreamer.matrix(x_eeg, len(electrodes), f"{where}.EEG.{part}[{j}]").astype(np.float32) * eeg_factor
                c = dreamer.matrix(x_ecg, None, f"{where}.ECG.{part}[{j}]").astype(np.float32) * ecg_factor
                leads = tuple(f"ECG{k + 1}" for k in range(c.shape[1]))
                signals = {"eeg": Signal("eeg", e, dreamer.eeg_rate, electrodes),
                           "ecg": Signal("ecg", c, dreamer.ecg_rate, leads)}
                recordings.append(Recording(
                    source, "dreamer", signals,
                    name=f"{sid}_clip{j + 1:02d}_{condition}", subject=sid,
                    labels={k: float(scores[k][j] > threshold) for k in DREAMER_LABELS}, condition=condition,
                ))
    if not recordings:
        raise DatasetError(f"{source}: DREAMER.Data holds no subject.")
    return recordings
