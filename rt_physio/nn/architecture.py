"""What every ``[architecture]`` table of ``model.toml`` shares, checked once for every model type."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["check_architecture"]


def check_architecture(arch: Mapping[str, Any], kind: str, tables: Sequence[str]) -> None:
    """Check that ``arch`` is a table with only ``type`` and ``tables`` as keys, and ``type = kind``.

    Parameters
    ----------
    arch : Mapping
        The ``[architecture]`` table (canonical: see :func:`rt_physio.nn.model_types.canonical_architecture`).
    kind : str
        The type the caller parses (``"fusion"``, ``"classical"``, ``"hybrid"``).
    tables : sequence of str
        The sub-tables that type allows (``[architecture.<table>]``).

    Raises
    ------
    ValueError
        ``arch`` is not a table, has another key, or names another type.
    """
    if not isinstance(arch, Mapping):
        raise ValueError(f"architecture must be a table, got {type(arch).__name__}.")
    unknown = sorted(set(arch) - {"type", *tables})
    if unknown:
        raise ValueError(f"architecture has unknown keys {unknown} for type {kind!r}; allowed: "
                         f"{', '.join(('type', *tables))}.")
    if arch.get("type") != kind:
        raise ValueError(f"architecture.type must be {kind!r}, got {arch.get('type')!r}.")
