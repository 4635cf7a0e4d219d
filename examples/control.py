"""Send one control command to a running rt-physio session and print the reply.

    python examples/control.py ping                               # ZeroMQ: rt-physio run --control zmq://127.0.0.1:5557
    python examples/control.py calibrate seconds=60 --session s1  # start a new calibration of session s1
    python examples/control.py ping --mqtt --port 1883            # MQTT: rt-physio run --publish mqtt://127.0.0.1

Needs only pyzmq, or paho-mqtt for --mqtt. A command is a JSON object with a string "cmd"; KEY=VALUE arguments add
fields (values are parsed as JSON when they can be: seconds=60 is the number 60). Replies are JSON objects,
{"ok": true, ...} or {"ok": false, "error": "..."}.
  ZeroMQ  a REQ socket: send the command with "session" (optional when the engine runs one session), receive the reply
  MQTT    publish to <prefix>/<session>/control (QoS 1, NOT retained: retained commands are ignored) and read the
          reply on <prefix>/<session>/control/reply; the "id" we send comes back in the reply, so we know it is ours
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import uuid

TIMEOUT_S = 5.0


def send_zmq(host: str, port: int, command: dict) -> dict | None:
    import zmq

    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://{host}:{port}")
    try:
        sock.send_json(command)
        if not sock.poll(int(TIMEOUT_S * 1000)):  # a REQ socket waits forever otherwise
            return None
        return sock.recv_json()
    finally:
        sock.close()


def send_mqtt(host: str, port: int, prefix: str, session: str, command: dict, user: str | None) -> dict | None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    topic = f"{prefix}/{session}/control"
    command = {**command, "id": uuid.uuid4().hex}  # to recognise our reply among other clients' replies
    got: list[dict] = []
    done = threading.Event()

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        client.subscribe(f"{topic}/reply", qos=1)

    def on_subscribe(client: mqtt.Client, userdata: object, mid: int, reasons: object, props: object) -> None:
        client.publish(topic, json.dumps(command), qos=1, retain=False)  # subscribed first: the reply cannot be missed

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        reply = json.loads(message.payload)
        if reply.get("id") == command["id"]:
            got.append(reply)
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    if user is not None:
        client.username_pw_set(user, os.environ.get("RT_PHYSIO_MQTT_PASSWORD"))
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        done.wait(TIMEOUT_S)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0] if got else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cmd", help="the command: ping, calibrate, ...")
    parser.add_argument("fields", nargs="*", metavar="KEY=VALUE", help="more fields of the command, e.g. seconds=60")
    parser.add_argument("--session", default=None, help="session id (ZeroMQ: optional with one session; MQTT: "
                                                        "default 'default')")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default 5557 (ZeroMQ) or 1883 (MQTT)")
    parser.add_argument("--mqtt", action="store_true", help="send over MQTT instead of ZeroMQ")
    parser.add_argument("--prefix", default="rt_physio", help="MQTT topic prefix (the path of the publish URL)")
    parser.add_argument("--user", default=None, help="MQTT user; password from $RT_PHYSIO_MQTT_PASSWORD")
    args = parser.parse_args()

    command: dict = {"cmd": args.cmd}
    for field in args.fields:
        key, sep, value = field.partition("=")
        if not sep:
            parser.error(f"expected KEY=VALUE, got {field!r}")
        try:
            command[key] = json.loads(value)
        except json.JSONDecodeError:
            command[key] = value  # a bare word is a string
    if args.mqtt:
        reply = send_mqtt(args.host, args.port or 1883, args.prefix, args.session or "default", command, args.user)
    else:
        if args.session is not None:
            command["session"] = args.session
        reply = send_zmq(args.host, args.port or 5557, command)
    if reply is None:
        print(f"no reply within {TIMEOUT_S:g} s: is rt-physio running with that control channel?", file=sys.stderr)
        return 1
    print(json.dumps(reply), flush=True)
    return 0 if reply.get("ok") else 2


if __name__ == "__main__":
    sys.exit(main())
