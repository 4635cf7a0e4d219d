"""Train the CV-chosen hybrid recipe on every subject and write a model folder.

Command line: ``python -m rt_physio.training.hybrid_ship``.

The recipe (``--arm``) is the one the cross-validation of :mod:`rt_physio.experiments.hybrid_cv` reports; C per
calibration state is chosen the way each CV fold chose it, here over all subjects given:
:func:`~rt_physio.training.hybrid.select_c` (cross-validation over the subject folds, mean AUROC over the three
modality sets, ties: the smaller C). The head is trained on all subjects given; the per-modality-set Platt maps
are fitted on out-of-fold logits (the same subject folds: each fold's logits from a head trained on the other
folds), so they too come from people the head did not see. No figure is chosen on a reported subject: the figures
recorded are the CV's. Only encoder-free arms (``classical``) and random-encoder arms with a stored seed are
supported here.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rt_physio.dsp.summary_features import ECG_FEATURES, EEG_FEATURES
from rt_physio.nn.hybrid import SET_NAMES, HybridModel
from rt_physio.nn.registry import save_model
from rt_physio.nn.spec import SCHEMA
from rt_physio.training.classical.features import CLASSICAL_PREPROCESSING
from rt_physio.training.hybrid import (
    SCALE_UV,
    SFREQ,
    WINDOW_S,
    centre,
    classical_block,
    fit_with_oof_platt,
    load_windows,
    select_c,
)
from rt_physio.training.splits import subject_folds

__all__ = ["main", "ship_classical_arm"]

log = logging.getLogger("rt_physio.training.hybrid_ship")


def ship_classical_arm(data: Path, out: Path, cv: dict[str, Any], *, subjects: Sequence[int], calibrate: float,
                       cache: Path, command: str, cv_json: str, smoothing_s: float = 0.0,
                       smoothing_cv: tuple[dict[str, Any], str] | None = None) -> dict[str, Any]:
    """Train the ``classical`` arm on ``subjects`` and save it to ``out``; returns the card's provenance.

    ``smoothing_s`` > 0 becomes ``outputs.smoothing_s``; its CV figures (the ``classical+s<S>`` arms) are read from
    ``smoothing_cv`` (a :mod:`rt_physio.experiments.hybrid_cv` report and its path).
    """
    t0 = time.monotonic()
    windows = load_windows(data, subjects, cache=cache / "prepared")
    x, present, fm = classical_block(windows, cache)
    y, subj = windows.labels, windows.subjects
    is_base = windows.baseline(calibrate)
    model = HybridModel(None, None, features=True)
    params: dict[str, Any] = {}
    for calibrated, head in ((False, model.lr), (True, model.cal)):
        xx: np.ndarray = x
        if calibrated:
            xx, fallback = centre(x, present, windows, is_base, fm, np.ones(len(y), dtype=bool))
            model.calibration_fallback.copy_(torch.from_numpy(fallback))
        rows = present.any(axis=1) & ~(is_base if calibrated else np.zeros_like(is_base))
        folds = subject_folds(subj[rows].tolist(), 4)
        c, scores = select_c(xx, present, y, fm, subj, rows, rows & ~is_base, folds)
        log.info("%s: C = %g (inner-CV AUROC %s)", "calibrated" if calibrated else "uncalibrated", c, scores)
        p = fit_with_oof_platt(xx, present, y, fm, subj, rows, c, folds)
        p.load_into(head)
        params["cal" if calibrated else "uncal"] = {
            "C": c, "C_selection": "8-fold subject CV over these subjects, mean AUROC over EEG + ECG, EEG, ECG",
            "platt_a_b": {n: [round(float(v), 4) for v in p.platt[k]] for k, n in enumerate(SET_NAMES)}}
    names = sorted(set(subj.tolist()))
    fields = _card(cv, names, params, calibrate, command, cv_json, time.monotonic() - t0, len(y))
    if smoothing_s > 0:
        _add_smoothing(fields, smoothing_s, smoothing_cv)
    save_model(out, model, fields, dtype=torch.float32)
    return fields


def _figures(cv: dict[str, Any], key: str) -> dict[str, Any]:
    s = cv["arms"][key]["summary"]
    return {name: {m: f"{s[name][m]['mean']:.3f} ± {s[name][m]['sd']:.3f}" for m in ("balanced_accuracy", "auroc")}
            for name in SET_NAMES}


def _add_smoothing(fields: dict[str, Any], seconds: float, smoothing_cv: tuple[dict[str, Any], str] | None) -> None:
    if smoothing_cv is None:
        raise ValueError("--smoothing needs --smoothing-json: the CV report with the smoothed arms")
    cv, path = smoothing_cv
    key = f"classical+s{seconds:g}"
    if f"{key}/uncal" not in cv["arms"]:
        raise ValueError(f"{path} has no arm {key!r}: run hybrid_cv with --smooth-s {seconds:g}")
    fields["outputs"]["smoothing_s"] = float(seconds)
    fields["description"] += (
        f" Outputs are published as their mean (in logits) over the last {seconds:g} s of windows of a session"
        " (outputs.smoothing_s; rt-physio run --smoothing 0 turns it off); that costs up to that much lag after a"
        " change of state.")
    prov = fields["provenance"]
    prov["selection_note"] += (f"; smoothing span {seconds:g} s chosen on the same CV: the longest of those tried "
                               "whose continuous-session AUROC was not below the per-window one on any modality set")
    prov["cv_figures_smoothed"] = {
        "uncalibrated": _figures(cv, f"{key}/uncal"), "calibrated": _figures(cv, f"{key}/cal"),
        "uncalibrated_continuous": _figures(cv, f"{key}c/uncal"), "calibrated_continuous": _figures(cv, f"{key}c/cal"),
        "source": path, "protocol": f"as cv_figures, outputs smoothed over {seconds:g} s per recording; *_continuous: "
                                    "each person's rest then task recording as one session (the lag after the change "
                                    "is scored)"}


def _card(cv: dict[str, Any], subjects: list[str], params: dict[str, Any], calibrate: float, command: str,
          cv_json: str, seconds: float, n_windows: int) -> dict[str, Any]:
    description = (
        "Mental workload (rest = 0 vs mental arithmetic = 1) from EEG and/or ECG: the classical arm of the hybrid "
        "model (the winner of the subject-fold cross-validation, docs/results.md). Montage-agnostic EEG spectral "
        "summaries over channels (band powers, relative powers, entropy, Hjorth, alpha peak, inter-channel "
        "correlation) and ECG heart rate / HRV / R amplitude, one linear head for every modality set (modality "
        "dropout), a Platt map per set so the output does not jump when a modality drops out. Any EEG montage is "
        f"accepted (trained on the 20-channel EEGMAT montage). Run it calibrated (first {calibrate:g} s of rest) "
        "when possible: that is where it does best. Trained on EEGMAT subjects 00-31; C chosen by "
        "8-fold subject cross-validation over the same subjects (hence selection_subjects)."
        " Not traceable (numpy features; a few ms per window)."
    )
    return {
        "schema": SCHEMA, "trained": True, "description": description,
        "architecture": {"type": "hybrid", "hybrid": {"features": True, "pooling": "mean"}},
        "inputs": {"sfreq": SFREQ, "window_s": WINDOW_S, "scale_uv": SCALE_UV, "eeg": {"channels": []},
                   "ecg": {"channels": []}},
        "preprocessing": {m: {"bandpass": list(p.bandpass or ()), "notch": p.notch}
                          for m, p in CLASSICAL_PREPROCESSING.items()},
        "outputs": {"names": ["mental_workload"], "activation": "sigmoid"},
        "calibration": {"seconds": float(calibrate), "level": "features", "expects": False},
        "provenance": {
            "seed": 0,
            "data": "PhysioNet EEGMAT 1.0.0 (Zyma et al. 2019); rest = 0, mental arithmetic = 1",
            "training_subjects": subjects,
            "selection_subjects": subjects,
            "selection_note": "arm chosen by the 8-fold subject CV over these subjects; C by 8-fold subject "
                              "CV over them (mean AUROC over the three modality sets); Platt maps fitted on "
                              "out-of-fold logits",
            "features": {"eeg": list(EEG_FEATURES), "ecg": list(ECG_FEATURES)},
            "head": params,
            "cv_figures": {"uncalibrated": _figures(cv, "classical/uncal"),
                           "calibrated": _figures(cv, "classical/cal"),
                           "source": cv_json, "protocol": "8 folds of 4 consecutive subjects over 00-31, each head "
                           "trained on the other 28 as this one is (C by inner CV over the 7 training folds, Platt "
                           "maps on their out-of-fold logits), mean ± SD over folds; calibrated: first 60 s of rest "
                           "as baseline, never scored; uncalibrated scored on the same windows"},
            "training_command": command,
            "n_windows": n_windows,
            "wall_time_s": round(seconds, 1),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m rt_physio.training.hybrid_ship", description=__doc__)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--cv-json", required=True, type=Path)
    ap.add_argument("--arm", default="classical", choices=["classical"])
    ap.add_argument("--subjects", default="0-31")
    ap.add_argument("--calibrate", type=float, default=60.0)
    ap.add_argument("--cache", type=Path, default=Path("runs/hybrid-cache"))
    ap.add_argument("--smoothing", type=float, default=0.0, metavar="S",
                    help="outputs.smoothing_s of the model (default 0: every window on its own)")
    ap.add_argument("--smoothing-json", type=Path, default=None,
                    help="hybrid_cv report with the classical+sS arms (needed with --smoothing)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    lo, hi = (int(v) for v in args.subjects.split("-"))
    cv = json.loads(args.cv_json.read_text())
    command = "python -m rt_physio.training.hybrid_ship " + " ".join(
        ["--data", str(args.data), "--out", str(args.out), "--cv-json", str(args.cv_json), "--arm", args.arm]
        + (["--smoothing", f"{args.smoothing:g}", "--smoothing-json", str(args.smoothing_json)]
           if args.smoothing else []))
    smoothing_cv = ((json.loads(args.smoothing_json.read_text()), str(args.smoothing_json))
                    if args.smoothing_json is not None else None)
    fields = ship_classical_arm(args.data, args.out, cv, subjects=range(lo, hi + 1), calibrate=args.calibrate,
                                cache=args.cache, command=command, cv_json=str(args.cv_json),
                                smoothing_s=args.smoothing, smoothing_cv=smoothing_cv)
    log.info("wrote %s: %s", args.out, json.dumps(fields["provenance"]["head"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
