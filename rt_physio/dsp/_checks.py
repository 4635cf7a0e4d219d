"""Boundary validation helpers: one check, one clear message naming the argument, the value and the expectation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["as_chunk", "as_timestamps", "check_int", "check_positive"]


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float after checking it is a finite, strictly positive (or non-negative) number."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    number = float(value) if ok else math.nan
    if not ok or not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        what = "a non-negative" if allow_zero else "a strictly positive"
        raise ValueError(f"The '{name}' parameter must be {what} finite number, got {value!r}.")
    return number


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking it is an integer ≥ ``minimum``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or int(value) < minimum:
        raise ValueError(f"The '{name}' parameter must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def as_chunk(name: str, data: Any, n_channels: int) -> NDArray[np.float32] | NDArray[np.float64]:
    """Return ``data`` as a C-contiguous float32/float64 (samples, n_channels) array (no copy when it already is)."""
    if not isinstance(data, np.ndarray):
        raise ValueError(f"The '{name}' parameter must be a NumPy array of shape (samples, {n_channels}), "
                         f"got {type(data).__name__}.")
    if data.ndim != 2 or data.shape[1] != n_channels:
        raise ValueError(f"The '{name}' parameter must have shape (samples, {n_channels}), got {data.shape}.")
    if data.dtype != np.float32 and data.dtype != np.float64:
        raise ValueError(f"The '{name}' parameter must be float32 or float64, got {data.dtype}.")
    if not data.flags.c_contiguous:
        data = np.ascontiguousarray(data)
    out: NDArray[np.float32] | NDArray[np.float64] = data
    return out


def as_timestamps(name: str, timestamps: Any, n_samples: int) -> NDArray[np.float64]:
    """Return ``timestamps`` as a contiguous float64 (n_samples,) array (no copy when it already is)."""
    if not isinstance(timestamps, np.ndarray) or timestamps.shape != (n_samples,):
        shape = getattr(timestamps, "shape", type(timestamps).__name__)
        raise ValueError(f"The '{name}' parameter must be an array of shape ({n_samples},) (one timestamp per "
                         f"sample), got {shape}.")
    if timestamps.dtype != np.float64 or not timestamps.flags.c_contiguous:
        timestamps = np.ascontiguousarray(timestamps, dtype=np.float64)
    out: NDArray[np.float64] = timestamps
    return out
