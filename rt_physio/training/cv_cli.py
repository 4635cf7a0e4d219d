"""``rt-physio train cv``: cross-validation protocols over a labelled dataset, one parser for every dataset.

``--dataset`` picks a runner from :data:`CV_DATASETS` (``dreamer`` today: :mod:`rt_physio.training.dreamer_cv`);
a dataset added later registers its runner there and reuses the protocol flags.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rt_physio.errors import ConfigError
from rt_physio.training.reports import command_line, write_report

__all__ = ["CV_DATASETS", "add_cv_parser"]


def _run_dreamer(args: argparse.Namespace) -> dict[str, Any]:
    from rt_physio.training.dreamer_cv import TARGETS, DreamerCVConfig, cross_validate_dreamer

    cfg = DreamerCVConfig(
        data=str(args.data), protocol=args.protocol, folds=args.folds, seeds=tuple(args.seeds),
        baseline=args.baseline, eeg_unit=args.eeg_unit, ecg_unit=args.ecg_unit,
        targets=TARGETS if args.target == "all" else (args.target,), threshold=args.threshold,
        window_s=args.window, inner_folds=args.inner_folds, line_freq=args.line_freq,
        cache=str(args.cache) if args.cache else None,
        command=command_line(),
    )
    try:
        return cross_validate_dreamer(cfg)
    except ValueError as exc:  # folds / protocol / target that the data cannot satisfy
        raise ConfigError(str(exc)) from exc


#: ``--dataset`` -> runner (parsed arguments -> JSON-ready report with ``targets.<name>.summary``).
CV_DATASETS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"dreamer": _run_dreamer}


def add_cv_parser(tsub: Any) -> None:
    """Add ``cv`` to the ``train`` subcommands ``tsub``."""
    cv = tsub.add_parser(
        "cv", help="cross-validation protocols (leave-one-subject-out, k-fold, subject-dependent)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Score a classical model (band powers per EEG channel + heart rate/HRV, logistic regression) "
                    "under an evaluation protocol: loso holds each subject out once; kfold holds out K groups of "
                    "subjects; subject-dependent holds out K folds of each subject's trials. The regularisation is "
                    "selected on inner splits of the training part only; the test part never trains or selects. "
                    "Scores per window and per trial (mean of its windows' probabilities).")
    cv.add_argument("--dataset", choices=sorted(CV_DATASETS), required=True)
    cv.add_argument("--data", required=True, type=Path, help="the dataset file (DREAMER.mat for --dataset dreamer)")
    cv.add_argument("--protocol", choices=["loso", "kfold", "subject-dependent"], default="loso")
    cv.add_argument("--folds", type=int, default=None,
                    help="K of kfold (default 5) or subject-dependent (default 3); loso has one fold per subject")
    cv.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the fold shuffles and solver")
    cv.add_argument("--baseline", choices=["none", "trial", "subject"], default="none",
                    help="centre features on each trial's baseline recording, on the subject's mean baseline, or not")
    cv.add_argument("--eeg-unit", default="uV", help="unit of the file's EEG samples (uV, mV, V); checked")
    cv.add_argument("--ecg-unit", default="uV", help="unit of the file's ECG samples (uV, mV, V); checked")
    cv.add_argument("--target", choices=["arousal", "valence", "dominance", "all"], default="arousal")
    cv.add_argument("--threshold", type=float, default=3.0, help="a self-report (1-5) above this is high")
    cv.add_argument("--window", type=float, default=5.0, metavar="S", help="window length (non-overlapping)")
    cv.add_argument("--inner-folds", type=int, default=3, help="inner selection splits of each training part")
    cv.add_argument("--line-freq", type=float, default=50.0, help="mains frequency of the recordings (Hz)")
    cv.add_argument("--cache", type=Path, default=None, help="cache folder for preprocessed signals")
    cv.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the full report here")
    cv.set_defaults(handler=_cmd_cv)


def _cmd_cv(args: argparse.Namespace, out: TextIO) -> int:
    report = CV_DATASETS[args.dataset](args)
    out.write(f"{args.dataset} {args.protocol} baseline={args.baseline} ({report['n_subjects']} subjects, "
              f"{report['n_trials']} trials; chance 0.5)\n")
    for modality, unit in report.get("units", {}).items():
        seen = report.get("observed_amplitude_uv", {}).get(modality)
        if seen is not None:
            out.write(f"{modality.upper()} stated in {unit}: typical 1st-99th percentile range {seen:.3g} µV\n")
    for target, res in report["targets"].items():
        for level in ("window", "trial"):
            s = res["summary"][level]
            out.write(f"{target:9s} {level:6s} bal-acc {s['balanced_accuracy']['mean']:.3f} ± "
                      f"{s['balanced_accuracy']['sd']:.3f}  auroc {s['auroc']['mean']:.3f} ± {s['auroc']['sd']:.3f}"
                      f"  (n={s['auroc']['n']})\n")
    write_report(args.json, report, out)
    return 0
