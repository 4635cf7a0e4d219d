""":func:`read_recording`: any supported file into a :class:`~rt_physio.io.Recording` of EEG and/or ECG in µV.

The format comes from the file name (:data:`FORMATS`) and one reader per format turns the file into channels
(:mod:`.edf`, :mod:`.wfdb`, :mod:`.xdf`, :mod:`.csv`, :mod:`.dreamer`, :mod:`.rt_physio`). Channel types come from
the file where it says them (EDF+ labels such as ``EEG Fp1`` / ``ECG ECG``, XDF channel or stream types), else from
the label (:func:`~rt_physio.io.channels.channel_kind`). Channels of other kinds (respiration, EDA, markers,
annotations) are left out, and logged. Units are converted to µV from the file's physical dimensions; CSV files
carry none, so their ECG columns are taken as mV and others as µV unless ``unit`` says otherwise.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rt_physio.errors import ConfigError, SourceError
from rt_physio.io._raw import RawChannel
from rt_physio.io.channels import MODALITIES, Modality, clean_label, label_key, scale_to_uv
from rt_physio.io.csv import read_csv
from rt_physio.io.dreamer import read_dreamer_clip
from rt_physio.io.edf import read_edf
from rt_physio.io.recording import Recording, Signal
from rt_physio.io.rt_physio import read_rt_physio
from rt_physio.io.wfdb import read_wfdb
from rt_physio.io.xdf import read_xdf

__all__ = ["FORMATS", "detect_format", "read_recording"]

log = logging.getLogger(__name__)

#: Formats :func:`read_recording` reads, by name, with their file suffixes.
FORMATS: dict[str, tuple[str, ...]] = {
    "edf": (".edf", ".bdf", ".rec"),
    "wfdb": (".hea", ".dat"),
    "xdf": (".xdf", ".xdfz"),
    "csv": (".csv", ".tsv", ".txt"),
    "dreamer": (".mat",),  # unless a .hea of the same name is beside it (WFDB, see detect_format)
    "rt_physio": (".json",),  # a recording folder (rt-physio run --record), or its recording.json
}

#: What the "cannot tell the format" message adds to a format's suffixes (a ``.mat`` depends on its neighbours).
_SUFFIX_NOTES = {
    "wfdb": "or .mat beside a .hea of the same name, as in PhysioNet/CinC 2017",
    "dreamer": "without a .hea beside it",
    "rt_physio": "or a recording folder",
}


def detect_format(path: Path) -> str:
    """Return the format name of ``path`` from its suffix (a WFDB record may be named without one).

    A ``.mat`` file beside a ``.hea`` header of the same name is a WFDB record's signal file (WFDB format 16 in a
    MATLAB v4 file, as PhysioNet/CinC 2017 distributes them); other ``.mat`` files are DREAMER.mat.

    Raises
    ------
    ConfigError
        The name matches no format.
    """
    if path.is_dir() or path.name == "recording.json":
        return "rt_physio"
    suffix = path.suffix.lower()
    if suffix == ".mat" and path.with_suffix(".hea").is_file():
        return "wfdb"  # a WFDB record whose samples are in a .mat file (e.g. PhysioNet/CinC 2017), not DREAMER.mat
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    if path.with_suffix(path.suffix + ".hea").is_file() or path.with_suffix(".hea").is_file():
        return "wfdb"
    known = ", ".join(f"{name} ({' '.join(s)}{', ' + _SUFFIX_NOTES[name] if name in _SUFFIX_NOTES else ''})"
                      for name, s in FORMATS.items())
    raise ConfigError(f"Cannot tell the format of {str(path)!r} from its name; known formats: {known}.")


def read_recording(path: str | Path, *, rate: float | None = None, subject: int | None = None,
                   clip: int | None = None, part: str = "stimuli", unit: str | None = None,
                   eeg_channels: Sequence[str] | None = None, ecg_channels: Sequence[str] | None = None,
                   duration: float | None = None, session: str | None = None) -> Recording:
    """Read a recording's EEG and ECG channels into memory.

    Parameters
    ----------
    path : str or Path
        The file: EDF/BDF, WFDB (``.hea``/``.dat``, a ``.mat`` beside a ``.hea``, or the record name), XDF, CSV
        (header row, one column per channel), DREAMER.mat, or an rt_physio recording folder.
    rate : float, optional
        Sampling rate of a CSV file, Hz (required for CSV, refused for the other formats).
    subject, clip : int, optional
        DREAMER only: 1-based subject (1-23) and film clip (1-18).
    part : {"stimuli", "baseline"}
        DREAMER only: the film clip or the neutral clip shown before it.
    unit : str, optional
        CSV only: the unit of every column (default: mV for ECG columns, µV for the others).
    eeg_channels, ecg_channels : sequence of str, optional
        Labels to use as EEG / ECG, in order, instead of the types found in the file. A label matches a channel
        as written, without its EDF+ type prefix, or by :func:`~rt_physio.io.channels.label_key`.
    duration : float, optional
        Keep only the first ``duration`` seconds.
    session : str, optional
        rt_physio recordings only: which session to read (needed when it recorded several).

    Returns
    -------
    Recording
        At least one of EEG and ECG; ``name`` is empty.

    Raises
    ------
    ConfigError
        Missing file, unknown format, a format option given for another format, or unknown channel labels.
    SourceError
        A file that cannot be read or holds neither EEG nor ECG.
    """
    path = Path(path).expanduser()
    fmt = detect_format(path)
    if fmt not in ("wfdb", "rt_physio") and not path.is_file():
        raise ConfigError(f"Recording {str(path)!r} does not exist.")
    if rate is not None and fmt != "csv":
        raise ConfigError(f"The 'rate' option is for CSV files; {path.name} ({fmt}) carries its own rate.")
    if fmt != "dreamer" and (subject is not None or clip is not None):
        raise ConfigError(f"The 'subject' and 'clip' options are for DREAMER.mat; {path.name} is {fmt}.")
    if session is not None and fmt != "rt_physio":
        raise ConfigError(f"The 'session' option is for rt_physio recordings; {path.name} is {fmt}.")
    if unit is not None and fmt != "csv":
        raise ConfigError(f"The 'unit' option is for CSV files; {path.name} ({fmt}) declares its units.")
    if duration is not None and not duration > 0:
        raise ConfigError(f"The 'duration' option must be a positive number of seconds, got {duration!r}.")
    try:
        if fmt == "edf":
            channels = read_edf(path)
        elif fmt == "wfdb":
            channels = read_wfdb(path)
        elif fmt == "xdf":
            channels = read_xdf(path)
        elif fmt == "csv":
            channels = read_csv(path, rate, unit)
        elif fmt == "rt_physio":
            channels = read_rt_physio(path, session)
        else:
            channels = read_dreamer_clip(path, subject, clip, part)
    except (ConfigError, SourceError):
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise SourceError(f"Cannot read {str(path)!r} as {fmt.upper()}: {type(exc).__name__}: {exc}") from exc
    signals = _group(path, channels, {"eeg": eeg_channels, "ecg": ecg_channels}, duration)
    if not signals:
        labels = ", ".join(c.label for c in channels) or "(none)"
        raise SourceError(f"{path.name} has no EEG or ECG channels that rt_physio recognises (channels: {labels}). "
                          "Name them with --eeg-channels / --ecg-channels (eeg_channels= / ecg_channels=).")
    recording = Recording(path, fmt, signals)
    log.info("read %s", recording.describe())
    return recording


def _group(path: Path, channels: list[RawChannel], picks: dict[Modality, Sequence[str] | None],
           duration: float | None) -> dict[str, Signal]:
    by_label = ({label_key(c.label): c for c in reversed(channels)} | {c.label: c for c in channels}
                | {clean_label(c.label): c for c in channels})
    signals: dict[str, Signal] = {}
    picked: set[int] = set()

    def _find(label: str) -> RawChannel | None:
        return by_label.get(label) or by_label.get(label_key(label))

    for modality in MODALITIES:
        pick = picks[modality]
        if pick is not None:
            unknown = [p for p in pick if _find(p) is None]
            if unknown:
                raise ConfigError(f"{path.name}: channel {', '.join(map(repr, unknown))} "
                                  f"{'is' if len(unknown) == 1 else 'are'} missing (its channels: "
                                  f"{', '.join(c.label for c in channels)}).")
            chosen = [c for c in map(_find, pick) if c is not None]
        else:
            chosen = [c for c in channels if c.kind == modality and id(c) not in picked
                      and not any(p is not None and (c.label in p or clean_label(c.label) in p)
                                  for p in picks.values())]
        if not chosen:
            continue
        picked.update(id(c) for c in chosen)
        rates = Counter(c.sfreq for c in chosen)
        sfreq = rates.most_common(1)[0][0]
        dropped = [c.label for c in chosen if c.sfreq != sfreq]
        if dropped:
            log.warning("%s: %s channels %s are sampled at another rate than %g Hz; left out", path.name,
                        modality.upper(), dropped, sfreq)
            chosen = [c for c in chosen if c.sfreq == sfreq]
        n = min(len(c.values) for c in chosen)
        if duration is not None:
            n = min(n, math.floor(duration * sfreq + 1e-9))
        data = np.empty((n, len(chosen)), dtype=np.float32)
        units = []
        for j, c in enumerate(chosen):
            scale = scale_to_uv(c.unit) if c.unit else None
            if scale is None:
                if c.unit:
                    log.warning("%s: channel %s has unit %r; taken as µV", path.name, c.label, c.unit)
                scale = 1.0
            column = c.values[:n]
            data[:, j] = column if scale == 1.0 else np.asarray(column, dtype=np.float64) * scale
            units.append(c.unit or "uV")
        names = [clean_label(c.label) for c in chosen]
        if len(set(names)) < len(names):
            names = [c.label for c in chosen]
        offset = min(c.offset for c in chosen)
        signals[modality] = Signal(modality, data, float(sfreq), tuple(names), offset, tuple(units),
                                   name=chosen[0].name, source_id=chosen[0].source_id)
    others = [c.label for c in channels if id(c) not in picked]
    if others and signals:
        log.info("%s: channels left out (neither EEG nor ECG): %s", path.name, ", ".join(others))
    return signals
