"""Recordings on disk read into memory for replay: EDF/BDF, WFDB, XDF, CSV, DREAMER.mat and rt_physio's own.

:func:`read_recording` returns a :class:`Recording`: the EEG and/or ECG channels of a file, each modality as
one float32 array in microvolts at one rate. Channel types come from the file where it says them (EDF+ labels
such as ``EEG Fp1`` / ``ECG ECG``, XDF channel or stream types), else from the label (10-20 electrode names
are EEG; ECG leads such as ``MLII``, ``V5``, ``aVR`` and anything named ECG/EKG are ECG). Channels of other
kinds (respiration, EDA, markers, annotations) are left out, and logged. Units are converted to µV from the
file's physical dimensions; CSV files carry none, so their EEG columns are taken as µV and ECG columns as mV
unless ``unit`` says otherwise.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.errors import ConfigError, SourceError
from rt_physio.sources.base import MODALITIES, Modality
from rt_physio.sources.units import UNIT_SCALES, scale_to_uv

__all__ = ["FORMATS", "RecordedStream", "Recording", "channel_kind", "read_recording"]

log = logging.getLogger(__name__)

#: Formats :func:`read_recording` reads, by name, with their file suffixes.
FORMATS: dict[str, tuple[str, ...]] = {
    "edf": (".edf", ".bdf", ".rec"),
    "wfdb": (".hea", ".dat"),
    "xdf": (".xdf", ".xdfz"),
    "csv": (".csv", ".tsv", ".txt"),
    "dreamer": (".mat",),
    "rt_physio": (".json",),  # a recording folder (rt-physio run --record), or its recording.json
}

_EEG_SITE = re.compile(
    r"^(nz|fpz|fp\d+|afz|af\d+|fz|f\d+|fcz|fc\d+|ft\d+|cz|c\d+|cpz|cp\d+|tp\d+|t\d+|pz|p\d+|poz|po\d+|oz|o\d+|iz|"
    r"i\d+|a[12]|m[12])$", re.IGNORECASE)
_ECG_LEADS = {"i", "ii", "iii", "avr", "avl", "avf", "v", "v1", "v2", "v3", "v4", "v5", "v6", "vx", "vy", "vz",
              "mli", "mlii", "mliii", "mv1", "mv2", "mv5", "ml5", "d1", "d2", "d3", "lead i", "lead ii", "lead iii"}
_TYPE_WORDS: dict[str, Modality] = {"eeg": "eeg", "ecg": "ecg", "ekg": "ecg"}


def channel_kind(label: str, declared: str = "") -> Modality | None:
    """Return the modality of a channel from its declared type or, failing that, its label; None for others.

    Parameters
    ----------
    label : str
        Channel label as in the file (``EEG Fp1``, ``Fp1``, ``MLII``, ``ECG``, ``A2-A1``).
    declared : str
        A type the file declares for the channel (XDF ``type``), or ''.

    Returns
    -------
    {"eeg", "ecg"} or None
        None for channels that are neither (respiration, EDA, markers, …).
    """
    kind = declared.strip().lower()
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    if kind:
        return None
    text = label.strip()
    first = text.split(" ", 1)[0].lower() if " " in text else ""
    if first in _TYPE_WORDS:  # EDF+ "<type> <name>" labels
        return _TYPE_WORDS[first]
    low = text.lower()
    if "ecg" in low or "ekg" in low or low in _ECG_LEADS:
        return "ecg"
    parts = [p.strip() for p in re.split(r"[-–]", text) if p.strip()]
    if parts and all(_EEG_SITE.match(p) for p in parts):
        return "eeg"
    return None


def _clean_label(label: str) -> str:
    """Drop an EDF+ type prefix: ``EEG Fp1`` → ``Fp1``, ``ECG ECG`` → ``ECG``."""
    text = label.strip()
    first, _, rest = text.partition(" ")
    return rest.strip() if first.lower() in _TYPE_WORDS and rest.strip() else text


@dataclass(frozen=True, slots=True)
class RecordedStream:
    """One modality of a recording, ready to replay.

    Attributes
    ----------
    modality : {"eeg", "ecg"}
        What the channels are.
    data : ndarray of float32, shape (samples, channels)
        Values in microvolts.
    sfreq : float
        Sampling rate, Hz.
    channel_names : tuple of str
        Channel labels (EDF+ type prefixes removed).
    offset : float
        Seconds from the start of the recording to this stream's first sample (XDF streams start apart).
    source_units : tuple of str
        The units the file declared (or that were assumed), per channel.
    """

    modality: Modality
    data: NDArray[np.float32]
    sfreq: float
    channel_names: tuple[str, ...]
    offset: float = 0.0
    source_units: tuple[str, ...] = ()

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.data.shape[0])

    @property
    def duration(self) -> float:
        """Seconds from the first sample to one period after the last."""
        return self.n_samples / self.sfreq


@dataclass(frozen=True, slots=True)
class Recording:
    """The replayable streams of one file."""

    path: Path
    format: str
    streams: dict[Modality, RecordedStream] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds until the end of the longest stream."""
        return max(s.offset + s.duration for s in self.streams.values())

    def describe(self) -> str:
        """Return a one-line summary: ``Subject00_2.edf (edf): EEG 20 ch at 500 Hz, ECG 1 ch at 500 Hz, 62.0 s``."""
        parts = [f"{m.upper()} {s.data.shape[1]} ch at {s.sfreq:g} Hz" for m, s in self.streams.items()]
        return f"{self.path.name} ({self.format}): {', '.join(parts)}, {self.duration:.1f} s"


@dataclass(slots=True)
class _Channel:
    label: str
    kind: Modality | None
    sfreq: float
    unit: str
    values: NDArray[np.floating[Any]]
    offset: float = 0.0


def detect_format(path: Path) -> str:
    """Return the format name of ``path`` from its suffix (a WFDB record may be named without one)."""
    if path.is_dir() or path.name == "recording.json":
        return "rt_physio"
    suffix = path.suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    if path.with_suffix(path.suffix + ".hea").is_file() or path.with_suffix(".hea").is_file():
        return "wfdb"
    known = ", ".join(f"{name} ({' '.join(s)})" for name, s in FORMATS.items())
    raise ConfigError(f"Cannot tell the format of {str(path)!r} from its name; known formats: {known}.")


def read_recording(path: str | Path, *, rate: float | None = None, subject: int | None = None,
                   clip: int | None = None, part: str = "stimuli", unit: str | None = None,
                   eeg_channels: Sequence[str] | None = None, ecg_channels: Sequence[str] | None = None,
                   duration: float | None = None, session: str | None = None) -> Recording:
    """Read a recording's EEG and ECG channels into memory.

    Parameters
    ----------
    path : str or Path
        The file: EDF/BDF, WFDB (``.hea``/``.dat`` or the record name), XDF, CSV (header row, one column per
        channel) or DREAMER.mat.
    rate : float, optional
        Sampling rate of a CSV file, Hz (required for CSV, refused for the other formats).
    subject, clip : int, optional
        DREAMER only: 1-based subject (1-23) and film clip (1-18).
    part : {"stimuli", "baseline"}
        DREAMER only: the film clip or the neutral clip shown before it.
    unit : str, optional
        CSV only: the unit of every column (default: µV for EEG columns, mV for ECG columns).
    eeg_channels, ecg_channels : sequence of str, optional
        Labels to use as EEG / ECG, in order, instead of the types found in the file.
    duration : float, optional
        Keep only the first ``duration`` seconds.
    session : str, optional
        rt_physio recordings only: which session to replay (needed when it recorded several).

    Returns
    -------
    Recording
        At least one of EEG and ECG.

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
            channels = _read_edf(path)
        elif fmt == "wfdb":
            channels = _read_wfdb(path)
        elif fmt == "xdf":
            channels = _read_xdf(path)
        elif fmt == "csv":
            channels = _read_csv(path, rate, unit)
        elif fmt == "rt_physio":
            channels = _read_rt_physio(path, session)
        else:
            channels = _read_dreamer(path, subject, clip, part)
    except (ConfigError, SourceError):
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise SourceError(f"Cannot read {str(path)!r} as {fmt.upper()}: {type(exc).__name__}: {exc}") from exc
    streams = _group(path, channels, {"eeg": eeg_channels, "ecg": ecg_channels}, duration)
    if not streams:
        labels = ", ".join(c.label for c in channels) or "(none)"
        raise SourceError(f"{path.name} has no EEG or ECG channels that rt_physio recognises (channels: {labels}). "
                          "Name them with --eeg-channels / --ecg-channels (eeg_channels= / ecg_channels=).")
    recording = Recording(path, fmt, streams)
    log.info("read %s", recording.describe())
    return recording


def _group(path: Path, channels: list[_Channel], picks: dict[Modality, Sequence[str] | None],
           duration: float | None) -> dict[Modality, RecordedStream]:
    by_label = {c.label: c for c in channels} | {_clean_label(c.label): c for c in channels}
    streams: dict[Modality, RecordedStream] = {}
    picked: set[int] = set()
    for modality in MODALITIES:
        pick = picks[modality]
        if pick is not None:
            unknown = [p for p in pick if p not in by_label]
            if unknown:
                raise ConfigError(f"{path.name} has no channels {unknown}; its channels: "
                                  f"{', '.join(c.label for c in channels)}.")
            chosen = [by_label[p] for p in pick]
        else:
            chosen = [c for c in channels if c.kind == modality and id(c) not in picked
                      and not any(p is not None and (c.label in p or _clean_label(c.label) in p)
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
            invalid = int(np.count_nonzero(~np.isfinite(column)))
            if invalid:
                # WFDB's "missing" samples and CSV gaps would reach the outlet as NaN; the engine copes, but other
                # consumers of the replayed stream may not: hold the last valid value instead, and say so
                log.warning("%s: channel %s has %d invalid samples; replayed as the previous valid value", path.name,
                            c.label, invalid)
                column = _hold_last(column)
            data[:, j] = column if scale == 1.0 else np.asarray(column, dtype=np.float64) * scale
            units.append(c.unit or "uV")
        names = [_clean_label(c.label) for c in chosen]
        if len(set(names)) < len(names):
            names = [c.label for c in chosen]
        offset = min(c.offset for c in chosen)
        streams[modality] = RecordedStream(modality, data, float(sfreq), tuple(names), offset, tuple(units))
    others = [c.label for c in channels if id(c) not in picked]
    if others and streams:
        log.info("%s: channels left out (neither EEG nor ECG): %s", path.name, ", ".join(others))
    return streams


# -- formats ---------------------------------------------------------------------------------------------------
def _read_edf(path: Path) -> list[_Channel]:
    import pyedflib

    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise SourceError(f"Cannot read {str(path)!r} as EDF/BDF: {exc}") from exc
    try:
        channels = []
        for i in range(reader.signals_in_file):
            label = str(reader.getLabel(i))
            channels.append(_Channel(label, channel_kind(label), float(reader.getSampleFrequency(i)),
                                     str(reader.getPhysicalDimension(i)).strip(), reader.readSignal(i)))
        return channels
    finally:
        reader.close()


def _wfdb_record_name(path: Path) -> str:
    return str(path.with_suffix("")) if path.suffix.lower() in (".hea", ".dat") else str(path)


def _read_wfdb(path: Path) -> list[_Channel]:
    with warnings.catch_warnings():  # wfdb 4.3.1 uses pandas APIs that pandas 3 deprecates, at import
        warnings.simplefilter("ignore", DeprecationWarning)
        import wfdb

    name = _wfdb_record_name(path)
    if not Path(name + ".hea").is_file():
        raise ConfigError(f"WFDB record {name!r} has no header file {Path(name + '.hea').name}.")
    record = wfdb.rdrecord(name)
    signals = np.asarray(record.p_signal, dtype=np.float64)
    fs = float(record.fs)
    channels = []
    for j, label in enumerate(record.sig_name):
        channels.append(_Channel(str(label), channel_kind(str(label)), fs, str(record.units[j] or ""), signals[:, j]))
    return channels


def _hold_last(x: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    values: NDArray[np.float64] = np.asarray(x, dtype=np.float64)
    valid = np.isfinite(values)
    if not valid.any():
        return np.zeros_like(values)
    idx = np.where(valid, np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    first = int(np.argmax(valid))
    out[:first] = values[first]
    return out


def _xdf_text(node: Any, key: str) -> str:
    """Read ``node[key][0]`` of pyxdf's nested dict/list info as a string ('' where absent)."""
    try:
        value = node[key][0]
    except (KeyError, IndexError, TypeError):
        return ""
    return str(value).strip() if isinstance(value, str) else ""


def _read_xdf(path: Path) -> list[_Channel]:
    import pyxdf

    streams, _header = pyxdf.load_xdf(str(path), synchronize_clocks=True, dejitter_timestamps=False,
                                      handle_clock_resets=True)
    usable = []
    for stream in streams:
        info = stream["info"]
        name = _xdf_text(info, "name")
        fs = float(_xdf_text(info, "nominal_srate") or 0)
        fmt = _xdf_text(info, "channel_format")
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
        stype = _xdf_text(info, "type")
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
            label = _xdf_text(desc, "label") or f"{name}:{j + 1}"
            declared = _xdf_text(desc, "type")
            kind = channel_kind(label, declared) if declared else channel_kind(label, stype) if stype.lower() in (
                "eeg", "ecg", "ekg") else channel_kind(label)
            channels.append(_Channel(label, kind, fs, _xdf_text(desc, "unit"), values[:, j], float(stamps[0] - t0)))
    return channels


def _read_csv(path: Path, rate: float | None, unit: str | None) -> list[_Channel]:
    if rate is None:
        raise ConfigError(f"{path.name} is a CSV file, which has no timing: give its sampling rate (--rate HZ, or "
                          "rate=HZ in a replay: SPEC).")
    if isinstance(rate, bool) or not rate > 0:
        raise ConfigError(f"The 'rate' option must be a positive number of Hz, got {rate!r}.")
    if unit is not None and scale_to_uv(unit) is None:
        raise ConfigError(f"Unknown unit {unit!r}; use one of {sorted(UNIT_SCALES)}.")
    with path.open(newline="") as fh:
        sample = fh.read(4096)
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
        fh.seek(0)
        header = next(csv.reader(fh, delimiter=delimiter))
    header = [h.strip() for h in header]
    if not header or all(_is_number(h) for h in header):
        raise SourceError(f"{path.name} has no header row naming its columns (ECG, EEG channel names, …).")
    values = np.loadtxt(path, delimiter=delimiter, skiprows=1, ndmin=2, dtype=np.float64)
    if values.shape[1] != len(header):
        raise SourceError(f"{path.name}: the header names {len(header)} columns but the rows have {values.shape[1]}.")
    channels = []
    for j, label in enumerate(header):
        if not label or label.lower() in ("", "index", "time", "timestamp", "timestamps", "t"):
            continue
        kind = channel_kind(label)
        chosen = unit if unit is not None else ("mV" if kind == "ecg" else "uV")
        channels.append(_Channel(label, kind, float(rate), chosen, values[:, j]))
    return channels


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


DREAMER_EEG_RATE = 128.0
DREAMER_ECG_RATE = 256.0


def _field(obj: Any, name: str, where: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise SourceError(f"{where} has no field {name!r}; is this DREAMER.mat (Katsigiannis & Ramzan 2018)?") from None


def _read_dreamer(path: Path, subject: int | None, clip: int | None, part: str) -> list[_Channel]:
    import scipy.io

    if subject is None or clip is None:
        raise ConfigError(f"{path.name} is DREAMER.mat: choose a recording with subject=N (1-23) and clip=N (1-18) "
                          "(--subject / --clip).")
    if part not in ("stimuli", "baseline"):
        raise ConfigError(f"The 'part' option must be 'stimuli' or 'baseline', got {part!r}.")
    mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False, variable_names=["DREAMER"])
    if "DREAMER" not in mat:
        raise SourceError(f"{path.name} holds no variable 'DREAMER'; is this DREAMER.mat?")
    root = mat["DREAMER"]
    data = np.atleast_1d(_field(root, "Data", "DREAMER"))
    if not 1 <= subject <= len(data):
        raise ConfigError(f"DREAMER subject must be 1..{len(data)}, got {subject}.")
    person = data[subject - 1]
    eeg_rate = float(getattr(root, "EEG_SamplingRate", DREAMER_EEG_RATE))
    ecg_rate = float(getattr(root, "ECG_SamplingRate", DREAMER_ECG_RATE))
    electrodes = [str(e) for e in np.atleast_1d(getattr(root, "EEG_Electrodes", []))]
    channels = []
    for kind, rate in (("eeg", eeg_rate), ("ecg", ecg_rate)):
        where = f"DREAMER.Data{{{subject}}}.{kind.upper()}"
        clips = np.atleast_1d(_field(_field(person, kind.upper(), f"DREAMER.Data{{{subject}}}"), part, where))
        if not 1 <= clip <= len(clips):
            raise ConfigError(f"DREAMER clip must be 1..{len(clips)}, got {clip}.")
        x = np.asarray(clips[clip - 1], dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if kind == "eeg":
            names = electrodes if len(electrodes) == x.shape[1] else [f"EEG{i + 1}" for i in range(x.shape[1])]
        else:
            names = [f"ECG{i + 1}" for i in range(x.shape[1])]
        modality: Modality = "eeg" if kind == "eeg" else "ecg"
        # DREAMER's values are used as they are (the training loaders read them the same way), i.e. as µV
        channels += [_Channel(name, modality, rate, "uV", x[:, j]) for j, name in enumerate(names)]
    return channels


def _read_rt_physio(path: Path, session: str | None) -> list[_Channel]:
    """Read the raw streams of one session of an ``rt-physio run --record`` recording (already µV)."""
    from rt_physio.publish.recording import read_recording as read_rt_physio

    rec = read_rt_physio(path.parent if path.name == "recording.json" else path)
    sessions = list(rec.streams)
    if session is None:
        if len(sessions) != 1:
            raise ConfigError(f"{rec.path.name} recorded sessions {sessions}; choose one with session=<id> "
                              "(--session).")
        session = sessions[0]
    if session not in rec.streams:
        raise ConfigError(f"{rec.path.name} has no session {session!r}; its sessions: {', '.join(sessions)}.")
    streams = [s for s in rec.streams[session].values() if s.n_samples]
    if not streams:
        return []
    t0 = min(float(s.timestamps[0]) for s in streams)
    channels = []
    for stream in streams:
        gaps = np.diff(stream.timestamps) > 1.5 / stream.sfreq
        if gaps.any():
            log.warning("%s: the %s stream has %d gaps; it is replayed on a regular %g Hz schedule without them",
                        rec.path.name, stream.modality.upper(), int(gaps.sum()), stream.sfreq)
        offset = float(stream.timestamps[0]) - t0
        for j, label in enumerate(stream.channel_names):
            channels.append(_Channel(label, stream.modality, float(stream.sfreq), "uV", stream.data[:, j], offset))
    return channels
