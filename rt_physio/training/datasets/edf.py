"""EDF files and folders as unlabelled corpora, and the pre-training corpus finder.

:func:`load_edf` reads the EEG or the ECG channels of any EDF/EDF+ file (typed by
:func:`rt_physio.io.channel_kind`: ``EEG ...`` or a 10-20 name for EEG, ``ECG``/``EKG`` or an ECG lead name for
ECG). :func:`find_corpus` turns the ``--data`` paths of ``rt-physio train pretrain`` into recordings: EDF files,
WFDB records (``.hea``), NeuroKit CSV files, and folders of them (recursively). An EEGMAT folder contributes only
its training subjects (00-27), so pre-training never sees validation or test people.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rt_physio.errors import ConfigError, DatasetError, SourceError
from rt_physio.io import Recording, label_key, read_recording

__all__ = ["find_corpus", "load_edf"]

_EEGMAT_FILE = re.compile(r"^Subject(\d{2})_[12]\.edf$", re.IGNORECASE)


def load_edf(path: str | Path, modality: str) -> Recording:
    """Read the ``modality`` (``"eeg"`` or ``"ecg"``) channels of an EDF file, in µV.

    Channels are typed by :func:`rt_physio.io.channel_kind`; channels of another rate than most of them are left out.
    Channel names are :func:`rt_physio.io.label_key` keys (``fp1``).

    Raises
    ------
    DatasetError
        Unreadable file, or no channel of that modality (the labels found are listed).
    """
    path = Path(path)
    try:
        rec = read_recording(path)
    except ConfigError as exc:
        raise DatasetError(str(exc)) from exc
    except SourceError as exc:
        raise DatasetError(f"{path}: not a readable EDF file, or no {modality.upper()} channel ({exc}).") from exc
    if modality not in rec.signals:
        raise DatasetError(f"{path}: no {modality.upper()} channel ({rec.describe()}).")
    sig = rec.signals[modality]
    names = tuple(label_key(n) or n for n in sig.channel_names)
    return Recording(path, rec.format, {modality: replace(sig, channel_names=names)}, name=path.stem,
                     subject=path.stem, condition="unlabelled")


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
