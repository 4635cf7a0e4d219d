"""PhysioNet EEGMAT ("EEG During Mental Arithmetic Tasks"): EDF files ``SubjectNN_1.edf`` (rest) / ``_2`` (task).

Each file holds 19 EEG channels (10-20), ``EEG A2-A1`` and one ECG lead (``ECG ECG``, mV) at 500 Hz. The loader
returns 20 EEG channels (19 + A2-A1, the CBraMod "MentalArithmetic" montage, in file order) and the ECG lead, both
in µV, labelled ``mental_workload`` = 0 (rest) / 1 (task).

ECG is unusable (no R peaks: noise) in Subject02_1, Subject13_1, Subject20_2 and Subject35_2 (dataset manifest);
those recordings, and any other whose ECG peak-to-peak range is implausibly small for an ECG, get no ECG signal
(the modality is marked missing, so a model runs on EEG alone there) rather than noise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from rt_physio.errors import ConfigError, DatasetError, SourceError
from rt_physio.io import Recording, Signal, read_recording

__all__ = [
    "EEGMAT_EEG_CHANNELS",
    "EEGMAT_LABEL",
    "EEGMAT_LINE_FREQ",
    "UNUSABLE_ECG",
    "find_eegmat_files",
    "load_eegmat",
    "load_eegmat_file",
]

#: The 20 EEG inputs of the CBraMod MentalArithmetic protocol, in file order.
EEGMAT_EEG_CHANNELS: tuple[str, ...] = (
    "Fp1", "Fp2", "F3", "F4", "F7", "F8", "T3", "T4", "C3", "C4", "T5", "T6", "P3", "P4", "O1", "O2", "Fz", "Cz",
    "Pz", "A2-A1",
)
#: Output name of models trained on EEGMAT: rest (0) versus mental arithmetic (1).
EEGMAT_LABEL = "mental_workload"
#: Mains frequency where EEGMAT was recorded (Ukraine).
EEGMAT_LINE_FREQ = 50.0
#: Recordings whose ECG lead is noise (dataset manifest).
UNUSABLE_ECG = frozenset({"Subject02_1", "Subject13_1", "Subject20_2", "Subject35_2"})
#: Below this robust peak-to-peak range (mV) an ECG lead has no usable R peaks (the four known files: 0.13-0.20 mV,
#: every other file >= 0.37 mV).
MIN_ECG_RANGE_MV = 0.3
_FILE = re.compile(r"^Subject(\d{2})_([12])\.edf$", re.IGNORECASE)


def find_eegmat_files(folder: str | Path, subjects: Iterable[int] | None = None) -> list[Path]:
    """Return the ``SubjectNN_{1,2}.edf`` files of ``folder`` (only ``subjects`` when given), sorted.

    Raises
    ------
    DatasetError
        ``folder`` is not a folder, or holds no EEGMAT file (for the requested subjects).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; expected an EEGMAT folder of SubjectNN_1.edf / _2.edf files.")
    wanted = None if subjects is None else {int(s) for s in subjects}
    files = []
    for path in sorted(folder.iterdir()):
        match = _FILE.match(path.name)
        if match and path.is_file() and (wanted is None or int(match.group(1)) in wanted):
            files.append(path)
    if not files:
        which = "" if wanted is None else f" for subjects {sorted(wanted)}"
        raise DatasetError(f"{folder}: no usable EEGMAT recordings (SubjectNN_1.edf / SubjectNN_2.edf){which}.")
    return files


def load_eegmat(folder: str | Path, subjects: Iterable[int] | None = None, *, ecg: bool = True,
                eeg: bool = True) -> list[Recording]:
    """Load every EEGMAT recording of ``folder`` (optionally only some subjects).

    Parameters
    ----------
    folder : str | Path
        Folder with ``SubjectNN_1.edf`` / ``SubjectNN_2.edf``.
    subjects : iterable of int | None
        Subject numbers to load (None: all found).
    ecg, eeg : bool
        Which modalities to read.

    Returns
    -------
    list of Recording
        Sorted by subject, then rest before task.

    Raises
    ------
    DatasetError
        No EEGMAT file found, an unreadable file, or a file missing one of the expected channels (named).
    """
    return [load_eegmat_file(path, ecg=ecg, eeg=eeg) for path in find_eegmat_files(folder, subjects)]


def load_eegmat_file(path: str | Path, *, ecg: bool = True, eeg: bool = True) -> Recording:
    """Load one EEGMAT EDF file (see :func:`load_eegmat`)."""
    path = Path(path)
    match = _FILE.match(path.name)
    if match is None:
        raise DatasetError(f"{path}: not an EEGMAT file name (expected SubjectNN_1.edf or SubjectNN_2.edf).")
    subject, condition = f"Subject{match.group(1)}", int(match.group(2))
    name = f"{subject}_{condition}"
    signals: dict[str, Signal] = {}
    missing: dict[str, str] = {}
    if eeg or ecg:
        try:
            rec = read_recording(path, eeg_channels=EEGMAT_EEG_CHANNELS if eeg else [],
                                 ecg_channels=["ECG"] if ecg else [])
        except ConfigError as exc:
            raise DatasetError(f"{exc} EEGMAT recordings need {list(EEGMAT_EEG_CHANNELS)} and 'ECG'.") from exc
        except SourceError as exc:
            raise DatasetError(f"{path}: not a readable EDF file ({exc}).") from exc
        if eeg:
            signals["eeg"] = replace(rec.signals["eeg"], channel_names=EEGMAT_EEG_CHANNELS)
        if ecg:
            lead = rec.signals["ecg"]
            lo, hi = np.percentile(lead.data[:, 0], [0.5, 99.5])
            if name in UNUSABLE_ECG:
                missing["ecg"] = "ECG lead unusable (no R peaks; listed in the EEGMAT manifest)"
            elif (hi - lo) / 1e3 < MIN_ECG_RANGE_MV:
                missing["ecg"] = f"ECG lead unusable (peak-to-peak {(hi - lo) / 1e3:.2f} mV < {MIN_ECG_RANGE_MV} mV)"
            else:
                signals["ecg"] = lead
    return Recording(path, "edf", signals, name=name, subject=subject, labels={EEGMAT_LABEL: float(condition == 2)},
                     condition="rest" if condition == 1 else "task", missing=missing)
