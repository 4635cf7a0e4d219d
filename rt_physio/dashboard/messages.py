"""Topics and payloads as the dashboard receives them, turned into :class:`Message` objects.

A payload is JSON (it starts with ``{``) or msgpack (anything else), whatever the publish URL's ``format``. Its
``schema`` field picks the JSON Schema it is checked against (the schema files published with the engine). A
message of a schema this dashboard does not know, one that fails its schema, or one that cannot be parsed becomes a
``kind="error"`` message, shown as an error row: a newer engine or a stray publisher never crashes the page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import jsonschema

from rt_physio.publish.schema import decode, load_schema

__all__ = ["KINDS", "Message", "decode_message", "parse_topic"]

log = logging.getLogger(__name__)

Kind = Literal["pred", "status", "preview", "error"]
#: Topic suffix → what it carries (``state`` is MQTT's retained latest prediction).
KINDS: dict[str, Kind] = {"pred": "pred", "state": "pred", "status": "status", "preview": "preview"}
#: Schema id → kind, and the schema file (``rt_physio/publish/<name>.schema.json``) that checks it.
SCHEMAS: dict[str, tuple[Kind, str]] = {
    "rt_physio.prediction/1": ("pred", "prediction"),
    "rt_physio.status/1": ("status", "status"),
    "rt_physio.preview/1": ("preview", "preview"),
}


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message.

    Attributes
    ----------
    kind : {"pred", "status", "preview", "error"}
        What it is; ``error`` for anything that could not be read (see ``error``).
    session : str
        Session id, from the topic (``?`` when the topic names none).
    topic : str
        The topic it arrived on.
    body : dict
        The message itself (empty for errors).
    error : str
        Why the message could not be read (``kind="error"`` only).
    """

    kind: Kind
    session: str
    topic: str
    body: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def parse_topic(topic: str) -> tuple[str, str] | None:
    """Split ``<prefix>/<session>/<suffix>`` into (session, suffix); None when it is not such a topic."""
    parts = topic.rsplit("/", 2)
    if len(parts) != 3 or not parts[1]:
        return None
    return parts[1], parts[2]


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def decode_message(topic: str, payload: bytes) -> Message | None:
    """Decode one ``[topic, payload]``; None for topics the dashboard does not show (e.g. control replies)."""
    parsed = parse_topic(topic)
    if parsed is None:
        return None
    session, suffix = parsed
    expected = KINDS.get(suffix)
    if expected is None:
        return None
    try:
        body = decode(payload, "json" if payload[:1] == b"{" else "msgpack")
    except Exception as exc:  # a parser fed bytes from the network can raise anything: an error row, never a crash
        return Message("error", session, topic, error=f"unreadable payload ({type(exc).__name__}: {exc})"[:300])
    if not isinstance(body, dict):
        return Message("error", session, topic, error=f"payload is not a map but {type(body).__name__}")
    schema_id = body.get("schema")
    known = SCHEMAS.get(schema_id) if isinstance(schema_id, str) else None
    if known is None:
        return Message("error", session, topic, error=f"unknown schema {schema_id!r} (this dashboard reads "
                                                      f"{', '.join(SCHEMAS)})")
    kind, schema_name = known
    if kind != expected:
        return Message("error", session, topic, error=f"a {schema_id} message on a {suffix!r} topic")
    error = next(iter(_validator(schema_name).iter_errors(body)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        return Message("error", session, topic, error=f"{schema_id} message does not follow its schema at {where}: "
                                                      f"{error.message}"[:300])
    return Message(kind, session, topic, body)
