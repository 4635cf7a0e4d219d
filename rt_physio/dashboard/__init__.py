"""The live dashboard: a local web page that subscribes to running engines like any other client.

It reads only what engines publish — the ``rt_physio.prediction/1``, ``rt_physio.status/1`` and
``rt_physio.preview/1`` messages on ``<prefix>/<session>/pred|state|status|preview`` over ZeroMQ or MQTT — and
sends only the documented ``calibrate`` control command. It imports nothing from the engine's runtime, sources or
models, so it runs as its own process (``rt-physio dashboard``) or as a thread of an engine
(``rt-physio run --dashboard``) at the same cost to the engine: one more subscriber.

Modules: :mod:`.messages` (topics and payloads → typed messages), :mod:`.feeds` (ZeroMQ and MQTT subscribers),
:mod:`.state` (what the page shows, per session), :mod:`.server` (the ASGI app and its server thread),
:mod:`.cli` (``rt-physio dashboard``).
"""

__all__ = ["DEFAULT_BIND", "DEFAULT_CONNECT"]

DEFAULT_CONNECT = "zmq://127.0.0.1:5556"  # the engine's default --publish
DEFAULT_BIND = "127.0.0.1:8050"
