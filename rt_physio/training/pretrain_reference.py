"""A non-learned reference for masked-patch pre-training: fill hidden samples from one beat period away.

The held-out ratio of an encoder (its masked MSE over the zero predictor's) says little on its own: is 0.9 poor,
or near what these signals allow? This reference answers it on the **same** windows, masks and standardised
targets as the encoder is scored on. Per window and lead:

* the period is the lag (0.3–2 s, heart rates 30–200 bpm) of the highest masked autocorrelation of the
  *visible* samples (the first local maximum within 80 % of the highest, so that a multiple of the period is
  not taken);
* a hidden sample is the mean of the visible samples 1, 2, ... ``periods`` periods before and after it (none
  visible: 0), times ``shrink``: a copy whose beats land a few samples off costs twice their energy, so a shrunk
  copy scores better.

It uses only what the encoder sees (visible samples), so it is a fair comparison, not a bound: an encoder could
do better, e.g. by placing each beat from its neighbours.

:func:`oracle_lag_copy` is an optimistic figure for copying: the second half of each window copied from one lag
earlier, the lag chosen **on the target itself** (no predictor can choose so). :func:`rr_jitter` measures how far
consecutive beat intervals differ (in samples): a beat copied from one period away lands that far off.

``python -m rt_physio.training.pretrain_reference --encoder DIR [--json OUT]`` scores all three on the held-out
windows and masks that an ECG encoder folder was scored on (rebuilt from its ``encoder.json``).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = ["beat_period", "main", "oracle_lag_copy", "period_copy", "reference_report", "rr_jitter"]

log = logging.getLogger(__name__)


def beat_period(signal: NDArray[np.floating], visible: NDArray[np.bool_], lo: int = 60, hi: int = 400,
                min_overlap: int = 200) -> int:
    """Estimate the beat period (samples) of one lead from its visible samples by masked autocorrelation.

    Parameters
    ----------
    signal : ndarray, shape (n,)
        Samples (hidden ones are ignored).
    visible : ndarray of bool, shape (n,)
        True where the sample may be used.
    lo, hi : int
        Lag range searched, ``[lo, hi)`` samples (0.3–2 s at 200 Hz by default).
    min_overlap : int
        Lags where fewer sample pairs are both visible are not considered.

    Returns
    -------
    int
        The lag; ``lo`` when no lag has enough visible pairs.
    """
    n = len(signal)
    hi = min(hi, n - 1)
    if hi <= lo:
        return lo
    v = visible.astype(np.float64)
    sv = np.where(visible, signal, 0.0).astype(np.float64)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    fs, fv = np.fft.rfft(sv, size), np.fft.rfft(v, size)
    prod = np.fft.irfft(fs * np.conj(fs), size)[lo:hi]  # sum_t s[t] s[t+k] over visible pairs
    pairs = np.fft.irfft(fv * np.conj(fv), size)[lo:hi]  # how many visible pairs at lag k
    ac = np.where(pairs > min_overlap - 0.5, prod / np.maximum(pairs, 1.0), -np.inf)
    top = float(ac.max())
    if not np.isfinite(top):
        return lo
    candidates = np.flatnonzero(ac >= 0.8 * top) if top > 0 else np.array([int(np.argmax(ac))])
    i = int(candidates[0])
    while i + 1 < len(ac) and ac[i + 1] > ac[i]:
        i += 1
    return lo + i


def period_copy(target: Tensor, mask: Tensor, shrink: float = 0.5, periods: int = 3) -> Tensor:
    """Predict the hidden patches of ``target`` from its visible ones (see the module docstring).

    Parameters
    ----------
    target : Tensor
        ``(B, C, N, P)`` patches (the standardised targets of pre-training).
    mask : Tensor
        ``(B, C, N)``, 1 where a patch is hidden.
    shrink : float
        Factor applied to the copy.
    periods : int
        Copy from up to this many periods before and after.

    Returns
    -------
    Tensor
        ``(B, C, N, P)``: the prediction on hidden patches, the target itself on visible ones.
    """
    bsz, n_leads, n_patches, patch = target.shape
    flat = target.detach().cpu().double().reshape(bsz, n_leads, n_patches * patch).numpy()
    hidden = mask.detach().cpu().bool().numpy().repeat(patch, axis=2)  # (B, C, N*P)
    out = flat.copy()
    idx = np.arange(n_patches * patch)
    for b in range(bsz):
        for c in range(n_leads):
            s, vis = flat[b, c], ~hidden[b, c]
            if not vis.any() or vis.all():
                continue
            lag = beat_period(s, vis)
            total = np.zeros(len(s))
            count = np.zeros(len(s))
            for k in range(1, periods + 1):
                for src in (idx - k * lag, idx + k * lag):
                    ok = (src >= 0) & (src < len(s))
                    ok[ok] = vis[src[ok]]
                    total[ok] += s[src[ok]]
                    count[ok] += 1
            fill = shrink * np.where(count > 0, total / np.maximum(count, 1), 0.0)
            out[b, c, ~vis] = fill[~vis]
    return torch.from_numpy(out.reshape(target.shape)).to(target.dtype)


def oracle_lag_copy(target: Tensor, lo: int = 60, hi: int = 400, shrink: float = 1.0) -> float:
    """Pooled ratio (error / zero predictor) of copying each window's second half from one lag earlier.

    The lag (in ``[lo, hi)`` samples) is chosen per window and lead to minimise the error **on the target**, so
    this is an oracle: a fair predictor cannot do this well by copying.

    Parameters
    ----------
    target : Tensor
        ``(B, C, N, P)`` standardised windows; the second half is the last ``N * P // 2`` samples (at least
        ``hi`` samples must precede it).
    lo, hi : int
        Lags searched.
    shrink : float
        Factor applied to the copy.

    Returns
    -------
    float
        Sum of squared errors over the sum of squared targets.
    """
    flat = target.detach().cpu().double().flatten(2).reshape(-1, target.shape[2] * target.shape[3]).numpy()
    n = flat.shape[1]
    half = n // 2
    if half < hi:
        raise ValueError(f"Windows of {n} samples are too short for lags up to {hi}.")
    err = den = 0.0
    for s in flat:
        tgt = s[half:]
        errors = [float(((s[half - p:n - p] - tgt) ** 2).sum()) for p in range(lo, hi)]
        lag = lo + int(np.argmin(errors))
        err += float(((shrink * s[half - lag:n - lag] - tgt) ** 2).sum())
        den += float((tgt ** 2).sum())
    return err / den if den else float("nan")


def rr_jitter(target: Tensor, min_distance: int = 50) -> NDArray[np.float64]:
    """Absolute differences of consecutive beat intervals (samples) of every window and lead.

    Beats are the peaks above half the maximum of the lead (flipped when its largest deflection is negative), at
    least ``min_distance`` samples apart.
    """
    from scipy.signal import find_peaks

    flat = target.detach().cpu().double().flatten(2).reshape(-1, target.shape[2] * target.shape[3]).numpy()
    out: list[NDArray[np.float64]] = []
    for s in flat:
        sig = s if s.max() >= -s.min() else -s
        peaks, _ = find_peaks(sig, height=0.5 * sig.max(), distance=min_distance)
        intervals = np.diff(peaks).astype(np.float64)
        if len(intervals) > 1:
            out.append(np.abs(np.diff(intervals)))
    return np.concatenate(out) if out else np.zeros(0)


def _shrunk_copy(_: Tensor, mask: Tensor, target: Tensor, shrink: float) -> Tensor:
    return period_copy(target, mask, shrink=shrink)


def reference_report(encoder_dir: str | Path, cache: Path | None = None) -> dict[str, Any]:
    """Period copy (shrink 1, 0.75, 0.5), the oracle lag copy and the beat jitter on an encoder's held-out set."""
    from rt_physio.nn.masking import heldout_mse, standardise
    from rt_physio.training.datasets.prepare import default_cache_dir
    from rt_physio.training.encoders import encoder_meta
    from rt_physio.training.pretrain import PretrainConfig, _windows, heldout_batches
    from rt_physio.training.pretrain_data import build_corpus

    meta = encoder_meta(encoder_dir)
    raw = dict(meta["config"])
    raw["data"], raw["eegmat_subjects"] = tuple(raw["data"]), tuple(raw["eegmat_subjects"])
    cfg = PretrainConfig(**{k: v for k, v in raw.items() if k in PretrainConfig.__dataclass_fields__})
    corpus = build_corpus(cfg.modality, cfg.data, eegmat_subjects=cfg.eegmat_subjects,
                          holdout_fraction=cfg.holdout_fraction, seed=cfg.seed, line_freq=cfg.line_freq,
                          cache=cache or default_cache_dir() / "prepared")
    held = _windows(corpus.heldout, cfg.modality, meta["window_s"], meta["window_s"],
                    meta["preprocessing"]["max_abs_uv"])
    batches = heldout_batches(held, cfg, float(meta["masking"]["lead_ratio"]))
    report: dict[str, Any] = {"encoder": str(encoder_dir), "windows": sum(int(x.shape[0]) for x, _ in batches)}
    for shrink in (1.0, 0.75, 0.5):
        err, zero = heldout_mse(batches, functools.partial(_shrunk_copy, shrink=shrink))
        report[f"period_copy_x{shrink:g}"] = err / zero
    targets = torch.cat([standardise(x) for x, _ in batches])
    report["oracle_lag_copy_x1"] = oracle_lag_copy(targets)
    report["oracle_lag_copy_x0.5"] = oracle_lag_copy(targets, shrink=0.5)
    jitter = rr_jitter(targets)
    report["rr_jitter_samples_p25_p50_p75"] = [float(v) for v in np.percentile(jitter, [25, 50, 75])]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m rt_physio.training.pretrain_reference")
    parser.add_argument("--encoder", required=True, type=Path, help="an ECG encoder folder (train pretrain)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    report = reference_report(args.encoder)
    for key, value in report.items():
        log.info("%s: %s", key, value)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
