"""The MQTT publish URL: ``mqtt://[USER@]HOST[:PORT][/PREFIX][?qos=0&tls=1&cafile=PATH&format=json|msgpack&queue=N&keepalive=S]``.

``mqtts://`` means ``tls=1``; default ports 1883 and 8883; default prefix ``rt_physio``. The password never goes in
the URL (``ps`` and shell history would show it): it is read from ``RT_PHYSIO_MQTT_PASSWORD``
(:data:`PASSWORD_ENV`). See :mod:`rt_physio.publish.mqtt` for what is published where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rt_physio.errors import ConfigError
from rt_physio.publish.base import DEFAULT_PREFIX
from rt_physio.publish.schema import Format
from rt_physio.publish.url_query import is_loopback_host, parse_query, query_bool, query_format, query_int

__all__ = ["PASSWORD_ENV", "MqttUrl", "parse_mqtt_url"]

PASSWORD_ENV = "RT_PHYSIO_MQTT_PASSWORD"
_OPTIONS = ("qos", "tls", "cafile", "format", "queue", "keepalive")


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """A parsed MQTT publish URL (see the module docstring)."""

    host: str
    port: int
    username: str | None = None
    prefix: str = DEFAULT_PREFIX
    qos: int = 0
    tls: bool = False
    cafile: str | None = None
    format: Format = "json"
    queue: int = 1000
    keepalive: int = 15

    @property
    def is_loopback(self) -> bool:
        """True when the broker is on this machine."""
        return is_loopback_host(self.host)

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix}"


def parse_mqtt_url(url: str) -> MqttUrl:
    """Parse an ``mqtt://`` / ``mqtts://`` publish URL, raising :class:`ConfigError` with the expected form."""
    expected = "expected mqtt://[USER@]HOST[:PORT][/PREFIX][?qos=0&tls=1&cafile=PATH], e.g. mqtt://127.0.0.1:1883"
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"Invalid publish URL {url!r}: {expected}.")
    if parts.password is not None:
        raise ConfigError(
            f"Publish URL {url.split('@', 1)[-1]!r} contains a password: it would show in `ps` and shell history. "
            f"Put only the user in the URL (mqtt://USER@HOST) and the password in ${PASSWORD_ENV}."
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"Invalid port in publish URL {url!r}: {expected}.") from exc
    options = parse_query(url, parts.query, _OPTIONS)
    cafile = options.get("cafile")
    tls = query_bool(url, options, "tls", parts.scheme == "mqtts" or cafile is not None)
    if cafile is not None and not tls:
        raise ConfigError(f"cafile in {url!r} needs tls=1.")
    if cafile is not None and not Path(cafile).is_file():
        raise ConfigError(f"cafile in {url!r}: {cafile} is not a file.")
    prefix = unquote(parts.path).strip("/") or DEFAULT_PREFIX
    levels = prefix.split("/")
    if "#" in url or any(not level or "+" in level or "#" in level for level in levels):
        raise ConfigError(
            f"Topic prefix {prefix!r} in {url!r} is invalid: use non-empty levels without '+' or '#', "
            "e.g. mqtt://127.0.0.1/home/eeg."
        )
    return MqttUrl(
        host=parts.hostname, port=port if port else (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None, prefix=prefix,
        qos=query_int(url, options, "qos", 0, 0, 2), tls=tls, cafile=cafile, format=query_format(url, options),
        queue=query_int(url, options, "queue", 1000, 1, 1_000_000),
        keepalive=query_int(url, options, "keepalive", 15, 2, 3600),
    )
