"""SPEC strings (``--eeg`` / ``--ecg``) parsed and opened into sources.

Accepted forms::

    synthetic                        = profile:brainflow-synthetic
    profile:<name>[?k=v&…]           a device profile from drivers/; k=v override its backend parameters
    brainflow:<board>[?k=v&…]        any BrainFlow board by name or id; k=v are BrainFlowInputParams fields
    lsl:<name>                       an LSL stream by name
    lsl:type=<type> | lsl:source_id=<id> | lsl:name=<n>&type=<t>   an LSL stream by properties
                                     (add &dejitter=0 to keep the sender's timestamps as they are)
    replay:<file>[?k=v&…]            a recording replayed into LSL in this process, in real time; one player serves
                                     --eeg and --ecg of the same file (options: loop, chunk, rate, subject, clip,
                                     part, unit, eeg_channels, ecg_channels, duration, name)
    polar:<address or name>          a Polar H10 chest strap over Bluetooth LE (ECG at 130 Hz)
    none                             no source for this modality (parse_spec returns None)

Everything is resolved and opened by :func:`open_source` on the caller's thread, so a wrong name or a missing
board is a :class:`~rt_physio.errors.RtPhysioError` before the engine starts; ``source.start(sink)`` starts
acquisition. A BrainFlow board named for both modalities (``--eeg synthetic --ecg synthetic``) is opened once
and shared; stop every source you opened (even when opening a later one failed) to release it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast, get_args
from urllib.parse import parse_qsl

from rt_physio.checks import check_positive
from rt_physio.errors import ConfigError
from rt_physio.sources.base import MODALITIES, Modality, Source
from rt_physio.sources.brainflow import open_brainflow
from rt_physio.sources.brainflow_boards import INPUT_PARAM_FIELDS
from rt_physio.sources.lsl import LslSource
from rt_physio.sources.lsl_streams import LSL_PROPS, quiet_liblsl
from rt_physio.sources.profiles import LSL_QUERY_KEYS, load_profile
from rt_physio.sources.replay import open_replay, replay_options

__all__ = ["SPEC_FORMS", "SourceSpec", "open_source", "parse_spec"]

SpecKind = Literal["profile", "brainflow", "lsl", "replay", "polar"]

#: The accepted SPEC forms, for help texts and error messages.
SPEC_FORMS = ("synthetic", "profile:<name>[?k=v&…]", "brainflow:<board>[?k=v&…]", "lsl:<name>", "lsl:type=<type>",
              "lsl:source_id=<id>", "replay:<file>[?k=v&…]", "polar:<address>", "none")

_DEFAULT_PROFILE = "brainflow-synthetic"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A parsed SPEC.

    Attributes
    ----------
    kind : {"profile", "brainflow", "lsl", "replay", "polar"}
        Which backend or indirection.
    target : str
        Profile name, board name/id, file (replay) or Bluetooth address/name (polar); empty for LSL.
    params : dict of str to str
        Query parameters: profile overrides, BrainFlowInputParams fields, or LSL properties to match.
    text : str
        The SPEC as given.
    """

    kind: SpecKind
    target: str
    params: dict[str, str] = field(default_factory=dict)
    text: str = ""


def _query(text: str, spec: str) -> dict[str, str]:
    try:
        # '+' stays a plus (file names, other_info); only %XX escapes are decoded
        pairs = parse_qsl(text.replace("+", "%2B"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ConfigError(f"Source {spec!r}: cannot parse the parameters {text!r}; write them as k=v&k2=v2.") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise ConfigError(f"Source {spec!r}: parameter {key!r} is given twice.")
        params[key] = value
    return params


def parse_spec(spec: str) -> SourceSpec | None:
    """Parse a SPEC string (syntax only: nothing is resolved or opened).

    Parameters
    ----------
    spec : str
        See the module docstring for the accepted forms.

    Returns
    -------
    SourceSpec or None
        None for ``none``.

    Raises
    ------
    ConfigError
        For a malformed SPEC; the message lists the accepted forms.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"A source SPEC must be a string, got {spec!r}.")
    text = spec.strip()
    forms = f"Accepted forms: {', '.join(SPEC_FORMS)}."
    if not text:
        raise ConfigError(f"Empty source SPEC. {forms}")
    if text.lower() == "none":
        return None
    if text.lower() == "synthetic":
        return SourceSpec("profile", _DEFAULT_PROFILE, {}, text)
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in get_args(SpecKind):
        raise ConfigError(f"Unknown source SPEC {spec!r}. {forms}")
    kind = cast(SpecKind, scheme)
    if kind == "lsl":
        if not rest:
            raise ConfigError(f"Source {spec!r} names no stream: use lsl:<name> or lsl:type=<type>.")
        if "=" not in rest:
            return SourceSpec("lsl", "", {"name": rest}, text)
        query = _query(rest, spec)
        if "dejitter" in query:
            _lsl_flag(spec, query["dejitter"])
        unknown = sorted(set(query) - {*LSL_PROPS, "dejitter"})
        if unknown:
            raise ConfigError(f"Source {spec!r}: unknown LSL stream properties {unknown}; valid ones: "
                              f"{', '.join(LSL_PROPS)}.")
        if not all(query.values()):
            raise ConfigError(f"Source {spec!r}: empty value for an LSL stream property.")
        if not set(query) - {"dejitter"}:
            raise ConfigError(f"Source {spec!r} names no stream: add name=, type= or source_id=.")
        return SourceSpec("lsl", "", query, text)
    target, _, query_text = rest.partition("?")
    if not target.strip():
        what = {"brainflow": "board name or id", "profile": "profile name", "replay": "file",
                "polar": "Bluetooth address or name"}[kind]
        raise ConfigError(f"Source {spec!r} has no {what}: write {kind}:<{what.split()[0]}>.")
    parsed = SourceSpec(kind, target.strip(), _query(query_text, spec) if query_text else {}, text)
    if kind == "replay":
        replay_options(parsed.params)  # syntax errors now, not when the engine opens it
    return parsed


def _lsl_flag(spec: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"Source {spec!r}: dejitter must be 0 or 1, got {text!r}.")


def open_source(spec: str | SourceSpec, modality: Literal["eeg", "ecg"], *, resolve_timeout: float = 5.0) -> Source:
    """Resolve and open the source a SPEC names, for one modality (not started).

    Parameters
    ----------
    spec : str or SourceSpec
        The SPEC (``none`` is the caller's business and is rejected here).
    modality : {"eeg", "ecg"}
        Which modality the source delivers.
    resolve_timeout : float
        Seconds to wait for an LSL stream to appear.

    Returns
    -------
    Source
        An :class:`~rt_physio.sources.lsl.LslSource` or :class:`~rt_physio.sources.brainflow.BrainFlowSource`;
        call ``start(sink)`` to begin and ``stop()`` to release it.

    Raises
    ------
    ConfigError
        Malformed SPEC, unknown profile / board / parameter, profile without this modality.
    SourceError
        Stream not found, board failed to prepare, device contradicting its profile.
    """
    if modality not in MODALITIES:
        raise ConfigError(f"The modality must be one of {list(MODALITIES)}, got {modality!r}.")
    check_positive("resolve_timeout", resolve_timeout, unit="seconds", error=ConfigError)
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed is None:
        raise ConfigError(f"Source 'none' opens nothing: leave the {modality.upper()} modality out instead.")
    quiet_liblsl()
    if parsed.kind == "lsl":
        query = {k: v for k, v in parsed.params.items() if k != "dejitter"}
        dejitter = _lsl_flag(parsed.text, parsed.params.get("dejitter", "1"))
        return LslSource.open(query, modality, timeout=float(resolve_timeout), dejitter=dejitter)
    if parsed.kind == "brainflow":
        return open_brainflow(parsed.target, dict(parsed.params), modality)
    if parsed.kind == "replay":
        return open_replay(parsed.target, parsed.params, modality, resolve_timeout=float(resolve_timeout))
    if parsed.kind == "polar":
        from rt_physio.sources.polar import open_polar

        return open_polar(parsed.target, dict(parsed.params), modality)
    return _open_profile(parsed, modality, float(resolve_timeout))


def _open_profile(spec: SourceSpec, modality: Modality, resolve_timeout: float) -> Source:
    profile = load_profile(spec.target)
    section = profile.modalities.get(modality)
    if section is None:
        has = ", ".join(m.upper() for m in profile.modalities)
        raise ConfigError(f"Profile {profile.name!r} ({profile.path}) provides {has} only, not {modality.upper()}; "
                          f"choose another source for {modality.upper()}.")
    if profile.backend == "brainflow":
        valid = ("board", *INPUT_PARAM_FIELDS)
        unknown = sorted(set(spec.params) - set(valid))
        if unknown:
            raise ConfigError(f"Source {spec.text!r}: unknown parameters {unknown} for a BrainFlow profile; valid "
                              f"ones: {', '.join(valid)}.")
        params: dict[str, str | int] = {**profile.params, **spec.params}
        board = params.pop("board")
        return open_brainflow(board, params, modality, section, name=profile.name)
    if profile.backend == "polar":
        from rt_physio.sources.polar import open_polar

        polar = {**{k: str(v) for k, v in profile.params.items()}, **spec.params}
        unknown = sorted(set(polar) - {"address", "timeout"})
        if unknown:
            raise ConfigError(f"Source {spec.text!r}: unknown parameters {unknown} for a Polar profile; valid ones: "
                              "address, timeout.")
        address = polar.pop("address", "Polar H10")
        return open_polar(address, polar, modality)
    # LSL: [lsl] defaults, then the modality's own keys, then the SPEC's overrides (profile or LSL key names).
    query = {LSL_QUERY_KEYS[k]: str(v) for k, v in profile.params.items()}
    query.update(section.lsl_query)
    for key, value in spec.params.items():
        prop = LSL_QUERY_KEYS.get(key, key)
        if prop not in LSL_PROPS:
            raise ConfigError(f"Source {spec.text!r}: unknown parameter {key!r} for an LSL profile; valid ones: "
                              f"{', '.join((*LSL_QUERY_KEYS, *LSL_PROPS))}.")
        query[prop] = value
    return LslSource.open(query, modality, section, timeout=resolve_timeout)
