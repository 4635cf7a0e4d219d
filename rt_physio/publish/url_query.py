"""The options of a publish URL (``?format=msgpack&qos=1``), read the same way by every publisher."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl

from rt_physio.errors import ConfigError
from rt_physio.publish.schema import FORMATS, Format

__all__ = ["is_loopback_host", "parse_query", "query_bool", "query_format", "query_int"]


def is_loopback_host(host: str) -> bool:
    """Return whether ``host`` (a name or an IP address) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_query(url: str, query: str, valid: Sequence[str]) -> dict[str, str]:
    """Return the query arguments of ``url`` as a dict, rejecting unknown and repeated names."""
    pairs = parse_qsl(query, keep_blank_values=True)
    out: dict[str, str] = {}
    for name, value in pairs:
        if name not in valid:
            raise ConfigError(f"Unknown option {name!r} in publish URL {url!r}; valid: {', '.join(valid)}.")
        if name in out:
            raise ConfigError(f"Option {name!r} is given twice in publish URL {url!r}.")
        out[name] = value
    return out


def query_int(url: str, options: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """Read an integer option in ``[lo, hi]``."""
    if name not in options:
        return default
    text = options[name]
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} in {url!r} must be an integer, got {text!r}.") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} in {url!r} must be between {lo} and {hi}, got {value}.")
    return value


def query_bool(url: str, options: Mapping[str, str], name: str, default: bool) -> bool:
    """Read a boolean option (``1/0``, ``true/false``, ``yes/no``)."""
    if name not in options:
        return default
    text = options[name].lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} in {url!r} must be 1 or 0, got {options[name]!r}.")


def query_format(url: str, options: Mapping[str, str]) -> Format:
    """Read ``format=json|msgpack`` (default json)."""
    text = options.get("format", "json").lower()
    for fmt in FORMATS:
        if text == fmt:
            return fmt
    raise ConfigError(f"format in {url!r} must be one of {', '.join(FORMATS)}, got {options['format']!r}.")
