"""Where rt_physio finds its data folders (``drivers/``, ``models/``) and small shared config helpers.

Data folders are searched, in order, in: the current working directory, ``$RT_PHYSIO_HOME``, the source
checkout that holds this package (editable installs), and the copy packaged inside the wheel
(``rt_physio/_data``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rt_physio.errors import ConfigError

__all__ = ["EngineConfig", "SessionConfig", "data_dirs", "load_engine_config", "load_toml"]

DataKind = Literal["drivers", "models"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dirs(kind: DataKind) -> list[Path]:
    """Return the existing ``drivers/`` or ``models/`` folders in search order, without duplicates."""
    candidates = [Path.cwd() / kind]
    home = os.environ.get("RT_PHYSIO_HOME")
    if home:
        candidates.append(Path(home) / kind)
    candidates.append(_PACKAGE_DIR.parent / kind)
    candidates.append(_PACKAGE_DIR / "_data" / kind)
    seen: set[Path] = set()
    found: list[Path] = []
    for path in candidates:
        resolved = path.resolve()
        if resolved.is_dir() and resolved not in seen:
            seen.add(resolved)
            found.append(resolved)
    return found


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning syntax errors into a :class:`ConfigError` that names the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc}).") from exc


# -- engine configuration ---------------------------------------------------------------------------------------
DEFAULT_PUBLISH = "zmq://127.0.0.1:5556"
_SESSION_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The streams of one person. A spec of ``None`` leaves that modality out."""

    session_id: str = "default"
    eeg: str | None = "synthetic"
    ecg: str | None = "synthetic"

    def __post_init__(self) -> None:
        if not self.session_id or not set(self.session_id) <= _SESSION_ID_CHARS or self.session_id in (".", ".."):
            raise ConfigError(
                f"Session id {self.session_id!r} is invalid: use letters, digits, '-', '_' or '.' (it becomes part "
                "of topic names)."
            )
        if self.eeg is None and self.ecg is None:
            raise ConfigError(f"Session {self.session_id!r} has neither --eeg nor --ecg: give at least one.")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything ``rt-physio run`` needs; built from the command line and/or a TOML file."""

    sessions: tuple[SessionConfig, ...] = (SessionConfig(),)
    model: str = "eegmat-fusion"
    device: str = "auto"
    window_s: float = 5.0
    hop_s: float = 1.0
    publish: tuple[str, ...] = (DEFAULT_PUBLISH,)
    duration_s: float | None = None
    line_freq: float = 50.0
    missing_after_s: float = 1.0
    resolve_timeout_s: float = 5.0
    insecure: bool = False
    record: str | None = None  # folder for recordings (raw streams + predictions); None: do not record
    threads: int | None = None
    backend: str = "auto"
    precision: str = "fp32"
    max_batch: int = 64
    max_wait_ms: float = 2.0
    control: str | None = None  # zmq://HOST:PORT of the control REP server; None: no ZeroMQ control channel
    calibrate_s: float | None = None  # the first S seconds of each session are the person's baseline; None: none
    inline: bool | None = None  # run a lone session's window on the thread that cut it; None: on a 1-thread CPU

    def __post_init__(self) -> None:
        if not self.sessions:
            raise ConfigError("No sessions configured.")
        ids = [s.session_id for s in self.sessions]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"Session ids must be unique, got {ids}.")
        if self.window_s < 1 or abs(self.window_s - round(self.window_s)) > 1e-9:
            raise ConfigError(
                f"The 'window' parameter must be a whole number of seconds ≥ 1 (the model reads 1-s patches), "
                f"got {self.window_s}."
            )
        if not 0 < self.hop_s <= 60:
            raise ConfigError(f"The 'hop' parameter must be in (0, 60] seconds, got {self.hop_s}.")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError(f"The 'duration' parameter must be positive, got {self.duration_s}.")
        if self.line_freq not in (50.0, 60.0):
            raise ConfigError(f"The 'line_freq' parameter must be 50 or 60 (Hz), got {self.line_freq}.")
        if not 0 < self.missing_after_s <= 60:
            raise ConfigError(f"The 'missing_after' parameter must be in (0, 60] seconds, got {self.missing_after_s}.")
        if self.resolve_timeout_s <= 0:
            raise ConfigError(f"The 'resolve_timeout' parameter must be positive, got {self.resolve_timeout_s}.")
        if self.record is not None and not self.record.strip():
            raise ConfigError("The 'record' parameter must name a folder, got an empty string.")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"The 'threads' parameter must be at least 1, got {self.threads}.")
        if self.backend not in ("auto", "eager", "traced", "cuda-graph"):
            raise ConfigError(
                f"The 'backend' parameter must be auto, eager, traced or cuda-graph, got {self.backend!r}.")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"The 'precision' parameter must be fp32, bf16 or fp16, got {self.precision!r}.")
        if not 1 <= self.max_batch <= 1024:
            raise ConfigError(f"The 'max_batch' parameter must be in [1, 1024], got {self.max_batch}.")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ConfigError(f"The 'max_wait_ms' parameter must be in [0, 1000] ms, got {self.max_wait_ms}.")
        if self.inline is not None and not isinstance(self.inline, bool):
            raise ConfigError(f"The 'inline' parameter must be true or false, got {self.inline!r}.")
        if self.calibrate_s is not None and not self.window_s <= self.calibrate_s <= 3600:
            raise ConfigError(f"The 'calibrate' parameter must be between the window length ({self.window_s:g} s) and "
                              f"3600 s, got {self.calibrate_s}.")
        if self.control is not None and (not isinstance(self.control, str) or not self.control.startswith("zmq://")):
            raise ConfigError(
                f"The 'control' parameter must be a zmq://HOST:PORT URL, e.g. zmq://127.0.0.1:5557, got "
                f"{self.control!r} (MQTT commands need no option: they use the --publish mqtt:// connection)."
            )
        if self.control is not None and self.control.split("?", 1)[0] in (u.split("?", 1)[0] for u in self.publish):
            raise ConfigError(f"The 'control' URL {self.control!r} is also a --publish URL: give it its own port.")


def _spec_or_none(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a source SPEC string (e.g. 'synthetic', 'lsl:MyHeadset'), got {value!r}.")
    return None if value.lower() == "none" else value


def load_engine_config(path: Path, **overrides: Any) -> EngineConfig:
    """Read an engine config TOML (see the README); keyword overrides (from the command line) win.

    Top-level keys mirror the ``rt-physio run`` options (``model``, ``device``, ``window``, ``hop``,
    ``publish``, ``duration``, ``line_freq``, ``missing_after``, ``resolve_timeout``, ``insecure``, ``record``,
    ``threads``, ``backend``, ``precision``, ``max_batch``, ``max_wait_ms``, ``control``, ``calibrate``,
    ``inline``);
    each ``[[sessions]]`` table has ``id``, ``eeg`` and ``ecg``.
    """
    raw = load_toml(path)
    known = {"model", "device", "window", "hop", "publish", "duration", "line_freq", "missing_after",
             "resolve_timeout", "insecure", "record", "threads", "backend", "precision", "max_batch", "max_wait_ms",
             "control", "calibrate", "inline", "sessions"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys: {sorted(known)}.")
    fields: dict[str, Any] = {}
    renames = {"window": "window_s", "hop": "hop_s", "duration": "duration_s", "missing_after": "missing_after_s",
               "resolve_timeout": "resolve_timeout_s", "calibrate": "calibrate_s"}
    for key, value in raw.items():
        if key == "sessions":
            continue
        if key == "publish":
            value = (value,) if isinstance(value, str) else tuple(value)
        fields[renames.get(key, key)] = value
    sessions_raw = raw.get("sessions", [])
    if not isinstance(sessions_raw, list):
        raise ConfigError(f"{path}: 'sessions' must be an array of tables ([[sessions]]).")
    sessions = []
    for i, entry in enumerate(sessions_raw):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: sessions[{i}] must be a table.")
        bad = sorted(set(entry) - {"id", "eeg", "ecg"})
        if bad:
            raise ConfigError(f"{path}: sessions[{i}] has unknown key(s) {bad}; valid: id, eeg, ecg.")
        sessions.append(SessionConfig(
            session_id=str(entry.get("id", f"s{i}")),
            eeg=_spec_or_none(entry.get("eeg"), f"{path}: sessions[{i}].eeg"),
            ecg=_spec_or_none(entry.get("ecg"), f"{path}: sessions[{i}].ecg"),
        ))
    if sessions:
        fields["sessions"] = tuple(sessions)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return EngineConfig(**fields)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}.") from exc
