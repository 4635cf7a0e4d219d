"""Subject-fold cross-validation of the deep fusion recipe, uncalibrated and calibrated.

``python -m rt_physio.experiments.crossval --data ../shared/data/eegmat --out runs/cv-fusion --json OUT``

For each fold of ``fold_size`` consecutive subjects (held out): fine-tune a fusion model on the remaining
subjects except the last ``fold_size`` of them, which select the epoch (:func:`rt_physio.training.finetune`);
add a calibrated head on the same split (:func:`rt_physio.training.calibrated_head.train_calibrated_head`);
score the held-out fold uncalibrated (without its baseline minute, ``skip_baseline``) and calibrated
(``calibrate``) with :func:`rt_physio.training.evaluate.evaluate`. The held-out subjects never choose anything.
Folds already written under ``--out`` are reused, so an interrupted run resumes. ``--folds`` runs only some folds,
``--max-minutes`` starts no fold that the time left cannot hold (judged by the slowest fold so far) and the report
is rewritten after every fold, so a run with a wall budget ends cleanly with what it finished. Encoder sizes,
initialisation (``--eeg-init`` / ``--ecg-init``: a ``train pretrain`` folder) and ``--device`` are options.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rt_physio.experiments._cli import experiment_parser, recorded_command, start_logging
from rt_physio.training.reports import write_report

__all__ = ["crossval_fusion", "main"]

log = logging.getLogger(__name__)
_MODULE = "rt_physio.experiments.crossval"

_METRICS = ("balanced_accuracy", "auroc", "f1", "auc_pr")


def crossval_fusion(data: str | Path, out: str | Path, *, fold_size: int = 4, epochs: int = 6,
                    calibrate: float = 60.0, seed: int = 0, threads: int | None = None,
                    cache: Path | None = None, calibrated_hidden: int = 0, calibrated_finetune_epochs: int = 0,
                    only_folds: Sequence[int] | None = None, max_minutes: float | None = None,
                    on_fold: Callable[[dict[str, Any]], None] | None = None,
                    **finetune_options: Any) -> dict[str, Any]:
    """Run the cross-validation described in the module docstring; returns the report (per fold and summary).

    ``finetune_options`` go to :class:`~rt_physio.training.finetune.FinetuneConfig` (e.g. smaller encoders).
    ``only_folds`` restricts the folds run; ``max_minutes`` skips the folds the remaining time cannot hold;
    ``on_fold`` receives the partial report after every fold.
    """
    from rt_physio.nn.registry import load_model
    from rt_physio.training.calibrated_head import CalibratedFinetune, train_calibrated_head
    from rt_physio.training.datasets.eegmat import find_eegmat_files
    from rt_physio.training.evaluate import evaluate
    from rt_physio.training.finetune import FinetuneConfig, finetune
    from rt_physio.training.splits import subject_folds

    out = Path(out)
    subjects = sorted({p.name.split("_")[0] for p in find_eegmat_files(data)})
    folds = subject_folds(subjects, fold_size)
    per_fold: list[dict[str, Any]] = []
    started, slowest = time.monotonic(), 0.0
    skipped: list[int] = []
    for k, held in enumerate(folds):
        if only_folds is not None and k not in only_folds:
            continue
        elapsed = time.monotonic() - started
        if max_minutes is not None and (elapsed + slowest > max_minutes * 60.0 or elapsed >= max_minutes * 60.0):
            log.info("fold %d: skipped, %.0f s left of the budget and a fold takes ~%.0f s", k,
                     max_minutes * 60.0 - elapsed, slowest)
            skipped.append(k)
            continue
        t0 = time.monotonic()
        rest = [s for s in subjects if s not in held]
        train, val = rest[:-fold_size], rest[-fold_size:]
        model_dir, cal_dir = out / f"fold{k}", out / f"fold{k}-calibrated"
        if not (model_dir / "model.toml").is_file():
            log.info("fold %d: fine-tuning on %d subjects, selecting on %s, holding out %s", k, len(train), val,
                     list(held))
            finetune(FinetuneConfig(dataset="eegmat", data=str(data), out=str(model_dir), epochs=epochs, seed=seed,
                                    train_subjects=tuple(train), validation_subjects=tuple(val), threads=threads,
                                    cache=str(cache) if cache else None, **finetune_options), progress=False)
        if not (cal_dir / "model.toml").is_file():
            train_calibrated_head(model_dir, data, cal_dir, seconds=calibrate, seed=seed, cache=cache,
                                  hidden=calibrated_hidden,
                                  finetune=CalibratedFinetune(epochs=calibrated_finetune_epochs),
                                  train_subjects=train, val_subjects=val)
        device = str(finetune_options.get("device", "cpu"))
        plain = evaluate(model_dir, data, subjects=list(held), skip_baseline=calibrate, threads=threads, cache=cache,
                         device=device)
        calibrated = evaluate(cal_dir, data, subjects=list(held), calibrate=calibrate, threads=threads, cache=cache,
                              device=device)
        per_fold.append({"held_out": list(held), "train": train, "selection": val,
                         "weights_sha256": load_model(model_dir).sha256,
                         "uncalibrated": _strip(plain), "calibrated": _strip(calibrated)})
        per_fold[-1]["fold"], per_fold[-1]["seconds"] = k, round(time.monotonic() - t0, 1)
        slowest = max(slowest, time.monotonic() - t0)
        log.info("fold %d: uncalibrated %s | calibrated %s", k, _brief(plain), _brief(calibrated))
        if on_fold is not None:
            on_fold(_report(per_fold, folds, subjects, fold_size, epochs, calibrated_hidden,
                            calibrated_finetune_epochs, calibrate, seed, skipped))
    return _report(per_fold, folds, subjects, fold_size, epochs, calibrated_hidden, calibrated_finetune_epochs,
                   calibrate, seed, skipped)


def _report(per_fold: list[dict[str, Any]], folds: Sequence[Sequence[str]], subjects: list[str], fold_size: int,
            epochs: int, calibrated_hidden: int, calibrated_finetune_epochs: int, calibrate: float, seed: int,
            skipped: list[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind in ("uncalibrated", "calibrated"):
        summary[kind] = {}
        for key in (per_fold[0][kind] if per_fold else {}):
            values = {m: [float(f[kind][key][m]) for f in per_fold] for m in _METRICS}
            summary[kind][key] = {
                "mean_over_folds": {m: float(np.nanmean(v)) for m, v in values.items()},
                "sd_over_folds": {m: float(np.nanstd(v)) for m, v in values.items()},
            }
    return {"fold_size": fold_size, "n_folds": len(folds), "subjects": subjects, "epochs": epochs,
            "calibrated_head_hidden": calibrated_hidden, "calibrated_finetune_epochs": calibrated_finetune_epochs,
            "calibrate_seconds": calibrate, "seed": seed, "folds_run": [f["fold"] for f in per_fold],
            "folds_skipped_for_time": skipped, "summary": summary, "folds": per_fold}


def _strip(report: dict[str, Any]) -> dict[str, Any]:
    return {key: {m: entry[m] for m in (*_METRICS, "n_windows")} for key, entry in report.items()}


def _brief(report: dict[str, Any]) -> str:
    return " ".join(f"{k} {v['balanced_accuracy']:.3f}/{v['auroc']:.3f}" for k, v in report.items()
                    if math.isfinite(float(v["auroc"])))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = experiment_parser(_MODULE, __doc__)
    parser.add_argument("--out", required=True, type=Path, help="folder for the per-fold models")
    parser.add_argument("--fold-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--calibrate", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--calibrated-hidden", type=int, default=0,
                        help="hidden units of the calibrated head (0: logistic regression)")
    parser.add_argument("--calibrated-finetune-epochs", type=int, default=0,
                        help="then train encoders and heads on centred embeddings for this many epochs")
    parser.add_argument("--folds", default=None, help="only these folds, e.g. 0,1,4 (default: all)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="start no fold the remaining time cannot hold; the report has the folds done")
    parser.add_argument("--eeg-layers", type=int, default=None)
    parser.add_argument("--eeg-ff", type=int, default=None)
    parser.add_argument("--ecg-layers", type=int, default=None)
    parser.add_argument("--ecg-ff", type=int, default=None)
    parser.add_argument("--eeg-init", default=None, help="EEG encoder init (a 'train pretrain' folder)")
    parser.add_argument("--ecg-init", default=None, help="ECG encoder init (a 'train pretrain' folder)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-train-windows", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, ...")
    args = parser.parse_args(argv)
    start_logging()
    options = {k: v for k, v in (("eeg_layers", args.eeg_layers), ("eeg_ff", args.eeg_ff),
                                 ("ecg_layers", args.ecg_layers), ("ecg_ff", args.ecg_ff),
                                 ("eeg_init", args.eeg_init), ("ecg_init", args.ecg_init),
                                 ("batch_size", args.batch_size), ("max_train_windows", args.max_train_windows),
                                 ("device", args.device)) if v is not None}
    command = recorded_command(_MODULE, argv)

    def write(report: dict[str, Any]) -> None:
        report["command"], report["finetune_options"] = command, options
        write_report(args.json, report)

    only = [int(f) for f in args.folds.split(",") if f.strip()] if args.folds else None
    report = crossval_fusion(args.data, args.out, fold_size=args.fold_size, epochs=args.epochs,
                             calibrate=args.calibrate, seed=args.seed, threads=args.threads, cache=args.cache,
                             calibrated_hidden=args.calibrated_hidden,
                             calibrated_finetune_epochs=args.calibrated_finetune_epochs, only_folds=only,
                             max_minutes=args.max_minutes, on_fold=write, **options)
    write(report)
    log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
