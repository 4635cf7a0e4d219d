"""EDF files and folders as unlabelled corpora, and the pre-training corpus finder.

:func:`load_edf` reads the EEG or the ECG channels of any EDF/EDF+ file (by label: ``EEG ...`` or a 10-20 name
for EEG, ``ECG``/``EKG`` for ECG). :func:`find_corpus` turns the ``--data`` paths of ``rt-physio train pretrain``
into recordings: EDF files, WFDB records (``.hea``), NeuroKit CSV files, and folders of them (recursively). An
EEGMAT folder contributes only its training subjects (00-27), so pre-training never sees validation or test
people.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rt_physio.training.datasets.base import DatasetError, Recording, Signal, normalise_label, to_microvolts

__all__ = ["find_corpus", "load_edf"]

_TEN_TWENTY = {
    "fp1", "fp2", "fpz", "af3", "af4", "af7", "af8", "afz", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "fz",
    "fc1", "fc2", "fc3", "fc4", "fc5", "fc6", "fcz", "ft7", "ft8", "t3", "t4", "t5", "t6", "t7", "t8", "c1", "c2",
    "c3", "c4", "c5", "c6", "cz", "cp1", "cp2", "cp3", "cp4", "cp5", "cp6", "cpz", "tp7", "tp8", "p1", "p2", "p3",
    "p4", "p5", "p6", "p7", "p8", "pz", "po3", "po4", "po7", "po8", "poz", "o1", "o2", "oz", "a1", "a2", "a2-a1",
}
_EEGMAT_FILE = re.compile(r"^Subject(\d{2})_[12]\.edf$", re.IGNORECASE)


def _kind(label: str) -> str | None:
    raw = label.strip().lower()
    if raw.startswith(("ecg", "ekg")):
        return "ecg"
    if raw.startswith("eeg") or normalise_label(label) in _TEN_TWENTY:
        return "eeg"
    return None


def load_edf(path: str | Path, modality: str) -> Recording:
    """Read the ``modality`` (``"eeg"`` or ``"ecg"``) channels of an EDF file, in µV.

    Channels of another rate than the first matching channel are skipped.

    Raises
    ------
    DatasetError
        Unreadable file, or no channel of that modality (the labels found are listed).
    """
    import pyedflib

    path = Path(path)
    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable EDF file ({exc}).") from exc
    try:
        labels = reader.getSignalLabels()
        picks = [i for i, label in enumerate(labels) if _kind(label) == modality]
        if not picks:
            raise DatasetError(f"{path}: no {modality.upper()} channel (channels: {labels}).")
        fs = float(reader.getSampleFrequency(picks[0]))
        picks = [i for i in picks if float(reader.getSampleFrequency(i)) == fs]
        rows = [reader.readSignal(i) * to_microvolts(reader.getPhysicalDimension(i) or "uV",
                                                     f"{path}: channel {labels[i]!r}") for i in picks]
        n = min(len(r) for r in rows)
        data = np.stack([r[:n] for r in rows]).astype(np.float32)
    finally:
        reader.close()
    names = tuple(normalise_label(labels[i]) or labels[i] for i in picks)
    return Recording(subject=path.stem, name=path.stem, source=path,
                     signals={modality: Signal(data, fs, names)}, labels={}, condition="unlabelled")


def find_corpus(paths: Sequence[str | Path], modality: str, *, train_subjects: Sequence[int] = range(28)
                ) -> list[Recording]:
    """Collect pre-training recordings of ``modality`` from files and folders.

    Parameters
    ----------
    paths : sequence of path
        EDF files, WFDB ``.hea`` files, ``.csv`` files, or folders holding them (searched recursively).
    modality : str
        ``"eeg"`` or ``"ecg"``.
    train_subjects : sequence of int
        EEGMAT subjects that may be used (files ``SubjectNN_*.edf`` of other subjects are skipped).

    Raises
    ------
    DatasetError
        A path that does not exist, or no usable recording at all.
    """
    from rt_physio.training.datasets.eegmat import UNUSABLE_ECG
    from rt_physio.training.datasets.wfdb import load_neurokit_csv, load_wfdb_record

    allowed = set(train_subjects)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in (".edf", ".hea", ".csv")))
        elif p.is_file() or p.with_suffix(".hea").is_file():
            files.append(p if p.is_file() else p.with_suffix(".hea"))
        else:
            raise DatasetError(f"{p}: no such file or folder.")
    recordings: list[Recording] = []
    skipped: list[str] = []
    for f in files:
        suffix = f.suffix.lower()
        eegmat = _EEGMAT_FILE.match(f.name)
        if eegmat and int(eegmat.group(1)) not in allowed:
            continue  # validation / test subjects never enter pre-training
        if eegmat and modality == "ecg" and f.stem in UNUSABLE_ECG:
            continue
        try:
            if suffix == ".edf":
                recordings.append(load_edf(f, modality))
            elif suffix == ".hea" and modality == "ecg":
                recordings.append(load_wfdb_record(f))
            elif suffix == ".csv" and modality == "ecg":
                recordings.append(load_neurokit_csv(f))
        except DatasetError as exc:
            skipped.append(str(exc))
    if not recordings:
        detail = f" Skipped: {'; '.join(skipped[:5])}" if skipped else ""
        raise DatasetError(
            f"No usable {modality.upper()} recordings in {[str(p) for p in paths]} (looked for EDF, WFDB .hea and "
            f"NeuroKit .csv files).{detail}"
        )
    return recordings
