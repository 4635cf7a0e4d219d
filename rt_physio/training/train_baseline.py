"""Training the classical baseline (``rt-physio train baseline``) and its subject-fold cross-validation.

Windows are cut exactly as ``rt-physio evaluate`` cuts them (the engine's DSP via
:func:`~rt_physio.training.datasets.base.prepare`, 5-s non-overlapping windows in model units), turned into
:func:`~rt_physio.dsp.features.channel_features`, and three logistic regressions are fitted (EEG + ECG, EEG
alone, ECG alone; ``class_weight="balanced"``). The regularisation ``C`` is chosen on the validation subjects'
AUROC of the EEG + ECG set. With ``calibrate = S`` a second, calibrated parameter set is fitted on features
centred per subject on the first ``S`` seconds of that subject's rest recording
(:mod:`rt_physio.training.calibration`); those calibration windows are never trained on or scored.

Scoring mirrors :mod:`rt_physio.training.evaluate`: for a modality set, the model sees only the set's modalities,
and a window is scored when at least one of them gave features; a window whose ECG has no plausible beats counts as
lacking ECG (the EEG classifier scores it in the EEG + ECG set; the ECG-only set does not score it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from rt_physio.dsp.features import BANDS, ECG_FEATURES, channel_features
from rt_physio.errors import ConfigError
from rt_physio.nn.classical import MODALITY_SETS, ClassicalModel, LogisticHead
from rt_physio.nn.fusion import MODALITIES
from rt_physio.nn.registry import save_model
from rt_physio.nn.spec import SCHEMA, Preprocessing
from rt_physio.training.calibration import baseline_mask, center_by_subject, population_fallback
from rt_physio.training.datasets.base import WindowDataset, default_cache_dir, prepare
from rt_physio.training.metrics import binary_metrics, json_safe
from rt_physio.training.splits import eegmat_split, subject_folds

__all__ = [
    "BASELINE_PREPROCESSING",
    "C_GRID",
    "BaselineConfig",
    "BaselineResult",
    "FeatureTable",
    "cross_validate",
    "fit_baseline",
    "load_feature_table",
    "score",
    "train_baseline",
]

log = logging.getLogger(__name__)

#: Engine filtering per modality (the same as the fusion model's, so both see the same signal).
BASELINE_PREPROCESSING = {
    "eeg": Preprocessing(bandpass=(0.3, 75.0), notch=True),
    "ecg": Preprocessing(bandpass=(0.5, 45.0), notch=True),
}
#: Candidate inverse regularisation strengths of the logistic regressions.
C_GRID: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
#: Modality sets scored, as ``rt-physio evaluate`` names them.
SCORED_SETS: tuple[tuple[str, ...], ...] = (("eeg", "ecg"), ("eeg",), ("ecg",))
_SCALE_UV = 100.0
_SFREQ = 200.0
_WINDOW_S = 5.0


@dataclass(frozen=True)
class BaselineConfig:
    """Arguments of :func:`train_baseline` (the CLI flags of ``rt-physio train baseline``)."""

    data: str
    out: str
    dataset: str = "eegmat"
    calibrate: float | None = None
    model: str = "logreg"
    cv_json: str | None = None
    seed: int = 0
    line_freq: float = 50.0
    cache: str | None = None
    description: str = ""
    command: str = ""
    c_grid: tuple[float, ...] = C_GRID
    subjects: tuple[int, ...] | None = None  # EEGMAT subject numbers to load (None: every file found)


@dataclass(frozen=True)
class BaselineResult:
    """What :func:`train_baseline` wrote and measured."""

    out: Path
    sha256: str
    validation: dict[str, Any]
    cross_validation: dict[str, Any] | None
    seconds: float


@dataclass
class FeatureTable:
    """Features of every window of a dataset, with what scoring and calibration need.

    Attributes
    ----------
    feats : ndarray of float32, shape (n, F)
        :func:`channel_features` of each window (model units).
    present : ndarray of bool, shape (n, 2)
        Feature blocks computed (eeg, ecg): ECG is False where no plausible beats were found.
    available : ndarray of bool, shape (n, 2)
        Modalities the recording has (before the features decide whether they are usable).
    labels : ndarray of float32, shape (n,)
    subjects, conditions : ndarray of str, shape (n,)
    starts : ndarray of float64, shape (n,)
        Window start in seconds from the start of its recording.
    windows : WindowDataset
        The windows themselves.
    """

    feats: NDArray[np.float32]
    present: NDArray[np.bool_]
    available: NDArray[np.bool_]
    labels: NDArray[np.float32]
    subjects: NDArray[np.object_]
    conditions: NDArray[np.object_]
    starts: NDArray[np.float64]
    windows: WindowDataset = field(repr=False)


def load_feature_table(data: str | Path, subjects: Sequence[int] | None = None, *, line_freq: float = 50.0,
                       cache: Path | None = None) -> FeatureTable:
    """Load EEGMAT recordings, preprocess them as the engine does, cut 5-s windows and compute their features."""
    from rt_physio.training.datasets.eegmat import EEGMAT_EEG_CHANNELS, EEGMAT_LABEL, load_eegmat
    from rt_physio.training.evaluate import select_channels

    recordings = load_eegmat(data, subjects)
    recordings = select_channels(recordings, {"eeg": EEGMAT_EEG_CHANNELS, "ecg": ()})
    prepared = prepare(recordings, BASELINE_PREPROCESSING, line_freq=line_freq, scale_uv=_SCALE_UV,
                       sfreq_out=_SFREQ, cache_dir=cache)
    windows = WindowDataset(prepared, [EEGMAT_LABEL], window_s=_WINDOW_S, hop_s=_WINDOW_S, modalities=MODALITIES)
    n = len(windows)
    n_features = 2 * len(BANDS) * len(EEGMAT_EEG_CHANNELS) + len(ECG_FEATURES)
    feats = np.zeros((n, n_features), dtype=np.float32)
    present = np.zeros((n, 2), dtype=bool)
    for start in range(0, n, 256):
        idx = np.arange(start, min(n, start + 256))
        batch = windows.batch(idx)
        for i, j in enumerate(idx):
            eeg = batch.inputs["eeg"][i] if batch.present[i, 0] else None
            ecg = batch.inputs["ecg"][i] if batch.present[i, 1] else None
            f, p = channel_features(eeg, ecg, _SFREQ, n_eeg_channels=len(EEGMAT_EEG_CHANNELS))
            feats[j], present[j] = f, p > 0
    lost = int((windows.present[:, 1] & ~present[:, 1]).sum())
    log.info("%d windows from %d recordings; ECG without plausible beats in %d of %d windows with ECG", n,
             len(recordings), lost, int(windows.present[:, 1].sum()))
    return FeatureTable(feats, present, windows.present.copy(), windows.labels[:, 0].copy(), windows.subjects,
                        windows.conditions, windows.starts, windows)


def _fit_head(head: LogisticHead, x: NDArray[np.float64], y: NDArray[np.float32], cols: NDArray[np.bool_], c: float,
              seed: int) -> None:
    from sklearn.linear_model import LogisticRegression

    sub = x[:, cols]
    mean = sub.mean(axis=0)
    scale = sub.std(axis=0)
    scale[scale < 1e-8] = 1.0  # a constant feature carries nothing: leave it unscaled
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
    clf.fit((sub - mean) / scale, y.astype(int))
    full_mean = np.zeros(x.shape[1])
    full_scale = np.ones(x.shape[1])
    full_coef = np.zeros((1, x.shape[1]))
    full_mean[cols], full_scale[cols], full_coef[:, cols] = mean, scale, clf.coef_
    with torch.no_grad():
        head.mean.copy_(torch.from_numpy(full_mean))
        head.scale.copy_(torch.from_numpy(full_scale))
        head.coef.copy_(torch.from_numpy(full_coef))
        head.intercept.copy_(torch.from_numpy(clf.intercept_))


def fit_baseline(model: ClassicalModel, feats: NDArray[np.floating], present: NDArray[np.bool_],
                 labels: NDArray[np.float32], c: float, *, calibrated: bool, seed: int = 0) -> None:
    """Fit the three logistic regressions of one parameter set (``lr`` or ``cal``) of ``model`` in place.

    Parameters
    ----------
    model : ClassicalModel
        Its ``lr.*`` (or ``cal.*`` when ``calibrated``) buffers are overwritten.
    feats, present, labels :
        Training windows: ``(n, F)`` features (centred when ``calibrated``), ``(n, 2)`` blocks present, ``(n,)``
        0/1 targets.
    c : float
        Inverse regularisation strength.
    calibrated : bool
        Fit ``cal.*`` (features centred per subject) instead of ``lr.*``.
    seed : int
        ``random_state`` of the solver.
    """
    x = np.asarray(feats, dtype=np.float64)
    modality = model.feature_modality.cpu().numpy()
    heads = model.cal if calibrated else model.lr
    needs = {"eeg_ecg": (True, True), "eeg": (True, False), "ecg": (False, True)}
    for name in MODALITY_SETS:
        want_eeg, want_ecg = needs[name]
        rows = (present[:, 0] if want_eeg else True) & (present[:, 1] if want_ecg else True)
        cols = ((modality == 0) & want_eeg) | ((modality == 1) & want_ecg)
        if not np.any(rows) or len(np.unique(labels[rows])) < 2:
            raise ConfigError(f"Cannot fit the {name} classifier: its training windows lack one of the classes.")
        head = heads[name]
        assert isinstance(head, LogisticHead)
        _fit_head(head, x[rows], labels[rows], cols, c, seed)


def predict(model: ClassicalModel, feats: NDArray[np.floating], present: NDArray[np.bool_],
            calibrated: bool) -> NDArray[np.float64]:
    """Probabilities ``(n,)`` of the first output from precomputed features (``model.classify`` + sigmoid)."""
    with torch.no_grad():
        logits = model.classify(torch.from_numpy(np.asarray(feats, dtype=np.float32)),
                                torch.from_numpy(present.astype(np.float32)), calibrated=calibrated)
    return torch.sigmoid(logits[:, 0]).double().numpy()


def score(model: ClassicalModel, table: FeatureTable, feats: NDArray[np.floating], rows: NDArray[np.bool_], *,
          calibrated: bool, threshold: float = 0.5) -> dict[str, dict[str, Any]]:
    """Metrics per modality set on the windows ``rows`` (scored as ``rt-physio evaluate`` scores them)."""
    out: dict[str, dict[str, Any]] = {}
    for s in SCORED_SETS:
        wanted = np.array([m in s for m in MODALITIES])
        scored = rows & (table.present & wanted).any(axis=1)
        probs = predict(model, feats[scored], table.present[scored] & wanted, calibrated)
        out[",".join(s)] = binary_metrics(table.labels[scored], probs, threshold)
    return out


def _auroc(model: ClassicalModel, table: FeatureTable, feats: NDArray[np.floating], rows: NDArray[np.bool_],
           calibrated: bool) -> float:
    return float(score(model, table, feats, rows, calibrated=calibrated)["eeg,ecg"]["auroc"])


def _select_and_fit(model: ClassicalModel, table: FeatureTable, feats: NDArray[np.floating],
                    train: NDArray[np.bool_], val: NDArray[np.bool_], *, calibrated: bool, grid: Sequence[float],
                    seed: int) -> tuple[float, dict[str, float]]:
    """Pick C on ``val`` (AUROC of the EEG + ECG set), leaving ``model`` fitted on ``train`` with that C."""
    aurocs: dict[str, float] = {}
    for c in grid:
        fit_baseline(model, feats[train], table.present[train], table.labels[train], c, calibrated=calibrated,
                     seed=seed)
        aurocs[f"{c:g}"] = _auroc(model, table, feats, val, calibrated)
    best = max(grid, key=lambda c: (aurocs[f"{c:g}"], -abs(np.log10(c))))  # ties: the C closest to 1
    fit_baseline(model, feats[train], table.present[train], table.labels[train], best, calibrated=calibrated,
                 seed=seed)
    return best, aurocs


def _calibrated_features(model: ClassicalModel, table: FeatureTable, is_base: NDArray[np.bool_],
                         train_subjects: Sequence[str]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Features centred per subject, the fallback coming from the training subjects' baselines only."""
    modality = model.feature_modality.cpu().numpy()
    _, baselines = center_by_subject(table.feats, table.present, table.subjects, is_base, modality)
    fallback = population_fallback({s: b for s, b in baselines.items() if s in set(train_subjects)}, modality)
    centred, _ = center_by_subject(table.feats, table.present, table.subjects, is_base, modality, fallback)
    return centred, fallback


def _new_model(table: FeatureTable) -> ClassicalModel:
    n_ch = (table.feats.shape[1] - len(ECG_FEATURES)) // (2 * len(BANDS))
    return ClassicalModel(n_eeg_channels=n_ch, ecg=True, n_outputs=1, sfreq=_SFREQ)


def _fit_split(table: FeatureTable, train_subjects: Sequence[str], val_subjects: Sequence[str],
               calibrate: float | None, grid: Sequence[float], seed: int) -> tuple[ClassicalModel, dict[str, Any]]:
    """Fit both parameter sets on ``train_subjects`` with C chosen on ``val_subjects``; returns the model and C info."""
    model = _new_model(table)
    train = np.isin(table.subjects.astype(str), list(train_subjects))
    val = np.isin(table.subjects.astype(str), list(val_subjects))
    info: dict[str, Any] = {}
    c, aurocs = _select_and_fit(model, table, table.feats, train, val, calibrated=False, grid=grid, seed=seed)
    info["uncalibrated"] = {"C": c, "validation_auroc_per_C": aurocs}
    if calibrate is not None:
        is_base = baseline_mask(table.windows, calibrate)
        centred, fallback = _calibrated_features(model, table, is_base, train_subjects)
        c, aurocs = _select_and_fit(model, table, centred, train & ~is_base, val & ~is_base, calibrated=True,
                                    grid=grid, seed=seed)
        with torch.no_grad():
            model.calibration_fallback.copy_(torch.from_numpy(fallback))
        info["calibrated"] = {"C": c, "validation_auroc_per_C": aurocs}
    return model, info


def _evaluate_split(model: ClassicalModel, table: FeatureTable, subjects: Sequence[str], calibrate: float | None,
                    train_subjects: Sequence[str]) -> dict[str, Any]:
    rows = np.isin(table.subjects.astype(str), list(subjects))
    out: dict[str, Any] = {"uncalibrated": score(model, table, table.feats, rows, calibrated=False)}
    if calibrate is not None:
        is_base = baseline_mask(table.windows, calibrate)
        centred, _ = _calibrated_features(model, table, is_base, train_subjects)
        out["calibrated"] = score(model, table, centred, rows & ~is_base, calibrated=True)
        # the same windows as the calibrated scores, without calibration: the gain of calibration alone
        out["uncalibrated_same_windows"] = score(model, table, table.feats, rows & ~is_base, calibrated=False)
    return out


def cross_validate(table: FeatureTable, *, fold_size: int = 4, calibrate: float | None = None,
                   grid: Sequence[float] = C_GRID, seed: int = 0) -> dict[str, Any]:
    """Subject-fold cross-validation: each fold of ``fold_size`` subjects is scored by a model trained on the rest.

    Within each training part, ``C`` is chosen on its last ``fold_size`` subjects (sorted), then both parameter
    sets are refitted on the whole training part with the chosen values. The report has per-fold metrics, their
    mean and standard deviation, and metrics pooled over every held-out window.
    """
    subjects = sorted(set(table.subjects.astype(str).tolist()))
    folds = subject_folds(subjects, fold_size)
    if len(subjects) < 2 * fold_size + 1:
        raise ConfigError(f"Cross-validation with {fold_size}-subject folds needs at least {2 * fold_size + 1} "
                          f"subjects (a training part with its own validation fold), got {len(subjects)}.")
    kinds = ["uncalibrated"] + (["calibrated", "uncalibrated_same_windows"] if calibrate is not None else [])
    per_fold: list[dict[str, Any]] = []
    pooled: dict[str, dict[str, list[NDArray[np.float64]]]] = {k: {} for k in kinds}
    for k, held_out in enumerate(folds):
        train_part = [s for s in subjects if s not in held_out]
        inner_train, inner_val = train_part[:-fold_size], train_part[-fold_size:]
        _, info = _fit_split(table, inner_train, inner_val, calibrate, grid, seed)
        refit = _new_model(table)
        train = np.isin(table.subjects.astype(str), train_part)
        fit_baseline(refit, table.feats[train], table.present[train], table.labels[train],
                     info["uncalibrated"]["C"], calibrated=False, seed=seed)
        if calibrate is not None:
            is_base = baseline_mask(table.windows, calibrate)
            centred, fallback = _calibrated_features(refit, table, is_base, train_part)
            rows = train & ~is_base
            fit_baseline(refit, centred[rows], table.present[rows], table.labels[rows], info["calibrated"]["C"],
                         calibrated=True, seed=seed)
            with torch.no_grad():
                refit.calibration_fallback.copy_(torch.from_numpy(fallback))
        metrics = _evaluate_split(refit, table, held_out, calibrate, train_part)
        per_fold.append({"fold": k, "subjects": list(held_out),
                         "C": {kind: info[kind]["C"] for kind in info}, **metrics})
        _pool(pooled, refit, table, held_out, calibrate, train_part)
        log.info("fold %d (%s): %s", k, ",".join(held_out), {
            kind: round(float(metrics[kind]["eeg,ecg"]["auroc"]), 3) for kind in kinds})
    summary: dict[str, Any] = {}
    for kind in kinds:
        summary[kind] = {}
        for s in SCORED_SETS:
            key = ",".join(s)
            values = {m: [float(f[kind][key][m]) for f in per_fold] for m in ("balanced_accuracy", "auroc", "f1")}
            y, p = (np.concatenate(v) for v in zip(*pooled[kind][key], strict=True))
            summary[kind][key] = {
                "mean_over_folds": {m: float(np.nanmean(v)) for m, v in values.items()},
                "sd_over_folds": {m: float(np.nanstd(v)) for m, v in values.items()},
                "pooled": binary_metrics(y, p),
            }
    return {"fold_size": fold_size, "n_folds": len(folds), "subjects": subjects, "calibrate_seconds": calibrate,
            "summary": summary, "folds": per_fold}


def _pool(pooled: dict[str, dict[str, list[Any]]], model: ClassicalModel, table: FeatureTable,
          held_out: Sequence[str], calibrate: float | None, train_part: Sequence[str]) -> None:
    rows = np.isin(table.subjects.astype(str), list(held_out))
    variants: list[tuple[str, NDArray[np.floating], NDArray[np.bool_], bool]] = [
        ("uncalibrated", table.feats, rows, False)]
    if calibrate is not None:
        is_base = baseline_mask(table.windows, calibrate)
        centred, _ = _calibrated_features(model, table, is_base, train_part)
        variants += [("calibrated", centred, rows & ~is_base, True),
                     ("uncalibrated_same_windows", table.feats, rows & ~is_base, False)]
    for kind, feats, r, calibrated in variants:
        for s in SCORED_SETS:
            wanted = np.array([m in s for m in MODALITIES])
            scored = r & (table.present & wanted).any(axis=1)
            probs = predict(model, feats[scored], table.present[scored] & wanted, calibrated)
            pooled[kind].setdefault(",".join(s), []).append((table.labels[scored], probs))


def train_baseline(cfg: BaselineConfig) -> BaselineResult:
    """Train, validate and save the baseline model folder; optionally cross-validate (see the module docstring).

    Raises
    ------
    ConfigError
        An unsupported dataset or model, or a negative calibration length.
    DatasetError
        Missing or unusable data.
    """
    if cfg.dataset != "eegmat":
        raise ConfigError(f"The 'dataset' parameter must be 'eegmat' (the baseline needs rest recordings for "
                          f"calibration), got {cfg.dataset!r}.")
    if cfg.model != "logreg":
        raise ConfigError(f"The 'model' parameter must be 'logreg', got {cfg.model!r}.")
    if cfg.calibrate is not None and not cfg.calibrate > 0:
        raise ConfigError(f"The 'calibrate' parameter must be a positive number of seconds, got {cfg.calibrate!r}.")
    from rt_physio.training.datasets.eegmat import EEGMAT_EEG_CHANNELS, EEGMAT_LABEL

    t0 = time.monotonic()
    cache = Path(cfg.cache) if cfg.cache else default_cache_dir() / "prepared"
    table = load_feature_table(cfg.data, cfg.subjects, line_freq=cfg.line_freq, cache=cache)
    split = eegmat_split()
    found = set(table.subjects.astype(str).tolist())
    train_subjects = [s for s in split.train if s in found]
    val_subjects = [s for s in split.validation if s in found]
    if not train_subjects or not val_subjects:
        raise ConfigError(f"Training needs EEGMAT subjects of both parts of the split (train 00-27, validation "
                          f"28-31); {cfg.data} has {sorted(found)}.")
    model, info = _fit_split(table, train_subjects, val_subjects, cfg.calibrate, cfg.c_grid, cfg.seed)
    validation = _evaluate_split(model, table, val_subjects, cfg.calibrate, train_subjects)
    for kind, sets in validation.items():
        for key, m in sets.items():
            log.info("validation %-26s %-8s bal-acc %.3f auroc %.3f (n=%d)", kind, key, m["balanced_accuracy"],
                     m["auroc"], m["n_windows"])
    cv = None
    if cfg.cv_json:
        cv = cross_validate(table, calibrate=cfg.calibrate, grid=cfg.c_grid, seed=cfg.seed)
        cv["command"] = cfg.command
        path = Path(cfg.cv_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(json_safe(cv), indent=2) + "\n")
        log.info("wrote %s", path)
    seconds = time.monotonic() - t0
    fields = _card(cfg, table, info, validation, train_subjects, val_subjects, seconds,
                   list(EEGMAT_EEG_CHANNELS), EEGMAT_LABEL)
    sha256 = save_model(cfg.out, model, fields, dtype=torch.float32)
    return BaselineResult(Path(cfg.out), sha256, validation, cv, seconds)


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
            if not (isinstance(v, float) and not np.isfinite(v))}


def _card(cfg: BaselineConfig, table: FeatureTable, info: dict[str, Any], validation: dict[str, Any],
          train_subjects: Sequence[str], val_subjects: Sequence[str], seconds: float, channels: list[str],
          label: str) -> dict[str, Any]:
    calibrated = cfg.calibrate is not None
    lost = int((table.available[:, 1] & ~table.present[:, 1]).sum())
    description = cfg.description or (
        "Classical baseline for mental workload (rest = 0 vs mental arithmetic = 1) on PhysioNet EEGMAT: Welch band "
        "powers (delta, theta, alpha, beta, gamma up to 45 Hz; log10 absolute and relative) per EEG channel, and "
        "heart rate, ln(1 + SDNN), ln(1 + RMSSD) from R peaks in each 5-s ECG window, fed to logistic regression "
        "(one per modality set: EEG + ECG, EEG alone, ECG alone). Trained on subjects 00-27, C selected on 28-31. "
        "The EEG montage is fixed (features are per channel): the 20 EEGMAT channels in inputs.eeg.channels. "
        + ("It also holds a calibrated parameter set for features centred on the first "
           f"{cfg.calibrate:g} s of the person's rest (level = features); between-person differences dominate the "
           "uncalibrated error, so run it with calibration when a rest baseline can be recorded. "
           if calibrated else "")
        + "Not traceable: the engine runs it eagerly on the CPU (cheap: a few ms per window)."
    )
    fields: dict[str, Any] = {
        "schema": SCHEMA,
        "trained": True,
        "description": description,
        "architecture": {"type": "classical", "classical": {
            "eeg_channels": len(channels), "ecg": True, "bands": [*(lo for _, lo, _ in BANDS), BANDS[-1][2]]}},
        "inputs": {"sfreq": _SFREQ, "window_s": _WINDOW_S, "scale_uv": _SCALE_UV, "eeg": {"channels": channels},
                   "ecg": {"channels": []}},
        "preprocessing": {m: {"bandpass": list(p.bandpass or ()), "notch": p.notch}
                          for m, p in BASELINE_PREPROCESSING.items()},
        "outputs": {"names": [label], "activation": "sigmoid"},
    }
    if calibrated:
        fields["calibration"] = {"seconds": float(cfg.calibrate or 0.0), "level": "features", "expects": True}
    metrics = {kind: {key: _rounded(m) for key, m in sets.items()} for kind, sets in validation.items()}
    fields["provenance"] = {
        "seed": cfg.seed,
        "data": "PhysioNet EEGMAT 1.0.0 (Zyma et al. 2019); rest = 0, mental arithmetic = 1",
        "split": {"train": list(train_subjects), "validation": list(val_subjects)},
        "windows": "5-s non-overlapping windows from the start of each recording (as rt-physio evaluate cuts them)",
        "preprocessing_note": "each modality through the engine's StreamProcessor (band-pass, 50 Hz notch, "
                              "resampling to 200 Hz), then µV / 100",
        "features": {
            "eeg": "per channel in inputs.eeg.channels order: log10(band power + 1e-10) for delta 1-4, theta 4-8, "
                   "alpha 8-13, beta 13-30, gamma 30-45 Hz, then relative power (band / 1-45 Hz); Welch, 2-s Hann "
                   "segments, 50 % overlap; power in model units squared",
            "ecg": "hr_bpm, ln(1 + SDNN ms), ln(1 + RMSSD ms) from R peaks (5-20 Hz band-pass, squared derivative, "
                   "150-ms integration, 250-ms refractory, either polarity); the window's ECG counts as missing "
                   "when < 3 beats, median |R| < 3 robust SDs of the band-passed lead, HR outside 30-220 bpm, max/min "
                   "RR > 2.5 or RR CV > 0.2",
            "ecg_windows_without_plausible_beats": lost,
        },
        "classifier": "scikit-learn LogisticRegression (lbfgs, L2, class_weight='balanced') on standardised "
                      "features, one per modality set; parameters stored as tensors (lr.*, cal.*)",
        "selection": {kind: {"C": v["C"], "C_grid": list(cfg.c_grid),
                             "validation_auroc_per_C": {k: round(a, 4) for k, a in v["validation_auroc_per_C"].items()},
                             "criterion": "validation AUROC of the eeg,ecg set"} for kind, v in info.items()},
        "training_command": cfg.command or "rt-physio train baseline",
        "n_windows_loaded": int(table.feats.shape[0]),
        "wall_time_s": round(seconds, 1),
        "validation_metrics": metrics,
        "validation_note": "subjects 28-31 (which also chose C, so optimistic); calibrated scores exclude the "
                           "calibration windows, and uncalibrated_same_windows scores the uncalibrated set on those "
                           "same windows",
    }
    return fields
