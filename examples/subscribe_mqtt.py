"""Print rt_physio predictions, the retained latest state and presence received over MQTT.

    python examples/subscribe_mqtt.py                               # broker on 127.0.0.1:1883, prefix rt_physio
    python examples/subscribe_mqtt.py --user alice --cafile ca.pem  # password from $RT_PHYSIO_MQTT_PASSWORD, TLS

Needs only paho-mqtt (and msgpack for --msgpack). Topics, per session:
  <prefix>/<session>/pred    every prediction
  <prefix>/<session>/state   the latest prediction, retained: delivered at once when you subscribe
  <prefix>/<session>/status  the session's rt_physio.status/1 message: state online / degraded / offline and each
                             modality's liveness (retained; "offline" is also the engine's last will)
"""

from __future__ import annotations

import argparse
import json
import os

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default 1883, or 8883 with --cafile")
    parser.add_argument("--prefix", default="rt_physio")
    parser.add_argument("--user", default=None, help="password from $RT_PHYSIO_MQTT_PASSWORD")
    parser.add_argument("--cafile", default=None, help="CA certificate of the broker (turns TLS on)")
    parser.add_argument("--msgpack", action="store_true", help="payloads are msgpack (?format=msgpack)")
    parser.add_argument("--count", type=int, default=0, help="exit after this many predictions (default: never)")
    args = parser.parse_args()

    if args.msgpack:
        import msgpack

        def decode(payload: bytes) -> dict:
            return msgpack.unpackb(payload, raw=False)
    else:
        decode = json.loads

    received = 0

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        client.subscribe(f"{args.prefix}/+/+", qos=1)  # (re)subscribe on every connect

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        session, kind = message.topic.split("/")[-2:]
        if kind == "status":
            status = decode(message.payload)
            modalities = "  ".join(f"{m} {v['state']}" for m, v in status.get("modalities", {}).items())
            print(f"{session}: {status['state']}{' (retained)' if message.retain else ''}  {modalities}".rstrip(),
                  flush=True)
            return
        msg = decode(message.payload)
        outputs = "  ".join(f"{name} {p:.3f}" for name, p in msg["outputs"].items())
        print(f"{session} {kind:5s} #{msg['seq']}  {outputs}", flush=True)
        if kind == "pred":
            received += 1
            if args.count and received >= args.count:
                client.disconnect()

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    if args.user:
        client.username_pw_set(args.user, os.environ.get("RT_PHYSIO_MQTT_PASSWORD"))
    if args.cafile:
        client.tls_set(ca_certs=args.cafile)
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(args.host, args.port or (8883 if args.cafile else 1883))
    client.loop_forever()  # reconnects by itself; returns after disconnect()


if __name__ == "__main__":
    main()
