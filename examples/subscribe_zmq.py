"""Print rt_physio predictions received over ZeroMQ.

    python examples/subscribe_zmq.py                           # zmq://127.0.0.1:5556, JSON
    python examples/subscribe_zmq.py --port 5557 --msgpack     # rt-physio run --publish "zmq://127.0.0.1:5557?format=msgpack"

Needs only pyzmq (and msgpack for --msgpack). Messages are multipart [topic, payload]; topics are
rt_physio/<session>/pred (one per window) and rt_physio/<session>/status (rt_physio.status/1: online / degraded /
offline, each modality's liveness, counters; on every change and every 5 s).
ZeroMQ has no retained messages: a subscriber hears what is published after it connects.
"""

from __future__ import annotations

import argparse
import json

import zmq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5556)
    parser.add_argument("--session", default="", help="only this session (default: all)")
    parser.add_argument("--msgpack", action="store_true", help="payloads are msgpack (?format=msgpack)")
    parser.add_argument("--count", type=int, default=0, help="exit after this many predictions (default: never)")
    args = parser.parse_args()

    if args.msgpack:
        import msgpack

        def decode(payload: bytes) -> dict:
            return msgpack.unpackb(payload, raw=False)
    else:
        decode = json.loads

    sock = zmq.Context().socket(zmq.SUB)
    sock.connect(f"tcp://{args.host}:{args.port}")
    prefix = f"rt_physio/{args.session}/" if args.session else "rt_physio/"
    sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
    received = 0
    while not args.count or received < args.count:
        topic, payload = sock.recv_multipart()
        msg = decode(payload)
        if topic.endswith(b"/status"):
            modalities = "  ".join(f"{m} {v['state']}" for m, v in msg.get("modalities", {}).items())
            print(f"{msg['session']}: {msg['state']}  {modalities}".rstrip(), flush=True)
            continue
        outputs = "  ".join(f"{name} {p:.3f}" for name, p in msg["outputs"].items())
        note = "" if msg["model"]["trained"] else "  [untrained model]"
        print(f"{msg['session']} #{msg['seq']}  {outputs}  ({msg['latency_ms']['total']:.1f} ms){note}", flush=True)
        received += 1
    sock.close(linger=0)


if __name__ == "__main__":
    main()
