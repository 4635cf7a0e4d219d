"""XDF files (``.xdf``, ``.xdfz``; LabRecorder), read with pyxdf on one clock."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from rt_physio.io._raw import RawChannel
from rt_physio.io.channels import channel_kind

__all__ = ["read_xdf"]

log = logging.getLogger(__name__)


def _text(node: Any, key: str) -> str:
    """Read ``node[key][0]`` of pyxdf's nested dict/list info as a string ('' where absent)."""
    try:
        value = node[key][0]
    except (KeyError, IndexError, TypeError):
        return ""
    return str(value).strip() if isinstance(value, str) else ""


def read_xdf(path: Path) -> list[RawChannel]:
    """Read the channels of every regularly sampled numeric stream of an XDF file.

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    list of RawChannel
        One per channel; ``offset`` is the stream's first time stamp after the file's earliest one. Text
        (marker) streams, irregular streams and empty streams are left out, and logged.
    """
    import pyxdf

    streams, _header = pyxdf.load_xdf(str(path), synchronize_clocks=True, dejitter_timestamps=False,
                                      handle_clock_resets=True)
    usable = []
    for stream in streams:
        info = stream["info"]
        name = _text(info, "name")
        fs = float(_text(info, "nominal_srate") or 0)
        fmt = _text(info, "channel_format")
        stamps = np.asarray(stream["time_stamps"], dtype=np.float64)
        if fmt == "string" or fs <= 0 or len(stamps) == 0:
            log.info("%s: stream %r left out (%s)", path.name, name,
                     "text" if fmt == "string" else "irregular rate" if fs <= 0 else "empty")
            continue
        usable.append((stream, info, name, fs, stamps))
    if not usable:
        return []
    t0 = min(s[4][0] for s in usable)
    channels = []
    for stream, info, name, fs, stamps in usable:
        values = np.asarray(stream["time_series"])
        stype = _text(info, "type")
        descs: list[Any] = []
        try:
            chan = info["desc"][0]["channels"][0]["channel"]
            descs = list(chan) if isinstance(chan, list) else []
        except (KeyError, IndexError, TypeError):
            descs = []
        n_ch = values.shape[1]
        if len(descs) != n_ch:
            descs = [{} for _ in range(n_ch)]
        for j, desc in enumerate(descs):
            label = _text(desc, "label") or f"{name}:{j + 1}"
            declared = _text(desc, "type")
            kind = channel_kind(label, declared) if declared else channel_kind(label, stype) if stype.lower() in (
                "eeg", "ecg", "ekg") else channel_kind(label)
            channels.append(RawChannel(label, kind, fs, _text(desc, "unit"), values[:, j], float(stamps[0] - t0)))
    return channels
