"""What every publisher offers the engine: the :class:`Publisher` protocol and the topic names.

Topics are ``<prefix>/<session>/pred`` (every prediction), ``<prefix>/<session>/state`` (the latest prediction,
retained; MQTT only) and ``<prefix>/<session>/status`` (``rt_physio.status/1``: ``online`` / ``degraded`` /
``offline`` and each modality's liveness; retained on MQTT), and with ``--preview`` ``<prefix>/<session>/preview``
(``rt_physio.preview/1``: decimated filtered streams, sent by publishers that have a ``preview`` method: ZeroMQ and
MQTT). The prefix is ``rt_physio``
on ZeroMQ and the URL path on MQTT (default ``rt_physio``). On MQTT, commands arrive on
``<prefix>/<session>/control`` and are answered on ``<prefix>/<session>/control/reply`` (see
:mod:`rt_physio.publish.control`).

A publisher never blocks its caller: :meth:`Publisher.prediction` and :meth:`Publisher.status` hand the message
to the publisher's own thread through a bounded queue and return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from rt_physio.publish.schema import Format

__all__ = ["DEFAULT_PREFIX", "PREVIEW_SCHEMA_ID", "STATUS_SCHEMA_ID", "Publisher", "control_reply_topic",
           "control_topic", "pred_topic", "preview_topic", "state_topic", "status_topic"]

DEFAULT_PREFIX = "rt_physio"
STATUS_SCHEMA_ID = "rt_physio.status/1"
PREVIEW_SCHEMA_ID = "rt_physio.preview/1"


def pred_topic(session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Topic of a session's predictions."""
    return f"{prefix}/{session_id}/pred"


def state_topic(session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Topic of a session's latest prediction (retained on MQTT)."""
    return f"{prefix}/{session_id}/state"


def status_topic(session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Topic of a session's status messages (``rt_physio.status/1``)."""
    return f"{prefix}/{session_id}/status"


def preview_topic(session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Topic of a session's signal preview (``rt_physio.preview/1``, with ``rt-physio run --preview``)."""
    return f"{prefix}/{session_id}/preview"


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
