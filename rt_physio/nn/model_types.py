"""The model types a ``model.toml`` may declare (``[architecture] type``): one table, no if-chains.

Each :class:`ModelType` says how to validate the ``[architecture]`` table (which modalities the model reads, and
how many EEG channels it needs when its features are per channel) and how to build the untrained module.
Adding a type = one entry in :data:`MODEL_TYPES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from rt_physio.nn.baseline import BaselineModel, parse_baseline_architecture
from rt_physio.nn.fusion import MODALITIES, FusionModel, parse_architecture
from rt_physio.nn.hybrid import HybridModel, parse_hybrid_architecture

__all__ = ["MODEL_TYPES", "ModelType", "ParsedArchitecture", "model_type"]


@dataclass(frozen=True)
class ParsedArchitecture:
    """What the spec needs from a validated ``[architecture]``: modalities read, fixed EEG channel count or None."""

    modalities: tuple[str, ...]
    n_eeg_channels: int | None = None


@dataclass(frozen=True)
class ModelType:
    """How to validate and build one ``[architecture] type``."""

    parse: Callable[[Mapping[str, Any], int], ParsedArchitecture]
    build: Callable[[Mapping[str, Any], int, float], nn.Module]


def _parse_fusion(arch: Mapping[str, Any], n_outputs: int) -> ParsedArchitecture:
    parsed = parse_architecture(arch, n_outputs=n_outputs)
    return ParsedArchitecture(tuple(m for m, c in zip(MODALITIES, parsed.encoders, strict=True) if c is not None))


def _parse_baseline(arch: Mapping[str, Any], n_outputs: int) -> ParsedArchitecture:
    parsed = parse_baseline_architecture(arch, n_outputs=n_outputs)
    return ParsedArchitecture(parsed.modalities, parsed.eeg_channels)


def _parse_hybrid(arch: Mapping[str, Any], n_outputs: int) -> ParsedArchitecture:
    return ParsedArchitecture(parse_hybrid_architecture(arch, n_outputs=n_outputs).modalities)


#: ``[architecture] type`` -> how to parse and build it.
MODEL_TYPES: dict[str, ModelType] = {
    "fusion": ModelType(_parse_fusion, lambda arch, n, sfreq: FusionModel.from_config(arch, n_outputs=n)),
    "baseline": ModelType(_parse_baseline,
                          lambda arch, n, sfreq: BaselineModel.from_config(arch, n_outputs=n, sfreq=sfreq)),
    "hybrid": ModelType(_parse_hybrid, lambda arch, n, sfreq: HybridModel.from_config(arch, n_outputs=n, sfreq=sfreq)),
}


def model_type(arch: object) -> ModelType:
    """Look up the :data:`MODEL_TYPES` entry of an ``[architecture]`` table (``type`` defaults to ``"fusion"``).

    Raises
    ------
    ValueError
        ``architecture`` is not a table or names an unknown type.
    """
    if not isinstance(arch, Mapping):
        raise ValueError(f"architecture must be a table, got {type(arch).__name__}.")
    kind = arch.get("type", "fusion")
    if kind not in MODEL_TYPES:
        raise ValueError(f"architecture.type must be one of {sorted(MODEL_TYPES)}, got {kind!r}.")
    return MODEL_TYPES[kind]
