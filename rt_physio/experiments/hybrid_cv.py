"""Subject-fold cross-validation of the classical, deep and hybrid arms: ``python -m rt_physio.experiments.hybrid_cv``.

8 folds of 4 consecutive EEGMAT subjects over 00-31; each fold is held out once and the head is trained on the 28
other subjects exactly as the shipped model is (:mod:`rt_physio.training.hybrid_ship`): C is chosen by inner cross-
validation over the 7 training folds (:func:`~rt_physio.training.hybrid.select_c`: mean AUROC over the three
modality sets, grid 1e-3..1e2), the per-set Platt maps are fitted on the out-of-fold logits of those 7 folds
(:func:`~rt_physio.training.hybrid.fit_with_oof_platt`), and the head is fitted on all 28. Nothing about a held-out
fold is chosen on it. Arms (all a :class:`~rt_physio.nn.hybrid.HybridModel`, linear head, modality dropout):

* ``classical`` — montage-agnostic features (:mod:`rt_physio.dsp.summary_features`);
* ``classical_montage`` — those plus the classical model's per-channel band powers (a fixed 20-channel montage: a
  reference for what montage-agnostic features give up, not a runnable default);
* ``classical_regions`` — those plus EEG features per scalp region found by 10-20 channel names
  (:mod:`rt_physio.experiments.region_features`: region band powers, frontal-midline theta, theta / alpha ratios,
  alpha asymmetry; montage-agnostic: a missing region takes the all-channel value); ``classical_regions_compact``
  — the classical features plus only the 6 marker features of that block;
* ``deep_random`` — frozen randomly initialised CBraMod encoders (the shipped fusion sizes), pooled embeddings;
* ``deep_random_sd`` — the same encoders, mean and SD pooling (over channels and patches);
* ``hybrid_random`` — classical features and the mean-pooled random embeddings;
* ``deep_pretrained`` / ``hybrid_pretrained`` — frozen pre-trained encoders (mean + SD pooling): ``--ecg-encoder``
  and, per fold, ``--eeg-encoder-folds K-L=PATH`` (an EEG encoder whose corpus excluded folds K..L);
* ``deep_pretrained_attn`` / ``hybrid_pretrained_attn`` — the same encoders, attention pooling (alone / beside the
  classical features): per fold, the queries are learned on the 28 training subjects' windows
  (:func:`~rt_physio.training.attention_pool.fit_queries`), never on the held-out fold.

Each arm uncalibrated and calibrated (features centred on each person's first ``--calibrate`` s of rest; those
windows are never scored, and the uncalibrated rows are scored on the same windows), on EEG + ECG, EEG and ECG.
Seeds change the random encoders (a seed-free block gives the same head for every seed). Features and embeddings are
cached per encoder and seed under ``--cache``. The JSON has per-fold, per-seed figures, mean ± SD over folds (of the
seed means), and per-fold paired AUROC differences against ``classical`` with "k of 8 folds above".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.special import expit

from rt_physio.experiments._cli import recorded_command
from rt_physio.experiments.blocks import (
    ENCODER_SIZES,
    attention_blocks,
    combine,
    montage_block,
    pretrained_block,
    random_block,
    region_block,
    without_missing_encoders,
)
from rt_physio.nn.hybrid import SET_NAMES
from rt_physio.nn.smoothing import smooth_series
from rt_physio.training.hybrid import (
    C_GRID,
    SET_MASKS,
    SFREQ,
    Block,
    HeadParams,
    Windows,
    centre,
    classical_block,
    fit_with_oof_platt,
    head_logits,
    load_windows,
    select_c,
    set_flags,
)
from rt_physio.training.metrics import binary_metrics
from rt_physio.training.reports import write_report
from rt_physio.training.splits import subject_folds

__all__ = ["ARM_LABELS", "ENCODER_SIZES", "cross_validate", "main", "markdown_table"]

log = logging.getLogger("rt_physio.experiments.hybrid_cv")
def run_fold(block: Block, windows: Windows, available: NDArray[np.bool_], is_base: NDArray[np.bool_],
             test: Sequence[str], calibrated: bool, folds: Sequence[Sequence[str]],
             fitted: dict[Any, tuple[HeadParams, float, dict[str, float]]], c_grid: Sequence[float] = C_GRID,
             smoothing: Sequence[Smoothing] = ()) -> dict[str, dict[str, Any]]:
    """Select C by inner CV over ``folds`` (less ``test``), fit the head with out-of-fold Platt maps, score ``test``.

    The head is fitted as the shipped model is (:func:`~rt_physio.training.hybrid.fit_with_oof_platt` on the
    training subjects); ``fitted`` caches it per block, test fold and calibration (it does not depend on the seed).
    Returns the scores per variant: ``""`` (each window's own output) and one per ``smoothing`` entry (the same
    outputs smoothed over time, :func:`smoothed_logits`).
    """
    x: NDArray[np.floating] = block[0]
    present, fm = block[1], block[2]
    subj = windows.subjects
    y = windows.labels
    in_test = np.isin(subj, list(test))
    if calibrated:
        x, _ = centre(x, present, windows, is_base, fm, ~in_test)
    usable = present.any(axis=1) & ~(is_base if calibrated else np.zeros_like(is_base))
    key = (id(block), tuple(test), calibrated)
    if key not in fitted:
        inner_folds = [f for f in folds if list(f) != list(test)]
        train = ~in_test & usable
        best, scores = select_c(x, present, y, fm, subj, train, train & ~is_base, inner_folds, c_grid)
        fitted[key] = (fit_with_oof_platt(x, present, y, fm, subj, train, best, inner_folds), best, scores)
    final, best, scores = fitted[key]
    variants = [("", None)] + [(sm.suffix, sm) for sm in smoothing]
    out: dict[str, dict[str, Any]] = {v: {"C": best, "inner_cv_auroc_per_C": scores} for v, _ in variants}
    scored_rows = in_test & ~is_base
    for name in SET_NAMES:
        mask = np.array(SET_MASKS[name])
        rows = scored_rows & (available & mask).any(axis=1)
        flags = set_flags(present[rows], name)
        for v, sm in variants:
            if not flags.any():  # no features for this set (a deep arm without that encoder): untested, not chance
                out[v][name] = {"balanced_accuracy": float("nan"), "auroc": float("nan"), "n_windows": 0}
                continue
            # a window without features publishes 0.5 and stays out of a smoothed mean, as live
            usable_rows: NDArray[np.bool_] = np.asarray(flags.any(axis=1))
            logits = np.where(usable_rows, head_logits(final, x[rows], flags, fm), 0.0)
            if sm is not None:
                logits = smoothed_logits(logits, windows, rows, sm, usable_rows)
            m = binary_metrics(y[rows], expit(logits))
            out[v][name] = {"balanced_accuracy": float(m["balanced_accuracy"]), "auroc": float(m["auroc"]),
                            "n_windows": int(rows.sum())}
    return out


@dataclass(frozen=True)
class Smoothing:
    """Score outputs smoothed over ``seconds`` (:mod:`rt_physio.nn.smoothing`).

    ``continuous=False``: per recording, as ``rt-physio evaluate`` does. ``continuous=True``: each person's rest
    recording and then their task recording as one session, so the mean carries rest outputs into the first
    ``seconds`` of the task (the lag a live session pays when the state changes).
    """

    seconds: float
    continuous: bool = False

    @property
    def suffix(self) -> str:
        """The arm-name suffix of this variant, e.g. ``+s30`` or ``+s30c``."""
        return f"+s{self.seconds:g}{'c' if self.continuous else ''}"


def smoothed_logits(logits: NDArray[np.floating], windows: Windows, rows: NDArray[np.bool_],
                    sm: Smoothing, usable: NDArray[np.bool_] | None = None) -> NDArray[np.float64]:
    """Smooth the logits of ``rows`` over time, per recording or per person (rest, then task).

    ``usable`` (one flag per row of ``rows``): windows without usable input stay out of the mean, as live.
    """
    ds = windows.dataset
    t_end = ds.starts[rows] + ds.window / SFREQ
    if sm.continuous:  # the task recording follows the rest recording
        rest_end = {s: t_end[(windows.subjects[rows] == s) & (windows.labels[rows] == 0)].max(initial=0.0)
                    for s in set(windows.subjects[rows].tolist())}
        offset = np.array([rest_end[s] if lab == 1 else 0.0
                           for s, lab in zip(windows.subjects[rows], windows.labels[rows], strict=True)])
        groups = windows.subjects[rows]
        t_end = t_end + offset
    else:
        groups = ds.names[rows]
    return smooth_series(t_end, logits, groups, sm.seconds, "identity", usable=usable)


def cross_validate(windows: Windows, blocks: dict[str, list[Block | list[Block]]], *, calibrate: float = 60.0,
                   fold_size: int = 4, c_grid: Sequence[float] = C_GRID,
                   smoothing: Sequence[Smoothing] = ()) -> dict[str, Any]:
    """Run every arm (per seed: one block, or one per fold) over the subject folds; returns the JSON report.

    Each ``smoothing`` adds, per arm, a variant ``<arm><suffix>`` scored on the same heads' smoothed outputs.
    """
    folds = subject_folds(windows.subjects.tolist(), fold_size)
    available = windows.dataset.present.copy()
    is_base = windows.baseline(calibrate)
    report: dict[str, Any] = {"folds": folds, "calibrate_s": calibrate, "arms": {}}
    for arm, per_seed in blocks.items():
        for calibrated in (False, True):
            cal = "cal" if calibrated else "uncal"
            t0 = time.monotonic()
            runs: dict[str, list[dict[str, Any]]] = {}
            fitted: dict[Any, tuple[HeadParams, float, dict[str, float]]] = {}
            for seed, block in enumerate(per_seed):
                for k, test in enumerate(folds):
                    fold_block = block[k] if isinstance(block, list) else block  # per-fold encoders
                    res = run_fold(fold_block, windows, available, is_base, test, calibrated, folds, fitted,
                                   c_grid, smoothing)
                    for variant, scores in res.items():
                        runs.setdefault(variant, []).append({"fold": k, "seed": seed, "test": list(test)} | scores)
            for variant, variant_runs in runs.items():
                key = f"{arm}{variant}/{cal}"
                report["arms"][key] = {"runs": variant_runs, "summary": summarise(variant_runs, len(folds))}
                s = report["arms"][key]["summary"]["eeg,ecg"]
                log.info("%s: EEG+ECG bal.acc %.3f±%.3f AUROC %.3f±%.3f (%.0f s)", key,
                         s["balanced_accuracy"]["mean"], s["balanced_accuracy"]["sd"], s["auroc"]["mean"],
                         s["auroc"]["sd"], time.monotonic() - t0)
    report["paired_auroc_vs_classical"] = paired(report["arms"], len(folds))
    return report


def _fold_means(runs: list[dict[str, Any]], n_folds: int, name: str, metric: str) -> NDArray[np.float64]:
    return np.array([np.nanmean([r[name][metric] for r in runs if r["fold"] == k]) for k in range(n_folds)])


def summarise(runs: list[dict[str, Any]], n_folds: int) -> dict[str, Any]:
    """Mean ± SD over folds of the per-fold seed means, and the SD over seeds of the fold-mean."""
    out: dict[str, Any] = {}
    seeds = sorted({r["seed"] for r in runs})
    for name in SET_NAMES:
        out[name] = {}
        for metric in ("balanced_accuracy", "auroc"):
            per_fold = _fold_means(runs, n_folds, name, metric)
            per_seed = [np.nanmean([r[name][metric] for r in runs if r["seed"] == s]) for s in seeds]
            out[name][metric] = {"mean": float(np.nanmean(per_fold)), "sd": float(np.nanstd(per_fold, ddof=1)),
                                 "per_fold": per_fold.tolist(), "sd_over_seeds": float(np.std(per_seed, ddof=1))
                                 if len(seeds) > 1 else 0.0}
    return out


def paired(arms: dict[str, Any], n_folds: int) -> dict[str, Any]:
    """Per-fold AUROC differences against ``classical`` with the same calibration.

    A smoothed variant (``<arm>+s<S>``) is compared with its own arm scored window by window instead.
    """
    out: dict[str, Any] = {}
    for key, arm in arms.items():
        name, cal = key.split("/")
        base = name.split("+", 1)[0]
        ref = arms.get(f"{base}/{cal}" if base != name else f"classical/{cal}")
        if ref is None or name == "classical":
            continue
        out[key] = {}
        for s in SET_NAMES:
            d = _fold_means(arm["runs"], n_folds, s, "auroc") - _fold_means(ref["runs"], n_folds, s, "auroc")
            out[key][s] = {"mean": float(d.mean()), "sd": float(d.std(ddof=1)), "per_fold": d.tolist(),
                           "folds_above": int((d > 0).sum()), "n_folds": n_folds}
    return out


ARM_LABELS: dict[str, str] = {
    "classical": "classical (montage-agnostic; the default `eegmat-fusion`)",
    "classical_montage": "classical + per-channel band powers (fixed 20-channel montage; reference)",
    "classical_regions": "classical + EEG region features by 10-20 names (42; montage-agnostic)",
    "classical_regions_compact": "classical + EEG region markers only (FMθ, θ/α ratios, α asymmetry; 6)",
    "deep_random": "deep, random frozen encoders (mean pooling)",
    "deep_random_sd": "deep, random frozen encoders (mean + SD pooling)",
    "deep_pretrained": "deep, pre-trained frozen encoders (mean + SD pooling)",
    "deep_pretrained_attn": "deep, pre-trained frozen encoders (attention pooling)",
    "hybrid_pretrained_attn": "hybrid: classical + pre-trained embeddings (attention pooling)",
    "hybrid_random": "hybrid: classical + random-encoder embeddings",
    "hybrid_pretrained": "hybrid: classical + pre-trained embeddings",
}


def markdown_table(report: dict[str, Any]) -> str:
    """Format the CV table in markdown.

    One row per arm and calibration: bal. acc. / AUROC (mean ± SD over folds) per input set, and the paired AUROC
    difference against ``classical`` (a smoothed variant: against its own arm window by window; EEG + ECG; mean ±
    SD, folds above).
    """
    versus = ("classical (smoothed rows: the same model window by window)"
              if any("+" in key for key in report["arms"]) else "classical")
    head = (f"| model | calibration | EEG + ECG | EEG | ECG | ΔAUROC vs {versus}, EEG + ECG (folds above) |\n"
            "|---|---|---|---|---|---|\n")
    rows = []
    for key, arm in report["arms"].items():
        name, cal = key.split("/")
        cells = []
        for s in SET_NAMES:
            m = arm["summary"][s]
            if not np.isfinite(m["auroc"]["mean"]):
                cells.append("—")
                continue
            cells.append(f"{m['balanced_accuracy']['mean']:.3f}±{m['balanced_accuracy']['sd']:.3f} / "
                         f"{m['auroc']['mean']:.3f}±{m['auroc']['sd']:.3f}")
        d = report.get("paired_auroc_vs_classical", {}).get(key, {}).get("eeg,ecg")
        diff = "—" if d is None else f"{d['mean']:+.3f}±{d['sd']:.3f} ({d['folds_above']}/{d['n_folds']})"
        base, _, suffix = name.partition("+")
        label = ARM_LABELS.get(base, base) + (f", {_smoothing_label(suffix)}" if suffix else "")
        rows.append(f"| {label} | {'60 s rest' if cal == 'cal' else 'none'} | {' | '.join(cells)} | {diff} |")
    return head + "\n".join(rows) + "\n"


def _smoothing_label(suffix: str) -> str:
    """``s30`` → "outputs smoothed over 30 s"; ``s30c`` adds "(rest → task as one session)"."""
    continuous = suffix.endswith("c")
    seconds = suffix[1:-1] if continuous else suffix[1:]
    return f"outputs smoothed over {seconds} s" + (" (rest → task as one session)" if continuous else "")


def _fold_encoders(args: argparse.Namespace) -> list[dict[str, Path]]:
    """Per fold: the encoders (the EEG one pre-trained without that fold, ``--eeg-encoder-folds``)."""
    ecg = {"ecg": args.ecg_encoder} if args.ecg_encoder else {}
    out = []
    for k in range(8):
        eeg: dict[str, Path] = {}
        for spec in args.eeg_encoder_folds or []:
            folds, path = spec.split("=", 1)
            lo, hi = (int(v) for v in folds.split("-"))
            if lo <= k <= hi:
                eeg = {"eeg": Path(path)}
        out.append(eeg | ecg)
    return out


def _pretrained_per_fold(windows: Windows, args: argparse.Namespace) -> list[tuple[Block, dict[str, Path]]]:
    """Per fold: the mean + SD pooled block of that fold's encoders, and the encoders."""
    return [(pretrained_block(windows, args.cache, enc), enc) for enc in _fold_encoders(args)]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m rt_physio.experiments.hybrid_cv", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--json", required=True, type=Path)
    ap.add_argument("--cache", type=Path, default=Path("runs/hybrid-cache"))
    ap.add_argument("--subjects", default="0-31", help="EEGMAT subject numbers, lo-hi")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--arms", default="classical,deep_random,hybrid_random")
    ap.add_argument("--calibrate", type=float, default=60.0)
    ap.add_argument("--eeg-encoder-folds", action="append", default=None, metavar="K-L=PATH",
                    help="EEG encoder pre-trained without the subjects of folds K..L (repeatable)")
    ap.add_argument("--ecg-encoder", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smooth-s", type=float, action="append", default=None, metavar="S",
                    help="also score every arm with outputs smoothed over S s, per recording (+sS) and over each "
                         "person's rest-then-task sequence (+sSc); repeatable")
    ap.add_argument("--table", action="store_true", help="print the markdown table of an existing --json and exit")
    args = ap.parse_args(argv)
    if args.table:
        sys.stdout.write(markdown_table(json.loads(args.json.read_text())))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    lo, hi = (int(v) for v in args.subjects.split("-"))
    t0 = time.monotonic()
    windows = load_windows(args.data, range(lo, hi + 1), cache=args.cache / "prepared")
    log.info("%d windows of %d subjects", len(windows), len(set(windows.subjects.tolist())))
    arms = args.arms.split(",")
    classical = classical_block(windows, args.cache)
    log.info("classical features (%.0f s)", time.monotonic() - t0)
    blocks: dict[str, list[Block | list[Block]]] = {}
    for arm in arms:
        if arm == "classical":
            blocks[arm] = [classical] * args.seeds
        elif arm == "classical_montage":
            blocks[arm] = [combine(montage_block(windows, args.cache), classical)] * args.seeds
        elif arm in ("classical_regions", "classical_regions_compact"):
            from rt_physio.experiments.region_features import COMPACT_FEATURES

            names = COMPACT_FEATURES if arm.endswith("_compact") else None
            blocks[arm] = [combine(classical, region_block(windows, args.cache, names))] * args.seeds
            log.info("region features (%.0f s)", time.monotonic() - t0)
        elif arm == "deep_random_sd":
            blocks[arm] = [random_block(windows, args.cache, s, "mean_sd") for s in range(args.seeds)]
        elif arm in ("deep_random", "hybrid_random"):
            rand = [random_block(windows, args.cache, s) for s in range(args.seeds)]
            log.info("random embeddings (%.0f s)", time.monotonic() - t0)
            blocks[arm] = [r if arm == "deep_random" else combine(r, classical) for r in rand]
        elif arm in ("deep_pretrained", "hybrid_pretrained"):
            per_fold = _pretrained_per_fold(windows, args)
            if arm == "deep_pretrained":
                arm_blocks = [without_missing_encoders(b, enc) for b, enc in per_fold]
            else:
                arm_blocks = [combine(b, classical) for b, _ in per_fold]
            blocks[arm] = [arm_blocks] * args.seeds
        elif arm in ("deep_pretrained_attn", "hybrid_pretrained_attn"):
            folds = subject_folds(windows.subjects.tolist(), 4)
            attn = attention_blocks(windows, args.cache, _fold_encoders(args), folds)
            arm_blocks = attn if arm == "deep_pretrained_attn" else [combine(b, classical) for b in attn]
            blocks[arm] = [arm_blocks] * args.seeds
            log.info("attention-pooled embeddings (%.0f s)", time.monotonic() - t0)
        else:
            ap.error(f"unknown arm {arm!r}")
    smoothing = [Smoothing(sec, cont) for sec in args.smooth_s or [] for cont in (False, True)]
    report = cross_validate(windows, blocks, calibrate=args.calibrate, smoothing=smoothing)
    report |= {"command": recorded_command("rt_physio.experiments.hybrid_cv", argv),
               "wall_time_s": round(time.monotonic() - t0, 1), "seeds": args.seeds, "C_grid": list(C_GRID)}
    write_report(args.json, report, indent=1)
    log.info("wrote %s (%.0f s)", args.json, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
