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
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = ["beat_period", "period_copy"]


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
