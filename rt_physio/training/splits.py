"""Subject-wise splits: a subject's windows are all in one part, so scores measure generalisation to new people.

* :func:`eegmat_split` — the CBraMod MentalArithmetic split: subjects 00-27 train, 28-31 validation, 32-35 test.
* :func:`subject_split` — a seeded split of any list of subjects into train / validation / test.
* :func:`subject_folds` — consecutive k-subject folds for cross-validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Split", "eegmat_split", "subject_folds", "subject_split"]


@dataclass(frozen=True)
class Split:
    """Subject ids per part."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...] = ()

def eegmat_split() -> Split:
    """Return the CBraMod split of EEGMAT: train 00-27, validation 28-31, test 32-35."""
    return Split(
        train=tuple(f"Subject{i:02d}" for i in range(28)),
        validation=tuple(f"Subject{i:02d}" for i in range(28, 32)),
        test=tuple(f"Subject{i:02d}" for i in range(32, 36)),
    )


def subject_split(subjects: Sequence[str], *, validation: int, test: int = 0, seed: int = 0) -> Split:
    """Shuffle ``subjects`` (seeded) and take ``validation`` and ``test`` of them out of training.

    Raises
    ------
    ValueError
        Fewer than ``validation + test + 1`` distinct subjects.
    """
    unique = sorted(set(subjects))
    if validation < 1 or test < 0 or len(unique) < validation + test + 1:
        raise ValueError(
            f"Cannot take {validation} validation and {test} test subjects out of {len(unique)} and keep one for "
            "training."
        )
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    return Split(
        train=tuple(sorted(order[validation + test:])),
        validation=tuple(sorted(order[:validation])),
        test=tuple(sorted(order[validation:validation + test])),
    )


def subject_folds(subjects: Sequence[str], fold_size: int) -> list[tuple[str, ...]]:
    """Consecutive folds of ``fold_size`` subjects (sorted order; the last fold may be smaller)."""
    if fold_size < 1:
        raise ValueError(f"The 'fold_size' parameter must be a positive integer, got {fold_size}.")
    unique = sorted(set(subjects))
    return [tuple(unique[i:i + fold_size]) for i in range(0, len(unique), fold_size)]
