"""Device profiles: one TOML file per device in a ``drivers/`` folder, selected with ``profile:<name>``.

Schema (every key is validated; an error names the file and the field)::

    name = "openbci-cyton"              # must equal the file name without .toml
    description = "OpenBCI Cyton, 8 EEG channels at 250 Hz over a USB dongle"
    backend = "brainflow"               # "brainflow" | "lsl" | "polar"

    [brainflow]                         # backend = "brainflow": the board and its BrainFlowInputParams
    board = "cyton"                     # BoardIds name (any case, "_BOARD" optional) or numeric id
    serial_port = "/dev/ttyUSB0"        # any BrainFlowInputParams field: serial_port, mac_address, ip_address, …

    [lsl]                               # backend = "lsl": how to find the stream (one or more keys);
    stream_type = "EEG"                 # stream_name, stream_type, source_id. A modality section may override them.

    [eeg]                               # and/or [ecg]: what this device delivers for that modality
    rows = [1, 2, 3, 4, 5, 6, 7, 8]     # brainflow only: rows of the board's data array (default: the descriptor's)
    channels = ["Fp1", "Fp2", ...]      # channel names; for LSL the expected labels (count is checked, and
                                        # they are picked by label when the stream carries more channels)
    sfreq = 250                         # expected nominal rate in Hz; a stream or board that differs is an error
    units = "uV"                        # unit of the raw values: uV, mV, V, nV (or scale = <factor to µV>)

Folders are searched in the order of :func:`rt_physio.config.data_dirs`; the first file of a name wins, so a
``drivers/`` folder in the working directory overrides the packaged profiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from rt_physio.checks import positive_entry
from rt_physio.config import data_dirs, load_toml
from rt_physio.errors import ConfigError
from rt_physio.io.channels import UNIT_SCALES, scale_to_uv
from rt_physio.sources.base import MODALITIES, Modality
from rt_physio.sources.brainflow_boards import board_from_name, input_params

__all__ = [
    "LSL_QUERY_KEYS",
    "Backend",
    "DeviceProfile",
    "ModalityProfile",
    "find_profiles",
    "load_profile",
    "load_profile_file",
    "parse_profile",
]

Backend = Literal["lsl", "brainflow", "polar"]
BACKENDS: tuple[Backend, ...] = ("lsl", "brainflow", "polar")
#: Keys of a ``[polar]`` table: the strap's Bluetooth address or (part of) its name, and the connect timeout.
POLAR_KEYS = ("address", "timeout")

#: Profile keys that select an LSL stream, and the LSL stream property each one matches.
LSL_QUERY_KEYS: dict[str, str] = {"stream_name": "name", "stream_type": "type", "source_id": "source_id"}

_TOP_KEYS = {"name", "description", "backend", *BACKENDS, *MODALITIES}
_MODALITY_KEYS = {"rows", "channels", "sfreq", "units", "scale", *LSL_QUERY_KEYS}


@dataclass(frozen=True, slots=True)
class ModalityProfile:
    """What a device delivers for one modality.

    Attributes
    ----------
    modality : {"eeg", "ecg"}
        The modality.
    channels : tuple of str or None
        Channel names (BrainFlow) or expected stream labels (LSL); None to take what the device reports.
    sfreq : float or None
        Expected nominal sampling rate in Hz; None to accept any.
    scale : float or None
        Factor from the device's raw values to microvolts; None to use the stream's declared units (LSL)
        or 1.0 (BrainFlow, which delivers µV).
    rows : tuple of int or None
        BrainFlow data-array rows; None to use the board descriptor's rows for the modality.
    lsl_query : dict of str to str
        LSL stream properties to match (``name``, ``type``, ``source_id``), merged over the profile's ``[lsl]``.
    """

    modality: Modality
    channels: tuple[str, ...] | None = None
    sfreq: float | None = None
    scale: float | None = None
    rows: tuple[int, ...] | None = None
    lsl_query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A validated device profile.

    Attributes
    ----------
    name : str
        Profile name (the file name without ``.toml``).
    description : str
        One line for ``rt-physio devices``.
    backend : {"lsl", "brainflow", "polar"}
        Acquisition backend.
    params : dict
        Backend parameters: for BrainFlow ``board`` plus BrainFlowInputParams fields; for LSL the default
        stream query (``stream_name`` / ``stream_type`` / ``source_id``).
    modalities : dict
        One :class:`ModalityProfile` per modality the device provides.
    path : Path or None
        The file it was loaded from.
    """

    name: str
    description: str
    backend: Backend
    params: dict[str, str | int]
    modalities: dict[Modality, ModalityProfile]
    path: Path | None = None


def _fail(path: Path, where: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {where} {msg}")


def _str(path: Path, where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, f"must be a non-empty string, got {value!r}.")
    return value


def _positive(path: Path, where: str, value: object) -> float:
    try:
        return positive_entry(where, value)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _modality(path: Path, modality: Modality, table: object, backend: Backend) -> ModalityProfile:
    where = f"[{modality}]"
    if not isinstance(table, dict):
        raise _fail(path, where, f"must be a table, got {table!r}.")
    unknown = sorted(set(table) - _MODALITY_KEYS)
    if unknown:
        raise _fail(path, where, f"has unknown keys {unknown}; valid keys: {sorted(_MODALITY_KEYS)}.")
    channels = None
    if "channels" in table:
        raw = table["channels"]
        if not isinstance(raw, list) or not raw or not all(isinstance(c, str) and c for c in raw):
            raise _fail(path, f"{where}.channels", f"must be a non-empty list of names, got {raw!r}.")
        if len(set(raw)) != len(raw):
            raise _fail(path, f"{where}.channels", f"has duplicate names: {raw}.")
        channels = tuple(raw)
    rows = None
    if "rows" in table:
        if backend != "brainflow":
            raise _fail(path, f"{where}.rows", "is only meaningful for backend = \"brainflow\".")
        raw = table["rows"]
        if (not isinstance(raw, list) or not raw
                or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in raw)):
            raise _fail(path, f"{where}.rows", f"must be a non-empty list of row indices (integers ≥ 0), got {raw!r}.")
        if len(set(raw)) != len(raw):
            raise _fail(path, f"{where}.rows", f"has duplicate rows: {raw}.")
        rows = tuple(raw)
    if rows is not None and channels is not None and len(rows) != len(channels):
        raise _fail(path, where, f"lists {len(rows)} rows but {len(channels)} channel names.")
    sfreq = _positive(path, f"{where}.sfreq", table["sfreq"]) if "sfreq" in table else None
    if "units" in table and "scale" in table:
        raise _fail(path, where, "sets both units and scale; give one.")
    scale = None
    if "units" in table:
        unit = _str(path, f"{where}.units", table["units"])
        scale = scale_to_uv(unit)
        if scale is None:
            raise _fail(path, f"{where}.units", f"{unit!r} is not a known unit; use one of {sorted(UNIT_SCALES)}.")
    elif "scale" in table:
        scale = _positive(path, f"{where}.scale", table["scale"])
    query = {}
    for key, prop in LSL_QUERY_KEYS.items():
        if key in table:
            if backend != "lsl":
                raise _fail(path, f"{where}.{key}", "is only meaningful for backend = \"lsl\".")
            query[prop] = _str(path, f"{where}.{key}", table[key])
    return ModalityProfile(modality, channels, sfreq, scale, rows, query)


def _backend_params(path: Path, backend: Backend, table: object) -> dict[str, str | int]:
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise _fail(path, f"[{backend}]", f"must be a table, got {table!r}.")
    params: dict[str, str | int] = {}
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _fail(path, f"[{backend}].{key}", f"must be a string or an integer, got {value!r}.")
        params[key] = value
    if backend == "polar":
        unknown = sorted(set(params) - set(POLAR_KEYS))
        if unknown:
            raise _fail(path, "[polar]", f"has unknown keys {unknown}; valid keys: {list(POLAR_KEYS)}.")
    elif backend == "lsl":
        unknown = sorted(set(params) - set(LSL_QUERY_KEYS))
        if unknown:
            raise _fail(path, "[lsl]", f"has unknown keys {unknown}; valid keys: {sorted(LSL_QUERY_KEYS)}.")
    else:
        if "board" not in params:
            raise _fail(path, "[brainflow]", "needs board = \"<BoardIds name or id>\" (e.g. \"synthetic\").")
        # Checked here so that a typo is reported with the file name, not later when the board is opened.
        where = f"{path}: [brainflow]"
        board_from_name(params["board"], where=where)
        input_params({k: v for k, v in params.items() if k != "board"}, where=where)
    return params


def parse_profile(data: Mapping[str, Any], path: Path) -> DeviceProfile:
    """Validate a profile's TOML content.

    Parameters
    ----------
    data : mapping
        The parsed TOML document.
    path : Path
        The file it came from (named in every error; its stem is the profile name).

    Returns
    -------
    DeviceProfile
        The validated profile.

    Raises
    ------
    ConfigError
        When a field is missing, unknown or of the wrong type.
    """
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _fail(path, "top level", f"has unknown keys {unknown}; valid keys: {sorted(_TOP_KEYS)}.")
    name = _str(path, "name", data.get("name", path.stem))
    if name != path.stem:
        raise _fail(path, "name", f"is {name!r} but the file is {path.name}; they must match.")
    description = _str(path, "description", data.get("description"))
    backend_raw = data.get("backend")
    if backend_raw not in BACKENDS:
        raise _fail(path, "backend", f"must be one of {list(BACKENDS)}, got {backend_raw!r}.")
    backend = cast(Backend, backend_raw)
    for other in BACKENDS:
        if other != backend and other in data:
            raise _fail(path, f"[{other}]", f"does not apply to backend = {backend!r}.")
    params = _backend_params(path, backend, data.get(backend))
    modalities = {m: _modality(path, m, data[m], backend) for m in MODALITIES if m in data}
    if not modalities:
        raise _fail(path, "top level", "needs an [eeg] and/or an [ecg] section.")
    if backend == "polar" and "eeg" in modalities:
        raise _fail(path, "[eeg]", "does not apply to backend = \"polar\" (a Polar H10 records ECG only).")
    if backend == "lsl":
        for m, prof in modalities.items():
            if not params and not prof.lsl_query:
                raise _fail(path, f"[{m}]", "has no stream to look for: set stream_name, stream_type or source_id "
                                            "in [lsl] or in this section.")
    return DeviceProfile(name, description, backend, params, modalities, path)


def load_profile_file(path: Path) -> DeviceProfile:
    """Load and validate one profile file; errors name the file."""
    return parse_profile(load_toml(path), path)


def find_profiles() -> tuple[dict[str, Path], list[Path]]:
    """Return ``{name: path}`` of the profile files found and the folders searched (first folder wins)."""
    folders = data_dirs("drivers")
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found, folders


def load_profile(name: str) -> DeviceProfile:
    """Load the profile called ``name`` from the ``drivers/`` folders.

    Parameters
    ----------
    name : str
        Profile name, e.g. ``"brainflow-synthetic"``.

    Returns
    -------
    DeviceProfile
        The validated profile.

    Raises
    ------
    ConfigError
        When no profile of that name exists (the message lists the valid ones and the folders searched) or
        the file is invalid.
    """
    found, folders = find_profiles()
    if name not in found:
        valid = ", ".join(sorted(found)) or "(none)"
        searched = ", ".join(str(f) for f in folders) or "(no drivers/ folder found)"
        raise ConfigError(f"Unknown device profile {name!r}. Valid profiles: {valid}. Folders searched: {searched}. "
                          "Add your own as drivers/<name>.toml.")
    return load_profile_file(found[name])
