"""``rt-physio dashboard``: serve the live page for one or more running engines until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any, TextIO

from rt_physio.checks import number_arg
from rt_physio.dashboard import DEFAULT_BIND, DEFAULT_CONNECT

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add ``dashboard`` to the ``rt-physio`` subcommands (``sub`` is argparse's subparsers action)."""
    parser = sub.add_parser(
        "dashboard", help="serve a live web page of running engines (predictions, status, latency)",
        description="Serve a local web page that subscribes to running engines and shows every session live: "
                    "outputs, modalities, signal quality, liveness, calibration, drops and per-stage latency "
                    "(and the signal preview of engines run with --preview).")
    parser.add_argument("--connect", action="append", metavar="URL",
                        help="engine to read, repeatable: zmq://HOST:PORT (its --publish) or "
                             "mqtt://[USER@]HOST[:PORT][/PREFIX] (password in $RT_PHYSIO_MQTT_PASSWORD) "
                             f"(default: {DEFAULT_CONNECT})")
    parser.add_argument("--bind", metavar="HOST:PORT", default=DEFAULT_BIND,
                        help=f"where to serve the page (default: {DEFAULT_BIND}; another host than loopback needs "
                             "--insecure)")
    parser.add_argument("--control", metavar="URL",
                        help="an engine's --control zmq://HOST:PORT, or the mqtt://[USER@]HOST[:PORT][/PREFIX] it "
                             "publishes to (its sessions take commands there): adds a calibrate button per session")
    parser.add_argument("--insecure", action="store_true",
                        help="allow serving on a non-loopback address (no authentication, no encryption)")
    parser.add_argument("--stale-after", type=number_arg(), default=12.0, metavar="S",
                        help="show a session offline after S seconds without a message (default: 12; keep it "
                             "above the engines' --status-every)")
    parser.add_argument("--duration", type=number_arg(), metavar="S", help="stop after S seconds")
    # `rt-physio run --dashboard` runs this command as its child: it ends when the engine's end of stdin closes
    parser.add_argument("--exit-with-stdin", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_cmd_dashboard)


def _cmd_dashboard(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.dashboard.server import Dashboard

    dashboard = Dashboard(args.connect or [DEFAULT_CONNECT], args.bind, control=args.control,
                          insecure=args.insecure, stale_after=args.stale_after)
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    if args.exit_with_stdin:
        threading.Thread(target=_wait_for_eof, args=(stop,), name="dashboard-parent", daemon=True).start()
    try:
        dashboard.start()
        out.write(f"rt-physio dashboard on {dashboard.url} reading {', '.join(f.url for f in dashboard.feeds)}"
                  f"{'; calibrate via ' + args.control if args.control else ''}; Ctrl-C to stop\n")
        out.flush()
        stop.wait(args.duration)
    finally:
        dashboard.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _wait_for_eof(stop: threading.Event) -> None:
    """Set ``stop`` once stdin reaches its end (the parent engine closed it, or died)."""
    while sys.stdin.buffer.read(4096):
        pass
    stop.set()
