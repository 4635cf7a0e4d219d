"""A live session's calibration against the person's own rest baseline.

The first S seconds of a session (or S seconds from a control message) are the person's rest baseline;
afterwards every window's features are centred on it before the model's calibrated head reads them.

The state lives on the executor thread (which computes the features); :meth:`SessionCalibration.start` may be
called from any thread (the CLI at start-up, a control message on a transport thread). Times are the session's
data clock (window ends), so a calibration covers the same stretch of signal however late windows are
processed. A window belongs to the calibration when it ends inside ``(t0, t0 + S]``; only windows that also
start at or after ``t0`` enter the baseline (a window straddling ``t0`` holds data from before the command). No
calibration window is ever scored: its message says ``"calibrating": true`` and carries no outputs.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from rt_physio.nn.calibration import Baseline, center_features

__all__ = ["CalibrationStep", "SessionCalibration"]

log = logging.getLogger(__name__)

_EPS = 1e-6  # seconds: window edges equal up to float rounding


@dataclass(frozen=True, slots=True)
class CalibrationStep:
    """What calibration made of one window.

    ``state`` is ``off`` (no calibration yet: the uncalibrated head scores the window), ``calibrating`` (no
    outputs) or ``calibrated`` (``features`` holds the centred features for the calibrated head).
    """

    state: Literal["off", "calibrating", "calibrated"]
    features: NDArray[np.float32] | None = None
    info: dict[str, Any] | None = None


class SessionCalibration:
    """One session's baseline and where it stands.

    Parameters
    ----------
    session_id : str
        For log messages.
    feature_modality : ndarray
        ``(F,)`` modality of each model feature (see :mod:`rt_physio.nn.calibration`).
    fallback : ndarray
        ``(F,)`` population baseline for a modality the calibration never saw.
    window_s : float
        Window length; a calibration must be at least this long.
    """

    def __init__(self, session_id: str, feature_modality: NDArray[np.integer], fallback: NDArray[np.floating],
                 window_s: float) -> None:
        self.session_id = session_id
        self.feature_modality = np.asarray(feature_modality)
        self.fallback = np.asarray(fallback, dtype=np.float32)
        self.window_s = window_s
        self._lock = threading.Lock()
        self._pending: tuple[float, float | None] | None = None  # (seconds, t0 or None = first window's start)
        self._t0 = math.nan
        self._seconds = math.nan
        self._collecting: Baseline | None = None
        self._active: tuple[NDArray[np.float32], NDArray[np.bool_]] | None = None
        self._active_windows = 0
        self.calibrations = 0

    @property
    def calibrated(self) -> bool:
        """Whether a finished baseline is in use."""
        return self._active is not None

    def start(self, seconds: float, t0: float | None = None) -> None:
        """Begin a new calibration of ``seconds`` from data time ``t0`` (None: the next window's start).

        Raises
        ------
        ValueError
            ``seconds`` is not a finite number at least one window long.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ValueError(f"calibration seconds must be a number, got {seconds!r}.")
        if seconds < self.window_s - _EPS:
            raise ValueError(f"calibration seconds must be at least the window length ({self.window_s:g} s), "
                             f"got {seconds:g}.")
        with self._lock:
            self._pending = (float(seconds), t0)

    def step(self, t_start: float, t_end: float, features: NDArray[np.floating],
             present: NDArray[np.floating]) -> CalibrationStep:
        """Route one window (executor thread): add it to the baseline, or centre it, or leave it alone."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            seconds, t0 = pending
            self._seconds, self._t0 = seconds, (t_start if t0 is None else t0)
            self._collecting = Baseline(self.feature_modality)
            log.info("session %s: calibrating for %g s from t=%.3f", self.session_id, seconds, self._t0)
        if self._collecting is not None:
            t1 = self._t0 + self._seconds
            if t_end <= t1 + _EPS:
                if t_start >= self._t0 - _EPS:
                    self._collecting.add(features, present)
                progress = min(1.0, max(0.0, (t_end - self._t0) / self._seconds))
                return CalibrationStep("calibrating", info={"seconds": self._seconds, "progress": round(progress, 4),
                                                            "windows": int(self._collecting.windows.max())})
            self._finish()
        if self._active is None:
            return CalibrationStep("off")
        mean, has = self._active
        centred = center_features(np.atleast_2d(features).astype(np.float32), np.atleast_2d(present),
                                  self.feature_modality, mean, has, self.fallback)[0].astype(np.float32, copy=False)
        return CalibrationStep("calibrated", centred, info={"seconds": self._seconds, "windows": self._active_windows,
                                                           "t0": round(self._t0, 6)})

    def _finish(self) -> None:
        assert self._collecting is not None
        mean, has = self._collecting.mean()
        counts = self._collecting.windows
        self._collecting = None
        self._active = (mean, has)
        self._active_windows = int(counts.max())
        self.calibrations += 1
        if not has.any():
            log.warning("session %s: no window fell inside the %g-s calibration (gap in the data?); using the "
                        "population baseline", self.session_id, self._seconds)
        else:
            log.info("session %s: calibrated on %d windows (eeg %d, ecg %d)", self.session_id,
                     self._active_windows, counts[0], counts[1])
