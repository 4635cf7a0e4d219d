"""A minimal TOML writer for the plain data of a ``model.toml`` (the standard library only reads TOML).

Supports tables (nested dicts), strings, booleans, integers, finite floats and flat arrays of those scalars.
Scalars of a table are written before its sub-tables, so the output reads like a hand-written file; the
result always parses back with :mod:`tomllib` to the same data.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["dumps"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(data: Mapping[str, Any], header: str = "") -> str:
    """Serialise ``data`` to TOML text, optionally after a ``header`` comment block.

    Raises
    ------
    TypeError
        A value of an unsupported type (e.g. None, a nested array, an array of tables).
    ValueError
        A non-finite float.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    _table(data, (), lines)
    return "\n".join(lines).strip("\n") + "\n"


def _table(data: Mapping[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        lines.extend(["", "[" + ".".join(_key(p) for p in path) + "]"])
    for key, value in scalars:
        lines.append(f"{_key(key)} = {_value(value, (*path, key))}")
    for key, value in tables:
        _table(value, (*path, str(key)), lines)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: object, where: tuple[str, ...]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{'.'.join(where)}: cannot write the non-finite float {value!r} to model.toml.")
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, Sequence):
        items = []
        for item in value:
            if isinstance(item, Mapping | list | tuple):
                raise TypeError(f"{'.'.join(where)}: nested arrays and arrays of tables are not supported.")
            items.append(_value(item, where))
        return "[" + ", ".join(items) + "]"
    raise TypeError(f"{'.'.join(where)}: cannot write a {type(value).__name__} to model.toml.")
