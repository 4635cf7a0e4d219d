"""Training the classical model (``rt-physio train classical``): load, fit, validate, cross-validate, save.

Features come from :mod:`rt_physio.training.classical.features`, the fit and scores from
:mod:`~rt_physio.training.classical.fit`, the optional cross-validation from
:mod:`~rt_physio.training.classical.crossval` and the model card from :mod:`~rt_physio.training.classical.card`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rt_physio.errors import ConfigError
from rt_physio.nn.registry import save_model
from rt_physio.training.classical.card import model_card
from rt_physio.training.classical.crossval import cross_validate
from rt_physio.training.classical.features import load_feature_table
from rt_physio.training.classical.fit import C_GRID, evaluate_split, fit_split
from rt_physio.training.datasets.prepare import default_cache_dir
from rt_physio.training.reports import write_report
from rt_physio.training.splits import eegmat_split

__all__ = ["ClassicalConfig", "ClassicalResult", "train_classical_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassicalConfig:
    """Arguments of :func:`train_classical_model` (the CLI flags of ``rt-physio train classical``)."""

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
class ClassicalResult:
    """What :func:`train_classical_model` wrote and measured."""

    out: Path
    sha256: str
    validation: dict[str, Any]
    cross_validation: dict[str, Any] | None
    seconds: float


def train_classical_model(cfg: ClassicalConfig) -> ClassicalResult:
    """Train, validate and save the classical model folder; optionally cross-validate it.

    Raises
    ------
    ConfigError
        An unsupported dataset or model, or a negative calibration length.
    DatasetError
        Missing or unusable data.
    """
    if cfg.dataset != "eegmat":
        raise ConfigError(f"The 'dataset' parameter must be 'eegmat' (the classical model needs rest recordings for "
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
    model, info = fit_split(table, train_subjects, val_subjects, cfg.calibrate, cfg.c_grid, cfg.seed)
    validation = evaluate_split(model, table, val_subjects, cfg.calibrate, train_subjects)
    for kind, sets in validation.items():
        for key, m in sets.items():
            log.info("validation %-26s %-8s bal-acc %.3f auroc %.3f (n=%d)", kind, key, m["balanced_accuracy"],
                     m["auroc"], m["n_windows"])
    cv = None
    if cfg.cv_json:
        cv = cross_validate(table, calibrate=cfg.calibrate, grid=cfg.c_grid, seed=cfg.seed)
        cv["command"] = cfg.command
        write_report(cfg.cv_json, cv)
        log.info("wrote %s", cfg.cv_json)
    seconds = time.monotonic() - t0
    fields = model_card(cfg, table, info, validation, train_subjects, val_subjects, seconds,
                        list(EEGMAT_EEG_CHANNELS), EEGMAT_LABEL)
    sha256 = save_model(cfg.out, model, fields, dtype=torch.float32)
    return ClassicalResult(Path(cfg.out), sha256, validation, cv, seconds)
