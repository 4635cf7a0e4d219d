"""Temporal smoothing of a model's outputs: the mean over the windows of the last ``seconds``.

A state such as mental workload changes over tens of seconds, while one 5-s window is a noisy reading of it.
A model may therefore declare ``[outputs] smoothing_s = S`` in its ``model.toml``: each published output is then
the mean, in the pre-activation (logit) domain, of the outputs of the windows of the same session that ended in
the last ``S`` seconds (the current one included). The price is lag: after a change of state the smoothed output
needs up to ``S`` seconds to follow. ``S = 0`` publishes every window's own output.

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

    def update(self, t_end: float, values: ArrayLike) -> NDArray[np.float64]:
        """Add the window that ended at ``t_end`` with outputs ``values``; return the smoothed outputs.

        A window that ends before the newest one seen (a clock step backwards) restarts the mean.
        """
        z = to_logits(values, self.activation)
        if self._recent and t_end < self._recent[-1][0]:
            self._recent.clear()
        self._recent.append((float(t_end), z))
        while len(self._recent) > 1 and self._recent[0][0] <= t_end - self.seconds:  # the current one stays
            self._recent.popleft()
        mean = np.mean([v for _, v in self._recent], axis=0)
        return from_logits(mean, self.activation)


def smooth_series(t_end: ArrayLike, values: ArrayLike, groups: Sequence[object] | NDArray[np.object_],
                  seconds: float, activation: str) -> NDArray[np.float64]:
    """Smooth the outputs of many windows offline: per group (a session or recording), in order of ``t_end``.

    ``values`` has one row per window (or is 1-d); the result has the same shape and row order.
    """
    seconds = _check_seconds(seconds)
    t = np.asarray(t_end, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray(groups, dtype=object)
    if not (len(t) == len(v) == len(g)):
        raise ValueError(f"t_end, values and groups differ in length: {len(t)}, {len(v)}, {len(g)}")
    out = np.empty_like(v)
    for group in dict.fromkeys(g.tolist()):
        rows = np.flatnonzero(g == group)
        rows = rows[np.argsort(t[rows], kind="stable")]
        smoother = OutputSmoother(seconds, activation)
        for r in rows:
            out[r] = smoother.update(float(t[r]), v[r])
    return out
