"""Recordings on disk: one reader per file format, one in-memory :class:`Recording`, one channel vocabulary.

* :func:`read_recording` — EDF/BDF, WFDB, XDF, CSV, DREAMER.mat or an rt_physio recording, by file name, into a
  :class:`Recording` of :class:`Signal` objects (EEG and/or ECG, µV, ``(samples, channels)``). Replay
  (:mod:`rt_physio.sources.replay`) and the training datasets (:mod:`rt_physio.training.datasets`) both read
  through it.
* :func:`read_sessions` — every session of an ``rt-physio run --record`` recording, with its predictions.
* :mod:`rt_physio.io.channels` — modalities, label cleaning, EEG/ECG classification, units.

This package imports nothing from the rest of rt_physio but :mod:`rt_physio.errors`.
"""

from rt_physio.io.channels import MODALITIES, Modality, channel_kind, clean_label, label_key, scale_to_uv
from rt_physio.io.reader import FORMATS, detect_format, read_recording
from rt_physio.io.recording import Recording, Signal
from rt_physio.io.rt_physio import find_recording, read_sessions, repair_recording

__all__ = [
    "FORMATS",
    "MODALITIES",
    "Modality",
    "Recording",
    "Signal",
    "channel_kind",
    "clean_label",
    "detect_format",
    "find_recording",
    "label_key",
    "read_recording",
    "read_sessions",
    "repair_recording",
    "scale_to_uv",
]
