"""The PhysioNet/CinC Challenge 2017 single-lead ECG records (``cinc2017/`` in the shared data folder).

Each record is ``A0NNNN.mat`` (MATLAB v4, variable ``val``, int16, 1000 adu/mV, baseline 0) with a WFDB header
``A0NNNN.hea`` (300 Hz, one signal); ``REFERENCE.csv`` gives a rhythm label per record: N normal, A atrial
fibrillation, O other rhythm, ``~`` too noisy. Labels are never a pre-training target; they serve the linear probe
(:mod:`rt_physio.training.probe`).

:func:`holdout_split` draws a seeded, label-stratified hold-out of records that pre-training never sees; the same
``(fraction, seed)`` always gives the same records, so the probe can be run on exactly the records an encoder was
not trained on (the encoder's ``encoder.json`` records them).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rt_physio.errors import DatasetError
from rt_physio.io import Recording, Signal

__all__ = ["CINC_LABELS", "holdout_split", "is_cinc2017", "load_cinc2017", "load_cinc_record", "read_reference"]

#: Label codes of REFERENCE.csv.
CINC_LABELS = ("N", "A", "O", "~")
_ADU_PER_MV = 1000.0
_DEFAULT_FS = 300.0


def is_cinc2017(folder: str | Path) -> bool:
    """Whether ``folder`` looks like the cinc2017 folder (a ``REFERENCE.csv`` beside ``A*.mat`` records)."""
    folder = Path(folder)
    return folder.is_dir() and (folder / "REFERENCE.csv").is_file() and any(folder.glob("A*.mat"))


def read_reference(folder: str | Path) -> dict[str, str]:
    """``REFERENCE.csv`` as ``{record: label}`` (records in file order).

    Raises
    ------
    DatasetError
        Missing file or an unknown label.
    """
    path = Path(folder) / "REFERENCE.csv"
    if not path.is_file():
        raise DatasetError(f"{path}: missing (the cinc2017 folder needs its REFERENCE.csv).")
    labels: dict[str, str] = {}
    with path.open(newline="") as fh:
        for row in csv.reader(fh):
            if not row:
                continue
            if len(row) != 2 or row[1].strip() not in CINC_LABELS:
                raise DatasetError(f"{path}: unexpected row {row!r} (want record,label with label in {CINC_LABELS}).")
            labels[row[0].strip()] = row[1].strip()
    return labels


def _header_fs(hea: Path) -> float:
    try:
        first = hea.read_text().split("\n", 1)[0].split()
        return float(first[2].split("/")[0])
    except (OSError, IndexError, ValueError):
        return _DEFAULT_FS


def load_cinc_record(folder: str | Path, record: str, label: str | None = None) -> Recording:
    """Read one record in µV.

    Parameters
    ----------
    folder : str | Path
        The cinc2017 folder.
    record : str
        ``A00001`` etc.
    label : str | None
        Its REFERENCE.csv label, stored as ``condition`` (``labels`` stays empty: not a training target).

    Raises
    ------
    DatasetError
        Missing or unreadable ``.mat`` file, or no ``val`` variable.
    """
    import scipy.io

    folder = Path(folder)
    mat = folder / f"{record}.mat"
    try:
        val = scipy.io.loadmat(str(mat))["val"]
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"{mat}: not a readable cinc2017 record ({exc!r}).") from exc
    data = (np.asarray(val, dtype=np.float64).reshape(-1, 1) * (1000.0 / _ADU_PER_MV)).astype(np.float32)  # µV
    fs = _header_fs(folder / f"{record}.hea")
    return Recording(mat, "cinc2017", {"ecg": Signal("ecg", data, fs, ("I",))}, name=record, subject=record,
                     condition=label or "unlabelled")


def holdout_split(labels: dict[str, str], fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split records into (pre-training, held-out), stratified by label and seeded.

    Within each label the records are shuffled by ``numpy.random.default_rng(seed)`` (labels in
    :data:`CINC_LABELS` order) and ``round(fraction * n)`` of them are held out.

    Returns
    -------
    (train, held_out) : two sorted lists of record names, disjoint, together all of ``labels``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"The 'fraction' parameter must be in [0, 1), got {fraction!r}.")
    rng = np.random.default_rng(seed)
    held: list[str] = []
    for code in CINC_LABELS:
        members = sorted(r for r, lab in labels.items() if lab == code)
        order = rng.permutation(len(members))
        held.extend(members[i] for i in order[: round(fraction * len(members))])
    held_set = set(held)
    return sorted(r for r in labels if r not in held_set), sorted(held)


def load_cinc2017(folder: str | Path, records: Sequence[str] | None = None) -> list[Recording]:
    """Load records of the cinc2017 folder (all of REFERENCE.csv by default), in µV, label as ``condition``.

    Raises
    ------
    DatasetError
        Missing folder, REFERENCE.csv or record.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (expected the cinc2017 records; see ../shared/data).")
    labels = read_reference(folder)
    names = list(labels) if records is None else list(records)
    return [load_cinc_record(folder, r, labels.get(r)) for r in names]
