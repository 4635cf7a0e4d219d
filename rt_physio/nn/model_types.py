"""The model types a ``model.toml`` may declare (``[architecture] type``): one table, no if-chains.

Each :class:`ModelType` names the module class, how to validate the ``[architecture]`` table (which modalities
the model reads, and how many EEG channels it needs when its features are per channel) and how to build the
untrained module that :func:`rt_physio.nn.registry.load_model` fills with the weights. Adding a type = one entry in
:data:`MODEL_TYPES`.

Older model files may name a type that has since been renamed: :data:`LEGACY_TYPES` maps each such name to the
current one, and :func:`canonical_architecture` is the one place that applies it (``type = "baseline"`` with an
``[architecture.baseline]`` table is read as ``type = "classical"`` with ``[architecture.classical]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from rt_physio.nn.classical import ClassicalModel, parse_classical_architecture
from rt_physio.nn.fusion import MODALITIES, FusionModel, parse_architecture
from rt_physio.nn.hybrid import HybridModel, parse_hybrid_architecture

__all__ = ["LEGACY_TYPES", "MODEL_TYPES", "Model", "ModelType", "ParsedArchitecture", "canonical_architecture",
           "model_type"]

#: What a model folder holds (the union of the :attr:`ModelType.module` classes of :data:`MODEL_TYPES`).
Model = FusionModel | ClassicalModel | HybridModel


@dataclass(frozen=True)
class ParsedArchitecture:
    """What the spec needs from a validated ``[architecture]``: modalities read, fixed EEG channel count or None."""

    modalities: tuple[str, ...]
    n_eeg_channels: int | None = None


@dataclass(frozen=True)
class ModelType:
    """One ``[architecture] type``: its module class, how to validate its table and how to build it.

    Attributes
    ----------
    module : type
        The ``nn.Module`` subclass a model folder of this type loads as.
    parse : callable
        ``parse(architecture, n_outputs) -> ParsedArchitecture``; raises ValueError naming the bad key.
    build : callable
        ``build(architecture, n_outputs, sfreq) -> module`` (untrained; the registry loads the weights into it).
    """

    module: type[nn.Module]
    parse: Callable[[Mapping[str, Any], int], ParsedArchitecture]
    build: Callable[[Mapping[str, Any], int, float], nn.Module]


def _parse_fusion(arch: Mapping[str, Any], n_outputs: int) -> ParsedArchitecture:
    parsed = parse_architecture(arch, n_outputs=n_outputs)
    return ParsedArchitecture(tuple(m for m, c in zip(MODALITIES, parsed.encoders, strict=True) if c is not None))


def _parse_classical(arch: Mapping[str, Any], n_outputs: int) -> ParsedArchitecture:
    parsed = parse_classical_architecture(arch, n_outputs=n_outputs)
    return ParsedArchitecture(parsed.modalities, parsed.eeg_channels)


def _parse_hybrid(arch: Mapping[str, Any], n_outputs: int) -> ParsedArchitecture:
    return ParsedArchitecture(parse_hybrid_architecture(arch, n_outputs=n_outputs).modalities)


#: ``[architecture] type`` -> its module class, parser and builder.
MODEL_TYPES: dict[str, ModelType] = {
    "fusion": ModelType(FusionModel, _parse_fusion,
                        lambda arch, n, sfreq: FusionModel.from_config(arch, n_outputs=n)),
    "classical": ModelType(ClassicalModel, _parse_classical,
                           lambda arch, n, sfreq: ClassicalModel.from_config(arch, n_outputs=n, sfreq=sfreq)),
    "hybrid": ModelType(HybridModel, _parse_hybrid,
                        lambda arch, n, sfreq: HybridModel.from_config(arch, n_outputs=n, sfreq=sfreq)),
}
#: Type names older ``model.toml`` files use -> the current name (their own table is renamed with them).
LEGACY_TYPES: dict[str, str] = {"baseline": "classical"}


def canonical_architecture(arch: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of an ``[architecture]`` table with a legacy type (:data:`LEGACY_TYPES`) under its new name.

    The type's own table (``[architecture.<type>]``) is renamed with it; any other table is returned unchanged.

    Raises
    ------
    ValueError
        ``arch`` is not a table.
    """
    if not isinstance(arch, Mapping):
        raise ValueError(f"architecture must be a table, got {type(arch).__name__}.")
    out = dict(arch)
    old = out.get("type")
    if isinstance(old, str) and old in LEGACY_TYPES:
        new = LEGACY_TYPES[old]
        out["type"] = new
        if old in out:
            out[new] = out.pop(old)
    return out


def model_type(arch: object) -> ModelType:
    """Look up the :data:`MODEL_TYPES` entry of a canonical ``[architecture]`` table (``type`` defaults to fusion).

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
