"""A synthetic ``DREAMER.mat``: DREAMER's exact layout, with arousal labels that the signals carry.

The real file needs the providers' agreement and is never shipped; this one lets the loader and the protocols of
``rt-physio train cv --dataset dreamer`` run end to end (``shared/reference/dreamer.md`` describes the layout).

What the signals hold, per subject ``s`` and film clip ``j`` (arousal high when its score is 4 or 5, low for 1-3;
half of each subject's clips are high):

* ECG (2 leads, 256 Hz): R waves of about 1 mV at a heart rate of ``subject rest rate + trial drift`` in the
  baseline clip and ``+ hr_effect`` bpm more in a high-arousal stimulus clip.
* EEG (14 Emotiv channels, 128 Hz, DC ~4200 µV): AR(1) background plus a 10-Hz alpha rhythm, strongest over
  O1/O2/P7/P8, scaled by ``subject gain x trial drift`` in both clips and by ``alpha_effect`` (< 1) in a
  high-arousal stimulus clip.

The per-subject offsets (rest heart rate, alpha gain) are large beside the arousal effect and are shared by all of
a subject's clips, baselines included; the per-trial drifts are shared by a clip and its own baseline only. So
centring each clip on its baseline recording removes both, centring on the subject's mean baseline removes the
subject offset only, and no centring removes neither. Valence and dominance scores are random (1-5): nothing in the
signals predicts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rt_physio.training.datasets.dreamer import to_microvolts

__all__ = ["DREAMER_ELECTRODES", "SyntheticDreamer", "write_synthetic_dreamer"]

#: Emotiv EPOC electrodes in DREAMER's order.
DREAMER_ELECTRODES = ("AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4")
_POSTERIOR = {"O1": 1.0, "O2": 1.0, "P7": 0.7, "P8": 0.7, "T7": 0.4, "T8": 0.4}
EEG_FS, ECG_FS = 128, 256


@dataclass(frozen=True)
class SyntheticDreamer:
    """Parameters of :func:`write_synthetic_dreamer` (defaults: a file a test reads in seconds).

    Attributes
    ----------
    n_subjects, n_trials : int
        Subjects and film clips per subject (``n_trials`` even: half high arousal).
    stimulus_s, baseline_s : float
        Clip lengths in seconds (DREAMER: 65-393 s stimuli, 61 s baselines).
    hr_effect : float
        Extra heart rate (bpm) in a high-arousal stimulus clip.
    alpha_effect : float
        Alpha amplitude factor in a high-arousal stimulus clip.
    subject_hr_sd, trial_hr_sd : float
        Spread (bpm) of the per-subject rest heart rate (around 70 bpm) and of the per-trial drift.
    subject_alpha_sd, trial_alpha_sd : float
        Spread of the log alpha gain per subject and per trial.
    eeg_unit, ecg_unit : str
        Unit the samples are written in (uV, mV or V).
    seed : int
        Everything random derives from it.
    """

    n_subjects: int = 6
    n_trials: int = 6
    stimulus_s: float = 30.0
    baseline_s: float = 20.0
    hr_effect: float = 8.0
    alpha_effect: float = 0.6
    subject_hr_sd: float = 12.0
    trial_hr_sd: float = 4.0
    subject_alpha_sd: float = 0.5
    trial_alpha_sd: float = 0.25
    eeg_unit: str = "uV"
    ecg_unit: str = "uV"
    seed: int = 0


def write_synthetic_dreamer(path: str | Path, params: SyntheticDreamer | None = None) -> dict[str, NDArray[np.int64]]:
    """Write a synthetic ``DREAMER.mat`` (MATLAB 5 format, DREAMER's nesting) to ``path``.

    Parameters
    ----------
    path : str | Path
        File to write.
    params : SyntheticDreamer | None
        What to generate (defaults when None).

    Returns
    -------
    dict[str, ndarray of int64, shape (n_subjects, n_trials)]
        The scores written: ``"arousal"``, ``"valence"``, ``"dominance"`` (1-5).
    """
    import scipy.io

    p = params or SyntheticDreamer()
    if p.n_subjects < 1 or p.n_trials < 2 or p.n_trials % 2:
        raise ValueError(f"Need at least one subject and an even number (>= 2) of trials, got {p.n_subjects} and "
                         f"{p.n_trials}.")
    eeg_factor = 1.0 / to_microvolts(p.eeg_unit, "synthetic DREAMER: EEG")
    ecg_factor = 1.0 / to_microvolts(p.ecg_unit, "synthetic DREAMER: ECG")
    rng = np.random.default_rng(p.seed)
    scores = {k: np.zeros((p.n_subjects, p.n_trials), dtype=np.int64) for k in ("arousal", "valence", "dominance")}
    subjects = []
    for s in range(p.n_subjects):
        high = rng.permutation(np.repeat([True, False], p.n_trials // 2))
        scores["arousal"][s] = np.where(high, rng.integers(4, 6, p.n_trials), rng.integers(1, 4, p.n_trials))
        scores["valence"][s] = rng.integers(1, 6, p.n_trials)
        scores["dominance"][s] = rng.integers(1, 6, p.n_trials)
        rest_hr = 70.0 + p.subject_hr_sd * rng.standard_normal()
        alpha_gain = float(np.exp(p.subject_alpha_sd * rng.standard_normal()))
        dc = 4200.0 + 50.0 * rng.standard_normal(len(DREAMER_ELECTRODES))
        eeg: dict[str, list[object]] = {"baseline": [], "stimuli": []}
        ecg: dict[str, list[object]] = {"baseline": [], "stimuli": []}
        for j in range(p.n_trials):
            hr = float(np.clip(rest_hr + p.trial_hr_sd * rng.standard_normal(), 45.0, 120.0))
            alpha = alpha_gain * float(np.exp(p.trial_alpha_sd * rng.standard_normal()))
            for part, seconds, active in (("baseline", p.baseline_s, False), ("stimuli", p.stimulus_s, True)):
                boost = bool(active and high[j])
                eeg[part].append(_eeg(rng, seconds, alpha * (p.alpha_effect if boost else 1.0), dc) * eeg_factor)
                ecg[part].append(_ecg(rng, seconds, hr + (p.hr_effect if boost else 0.0)) * ecg_factor)
        subjects.append({
            "Age": str(int(rng.integers(20, 40))), "Gender": "male" if s % 2 else "female",
            "EEG": {k: _cell(v, (p.n_trials, 1)) for k, v in eeg.items()},
            "ECG": {k: _cell(v, (p.n_trials, 1)) for k, v in ecg.items()},
            "ScoreValence": scores["valence"][s][:, None].astype(np.float64),
            "ScoreArousal": scores["arousal"][s][:, None].astype(np.float64),
            "ScoreDominance": scores["dominance"][s][:, None].astype(np.float64),
        })
    dreamer = {
        "Data": _cell(subjects, (1, p.n_subjects)),
        "EEG_SamplingRate": float(EEG_FS), "ECG_SamplingRate": float(ECG_FS),
        "EEG_Electrodes": _cell(list(DREAMER_ELECTRODES), (1, len(DREAMER_ELECTRODES))),
        "noOfSubjects": float(p.n_subjects), "noOfVideoSequences": float(p.n_trials),
        "Disclaimer": "synthetic (rt_physio.training.datasets.dreamer_synthetic)", "Provider": "rt_physio",
        "Version": "synthetic", "Acknowledgement": "none",
    }
    scipy.io.savemat(str(path), {"DREAMER": dreamer})
    return scores


def _cell(items: Sequence[object], shape: tuple[int, int]) -> NDArray[np.object_]:
    """Build a MATLAB cell array (object array) of ``shape`` holding ``items``."""
    cell = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        cell.flat[i] = item
    return cell


def _eeg(rng: np.random.Generator, seconds: float, alpha: float, dc: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return (samples, 14) µV: DC + AR(1) background (~10 µV) + 10-Hz alpha of amplitude ``alpha`` x 10 µV."""
    from scipy.signal import lfilter

    n = round(seconds * EEG_FS)
    n_ch = len(DREAMER_ELECTRODES)
    background = lfilter([1.0], [1.0, -0.9], rng.normal(0.0, 4.4, (n, n_ch)), axis=0)  # (n, 14), SD ~10 µV
    t = np.arange(n) / EEG_FS
    envelope = 1.0 + 0.3 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 2 * np.pi))
    rhythm = envelope * np.sin(2 * np.pi * (10.0 + rng.normal(0, 0.3)) * t + rng.uniform(0, 2 * np.pi))  # (n,)
    weights = np.array([_POSTERIOR.get(ch, 0.15) for ch in DREAMER_ELECTRODES])
    out: NDArray[np.float64] = dc[None, :] + background + 10.0 * alpha * rhythm[:, None] * weights[None, :]
    return out


def _ecg(rng: np.random.Generator, seconds: float, hr_bpm: float) -> NDArray[np.float64]:
    """Return (samples, 2) µV: R (~1 mV) and T waves at ``hr_bpm``, 2 % RR jitter, baseline wander, noise."""
    n = round(seconds * ECG_FS)
    t = np.arange(n) / ECG_FS
    rr = 60.0 / hr_bpm
    beats = np.cumsum(rr * (1.0 + 0.02 * rng.standard_normal(int(seconds / rr) + 3))) - rng.uniform(0, rr)
    lead = np.zeros(n)
    for b in beats:
        lead += 1000.0 * np.exp(-0.5 * ((t - b) / 0.012) ** 2) + 250.0 * np.exp(-0.5 * ((t - b - 0.3) / 0.05) ** 2)
    wander = 100.0 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 2 * np.pi))
    lead1 = lead + wander + rng.normal(0.0, 15.0, n)
    lead2 = 0.6 * lead + 0.5 * wander + rng.normal(0.0, 15.0, n)
    return np.stack([lead1, lead2], axis=1)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rt_physio.training.datasets.dreamer_synthetic OUT.mat``: write a synthetic DREAMER.mat."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="python -m rt_physio.training.datasets.dreamer_synthetic",
                                     description="Write a synthetic DREAMER.mat (DREAMER's layout; arousal carried "
                                                 "by heart rate and alpha, with per-subject and per-trial offsets).")
    parser.add_argument("out", type=Path)
    defaults = SyntheticDreamer()
    parser.add_argument("--subjects", type=int, default=defaults.n_subjects)
    parser.add_argument("--trials", type=int, default=defaults.n_trials, help="film clips per subject (even)")
    parser.add_argument("--stimulus-s", type=float, default=defaults.stimulus_s)
    parser.add_argument("--baseline-s", type=float, default=defaults.baseline_s)
    parser.add_argument("--eeg-unit", default="uV")
    parser.add_argument("--ecg-unit", default="uV")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_synthetic_dreamer(args.out, SyntheticDreamer(
        n_subjects=args.subjects, n_trials=args.trials, stimulus_s=args.stimulus_s, baseline_s=args.baseline_s,
        eeg_unit=args.eeg_unit, ecg_unit=args.ecg_unit, seed=args.seed))
    logging.getLogger(__name__).info("wrote %s (%d subjects x %d trials)", args.out, args.subjects, args.trials)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
