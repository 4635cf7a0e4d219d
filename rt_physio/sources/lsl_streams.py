"""Finding LSL streams: resolution by name / type / source_id with a timeout, and readable summaries.

Resolution polls a ``pylsl.ContinuousResolver`` against our own deadline rather than calling
``resolve_byprop``: with liblsl 1.18 a ``resolve_byprop(..., timeout=T)`` that succeeds early leaves the next
resolve call of the process waiting until T has passed (observed: a 0.5 s miss took 5.5 s after a 5 s
resolve), and the continuous resolver also tells us, on a miss, which streams *were* visible.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pylsl

from rt_physio.checks import check_positive
from rt_physio.errors import ConfigError, SourceError

__all__ = [
    "LSL_PROPS",
    "LslStreamSummary",
    "StreamWatch",
    "describe_query",
    "quiet_liblsl",
    "resolve_stream",
    "summarize",
    "visible_streams",
]

log = logging.getLogger("rt_physio.sources.lsl")

#: Stream properties a query may match.
LSL_PROPS: tuple[str, ...] = ("name", "type", "source_id")

_FORMATS = {pylsl.cf_float32: "float32", pylsl.cf_double64: "double64", pylsl.cf_int8: "int8",
            pylsl.cf_int16: "int16", pylsl.cf_int32: "int32", pylsl.cf_int64: "int64", pylsl.cf_string: "string"}


@dataclass(frozen=True, slots=True)
class LslStreamSummary:
    """What ``rt-physio devices`` and error messages say about a visible LSL stream."""

    name: str
    type: str
    n_channels: int
    sfreq: float
    source_id: str
    hostname: str
    channel_format: str

    def describe(self) -> str:
        """Return a one-line description (``'Muse' (type EEG, 4 ch, 256 Hz, source_id …, host …)``)."""
        rate = "irregular rate" if self.sfreq == 0 else f"{self.sfreq:g} Hz"
        sid = f", source_id {self.source_id!r}" if self.source_id else ""
        return (f"{self.name!r} (type {self.type or '?'}, {self.n_channels} ch, {rate}, {self.channel_format}{sid}, "
                f"host {self.hostname})")


def summarize(info: pylsl.StreamInfo) -> LslStreamSummary:
    """Summarize a ``pylsl.StreamInfo``."""
    return LslStreamSummary(name=info.name(), type=info.type(), n_channels=info.channel_count(),
                            sfreq=float(info.nominal_srate()), source_id=info.source_id(),
                            hostname=info.hostname(), channel_format=_FORMATS.get(info.channel_format(), "?"))


def _prop(info: pylsl.StreamInfo, prop: str) -> str:
    return str(info.name() if prop == "name" else info.type() if prop == "type" else info.source_id())


def describe_query(query: Mapping[str, str]) -> str:
    """Return ``name='X' and type='EEG'`` for messages."""
    return " and ".join(f"{k}={v!r}" for k, v in query.items())


def resolve_stream(query: Mapping[str, str], timeout: float = 5.0) -> pylsl.StreamInfo:
    """Find the LSL stream matching every property in ``query``.

    Parameters
    ----------
    query : mapping
        ``{"name": ..., "type": ..., "source_id": ...}`` (one or more keys); values match exactly.
    timeout : float
        Seconds to wait for a matching stream to appear.

    Returns
    -------
    pylsl.StreamInfo
        The stream (without its extended description; open an inlet and call ``info()`` for that).
        When several match, the first found is used and a warning names the others.

    Raises
    ------
    ConfigError
        For an empty query, an unknown property or a non-positive timeout.
    SourceError
        When no stream matches within ``timeout``; the message lists the streams that were visible.
    """
    if not query:
        raise ConfigError("An LSL stream query needs at least one of name, type, source_id.")
    unknown = sorted(set(query) - set(LSL_PROPS))
    if unknown:
        raise ConfigError(f"Unknown LSL stream properties {unknown}; valid ones: {', '.join(LSL_PROPS)}.")
    check_positive("timeout", timeout, unit="seconds", error=ConfigError)
    resolver = pylsl.ContinuousResolver(forget_after=max(5.0, timeout))
    deadline = time.monotonic() + timeout
    while True:
        found = resolver.results()
        matches = [s for s in found if all(_prop(s, k) == v for k, v in query.items())]
        if matches or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    if not matches:
        if found:
            visible = "; ".join(summarize(s).describe() for s in found)
            hint = "Names and types are case-sensitive; `rt-physio devices` lists the visible streams."
            raise SourceError(f"No LSL stream with {describe_query(query)} appeared within {timeout:g} s. "
                              f"Visible streams: {visible}. {hint}")
        raise SourceError(f"No LSL stream with {describe_query(query)} appeared within {timeout:g} s, and no LSL "
                          "stream is visible at all: is the device's LSL app running, on this machine or network?")
    if len(matches) > 1:
        log.warning("%d LSL streams match %s; using the first: %s. Others: %s", len(matches), describe_query(query),
                    summarize(matches[0]).describe(), "; ".join(summarize(s).describe() for s in matches[1:]))
    return matches[0]


class StreamWatch:
    """Keep looking for the streams that match a query, in the background; :meth:`matches` never blocks.

    A ``pylsl.ContinuousResolver`` (liblsl's own thread queries the network every half second); a stream is
    listed until it has not answered for ``forget_after`` seconds. Used while a source's stream is silent or
    lost, to find it again whatever its new source_id.
    """

    def __init__(self, query: Mapping[str, str], forget_after: float = 3.0) -> None:
        self.query = dict(query)
        self._resolver: pylsl.ContinuousResolver | None = pylsl.ContinuousResolver(forget_after=forget_after)

    def matches(self) -> list[pylsl.StreamInfo]:
        """Return the streams visible now that match every property of the query."""
        if self._resolver is None:
            return []
        return [s for s in self._resolver.results() if all(_prop(s, k) == v for k, v in self.query.items())]

    def close(self) -> None:
        """Stop resolving (liblsl stops its thread when the resolver is destroyed)."""
        self._resolver = None


def visible_streams(wait: float = 1.0) -> list[LslStreamSummary]:
    """Return summaries of the LSL streams visible within ``wait`` seconds, sorted by name."""
    resolver = pylsl.ContinuousResolver(forget_after=max(5.0, wait))
    time.sleep(wait)
    return sorted((summarize(s) for s in resolver.results()), key=lambda s: (s.name, s.type, s.source_id))


_quiet_lock = threading.Lock()
_quiet_done = False


def quiet_liblsl(level: int = -2) -> bool:
    """Lower liblsl's console logging (its INFO lines clutter ``rt-physio`` output), unless the user configured it.

    liblsl reads its configuration once, when first used; call this before anything opens an outlet, inlet or
    resolver. It does nothing (and returns False) when ``$LSLAPICFG`` or an ``lsl_api.cfg`` in the working
    directory, ``~/lsl_api/`` or ``/etc/lsl_api/`` exists, because the configuration it sets replaces those
    files entirely (network settings included).

    Parameters
    ----------
    level : int
        liblsl ``log.level``: -2 errors only (default), -1 warnings, 0 info, -3 fatal only.

    Returns
    -------
    bool
        True when the configuration was set.
    """
    global _quiet_done
    with _quiet_lock:
        if _quiet_done:
            return False
        _quiet_done = True
        configs = [Path("lsl_api.cfg"), Path.home() / "lsl_api" / "lsl_api.cfg", Path("/etc/lsl_api/lsl_api.cfg")]
        if os.environ.get("LSLAPICFG") or any(p.is_file() for p in configs):
            return False
        pylsl.set_config_content(f"[log]\nlevel = {int(level)}\n")
        return True
