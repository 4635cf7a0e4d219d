"""Temporal smoothing of a model's outputs: the mean over the windows of the last ``seconds``.

A state such as mental workload changes over tens of seconds, while one 5-s window is a noisy reading of it.
A model may therefore declare ``[outputs] smoothing_s = S`` in its ``model.toml``: each published output is then
the mean, in the pre-activation (logit) domain, of the outputs of the windows of the same session that ended in
the last ``S`` seconds (the current one included). The price is lag: after a change of state the smoothed output
needs up to ``S`` seconds to follow. ``S = 0`` publishes every window's own output.

A window with no usable input (every modality it has was unusable to the model: a flat or non-finite EEG, an ECG
without plausible beats) does not enter the mean: its own output is the model's output for no input (0.5 for a
sigmoid), which would pull the mean toward it. Its published output is the mean of the usable windows that ended in
the last ``S`` seconds before its own end, or, when there is none, its own output; the number of windows the mean
holds is then 0 (the live message says so in ``smoothing.windows``, and keeps its ``unused_modalities`` and
``warning``).

The mean is taken on logits (sigmoid), log-probabilities (softmax, renormalised) or the values themselves
(identity), so that a smoothed output is again a probability of the same kind. One function,
:func:`smooth_series`, serves offline evaluation (per recording, in time order); :class:`OutputSmoother` is the
same rule fed one window at a time (the live engine, one per session); a test holds them equal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rt_physio.checks import check_number

__all__ = ["OutputSmoother", "from_logits", "smooth_series", "to_logits"]

_EPS = 1e-7


def to_logits(values: ArrayLike, activation: str) -> NDArray[np.float64]:
    """Map published values back to the domain where they are averaged (see the module docstring)."""
    v = np.asarray(values, dtype=np.float64)
    if activation == "sigmoid":
        p = np.clip(v, _EPS, 1.0 - _EPS)
        out: NDArray[np.float64] = np.log(p) - np.log1p(-p)
        return out
    if activation == "softmax":
        return np.log(np.clip(v, _EPS, 1.0))
    if activation == "identity":
        return v
    raise ValueError(f"unknown activation {activation!r}: expected sigmoid, softmax or identity")


def from_logits(logits: ArrayLike, activation: str) -> NDArray[np.float64]:
    """Inverse of :func:`to_logits` (softmax: renormalised over the last axis)."""
    z = np.asarray(logits, dtype=np.float64)
    if activation == "sigmoid":
        out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))
        return out
    if activation == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        normalised: NDArray[np.float64] = e / e.sum(axis=-1, keepdims=True)
        return normalised
    if activation == "identity":
        return z
    raise ValueError(f"unknown activation {activation!r}: expected sigmoid, softmax or identity")


def _check_seconds(seconds: float) -> float:
    return check_number("smoothing_s", seconds, minimum=0.0, maximum=3600.0, unit="seconds")


class OutputSmoother:
    """The running smoothed output of one session (feed windows in the order they end)."""

    def __init__(self, seconds: float, activation: str) -> None:
        self.seconds = _check_seconds(seconds)
        self.activation = activation
        to_logits(np.zeros(1), activation)  # refuse an unknown activation now, not at the first window
        self._recent: deque[tuple[float, NDArray[np.float64]]] = deque()

    def reset(self) -> None:
        """Forget the past (e.g. when the model switches to its calibrated head)."""
        self._recent.clear()

    def __len__(self) -> int:
        """Return the number of windows in the current mean."""
        return len(self._recent)

    def update(self, t_end: float, values: ArrayLike, usable: bool = True) -> NDArray[np.float64]:
        """Add the window that ended at ``t_end`` with outputs ``values``; return the smoothed outputs.

        A window that ends before the newest one seen (a clock step backwards) restarts the mean. A window that
        is not ``usable`` (no usable input) is not added: the result is the mean of the usable windows of the last
        ``seconds`` before ``t_end``, or ``values`` itself when there is none (``len(self)`` is then 0).
        """
        z = to_logits(values, self.activation)
        if self._recent and t_end < self._recent[-1][0]:
            self._recent.clear()
        if usable:
            self._recent.append((float(t_end), z))
        keep = 1 if usable else 0  # the current window always stays in its own mean
        while len(self._recent) > keep and self._recent[0][0] <= t_end - self.seconds:
            self._recent.popleft()
        if not self._recent:
            return from_logits(z, self.activation)
        mean = np.mean([v for _, v in self._recent], axis=0)
        return from_logits(mean, self.activation)


def smooth_series(t_end: ArrayLike, values: ArrayLike, groups: Sequence[object] | NDArray[np.object_],
                  seconds: float, activation: str, usable: ArrayLike | None = None) -> NDArray[np.float64]:
    """Smooth the outputs of many windows offline: per group (a session or recording), in order of ``t_end``.

    ``values`` has one row per window (or is 1-d); the result has the same shape and row order. ``usable`` (one
    bool per window; None: all) marks the windows that had usable input: the others stay out of every mean and
    get the mean of the usable windows before them, as :meth:`OutputSmoother.update` does live.
    """
    seconds = _check_seconds(seconds)
    t = np.asarray(t_end, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray(groups, dtype=object)
    u = np.ones(len(t), dtype=bool) if usable is None else np.asarray(usable)
    if u.dtype != np.bool_ or u.ndim != 1:
        raise ValueError(f"usable must be a 1-d bool mask, got dtype {u.dtype} and shape {u.shape}")
    if not (len(t) == len(v) == len(g) == len(u)):
        raise ValueError(f"t_end, values, groups and usable differ in length: {len(t)}, {len(v)}, {len(g)}, "
                         f"{len(u)}")
    out = np.empty_like(v)
    for group in dict.fromkeys(g.tolist()):
        rows = np.flatnonzero(g == group)
        rows = rows[np.argsort(t[rows], kind="stable")]
        smoother = OutputSmoother(seconds, activation)
        for r in rows:
            out[r] = smoother.update(float(t[r]), v[r], usable=bool(u[r]))
    return out
