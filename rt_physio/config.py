"""Where rt_physio finds its data folders (``drivers/``, ``models/``) and small shared config helpers.

Data folders are searched, in order, in: the current working directory, ``$RT_PHYSIO_HOME``, the source
checkout that holds this package (editable installs), and the copy packaged inside the wheel
(``rt_physio/_data``).
"""

from __future__ import annotations

import math
import os
import tomllib
import types
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from rt_physio.checks import check_number, show_value
from rt_physio.errors import ConfigError

__all__ = ["CALIBRATE_MAX_S", "EngineConfig", "SessionConfig", "check_fields", "config_key", "data_dirs",
           "load_engine_config", "load_toml"]

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


# -- type checks, driven by the dataclass annotations -------------------------------------------------------------
_KEY_OF = {"session_id": "id"}  # field names that differ from the user's key by more than the "_s" (seconds) suffix
_TYPE_NAMES: dict[Any, tuple[str, str]] = {  # annotation: (one, several)
    str: ("a string", "strings"), bool: ("true or false", "booleans"), int: ("an integer", "integers"),
    float: ("a finite number", "finite numbers"),
}


def config_key(field_name: str) -> str:
    """Return the key a user writes for a config field: ``window_s`` is ``window``, ``session_id`` is ``id``."""
    return _KEY_OF.get(field_name, field_name.removesuffix("_s"))


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _describe(tp: Any, plural: bool = False) -> str:
    if _is_union(tp):  # None is left out: it is what leaving the key out gives
        return " or ".join(_describe(arg, plural) for arg in get_args(tp) if arg is not type(None))
    if get_origin(tp) is tuple:
        return f"a list of {_describe(get_args(tp)[0], plural=True)}"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(arg) for arg in get_args(tp))
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp][plural]
    if isinstance(tp, type):
        return f"{tp.__name__} objects" if plural else f"a {tp.__name__}"
    raise TypeError(f"config fields annotated {tp!r} have no type check: add one to rt_physio.config._conforms")


def _conforms(value: Any, tp: Any) -> bool:
    if _is_union(tp):
        return any(_conforms(value, arg) for arg in get_args(tp))
    if tp is type(None):
        return value is None
    if get_origin(tp) is tuple:
        return isinstance(value, tuple) and all(_conforms(item, get_args(tp)[0]) for item in value)
    if get_origin(tp) is Literal:
        return any(type(value) is type(arg) and value == arg for arg in get_args(tp))
    if tp is float:  # an integer is a number too (TOML's 2 for 2.0); booleans are not
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        try:
            return math.isfinite(value)
        except OverflowError:  # an integer beyond float range
            return False
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    raise TypeError(f"config fields annotated {tp!r} have no type check")


def _wants_float(tp: Any) -> bool:
    return tp is float or (_is_union(tp) and float in get_args(tp))


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", tuple: "a list",
             list: "a list", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


def check_fields(config: Any) -> None:
    """Check every field of a config dataclass against its annotation; integers given for floats become floats.

    Raises
    ------
    ConfigError
        Naming the key (as the user writes it), the expected type and the value, e.g. ``The 'insecure'
        parameter must be true or false, got 'false' (a string).``
    """
    hints = get_type_hints(type(config))  # once per config built: cheap enough
    for field in fields(config):
        tp = hints[field.name]
        value = getattr(config, field.name)
        if not _conforms(value, tp):
            shown = show_value(list(value) if isinstance(value, tuple) else value)
            raise ConfigError(f"The {config_key(field.name)!r} parameter must be {_describe(tp)}, got {shown} "
                              f"({_toml_type(value)}).")
        if _wants_float(tp) and isinstance(value, int):
            object.__setattr__(config, field.name, float(value))  # frozen: this is still construction


# -- engine configuration ---------------------------------------------------------------------------------------
DEFAULT_PUBLISH = "zmq://127.0.0.1:5556"
CALIBRATE_MAX_S = 3600.0  # the longest baseline, from the command line, a config file or a control message
_SESSION_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The streams of one person. A spec of ``None`` leaves that modality out."""

    session_id: str = "default"
    eeg: str | None = "synthetic"
    ecg: str | None = "synthetic"

    def __post_init__(self) -> None:
        check_fields(self)
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
    stall_after_s: float = 2.0  # a stream with no sample for this long (also before its first) is 'stalled'
    give_up_after_s: float | None = None  # a stream out of 'streaming' this long ends the run (exit 3); None: never
    status_every_s: float = 5.0  # heartbeat: a status message at least this often, besides one per state change
    preview: bool = False  # publish a decimated copy of each filtered stream on <prefix>/<session>/preview
    smoothing_s: float | None = None  # publish the mean over the last S s of windows; None: the model's own

    def __post_init__(self) -> None:
        check_fields(self)
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
        if self.calibrate_s is not None:
            try:  # at least one window long
                check_number("calibrate", self.calibrate_s, **self.calibrate_range())
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if not 0 < self.stall_after_s <= 600:
            raise ConfigError(f"The 'stall_after' parameter must be in (0, 600] seconds, got {self.stall_after_s}.")
        if self.give_up_after_s is not None and not self.stall_after_s <= self.give_up_after_s <= 86400:
            raise ConfigError(f"The 'give_up_after' parameter must be between 'stall_after' ({self.stall_after_s:g} s) "
                              f"and 86400 seconds, got {self.give_up_after_s}.")
        if not 0.1 <= self.status_every_s <= 3600:
            raise ConfigError(f"The 'status_every' parameter must be in [0.1, 3600] seconds, got "
                              f"{self.status_every_s}.")
        if self.smoothing_s is not None:
            try:
                check_number("smoothing", self.smoothing_s, minimum=0.0, maximum=3600.0, unit="seconds")
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.control is not None and not self.control.startswith("zmq://"):
            raise ConfigError(
                f"The 'control' parameter must be a zmq://HOST:PORT URL, e.g. zmq://127.0.0.1:5557, got "
                f"{self.control!r} (MQTT commands need no option: they use the --publish mqtt:// connection)."
            )
        if self.control is not None and self.control.split("?", 1)[0] in (u.split("?", 1)[0] for u in self.publish):
            raise ConfigError(f"The 'control' URL {self.control!r} is also a --publish URL: give it its own port.")

    def calibrate_range(self) -> dict[str, Any]:
        """Bounds of a baseline's length in seconds, as :func:`~rt_physio.checks.check_number` keywords.

        The same for ``--calibrate``, ``calibrate =`` and the ``calibrate`` control command.
        """
        return {"minimum": self.window_s, "maximum": CALIBRATE_MAX_S,
                "unit": "seconds; a baseline is at least the window length"}


def _spec_or_none(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a source SPEC string (e.g. 'synthetic', 'lsl:MyHeadset'), got "
                          f"{show_value(value)}.")
    return None if value.lower() == "none" else value


def _from_toml(value: Any, tp: Any) -> Any:
    """Turn a TOML array into a tuple field's value; a lone string is a one-item list (``publish = "zmq://…"``)."""
    if get_origin(tp) is tuple:
        if isinstance(value, list):
            return tuple(value)
        if isinstance(value, str) and get_args(tp)[0] is str:
            return (value,)
    return value


def load_engine_config(path: Path, **overrides: Any) -> EngineConfig:
    """Read an engine config TOML (see the README); keyword overrides (from the command line) win.

    Top-level keys mirror the ``rt-physio run`` options and the :class:`EngineConfig` fields, without their
    ``_s`` (seconds) suffix: ``model``, ``device``, ``window``, ``hop``, ``publish``, ``duration``, ``line_freq``,
    ``missing_after``, ``resolve_timeout``, ``insecure``, ``record``, ``threads``, ``backend``, ``precision``,
    ``max_batch``, ``max_wait_ms``, ``control``, ``calibrate``, ``inline``, ``smoothing``, …; each
    ``[[sessions]]`` table has ``id``, ``eeg`` and ``ecg``. Every value is type-checked (:func:`check_fields`).
    """
    raw = load_toml(path)
    names = {config_key(f.name): f.name for f in fields(EngineConfig)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys: {sorted(names)}.")
    hints = get_type_hints(EngineConfig)
    values: dict[str, Any] = {names[key]: _from_toml(value, hints[names[key]])
                              for key, value in raw.items() if key != "sessions"}
    sessions_raw = raw.get("sessions", [])
    if not isinstance(sessions_raw, list):
        raise ConfigError(f"{path}: 'sessions' must be an array of tables ([[sessions]]).")
    session_keys = {config_key(f.name) for f in fields(SessionConfig)}
    sessions = []
    for i, entry in enumerate(sessions_raw):
        where = f"{path}: sessions[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table.")
        bad = sorted(set(entry) - session_keys)
        if bad:
            raise ConfigError(f"{where} has unknown key(s) {bad}; valid: {', '.join(sorted(session_keys))}.")
        try:
            sessions.append(SessionConfig(session_id=entry.get("id", f"s{i}"),
                                          eeg=_spec_or_none(entry.get("eeg"), f"{where}.eeg"),
                                          ecg=_spec_or_none(entry.get("ecg"), f"{where}.ecg")))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if sessions:
        values["sessions"] = tuple(sessions)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return EngineConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}.") from exc
