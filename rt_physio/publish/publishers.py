"""The publisher for a publish URL: ``zmq://…`` or ``mqtt://…`` / ``mqtts://…``.

Kept apart from :mod:`rt_physio.publish.base`, which every publisher imports, so the dispatch can name the
publishers without an import cycle; each transport is imported only when a URL asks for it (MQTT pulls in aiomqtt).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rt_physio.errors import ConfigError
from rt_physio.publish.base import Publisher

if TYPE_CHECKING:
    from rt_physio.publish.control import ControlHandler

__all__ = ["open_publisher"]


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
