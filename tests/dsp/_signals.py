"""Helpers shared by the DSP tests: filter designs and chunkings."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.signal
from numpy.typing import NDArray

from rt_physio.dsp import design_bandpass, design_highpass, design_notch


def eeg_sos(fs: float) -> NDArray[np.float64]:
    """Order-4 band-pass 0.5–45 Hz + 50 Hz notch: five sections, the configuration the benchmark uses."""
    return np.vstack([design_bandpass(0.5, min(45.0, 0.45 * fs), fs), design_notch(50.0, fs)])


def some_sos(kind: int, fs: float = 250.0) -> NDArray[np.float64]:
    """A few realistic designs, including a sharp elliptic one (large, badly conditioned coefficients)."""
    designs = [
        lambda: eeg_sos(fs),
        lambda: design_highpass(0.1, fs, order=2),
        lambda: design_notch(60.0, fs, q=35.0),
        lambda: scipy.signal.ellip(6, 0.5, 60, [8.0, 12.0], btype="bandpass", fs=fs, output="sos"),
        lambda: scipy.signal.cheby1(5, 1.0, 30.0, fs=fs, output="sos"),
    ]
    return np.asarray(designs[kind % len(designs)](), dtype=np.float64)


def chunk_bounds(n: int, sizes: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive [start, stop) ranges covering 0..n, cycling through ``sizes`` (0 allowed: empty chunks)."""
    if not any(sizes):
        sizes = [n]
    start, i = 0, 0
    while start < n:
        size = sizes[i % len(sizes)]
        i += 1
        stop = min(n, start + size)
        yield start, stop
        start = stop
