"""``model.toml``: the :class:`ModelSpec` of a model folder and its validation.

The layout is documented in :mod:`rt_physio.nn.registry`. Every problem is reported as a
:class:`~rt_physio.errors.ModelError` that names the file and the field (``inputs.sfreq``,
``architecture.eeg.nhead``, ...).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rt_physio.checks import check_number, positive_entry
from rt_physio.config import load_toml
from rt_physio.errors import ConfigError, ModelError
from rt_physio.nn.cbramod import PATCH_SIZE
from rt_physio.nn.fusion import MODALITIES
from rt_physio.nn.model_types import canonical_architecture, model_type

__all__ = [
    "ACTIVATIONS",
    "CALIBRATION_LEVELS",
    "MODEL_FILE",
    "SCHEMA",
    "WEIGHTS_FILE",
    "CalibrationSpec",
    "ModelSpec",
    "Preprocessing",
    "parse_model_spec",
    "read_model_spec",
]

SCHEMA = "rt_physio.model/1"
MODEL_FILE = "model.toml"
WEIGHTS_FILE = "weights.safetensors"
#: How logits become the published values.
ACTIVATIONS = ("sigmoid", "softmax", "identity")
#: What a calibrated model centres on each person's baseline: its hand-made features or its pooled embeddings.
CALIBRATION_LEVELS = ("features", "embeddings")
_TOP_KEYS = (
    "schema",
    "name",
    "trained",
    "description",
    "architecture",
    "inputs",
    "preprocessing",
    "outputs",
    "calibration",
    "provenance",
)


@dataclass(frozen=True)
class Preprocessing:
    """Filtering the engine applies to one modality before the model.

    Attributes
    ----------
    bandpass : tuple[float, float] | None
        Pass band in Hz, or None for no band-pass.
    notch : bool
        Whether to notch the line frequency.
    """

    bandpass: tuple[float, float] | None
    notch: bool


@dataclass(frozen=True)
class CalibrationSpec:
    """The ``[calibration]`` table: the model has a head trained on per-person centred features.

    Attributes
    ----------
    seconds : float
        Baseline length the calibrated head was trained with (the first ``seconds`` of each person's rest).
    level : str
        ``features`` (hand-made features) or ``embeddings`` (pooled encoder embeddings); see
        :data:`CALIBRATION_LEVELS`.
    expects : bool
        True when the model is meant to run calibrated (``rt-physio run`` warns without ``--calibrate``).
    """

    seconds: float
    level: str
    expects: bool


@dataclass(frozen=True)
class ModelSpec:
    """Everything ``model.toml`` says about a model (the weights are not read).

    Attributes
    ----------
    name : str
        Model name (= folder name).
    path : Path
        The model folder.
    trained : bool
        False for models whose outputs are meaningless (random weights).
    description : str
        Free text.
    architecture : dict
        The ``[architecture]`` table (canonical: see :mod:`rt_physio.nn.model_types`).
    sfreq : float
        Model input rate in Hz.
    window_s : float
        Window length in seconds.
    n_patches : int
        Patches per window (``window_s * sfreq / 200``).
    scale_uv : float
        Inputs are microvolts divided by this.
    modalities : tuple[str, ...]
        Modalities with an encoder, in fusion order (``"eeg"``, ``"ecg"``).
    channels : dict[str, tuple[str, ...]]
        Expected channel names per modality; empty = any montage.
    preprocessing : dict[str, Preprocessing]
        Filtering per modality.
    outputs : tuple[str, ...]
        Output names, one logit each.
    activation : str
        One of :data:`ACTIVATIONS`.
    provenance : dict
        The ``[provenance]`` table (seed, data, command, ``weights_dtype``, ``weights_sha256``, ...).
    calibration : CalibrationSpec | None
        The ``[calibration]`` table, or None for a model without a calibrated head.
    smoothing_s : float
        ``outputs.smoothing_s``: each published output is the mean (in logits) over the windows of the last this
        many seconds of the session (:mod:`rt_physio.nn.smoothing`); 0 (the default): every window on its own.
    """

    name: str
    path: Path
    trained: bool
    description: str
    architecture: dict[str, Any] = field(hash=False)
    sfreq: float
    window_s: float
    n_patches: int
    scale_uv: float
    modalities: tuple[str, ...]
    channels: dict[str, tuple[str, ...]] = field(hash=False)
    preprocessing: dict[str, Preprocessing] = field(hash=False)
    outputs: tuple[str, ...]
    activation: str
    provenance: dict[str, Any] = field(hash=False)
    calibration: CalibrationSpec | None = None
    smoothing_s: float = 0.0

    @property
    def weights_sha256(self) -> str:
        """The sha256 of ``weights.safetensors`` recorded in ``model.toml``."""
        return str(self.provenance["weights_sha256"])

    @property
    def model_file(self) -> Path:
        """Path of ``model.toml``."""
        return self.path / MODEL_FILE

    @property
    def weights_file(self) -> Path:
        """Path of ``weights.safetensors``."""
        return self.path / WEIGHTS_FILE


def read_model_spec(folder: str | Path) -> ModelSpec:
    """Read and validate ``<folder>/model.toml`` (and check that ``weights.safetensors`` exists).

    Raises
    ------
    ModelError
        A missing file, invalid TOML, or a missing / invalid field (named, with the file).
    """
    folder = Path(folder).resolve()
    model_file = folder / MODEL_FILE
    if not model_file.is_file():
        raise ModelError(f"{model_file}: not found; {folder} is not a model folder (it needs {MODEL_FILE}).")
    if not (folder / WEIGHTS_FILE).is_file():
        raise ModelError(f"{folder / WEIGHTS_FILE}: not found; the model folder {folder} has no weights.")
    try:
        data = load_toml(model_file)
    except ConfigError as exc:
        raise ModelError(str(exc)) from exc
    try:
        return parse_model_spec(data, folder)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{model_file}: {exc}") from exc


def parse_model_spec(data: Mapping[str, Any], folder: Path) -> ModelSpec:
    """Validate the parsed ``model.toml`` content of ``folder``.

    A legacy ``[architecture] type`` is read under its current name
    (:func:`~rt_physio.nn.model_types.canonical_architecture`); :attr:`ModelSpec.architecture` holds the canonical
    table.

    Raises
    ------
    ValueError
        A missing, unknown or invalid field, named in the message (the caller adds the file name).
    """
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ValueError(f"unknown top-level keys {unknown}; allowed: {list(_TOP_KEYS)}.")
    schema = _get(data, "schema", str)
    if schema != SCHEMA:
        raise ValueError(f"schema must be {SCHEMA!r}, got {schema!r}.")
    name = _get(data, "name", str)
    if name != folder.name:
        raise ValueError(f"name is {name!r} but the folder is {folder.name!r}; the folder name is the model name.")
    trained = _get(data, "trained", bool)
    description = _get(data, "description", str, default="")

    arch = canonical_architecture(_get(data, "architecture", dict))
    outputs = _get(data, "outputs", dict)
    names = _get(outputs, "names", list, where="outputs.names")
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"outputs.names must be a non-empty list of distinct non-empty strings, got {names!r}.")
    activation = _get(outputs, "activation", str, where="outputs.activation")
    if activation not in ACTIVATIONS:
        raise ValueError(f"outputs.activation must be one of {list(ACTIVATIONS)}, got {activation!r}.")
    smoothing_s = check_number("outputs.smoothing_s", _get(outputs, "smoothing_s", float, default=0.0,
                                                            where="outputs.smoothing_s"), minimum=0.0, maximum=3600.0,
                               unit="seconds")
    parsed_arch = model_type(arch).parse(arch, len(names))
    modalities, n_eeg_channels = parsed_arch.modalities, parsed_arch.n_eeg_channels

    inputs = _get(data, "inputs", dict)
    sfreq = positive_entry("inputs.sfreq", _get(inputs, "sfreq", float, where="inputs.sfreq"))
    window_s = positive_entry("inputs.window_s", _get(inputs, "window_s", float, where="inputs.window_s"))
    scale_uv = positive_entry("inputs.scale_uv", _get(inputs, "scale_uv", float, where="inputs.scale_uv"))
    samples = window_s * sfreq
    n_patches = round(samples / PATCH_SIZE)
    if n_patches < 1 or not math.isclose(samples, n_patches * PATCH_SIZE, rel_tol=0, abs_tol=1e-6):
        raise ValueError(
            f"inputs.window_s * inputs.sfreq must be a whole number of {PATCH_SIZE}-sample patches, got "
            f"{window_s} s * {sfreq} Hz = {samples} samples."
        )
    preprocessing_table = _get(data, "preprocessing", dict)
    _check_modality_tables(inputs, "inputs", modalities, extra=("sfreq", "window_s", "scale_uv"))
    _check_modality_tables(preprocessing_table, "preprocessing", modalities, extra=())
    channels: dict[str, tuple[str, ...]] = {}
    preprocessing: dict[str, Preprocessing] = {}
    for m in modalities:
        table = _get(inputs, m, dict, where=f"inputs.{m}")
        _no_unknown(table, ("channels",), f"inputs.{m}")
        chans = _get(table, "channels", list, where=f"inputs.{m}.channels")
        if not all(isinstance(c, str) and c for c in chans) or len(set(chans)) != len(chans):
            raise ValueError(f"inputs.{m}.channels must be a list of distinct channel names, got {chans!r}.")
        channels[m] = tuple(chans)
        if m == "eeg" and n_eeg_channels is not None and len(chans) != n_eeg_channels:
            raise ValueError(f"inputs.eeg.channels must name the {n_eeg_channels} EEG channels of a classical model "
                             f"(its features are per channel), got {len(chans)}: {chans!r}.")
        preprocessing[m] = _parse_preprocessing(_get(preprocessing_table, m, dict, where=f"preprocessing.{m}"), m)

    calibration = _parse_calibration(data["calibration"]) if "calibration" in data else None
    provenance = _get(data, "provenance", dict)
    digest = _get(provenance, "weights_sha256", str, where="provenance.weights_sha256")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"provenance.weights_sha256 must be 64 lowercase hex digits, got {digest!r}.")
    return ModelSpec(
        name=name,
        path=folder,
        trained=trained,
        description=description,
        architecture=copy.deepcopy(dict(arch)),
        sfreq=sfreq,
        window_s=window_s,
        n_patches=n_patches,
        scale_uv=scale_uv,
        modalities=modalities,
        channels=channels,
        preprocessing=preprocessing,
        outputs=tuple(names),
        activation=activation,
        provenance=copy.deepcopy(dict(provenance)),
        calibration=calibration,
        smoothing_s=smoothing_s,
    )


def _parse_calibration(table: object) -> CalibrationSpec:
    if not isinstance(table, Mapping):
        raise ValueError(f"calibration must be a table, got {type(table).__name__}.")
    _no_unknown(table, ("seconds", "level", "expects"), "calibration")
    seconds = positive_entry("calibration.seconds", _get(table, "seconds", float, where="calibration.seconds"))
    level = _get(table, "level", str, where="calibration.level")
    if level not in CALIBRATION_LEVELS:
        raise ValueError(f"calibration.level must be one of {list(CALIBRATION_LEVELS)}, got {level!r}.")
    return CalibrationSpec(seconds, level, _get(table, "expects", bool, where="calibration.expects"))


def _parse_preprocessing(table: Mapping[str, Any], m: str) -> Preprocessing:
    where = f"preprocessing.{m}"
    _no_unknown(table, ("bandpass", "notch"), where)
    notch = _get(table, "notch", bool, where=f"{where}.notch")
    band = table.get("bandpass")
    if band is None:
        return Preprocessing(bandpass=None, notch=notch)
    if (
        not isinstance(band, list)
        or len(band) != 2
        or not all(isinstance(f, int | float) and not isinstance(f, bool) for f in band)
        or not 0.0 <= band[0] < band[1]
    ):
        raise ValueError(f"{where}.bandpass must be [low, high] in Hz with 0 <= low < high, got {band!r}.")
    return Preprocessing(bandpass=(float(band[0]), float(band[1])), notch=notch)


def _check_modality_tables(
    table: Mapping[str, Any], where: str, modalities: tuple[str, ...], extra: tuple[str, ...]
) -> None:
    for m in MODALITIES:
        if m in table and m not in modalities:
            raise ValueError(f"[{where}.{m}] is given but the architecture has no {m} encoder ([architecture.{m}]).")
    _no_unknown(table, (*extra, *MODALITIES), where)


def _no_unknown(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; allowed: {list(allowed)}.")


_MISSING = object()


def _get(table: Mapping[str, Any], key: str, kind: type, *, where: str | None = None, default: Any = _MISSING) -> Any:
    where = where or key
    if key not in table:
        if default is not _MISSING:
            return default
        raise ValueError(f"{where} is missing.")
    value = table[key]
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        expected = {dict: "a table", list: "an array", str: "a string", bool: "true or false", float: "a number"}
        raise ValueError(f"{where} must be {expected.get(kind, kind.__name__)}, got {value!r}.")
    return float(value) if kind is float else value
