"""The DREAMER protocols of ``rt-physio train cv --dataset dreamer``: a classical model, scored on held-out trials.

For each seed, target and fold of the protocol (:mod:`rt_physio.training.protocols`): windows are featurised and
centred on their baselines (:mod:`rt_physio.training.dreamer_trials`); the regularisation ``C`` of a logistic
regression (standardised features, missing blocks imputed by the training mean, ``class_weight="balanced"``) is
selected by the mean window-level AUROC over the fold's inner splits (carved from its training part only); the model
is refitted on the whole training part with that ``C`` and scores the test part. Scores per test part, at two
levels: *window* (each window's probability) and *trial* (the mean of its windows' probabilities, one score per film
clip). Balanced accuracy (probability >= 0.5) and AUROC per fold (per subject, pooled over its trial folds, for
subject-dependent), then mean ± SD; chance is 0.5 for both.

Every use of windows is reported to an optional ``audit`` callback (stage ``select-fit``, ``select-score``, ``fit``
or ``test``, with the trials and the baseline recordings involved), which the no-leak tests check.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.training.dreamer_trials import BASELINE_MODES, Design, TrialTable, design, load_trials, references
from rt_physio.training.metrics import binary_metrics
from rt_physio.training.protocols import Fold, make_folds

__all__ = ["C_GRID", "TARGETS", "DreamerCVConfig", "Use", "cross_validate_dreamer", "run_protocol"]

log = logging.getLogger(__name__)

#: Candidate inverse regularisation strengths.
C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
#: Targets of ``--target`` (``all`` runs each).
TARGETS = ("arousal", "valence", "dominance")
_LEVELS = ("window", "trial")
_METRICS = ("balanced_accuracy", "auroc")


@dataclass(frozen=True)
class DreamerCVConfig:
    """Arguments of :func:`cross_validate_dreamer` (the flags of ``rt-physio train cv --dataset dreamer``)."""

    data: str
    protocol: str = "loso"
    folds: int | None = None
    seeds: tuple[int, ...] = (0,)
    baseline: str = "none"
    eeg_unit: str = "uV"
    ecg_unit: str = "uV"
    targets: tuple[str, ...] = ("arousal",)
    threshold: float = 3.0
    window_s: float = 5.0
    inner_folds: int = 3
    c_grid: tuple[float, ...] = C_GRID
    line_freq: float = 50.0
    cache: str | None = None
    command: str = ""


@dataclass(frozen=True)
class Use:
    """One hand-over of windows to a model (what the ``audit`` callback receives).

    Attributes
    ----------
    seed, target, fold, stage :
        Where: ``stage`` is ``select-fit``, ``select-score``, ``fit`` or ``test``.
    trials : frozenset of str
        Trials whose stimulus windows are used.
    baseline_trials : frozenset of str
        Trials whose baseline recordings centred those windows.
    n_windows : int
    """

    seed: int
    target: str
    fold: str
    stage: str
    trials: frozenset[str]
    baseline_trials: frozenset[str]
    n_windows: int


@dataclass
class _Model:
    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    clf: Any = field(default=None)
    prior: float = 0.5

    def predict(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.clf is None:
            return np.full(x.shape[0], self.prior)
        z = np.nan_to_num((x - self.mean) / self.scale, nan=0.0)
        out: NDArray[np.float64] = self.clf.predict_proba(z)[:, 1]
        return out


def _fit(d: Design, c: float, seed: int) -> _Model:
    from sklearn.linear_model import LogisticRegression

    finite = np.isfinite(d.x)
    count = finite.sum(axis=0)
    mean = np.divide(np.where(finite, d.x, 0.0).sum(axis=0), count, out=np.zeros(d.x.shape[1]), where=count > 0)
    dev = np.where(finite, d.x - mean, 0.0)
    scale = np.sqrt(np.divide((dev ** 2).sum(axis=0), count, out=np.ones(d.x.shape[1]), where=count > 0))
    scale[scale < 1e-8] = 1.0
    model = _Model(mean, scale, prior=float(d.y.mean()) if d.y.size else 0.5)
    if np.unique(d.y).size < 2:  # one class only: the prior is all there is to learn
        return model
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
    clf.fit(np.nan_to_num((d.x - mean) / scale, nan=0.0), d.y)
    model.clf = clf
    return model


def _auroc(y: NDArray[np.int64], p: NDArray[np.float64]) -> float:
    """AUROC by ranks (Mann-Whitney U; ties share ranks); NaN without both classes."""
    from scipy.stats import rankdata

    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _scores(y: NDArray[np.int64], p: NDArray[np.float64], trial: NDArray[np.object_]) -> dict[str, dict[str, float]]:
    """Window- and trial-level balanced accuracy and AUROC (trial probability: mean of its windows')."""
    names = list(dict.fromkeys(str(t) for t in trial))
    index = {t: i for i, t in enumerate(names)}
    rows = np.array([index[str(t)] for t in trial], dtype=np.int64)
    p_trial = np.bincount(rows, weights=p, minlength=len(names)) / np.bincount(rows, minlength=len(names))
    y_trial = np.zeros(len(names), dtype=np.int64)
    y_trial[rows] = y
    out = {}
    for level, (yy, pp) in (("window", (y, p)), ("trial", (y_trial, p_trial))):
        m = binary_metrics(yy, pp)
        out[level] = {"n": int(m["n_windows"]), "n_positive": int(m["n_positive"]),
                      **{k: float(m[k]) for k in _METRICS}}
    return out


def _select(table: TrialTable, fold: Fold, target: str, refs: Any, c_grid: Sequence[float], seed: int,
            audit: Callable[[Use], None] | None) -> tuple[float, float]:
    """Pick ``C`` by mean window AUROC over the fold's inner splits; (C, its mean AUROC)."""
    pairs = [(design(table, fit, target, refs), design(table, sel, target, refs)) for fit, sel in fold.inner]
    if audit is not None:
        for fit_d, sel_d in pairs:
            for stage, d in (("select-fit", fit_d), ("select-score", sel_d)):
                audit(Use(seed, target, fold.name, stage, frozenset(str(t) for t in d.trial), d.baseline_trials,
                          len(d.y)))
    best_c, best = c_grid[len(c_grid) // 2], -math.inf
    for c in c_grid:
        values = [_auroc(sel_d.y, _fit(fit_d, c, seed).predict(sel_d.x)) for fit_d, sel_d in pairs]
        finite = [v for v in values if math.isfinite(v)]
        score = float(np.mean(finite)) if finite else -math.inf
        if score > best:  # ties keep the smaller C (stronger regularisation)
            best_c, best = c, score
    return best_c, best


def run_protocol(table: TrialTable, protocol: str, *, target: str, baseline: str = "none", seed: int = 0,
                 folds: int | None = None, inner_folds: int = 3, c_grid: Sequence[float] = C_GRID,
                 audit: Callable[[Use], None] | None = None) -> dict[str, Any]:
    """Run one protocol for one target and seed; per-group scores, their mean ± SD, and pooled scores."""
    if target not in table.labels:
        raise ValueError(f"The 'target' parameter must be one of {list(table.labels)}, got {target!r}.")
    if baseline not in BASELINE_MODES:
        raise ValueError(f"The 'baseline' parameter must be one of {list(BASELINE_MODES)}, got {baseline!r}.")
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # (a scikit-learn dependency)

    plan = make_folds(protocol, table.subject_of, folds=folds, inner_folds=inner_folds, seed=seed,
                      labels=table.labels[target])
    with threadpool_limits(limits=1):  # hundreds of small fits: BLAS threads only contend
        return _run(table, plan, target, baseline, seed, c_grid, audit)


def _run(table: TrialTable, plan: Sequence[Fold], target: str, baseline: str, seed: int, c_grid: Sequence[float],
         audit: Callable[[Use], None] | None) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    preds: dict[str, list[tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.object_]]]] = {}
    for fold in plan:
        refs = references(table, baseline, fold)
        c, inner_auroc = _select(table, fold, target, refs, c_grid, seed, audit)
        train, test = design(table, fold.train, target, refs), design(table, fold.test, target, refs)
        if audit is not None:
            for stage, d in (("fit", train), ("test", test)):
                audit(Use(seed, target, fold.name, stage, frozenset(str(t) for t in d.trial), d.baseline_trials,
                          len(d.y)))
        p = _fit(train, c, seed).predict(test.x)
        preds.setdefault(fold.group, []).append((test.y, p, test.trial))
        groups.setdefault(fold.group, {"group": fold.group, "folds": []})["folds"].append(
            {"fold": fold.name, "test_trials": list(fold.test), "C": c,
             "selection_window_auroc": inner_auroc if math.isfinite(inner_auroc) else math.nan})
    for name, parts in preds.items():
        y, p, trial = (np.concatenate([x[i] for x in parts]) for i in range(3))
        groups[name].update(_scores(y, p, trial))
    all_y, all_p, all_t = (np.concatenate([x[i] for parts in preds.values() for x in parts]) for i in range(3))
    per_group = list(groups.values())
    return {"seed": seed, "groups": per_group, "summary": _summary(per_group),
            "pooled": _scores(all_y, all_p, all_t)}


def _summary(entries: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | int]]]:
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for level in _LEVELS:
        out[level] = {}
        for m in _METRICS:
            values = [float(e[level][m]) for e in entries if math.isfinite(float(e[level][m]))]
            out[level][m] = {"mean": float(np.mean(values)) if values else math.nan,
                             "sd": float(np.std(values)) if values else math.nan, "n": len(values)}
    return out


def cross_validate_dreamer(cfg: DreamerCVConfig, *, audit: Callable[[Use], None] | None = None) -> dict[str, Any]:
    """Run ``cfg`` end to end (load, featurise, every target and seed); returns the JSON-ready report."""
    from rt_physio.training.datasets.prepare import default_cache_dir

    start = time.monotonic()
    bad = [t for t in cfg.targets if t not in TARGETS]
    if bad or not cfg.targets:
        raise ValueError(f"The 'targets' parameter must hold some of {list(TARGETS)}, got {list(cfg.targets)}.")
    if not cfg.seeds:
        raise ValueError("The 'seeds' parameter must hold at least one seed.")
    cache = Path(cfg.cache) if cfg.cache else default_cache_dir() / "prepared"
    table = load_trials(cfg.data, eeg_unit=cfg.eeg_unit, ecg_unit=cfg.ecg_unit, threshold=cfg.threshold,
                        window_s=cfg.window_s, line_freq=cfg.line_freq, cache=cache)
    targets: dict[str, Any] = {}
    for target in cfg.targets:
        runs = [run_protocol(table, cfg.protocol, target=target, baseline=cfg.baseline, seed=seed, folds=cfg.folds,
                             inner_folds=cfg.inner_folds, c_grid=cfg.c_grid, audit=audit) for seed in cfg.seeds]
        over_seeds = _summary([g for r in runs for g in r["groups"]])
        for level in _LEVELS:
            for m in _METRICS:
                means = [float(r["summary"][level][m]["mean"]) for r in runs]
                over_seeds[level][m]["sd_of_seed_means"] = float(np.std(means)) if len(means) > 1 else 0.0
        positives = sum(table.labels[target].values())
        targets[target] = {"high_trials": positives, "low_trials": len(table.labels[target]) - positives,
                           "summary": over_seeds, "seeds": runs}
        log.info("%s %s baseline=%s: trial AUROC %.3f ± %.3f, window AUROC %.3f ± %.3f", cfg.protocol, target,
                 cfg.baseline, over_seeds["trial"]["auroc"]["mean"], over_seeds["trial"]["auroc"]["sd"],
                 over_seeds["window"]["auroc"]["mean"], over_seeds["window"]["auroc"]["sd"])
    return {
        "dataset": "dreamer", "data": str(cfg.data), "protocol": cfg.protocol, "folds": cfg.folds,
        "baseline": cfg.baseline, "threshold": cfg.threshold, "label_rule": f"score > {cfg.threshold:g} is high",
        "units": {"eeg": cfg.eeg_unit, "ecg": cfg.ecg_unit}, "observed_amplitude_uv": table.amplitude_uv,
        "window_s": cfg.window_s, "inner_folds": cfg.inner_folds, "c_grid": list(cfg.c_grid),
        "model": "logistic regression on band powers per EEG channel + heart rate/SDNN/RMSSD (C selected on inner "
                 "splits of the training part)",
        "n_subjects": len(set(table.subject_of.values())), "n_trials": len(table.subject_of),
        "n_stimulus_windows": int((~table.is_baseline).sum()), "n_baseline_windows": int(table.is_baseline.sum()),
        "seeds": list(cfg.seeds), "chance": {"balanced_accuracy": 0.5, "auroc": 0.5}, "targets": targets,
        "seconds": time.monotonic() - start, "command": cfg.command,
    }
