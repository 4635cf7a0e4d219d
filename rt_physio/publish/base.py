"""What every publisher offers the engine: the :class:`Publisher` protocol, topic names, publish-URL dispatch.

Topics are ``<prefix>/<session>/pred`` (every prediction), ``<prefix>/<session>/state`` (the latest prediction,
retained; MQTT only) and ``<prefix>/<session>/status`` (``rt_physio.status/1``: ``online`` / ``degraded`` /
``offline`` and each modality's liveness; retained on MQTT). The prefix is ``rt_physio``
on ZeroMQ and the URL path on MQTT (default ``rt_physio``). On MQTT, commands arrive on
``<prefix>/<session>/control`` and are answered on ``<prefix>/<session>/control/reply`` (see
:mod:`rt_physio.publish.control`).

A publisher never blocks its caller: :meth:`Publisher.prediction` and :meth:`Publisher.status` hand the message
to the publisher's own thread through a bounded queue and return.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

from rt_physio.errors import ConfigError
from rt_physio.publish.schema import FORMATS, Format

if TYPE_CHECKING:
    from rt_physio.publish.control import ControlHandler

__all__ = ["DEFAULT_PREFIX", "STATUS_SCHEMA_ID", "Publisher", "control_reply_topic", "control_topic", "open_publisher",
           "pred_topic", "state_topic", "status_topic"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "rt_physio"
STATUS_SCHEMA_ID = "rt_physio.status/1"


def pred_topic(session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Topic of a session's predictions."""
    return f"{prefix}/{session_id}/pred"


def state_topic(session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Topic of a session's latest prediction (retained on MQTT)."""
    return f"{prefix}/{session_id}/state"


def status_topic(session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Topic of a session's status messages (``rt_physio.status/1``)."""
    return f"{prefix}/{session_id}/status"


def control_topic(session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Topic an MQTT client publishes a session's control commands to."""
    return f"{prefix}/{session_id}/control"


def control_reply_topic(session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Topic of the replies to a session's control commands (MQTT)."""
    return f"{prefix}/{session_id}/control/reply"


@runtime_checkable
class Publisher(Protocol):
    """One publish URL. Every method returns at once; the publisher's own thread does the I/O."""

    @property
    def format(self) -> Format:
        """Payload encoding this publisher expects from :meth:`prediction` (``json`` or ``msgpack``)."""
        ...

    @property
    def dropped(self) -> int:
        """Messages dropped because the transport could not keep up (or was down too long)."""
        ...

    def prediction(self, session_id: str, payload: bytes) -> None:
        """Publish one prediction payload (already encoded in :attr:`format`)."""
        ...

    def status(self, session_id: str, message: Mapping[str, Any]) -> None:
        """Publish a session's ``rt_physio.status/1`` map (``state`` online, degraded or offline; see the schema)."""
        ...

    def close(self) -> None:
        """Send what is queued (bounded wait), announce ``offline`` where the transport needs it, disconnect."""
        ...


def open_publisher(url: str, session_ids: Sequence[str], *, insecure: bool = False,
                   on_control: ControlHandler | None = None) -> Publisher:
    """Create the publisher for ``url`` (``zmq://…``, ``mqtt://…`` or ``mqtts://…``).

    ``on_control``, when given, answers the control commands an MQTT publisher receives on each session's
    ``control`` topic. A ZeroMQ publisher ignores it: ZeroMQ commands go to the separate REP
    :class:`~rt_physio.publish.control.ControlServer`.

    Construction reports what cannot work (a busy port, a refused password, a bad certificate) as a
    :class:`ConfigError` before the engine starts.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "zmq":
        from rt_physio.publish.zmq import ZmqPublisher

        return ZmqPublisher(url, insecure=insecure)
    if scheme in ("mqtt", "mqtts"):
        from rt_physio.publish.mqtt import MqttPublisher

        return MqttPublisher(url, session_ids, insecure=insecure, on_control=on_control)
    raise ConfigError(
        f"Unknown publish URL {url!r}: expected zmq://HOST:PORT or mqtt://[USER@]HOST:PORT[/PREFIX] "
        "(see rt-physio run --help)."
    )


# -- URL helpers shared by the publishers ----------------------------------------------------------------------
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
