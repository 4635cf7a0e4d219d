"""Pre-training corpora with a held-out part that pre-training never sees.

* ECG: every ``--data`` path. A cinc2017 folder (:mod:`rt_physio.training.datasets.cinc2017`) is split by
  :func:`~rt_physio.training.datasets.cinc2017.holdout_split` (seeded, label-stratified records); the other ECG
  files (WFDB records, NeuroKit CSV) all go to training. **EEGMAT never enters an ECG corpus**, so the EEGMAT
  cross-validation of models that use the encoder stays clean.
* EEG: EDF files and folders; of an EEGMAT folder only the subjects in ``eegmat_subjects`` (e.g. 0-15 for the
  encoder that the folds testing subjects 16-31 use). Held-out = ``max(1, round(fraction * subjects))`` whole
  subjects drawn with the seed.

Without a cinc2017 folder, an ECG corpus is held out by subject the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rt_physio.errors import DatasetError
from rt_physio.io import Recording
from rt_physio.training.datasets.cinc2017 import holdout_split, is_cinc2017, load_cinc_record, read_reference
from rt_physio.training.datasets.edf import find_corpus
from rt_physio.training.datasets.prepare import PreparedRecording, prepare

__all__ = ["Corpus", "build_corpus"]

_EEGMAT_NAME = re.compile(r"^(Subject\d{2})_[12]$", re.IGNORECASE)


@dataclass
class Corpus:
    """Prepared training and held-out recordings plus what to record about them."""

    train: list[PreparedRecording]
    heldout: list[PreparedRecording]
    description: dict[str, Any] = field(default_factory=dict)


def _subject(rec: Recording) -> str:
    """Return the person: ``Subject07`` for EEGMAT's ``Subject07_1`` / ``_2`` files, else the recording's subject."""
    match = _EEGMAT_NAME.match(rec.name)
    return match.group(1) if match else rec.subject


def _subject_holdout(recordings: list[Recording], fraction: float, seed: int) -> tuple[list[Recording],
                                                                                          list[Recording]]:
    subjects = sorted({_subject(r) for r in recordings})
    if len(subjects) < 2 or fraction <= 0:
        return recordings, []
    n_held = max(1, round(fraction * len(subjects)))
    rng = np.random.default_rng(seed)
    held = {subjects[i] for i in rng.permutation(len(subjects))[:n_held]}
    return [r for r in recordings if _subject(r) not in held], [r for r in recordings if _subject(r) in held]


def build_corpus(modality: str, data: Sequence[str | Path], *, eegmat_subjects: Sequence[int] = (),
                 holdout_fraction: float = 0.1, seed: int = 0, line_freq: float = 50.0,
                 cache: Path | None = None) -> Corpus:
    """Collect, split and preprocess a pre-training corpus (see the module docstring).

    Parameters
    ----------
    modality : str
        ``"ecg"`` or ``"eeg"``.
    data : sequence of path
        Files and folders (a cinc2017 folder is recognised by its REFERENCE.csv).
    eegmat_subjects : sequence of int
        EEGMAT subjects an EEG corpus may use (ignored for ECG: EEGMAT is excluded).
    holdout_fraction : float
        Share of records (cinc2017) or subjects (others) held out.
    seed : int
        Seed of the hold-out draw.
    line_freq : float
        Mains frequency for the notch.
    cache : Path | None
        Preprocessing cache folder.

    Raises
    ------
    DatasetError
        No usable training recording.
    """
    from rt_physio.training.finetune import DEFAULT_PREPROCESSING

    cinc_dirs: list[Path] = []
    others: list[Path] = []
    for p in map(Path, data):
        if modality == "ecg" and is_cinc2017(p):
            cinc_dirs.append(p)
        elif modality == "ecg" and p.is_dir() and any(is_cinc2017(c) for c in p.iterdir()):
            # a parent folder (e.g. the whole shared data folder): its cinc2017 part still gets its hold-out
            for child in sorted(p.iterdir()):
                (cinc_dirs if is_cinc2017(child) else others).append(child)
        else:
            others.append(p)
    train: list[Recording] = []
    held: list[Recording] = []
    desc: dict[str, Any] = {"sources": [str(p) for p in data], "holdout_fraction": holdout_fraction,
                            "holdout_seed": seed}
    for folder in cinc_dirs:
        labels = read_reference(folder)
        tr, ho = holdout_split(labels, holdout_fraction, seed)
        train += [load_cinc_record(folder, r, labels[r]) for r in tr]
        held += [load_cinc_record(folder, r, labels[r]) for r in ho]
        desc["cinc2017_heldout_records"] = ho
        desc["cinc2017_train_records"] = len(tr)
    if others:
        subjects = list(eegmat_subjects) if modality == "eeg" else []
        if modality == "eeg" and not subjects and any(p.is_dir() and any(p.glob("Subject??_?.edf")) for p in others):
            raise DatasetError("An EEGMAT folder is in --data but no --eegmat-subjects (e.g. 0-15) were given; "
                               "choose the subjects explicitly so that no cross-validation test subject is used.")
        recs = find_corpus(others, modality, train_subjects=subjects)
        if cinc_dirs:
            train += recs
            desc["other_train_recordings"] = sorted(r.name for r in recs)
        else:
            tr_o, ho_o = _subject_holdout(recs, holdout_fraction, seed)
            train += tr_o
            held += ho_o
            desc["train_subjects"] = sorted({_subject(r) for r in tr_o})
            desc["heldout_subjects"] = sorted({_subject(r) for r in ho_o})
        if modality == "eeg":
            desc["eegmat_subjects"] = sorted(int(s) for s in eegmat_subjects)
    if not train:
        raise DatasetError(f"No {modality.upper()} training recordings in {[str(p) for p in data]}.")
    if modality == "ecg":
        desc["eegmat"] = "excluded (ECG encoders never see EEGMAT)"
    pre = {modality: DEFAULT_PREPROCESSING[modality]}
    kw: dict[str, Any] = {"line_freq": line_freq, "scale_uv": 100.0, "cache_dir": cache}
    ptrain = [r for r in prepare(train, pre, **kw) if modality in r.signals]
    pheld = [r for r in prepare(held, pre, **kw) if modality in r.signals]
    desc["n_train_recordings"], desc["n_heldout_recordings"] = len(ptrain), len(pheld)
    desc["train_hours"] = round(sum(r.n_samples for r in ptrain) / 200.0 / 3600.0, 3)
    desc["heldout_hours"] = round(sum(r.n_samples for r in pheld) / 200.0 / 3600.0, 3)
    return Corpus(ptrain, pheld, desc)
