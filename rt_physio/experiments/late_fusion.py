"""Experiment: late fusion of the calibrated deep and classical models, cross-validated over subject folds.

``python -m rt_physio.experiments.late_fusion --data ../shared/data/eegmat --cv runs/cv-fusion --json OUT``

For each fold of :mod:`rt_physio.experiments.crossval` (``--cv`` holds its ``foldK`` models): on the windows with
both modalities, centred per subject on the first ``--calibrate`` seconds of rest (never scored), fit one
logistic regression on that fold's pooled deep embeddings and one on the classical features
(:mod:`rt_physio.dsp.features`), each on the 20 inner training subjects with ``C`` chosen on the 4 inner
validation subjects, and score the 4 held-out subjects with each model and with the average of their logits
(weights 0, 0.25, 0.5, 0.75, 1 on the deep model). Not a model folder: this measures whether combining the two is
worth building.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.experiments._cli import experiment_parser, start_logging
from rt_physio.training.reports import write_report

__all__ = ["WEIGHTS", "fit_scores", "main", "mix"]

log = logging.getLogger(__name__)
_MODULE = "rt_physio.experiments.late_fusion"

#: Weights of the deep model's logit in the mix (0: classical alone, 1: deep alone).
WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
_C_GRID: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def fit_scores(x: NDArray[np.float64], y: NDArray[np.float32], train: NDArray[np.bool_], val: NDArray[np.bool_],
               rows: NDArray[np.bool_], grid: Sequence[float] = _C_GRID, seed: int = 0
               ) -> tuple[NDArray[np.float64], float]:
    """Logistic regression on standardised ``x[train]``, C by AUROC on ``val``; returns logits of ``rows`` and C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    mean = x[train].mean(axis=0)
    scale = x[train].std(axis=0)
    scale[scale < 1e-8] = 1.0

    def fit(c: float) -> Any:
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
        return clf.fit((x[train] - mean) / scale, y[train].astype(int))

    best = max(grid, key=lambda c: roc_auc_score(y[val], fit(c).decision_function((x[val] - mean) / scale)))
    return np.asarray(fit(best).decision_function((x[rows] - mean) / scale), dtype=np.float64), float(best)


def mix(deep: NDArray[np.float64], classical: NDArray[np.float64], weight: float) -> NDArray[np.float64]:
    """Probabilities of the weighted average of two logits (``weight`` on the deep one)."""
    return np.asarray(1.0 / (1.0 + np.exp(-(weight * deep + (1.0 - weight) * classical))), dtype=np.float64)


def run(data: str | Path, cv: str | Path, *, calibrate: float = 60.0, fold_size: int = 4) -> dict[str, Any]:
    """Score every fold (see the module docstring); returns per-fold and mean metrics per weight."""
    from rt_physio.dsp.features import BANDS, ECG_FEATURES
    from rt_physio.nn import FusionModel, load_model
    from rt_physio.nn.classical import ClassicalModel
    from rt_physio.training.calibrated_head import embed_windows
    from rt_physio.training.calibration import baseline_mask, center_by_subject
    from rt_physio.training.classical.features import load_feature_table
    from rt_physio.training.datasets.prepare import default_cache_dir
    from rt_physio.training.metrics import binary_metrics
    from rt_physio.training.splits import subject_folds

    table = load_feature_table(data, cache=default_cache_dir() / "prepared")
    subjects = table.subjects.astype(str)
    names = sorted(set(subjects.tolist()))
    is_base = baseline_mask(table.windows, calibrate)
    usable = table.present.all(axis=1) & ~is_base
    n_ch = (table.feats.shape[1] - len(ECG_FEATURES)) // (2 * len(BANDS))
    classical_modality = ClassicalModel(n_eeg_channels=n_ch).feature_modality.numpy()
    classical, _ = center_by_subject(table.feats, table.present, subjects, is_base, classical_modality)
    folds: list[dict[str, Any]] = []
    for k, held in enumerate(subject_folds(names, fold_size)):
        rest = [s for s in names if s not in held]
        train = np.isin(subjects, rest[:-fold_size]) & usable
        val = np.isin(subjects, rest[-fold_size:]) & usable
        test = np.isin(subjects, list(held)) & usable
        module = load_model(Path(cv) / f"fold{k}").module
        assert isinstance(module, FusionModel)
        emb, present = embed_windows(module, table.windows)
        deep_x, _ = center_by_subject(emb, present, subjects, is_base, np.repeat([0, 1], emb.shape[1] // 2))
        deep, c_deep = fit_scores(deep_x, table.labels, train, val, test)
        cls, c_cls = fit_scores(classical, table.labels, train, val, test)
        y = table.labels[test]
        scores = {f"{w:g}": binary_metrics(y, mix(deep, cls, w)) for w in WEIGHTS}
        folds.append({"held_out": list(held), "C_deep": c_deep, "C_classical": c_cls, "n_windows": int(test.sum()),
                      "by_weight": {w: {m: float(v[m]) for m in ("balanced_accuracy", "auroc")}
                                    for w, v in scores.items()}})
        log.info("fold %d: %s", k, " ".join(f"w={w} {v['balanced_accuracy']:.3f}/{v['auroc']:.3f}"
                                            for w, v in scores.items()))
    mean = {w: {m: float(np.mean([f["by_weight"][w][m] for f in folds])) for m in ("balanced_accuracy", "auroc")}
            for w in folds[0]["by_weight"]}
    return {"calibrate_seconds": calibrate, "fold_size": fold_size, "weights_are_on": "the deep model's logit",
            "mean_over_folds": mean, "folds": folds}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = experiment_parser(_MODULE, __doc__)
    parser.add_argument("--cv", required=True, type=Path, help="folder of a crossval run (its foldK models)")
    parser.add_argument("--calibrate", type=float, default=60.0)
    args = parser.parse_args(argv)
    start_logging()
    report = run(args.data, args.cv, calibrate=args.calibrate)
    report["command"] = f"python -m {_MODULE} " + " ".join(argv or [])
    write_report(args.json, report)
    for w, v in report["mean_over_folds"].items():
        log.info("weight on deep %s: balanced accuracy %.3f, AUROC %.3f", w, v["balanced_accuracy"], v["auroc"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
