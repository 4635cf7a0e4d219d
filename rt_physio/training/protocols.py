"""Evaluation protocols: which trials train, which select, which test, per fold.

A protocol splits *trials* (a trial is one labelled recording of one subject, e.g. a DREAMER film clip; its windows
always stay together) into folds. Each :class:`Fold` has a test part and a training part, and *inner* splits carved
from the training part only, on which hyper-parameters are selected; the test part never trains or selects.

* ``loso`` — leave one subject out: each subject is the test part once; inner splits are subject folds of the
  other subjects.
* ``kfold`` — ``k`` folds of subjects (seeded shuffle): each fold's subjects are the test part once; inner splits
  are subject folds of the other subjects.
* ``subject-dependent`` — within each subject, ``k`` folds of its trials (seeded, stratified by label when labels
  are given): each trial fold is the test part once and the subject's other trials train; inner splits are trial
  folds of those training trials. No window of a test trial is ever in training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PROTOCOLS", "Fold", "check_fold", "make_folds"]

#: Protocol names accepted by :func:`make_folds`.
PROTOCOLS = ("loso", "kfold", "subject-dependent")


@dataclass(frozen=True)
class Fold:
    """One train / test division of trials.

    Attributes
    ----------
    name : str
        ``"S03"`` (loso), ``"fold2"`` (kfold), ``"S03/fold1"`` (subject-dependent).
    group : str
        What scores are reported per: the fold itself (loso, kfold) or the subject (subject-dependent, whose
        trial folds are pooled per subject).
    train : tuple of str
        Trials that fit the final model of the fold.
    test : tuple of str
        Trials scored, never used to fit or select.
    inner : tuple of (fit, select) pairs of tuples of str
        Divisions of ``train`` used to select hyper-parameters.
    """

    name: str
    group: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    inner: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]


def make_folds(protocol: str, subject_of: Mapping[str, str], *, folds: int | None = None, inner_folds: int = 3,
               seed: int = 0, labels: Mapping[str, int] | None = None) -> list[Fold]:
    """Folds of a protocol (see the module docstring).

    Parameters
    ----------
    protocol : str
        ``"loso"``, ``"kfold"`` or ``"subject-dependent"``.
    subject_of : Mapping[str, str]
        Trial id -> subject id.
    folds : int | None
        ``k`` of kfold (default 5) or of subject-dependent (default 3); must be None or ignored for loso.
    inner_folds : int
        Inner selection splits (capped by the training subjects or trials available, at least 2).
    seed : int
        Seeds every shuffle (loso's outer folds do not depend on it).
    labels : Mapping[str, int] | None
        Trial id -> class, to stratify the trial folds of subject-dependent.

    Returns
    -------
    list of Fold
        Every trial is in exactly one fold's test part.

    Raises
    ------
    ValueError
        Unknown protocol, or too few subjects / trials for the folds asked.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"The 'protocol' parameter must be one of {list(PROTOCOLS)}, got {protocol!r}.")
    if inner_folds < 2:
        raise ValueError(f"The 'inner_folds' parameter must be at least 2, got {inner_folds}.")
    by_subject: dict[str, list[str]] = {}
    for trial, subject in subject_of.items():
        by_subject.setdefault(subject, []).append(trial)
    subjects = sorted(by_subject)
    rng = np.random.default_rng(seed)
    out: list[Fold] = []
    if protocol == "subject-dependent":
        k = 3 if folds is None else folds
        fewest = min(len(t) for t in by_subject.values()) if by_subject else 0
        if k < 2 or k > fewest:
            raise ValueError(f"subject-dependent needs 2 <= folds <= the fewest trials of a subject ({fewest}), "
                             f"got {k}.")
        for subject in subjects:
            trials = sorted(by_subject[subject])
            for i, test in enumerate(_deal(trials, k, rng, labels)):
                train = [t for t in trials if t not in test]
                inner = _inner(train, lambda t: t, inner_folds, rng, labels)
                out.append(Fold(f"{subject}/fold{i}", subject, tuple(sorted(train)), tuple(sorted(test)), inner))
    else:
        if protocol == "loso":
            if folds is not None and folds != len(subjects):
                raise ValueError(f"loso has one fold per subject ({len(subjects)}); do not set folds ({folds}).")
            groups = [[s] for s in subjects]
        else:
            k = 5 if folds is None else folds
            if k < 2 or k > len(subjects):
                raise ValueError(f"kfold needs 2 <= folds <= the number of subjects ({len(subjects)}), got {k}.")
            groups = [sorted(g) for g in _deal(subjects, k, rng, None)]
        if len(subjects) < 3:
            raise ValueError(f"{protocol} needs at least 3 subjects (test, and two to select on), got "
                             f"{len(subjects)}.")
        for i, held in enumerate(groups):
            rest = [s for s in subjects if s not in held]
            train = sorted(t for s in rest for t in by_subject[s])
            test = sorted(t for s in held for t in by_subject[s])
            inner = _inner(train, subject_of.__getitem__, inner_folds, rng, None)
            name = held[0] if protocol == "loso" else f"fold{i}"
            out.append(Fold(name, name, tuple(train), tuple(test), inner))
    for fold in out:
        check_fold(fold, subject_of, within_subject=protocol == "subject-dependent")
    return out


def check_fold(fold: Fold, subject_of: Mapping[str, str], *, within_subject: bool) -> None:
    """Raise ValueError when a fold lets a test trial (or, across subjects, a test subject) train or select."""
    test = set(fold.test)
    if test & set(fold.train):
        raise ValueError(f"Fold {fold.name}: trials {sorted(test & set(fold.train))} are both train and test.")
    for fit, select in fold.inner:
        if not set(fit) | set(select) <= set(fold.train) or set(fit) & set(select):
            raise ValueError(f"Fold {fold.name}: an inner split leaves the training part or overlaps itself.")
    if not within_subject:
        shared = {subject_of[t] for t in test} & {subject_of[t] for t in fold.train}
        if shared:
            raise ValueError(f"Fold {fold.name}: subjects {sorted(shared)} are both train and test.")


def _deal(items: Sequence[str], k: int, rng: np.random.Generator,
          labels: Mapping[str, int] | None) -> list[list[str]]:
    """Shuffle ``items`` and deal them into ``k`` groups (class by class when ``labels`` are given)."""
    order = [items[i] for i in rng.permutation(len(items))]
    if labels is not None:
        order.sort(key=lambda t: labels[t])  # stable: shuffled within a class, then dealt round-robin
    groups: list[list[str]] = [[] for _ in range(k)]
    for i, item in enumerate(order):
        groups[i % k].append(item)
    return groups


def _inner(train: Sequence[str], unit_of: Callable[[str], str], inner_folds: int, rng: np.random.Generator,
           labels: Mapping[str, int] | None) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """Inner (fit, select) splits of ``train`` by unit (subject, or the trial itself)."""
    units = sorted({unit_of(t) for t in train})
    k = min(inner_folds, len(units))
    if k < 2:
        raise ValueError(f"Too few training units ({len(units)}) to carve a selection part from.")
    unit_labels = None if labels is None else {u: labels[u] for u in units if u in labels}
    if unit_labels is not None and len(unit_labels) != len(units):
        unit_labels = None
    out = []
    for select_units in _deal(units, k, rng, unit_labels):
        chosen = set(select_units)
        fit = tuple(t for t in train if unit_of(t) not in chosen)
        select = tuple(t for t in train if unit_of(t) in chosen)
        out.append((fit, select))
    return tuple(out)
