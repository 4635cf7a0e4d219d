"""The ``rt_physio.prediction/1`` message: building, serialising and validating it.

The JSON Schema lives next to this module (``prediction.schema.json``) so subscribers in any language can
validate what they receive. Messages are JSON (UTF-8) by default, or msgpack (``?format=msgpack`` on a publish
URL: the same map, packed; floats stay float64). Never pickle: a subscriber must not have to trust the engine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal, get_args

import msgpack

__all__ = ["FORMATS", "SCHEMA_ID", "Format", "Prediction", "decode", "encode", "load_schema", "load_status_schema",
           "validate", "validate_status"]

SCHEMA_ID = "rt_physio.prediction/1"
Format = Literal["json", "msgpack"]
FORMATS: tuple[Format, ...] = get_args(Format)
UNTRAINED_WARNING = "untrained model: outputs are random and carry no meaning"
NONFINITE_WARNING = "the model's output was not finite (NaN or infinite) for this window: no outputs"
NOTHING_USABLE_WARNING = ("no modality the model could use in this window ({unused}: flat EEG, or an ECG without "
                          "plausible heartbeats?): the window's own output carries no information")


@dataclass(slots=True)
class Prediction:
    """One model output for one window of one session (see the README for the field meanings)."""

    session: str
    seq: int
    t_start: float
    t_end: float
    t_wall: float
    outputs: dict[str, float]
    model_name: str
    model_sha256: str
    trained: bool
    modalities: list[str]
    quality: dict[str, float]
    latency_ms: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    nonfinite: bool = False  # the model's output was not finite: no outputs, a warning
    smoothing: dict[str, Any] | None = None  # outputs are a running mean: {seconds, windows, window_outputs}
    unused: list[str] = field(default_factory=list)  # modalities present but unusable to the model: a warning

    def to_message(self) -> dict[str, Any]:
        """Return the message as plain JSON-compatible types."""
        msg: dict[str, Any] = {
            "schema": SCHEMA_ID,
            "session": self.session,
            "seq": self.seq,
            "t_start": round(self.t_start, 6),
            "t_end": round(self.t_end, 6),
            "t_wall": round(self.t_wall, 6),
            "outputs": {k: round(float(v), 6) for k, v in self.outputs.items()},
            "model": {"name": self.model_name, "sha256": self.model_sha256, "trained": self.trained},
            "modalities": list(self.modalities),
            "quality": {k: round(float(v), 4) for k, v in self.quality.items() if math.isfinite(v)},
            "latency_ms": {k: v for k, v in self.latency_ms.items() if math.isfinite(v)},
        }
        if self.calibration is not None:
            state = self.calibration.get("state")
            msg["calibrating"] = state == "calibrating"
            msg["calibrated"] = state == "calibrated"
            msg["calibration"] = {k: v for k, v in self.calibration.items() if k != "state"}
        if self.smoothing is not None:
            msg["smoothing"] = {
                "seconds": self.smoothing["seconds"], "windows": self.smoothing["windows"],
                "window_outputs": {k: round(float(v), 6) for k, v in self.smoothing["window_outputs"].items()},
            }
        warnings = []
        if self.unused:  # outputs from the other modalities are as good as with those alone: no warning then
            msg["unused_modalities"] = list(self.unused)
            if set(self.modalities) <= set(self.unused):
                warnings.append(NOTHING_USABLE_WARNING.format(unused="+".join(self.unused)))
        if self.nonfinite:
            msg["nonfinite_output"] = True
            warnings.append(NONFINITE_WARNING)
        if not self.trained:
            warnings.append(UNTRAINED_WARNING)
        if warnings:
            msg["warning"] = "; ".join(warnings)
        return msg

    def to_json(self) -> bytes:
        """Serialise to compact UTF-8 JSON."""
        return encode(self.to_message(), "json")


def encode(message: dict[str, Any], fmt: Format = "json") -> bytes:
    """Serialise a message (plain JSON-compatible types) as compact UTF-8 JSON or msgpack."""
    if fmt == "msgpack":
        packed: bytes = msgpack.packb(message, use_bin_type=True)
        return packed
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def decode(payload: bytes, fmt: Format = "json") -> dict[str, Any]:
    """Parse a payload made by :func:`encode` (what a subscriber does)."""
    if fmt == "msgpack":
        unpacked: dict[str, Any] = msgpack.unpackb(payload, raw=False)
        return unpacked
    parsed: dict[str, Any] = json.loads(payload)
    return parsed


@cache
def load_schema(name: str = "prediction") -> dict[str, Any]:
    """Return the JSON Schema of ``rt_physio.prediction/1`` (or of ``rt_physio.<name>/1``)."""
    text = resources.files("rt_physio.publish").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def load_status_schema() -> dict[str, Any]:
    """Return the JSON Schema of ``rt_physio.status/1`` (``status.schema.json``)."""
    return load_schema("status")


def validate(message: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``message`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(message, load_schema())


def validate_status(message: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``message`` does not follow the ``rt_physio.status/1`` schema."""
    import jsonschema

    jsonschema.validate(message, load_status_schema())
