"""Training the hybrid model (:mod:`rt_physio.nn.hybrid`): cached window features, the linear head, Platt maps.

* :func:`load_windows` — EEGMAT windows (5 s, non-overlapping, the engine's DSP), as ``rt-physio evaluate`` cuts
  them.
* :func:`cached_features` — a model's :meth:`~rt_physio.nn.hybrid.HybridModel.features` of every window, computed
  once and kept in an ``.npz`` (classical block; frozen embeddings per encoder and seed), so that CV folds and
  seeds cost only the head; :func:`classical_block` is that of the montage-agnostic classical features.
* :func:`fit_head` — standardisation + logistic regression (class-balanced, L2 ``C``) on rows augmented with
  modality dropout (every EEG + ECG row also appears as EEG-only and ECG-only), so one head serves every set.
* :func:`fit_platt` — one Platt map per modality set on held-out logits (class-balanced weights: 0.5 stays the
  balanced decision point).
* :func:`fit_head_with_platt` — the head and its Platt maps, fitted on logits of rows held out of the head.
* :func:`centre` — features centred on each person's first ``S`` s of rest (the calibrated variant).
* :func:`select_c` — C by inner cross-validation over subject folds (mean AUROC over the three modality sets).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from rt_physio.nn.classical import ClassicalModel
from rt_physio.nn.hybrid import SET_NAMES, HybridHead, HybridModel
from rt_physio.training.calibration import baseline_mask, center_by_subject, population_fallback
from rt_physio.training.classical.features import CLASSICAL_PREPROCESSING
from rt_physio.training.datasets.prepare import prepare
from rt_physio.training.datasets.windows import WindowDataset

__all__ = [
    "C_GRID",
    "SET_MASKS",
    "Block",
    "HeadParams",
    "Windows",
    "cached_features",
    "centre",
    "classical_block",
    "dropout_rows",
    "fingerprint",
    "fit_head",
    "fit_head_with_platt",
    "fit_platt",
    "fit_with_oof_platt",
    "head_logits",
    "load_windows",
    "select_c",
    "set_flags",
]

log = logging.getLogger(__name__)
#: Inverse regularisation strengths tried by :func:`select_c` (log-spaced, 1e-3 to 1e2).
C_GRID: tuple[float, ...] = (0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316, 1.0, 3.16, 10.0, 31.6, 100.0)
#: Which presence flags each modality set keeps (eeg, ecg), in the order of :data:`SET_NAMES`.
SET_MASKS: dict[str, tuple[bool, bool]] = {"eeg,ecg": (True, True), "eeg": (True, False), "ecg": (False, True)}
SFREQ, WINDOW_S, SCALE_UV = 200.0, 5.0, 100.0


@dataclass
class Windows:
    """The windows of a dataset and what scoring needs (labels, subjects, calibration windows)."""

    dataset: WindowDataset
    labels: NDArray[np.float64]
    subjects: NDArray[np.object_]

    def __len__(self) -> int:
        """Return the number of windows."""
        return len(self.labels)

    def baseline(self, seconds: float) -> NDArray[np.bool_]:
        """Mark the calibration windows: the first ``seconds`` of each rest recording."""
        return baseline_mask(self.dataset, seconds)


def load_windows(data: str | Path, subjects: Sequence[int], cache: Path | None = None) -> Windows:
    """EEGMAT windows of ``subjects`` (all EEG channels of the files, the ECG lead)."""
    from rt_physio.training.datasets.eegmat import EEGMAT_LABEL, EEGMAT_LINE_FREQ, load_eegmat

    recs = load_eegmat(data, list(subjects))
    prepared = prepare(recs, CLASSICAL_PREPROCESSING, line_freq=EEGMAT_LINE_FREQ, scale_uv=SCALE_UV, sfreq_out=SFREQ,
                       cache_dir=cache)
    ds = WindowDataset(prepared, [EEGMAT_LABEL], window_s=WINDOW_S, hop_s=WINDOW_S, modalities=("eeg", "ecg"))
    return Windows(ds, ds.labels[:, 0].astype(np.float64), ds.subjects)


def fingerprint(windows: Windows) -> str:
    """Hash which windows these are (subjects, starts, labels): the key of every feature cache."""
    h = hashlib.sha256()
    for arr in (windows.subjects.astype(str), windows.dataset.starts, windows.labels):
        h.update(np.ascontiguousarray(arr).tobytes() if arr.dtype != object else "|".join(arr).encode())
    return h.hexdigest()[:16]


def cached_features(model: HybridModel | ClassicalModel, windows: Windows, path: Path | None
                    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """``model.features`` of every window (each with the modalities its recording has), cached in ``path``."""
    from rt_physio.training.evaluate import model_features

    key = fingerprint(windows)
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key and z["feats"].shape[1] == model.n_features:
                return z["feats"], z["present"]
    with torch.inference_mode():
        feats, present = model_features(model, windows.dataset, batch_size=32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, feats=feats, present=present, key=np.array(key))
    return feats, present


#: Features of every window, their presence flags (eeg, ecg) and each column's modality (0 EEG, 1 ECG).
Block = tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.int64]]


def classical_block(windows: Windows, cache: Path) -> Block:
    """Compute (or read from ``cache``) the montage-agnostic classical features of every window."""
    model = HybridModel(None, None, features=True)
    x, p = cached_features(model, windows, cache / "classical.npz")
    return x, p, model.feature_modality.numpy()


@dataclass
class HeadParams:
    """A fitted :class:`~rt_physio.nn.hybrid.HybridHead` in numpy (one output)."""

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    coef: NDArray[np.float64]
    flag_coef: NDArray[np.float64]
    intercept: float
    platt: NDArray[np.float64]  # (3, 2): a, b per modality set

    def load_into(self, head: HybridHead) -> None:
        """Copy into a torch head (one output)."""
        with torch.no_grad():
            head.mean.copy_(torch.from_numpy(self.mean))
            head.scale.copy_(torch.from_numpy(self.scale))
            head.coef.copy_(torch.from_numpy(self.coef)[None, :])
            head.flag_coef.copy_(torch.from_numpy(self.flag_coef)[None, :])
            head.intercept.fill_(self.intercept)
            head.platt.copy_(torch.from_numpy(self.platt)[:, None, :])


def set_flags(present: NDArray[np.bool_], name: str) -> NDArray[np.bool_]:
    """Presence flags restricted to a modality set's modalities."""
    out: NDArray[np.bool_] = present & np.array(SET_MASKS[name])[None, :]
    return out


def _standardised(x: NDArray[np.floating], flags: NDArray[np.bool_], fm: NDArray[np.int64], mean: NDArray[np.float64],
                  scale: NDArray[np.float64]) -> NDArray[np.float64]:
    z = (np.asarray(x, dtype=np.float64) - mean) / scale
    return z * flags[:, fm]


def head_logits(p: HeadParams, x: NDArray[np.floating], flags: NDArray[np.bool_], fm: NDArray[np.int64],
                platt: bool = True) -> NDArray[np.float64]:
    """Logits of rows (with their flags), as :class:`~rt_physio.nn.hybrid.HybridHead` computes them."""
    raw = _standardised(x, flags, fm, p.mean, p.scale) @ p.coef + flags.astype(np.float64) @ p.flag_coef + p.intercept
    if not platt:
        return np.asarray(raw, dtype=np.float64)
    idx = np.where(flags[:, 0] & flags[:, 1], 0, np.where(flags[:, 0], 1, 2))
    return np.asarray(p.platt[idx, 0] * raw + p.platt[idx, 1], dtype=np.float64)


def fit_head(x: NDArray[np.floating], present: NDArray[np.bool_], y: NDArray[np.floating], fm: NDArray[np.int64],
             c: float) -> HeadParams:
    """Standardise and fit a class-balanced L2 logistic regression with modality-dropout rows (identity Platt).

    Every row with both modalities enters three times: as is, with ECG dropped and with EEG dropped (a dropped
    block's standardised features are 0 and its flag 0), so the head has seen every modality set.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    mean = np.zeros(x.shape[1])
    scale = np.ones(x.shape[1])
    for m in range(2):
        cols, rows = fm == m, present[:, m]
        if rows.any() and cols.any():
            mean[cols] = x[rows][:, cols].mean(axis=0)
            scale[cols] = x[rows][:, cols].std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    both = present.all(axis=1)
    flag_sets = [present, set_flags(present[both], "eeg"), set_flags(present[both], "ecg")]
    x_sets = [x, x[both], x[both]]
    y_sets = [y, y[both], y[both]]
    z = np.concatenate([_standardised(xs, fl, fm, mean, scale) for xs, fl in zip(x_sets, flag_sets, strict=True)])
    flags = np.concatenate(flag_sets).astype(np.float64)
    keep = flags.any(axis=1)
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    lr.fit(np.concatenate([z, flags], axis=1)[keep], np.concatenate(y_sets)[keep])
    coef = lr.coef_[0]
    platt = np.tile(np.array([1.0, 0.0]), (len(SET_NAMES), 1))
    return HeadParams(mean, scale, coef[:-2].copy(), coef[-2:].copy(), float(lr.intercept_[0]), platt)


def fit_platt(raw: NDArray[np.floating], present: NDArray[np.bool_], y: NDArray[np.floating]
              ) -> NDArray[np.float64]:
    """Per modality set, ``(a, b)`` mapping held-out raw logits to class-balanced probabilities, ``(3, 2)``.

    ``raw`` are the head's logits before any Platt map for rows with presence flags ``present`` (each row
    belongs to the set its flags give). A set without both classes among the rows keeps the identity; a slope is
    kept at least 0.05 (a head that does not rank held-out rows is not turned upside down).
    """
    from sklearn.linear_model import LogisticRegression

    out = np.tile(np.array([1.0, 0.0]), (len(SET_NAMES), 1))
    for k, name in enumerate(SET_NAMES):
        want = np.array(SET_MASKS[name])
        rows = (present == want[None, :]).all(axis=1)
        if rows.sum() < 4 or len(np.unique(y[rows])) < 2:
            continue
        lr = LogisticRegression(C=100.0, class_weight="balanced", max_iter=1000).fit(raw[rows][:, None], y[rows])
        out[k] = (max(float(lr.coef_[0, 0]), 0.05), float(lr.intercept_[0]))
    return out


def fit_head_with_platt(x: NDArray[np.floating], present: NDArray[np.bool_], y: NDArray[np.floating],
                        fm: NDArray[np.int64], c: float, final_rows: NDArray[np.bool_],
                        platt_splits: Sequence[tuple[NDArray[np.bool_], NDArray[np.bool_]]]) -> HeadParams:
    """Fit the head on ``final_rows`` and its per-set Platt maps on logits of rows held out of a head.

    For each ``(fit_rows, held_rows)`` of ``platt_splits``, a head fitted on ``fit_rows`` with ``C = c`` gives the
    raw logits of ``held_rows`` and of their modality-dropout copies (:func:`dropout_rows`); :func:`fit_platt` fits
    the maps on all of them together, so no logit comes from a head that saw its row.

    Returns
    -------
    HeadParams
        :func:`fit_head` on ``final_rows``, with those Platt maps.
    """
    raw, flags, labels = [], [], []
    for fit_rows, held_rows in platt_splits:
        head = fit_head(x[fit_rows], present[fit_rows], y[fit_rows], fm, c)
        xh, ph, yh = dropout_rows(x[held_rows], present[held_rows], y[held_rows])
        raw.append(head_logits(head, xh, ph, fm, platt=False))
        flags.append(ph)
        labels.append(yh)
    final = fit_head(x[final_rows], present[final_rows], y[final_rows], fm, c)
    final.platt = fit_platt(np.concatenate(raw), np.concatenate(flags), np.concatenate(labels))
    return final


def fit_with_oof_platt(x: NDArray[np.floating], present: NDArray[np.bool_], y: NDArray[np.floating],
                       fm: NDArray[np.int64], subjects: NDArray[np.object_], rows: NDArray[np.bool_], c: float,
                       folds: Sequence[Sequence[str]]) -> HeadParams:
    """Fit the head on ``rows`` with per-set Platt maps fitted on out-of-fold logits of those same rows.

    Each subject fold's rows (``folds``: the subjects of ``rows``, e.g. those :func:`select_c` chose C over) are
    scored by a head fitted on the other folds. This is the recipe the shipped model is trained with
    (:mod:`rt_physio.training.hybrid_ship`) and the one the CV scores (:mod:`rt_physio.experiments.hybrid_cv`, on
    the training side of each outer fold).
    """
    held_out = [rows & np.isin(subjects, list(fold)) for fold in folds]
    return fit_head_with_platt(x, present, y, fm, c, rows, [(rows & ~held, held) for held in held_out])


def dropout_rows(x: NDArray[np.floating], present: NDArray[np.bool_], y: NDArray[np.floating]
                 ) -> tuple[NDArray[np.floating], NDArray[np.bool_], NDArray[np.floating]]:
    """Rows as they are, plus every EEG + ECG row as EEG-only and as ECG-only (for the per-set Platt maps)."""
    both = present.all(axis=1)
    flags = np.concatenate([present, set_flags(present[both], "eeg"), set_flags(present[both], "ecg")])
    return np.concatenate([x, x[both], x[both]]), flags, np.concatenate([y, y[both], y[both]])


def centre(x: NDArray[np.floating], present: NDArray[np.bool_], windows: Windows, is_base: NDArray[np.bool_],
           fm: NDArray[np.int64], fallback_rows: NDArray[np.bool_]) -> tuple[NDArray[np.float64],
                                                                             NDArray[np.float64]]:
    """Centre every subject on its own baseline windows; returns the features and the population fallback.

    The fallback (for a modality a person's baseline lacks) is the mean baseline of the subjects in
    ``fallback_rows`` (the training subjects: nothing of the scored people enters it).
    """
    _, baselines = center_by_subject(x, present, windows.subjects, is_base, fm)
    train_subjects = set(windows.subjects[fallback_rows].tolist())
    fallback = population_fallback({s: b for s, b in baselines.items() if s in train_subjects}, fm)
    centred, _ = center_by_subject(x, present, windows.subjects, is_base, fm, fallback)
    return centred, fallback


def _auroc(y: NDArray[np.floating], s: NDArray[np.floating]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")


def select_c(x: NDArray[np.floating], present: NDArray[np.bool_], y: NDArray[np.floating], fm: NDArray[np.int64],
             subjects: NDArray[np.object_], train_rows: NDArray[np.bool_], score_rows: NDArray[np.bool_],
             folds: Sequence[Sequence[str]], grid: Sequence[float] = C_GRID) -> tuple[float, dict[str, float]]:
    """Choose C by inner cross-validation over subject ``folds`` (the training side only).

    For each fold, the head is fitted on ``train_rows`` of the other folds and scored on ``score_rows`` of that
    fold on each modality set (EEG + ECG, EEG, ECG: flags restricted to the set). The score of a C is the mean
    over folds of the mean AUROC over the sets; the best wins (ties: the smaller C). Returns C and the scores.
    """
    per_c: dict[float, list[float]] = {c: [] for c in grid}
    for fold in folds:
        held = np.isin(subjects, list(fold))
        tr, va = train_rows & ~held, score_rows & held
        for c in grid:
            p = fit_head(x[tr], present[tr], y[tr], fm, c)
            aurocs = []
            for name in SET_NAMES:
                flags = set_flags(present[va], name)
                rows = flags.any(axis=1)
                aurocs.append(_auroc(y[va][rows], head_logits(p, x[va][rows], flags[rows], fm, platt=False)))
            per_c[c].append(float(np.nanmean(aurocs)) if np.isfinite(aurocs).any() else float("nan"))
    score = {c: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for c, v in per_c.items()}
    best = max(grid, key=lambda c: (np.nan_to_num(score[c], nan=-1.0), -c))
    return best, {str(c): v for c, v in score.items()}
