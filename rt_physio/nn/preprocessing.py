"""A model's ``[preprocessing]`` as a :class:`~rt_physio.dsp.StreamProcessor`: the one place it is set up.

The live engine (:func:`rt_physio.runtime.engine.build_processor`, one processor per stream) and training
(``preprocess_signal`` in :mod:`rt_physio.training.datasets`, one per recording) both call
:func:`build_processor`, so a model is trained on exactly the filters and resampler it meets at run time.

It lives in nn, beside :class:`~rt_physio.nn.spec.Preprocessing`, because it reads a model's promise about its
input; dsp stays free of model files (it takes plain band edges and rates).
"""

from __future__ import annotations

import logging

from rt_physio.dsp import StreamProcessor
from rt_physio.nn.spec import Preprocessing

__all__ = ["build_processor"]


def build_processor(preprocessing: Preprocessing | None, fs_in: float, n_channels: int, *, line_freq: float,
                    fs_out: float, capacity_s: float, max_fill_s: float = 1.0,
                    adjust_log_level: int = logging.WARNING) -> StreamProcessor:
    """Set up the filters and the resampler of one stream from a model's preprocessing of its modality.

    Parameters
    ----------
    preprocessing : Preprocessing or None
        The model's ``[preprocessing.<modality>]``; None for no filtering (resampling only).
    fs_in : float
        The stream's rate, Hz.
    n_channels : int
        Channels that feed the model.
    line_freq : float
        Mains frequency, Hz, notched where the model asks for it.
    fs_out : float
        The model's input rate (``inputs.sfreq``), Hz.
    capacity_s : float
        Seconds of output the processor keeps.
    max_fill_s : float
        Longest timestamp gap filled by interpolation (see :class:`~rt_physio.dsp.StreamProcessor`).
    adjust_log_level : int
        Level at which a band edge clipped below the input Nyquist, or a notch skipped above it, is logged.

    Returns
    -------
    StreamProcessor
        Band-pass (when asked), notch (when asked), resampling to ``fs_out``.
    """
    bandpass = preprocessing.bandpass if preprocessing is not None else None
    notch = line_freq if preprocessing is not None and preprocessing.notch else None
    return StreamProcessor(fs_in, n_channels, bandpass=bandpass, notch=notch, fs_out=fs_out, capacity_s=capacity_s,
                           max_fill_s=max_fill_s, adjust_log_level=adjust_log_level)
