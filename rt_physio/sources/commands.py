"""The sources' commands: ``rt-physio devices`` (what can be read here) and ``rt-physio replay``.

:func:`register` adds both subcommands; ``rt_physio.cli.build_parser`` calls it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from types import FrameType
from typing import TextIO

from rt_physio.checks import int_arg, number_arg
from rt_physio.errors import ConfigError

__all__ = ["register"]

log = logging.getLogger(__name__)


def _labels(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``devices`` and ``replay`` subcommands to ``sub``."""
    devices = sub.add_parser("devices", help="list visible LSL streams, BrainFlow boards and device profiles")
    devices.add_argument("--ble", action="store_true", help="also scan for Bluetooth LE devices (Polar H10)")
    devices.add_argument("--wait", type=number_arg(), default=1.0, metavar="S",
                         help="seconds to listen for LSL streams (and BLE advertisements)")
    devices.set_defaults(handler=_cmd_devices)

    replay = sub.add_parser(
        "replay", help="replay a recording into LSL outlets in real time",
        description="Replay a recording (EDF/BDF, WFDB, XDF, CSV, DREAMER.mat, an rt-physio run --record folder) "
                    "into real LSL outlets: one per "
                    "modality, named NAME-EEG and NAME-ECG, with channel labels and µV units, on a drift-free "
                    "schedule (sample k at start + k/fs/speed, stamped with that time). Read it with "
                    "`rt-physio run --eeg lsl:NAME-EEG --ecg lsl:NAME-ECG`.")
    replay.add_argument("file", metavar="FILE", help="the recording (a WFDB record may be named without suffix, "
                        "or by its .hea, .dat or .mat file)")
    replay.add_argument("--name", help="stream name stem (default: the file name without suffix)")
    replay.add_argument("--speed", type=number_arg(), default=1.0, help="playback speed (default: 1, real time)")
    replay.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    replay.add_argument("--chunk", type=int_arg(), help="samples per push (default: about 20 ms)")
    replay.add_argument("--duration", type=number_arg(), metavar="S", help="replay only the first S seconds")
    replay.add_argument("--wait", type=number_arg(), metavar="S",
                        help="wait up to S seconds for a consumer before starting")
    replay.add_argument("--rate", type=number_arg(), metavar="HZ", help="sampling rate of a CSV file")
    replay.add_argument("--unit", help="unit of a CSV file's columns (default: EEG µV, ECG mV)")
    replay.add_argument("--subject", type=int_arg(), help="DREAMER: subject 1-23")
    replay.add_argument("--clip", type=int_arg(), help="DREAMER: film clip 1-18")
    replay.add_argument("--part", choices=["stimuli", "baseline"], default="stimuli",
                        help="DREAMER: the film clip or its neutral baseline")
    replay.add_argument("--session", help="rt_physio recording: the session to replay (when it has several)")
    replay.add_argument("--eeg-channels", type=_labels, metavar="A,B,…", help="labels to replay as EEG")
    replay.add_argument("--ecg-channels", type=_labels, metavar="A,B,…", help="labels to replay as ECG")
    replay.set_defaults(handler=_cmd_replay)


def _cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.clock import local_clock
    from rt_physio.io import read_recording
    from rt_physio.sources.replay import Player

    recording = read_recording(args.file, rate=args.rate, subject=args.subject, clip=args.clip,
                               part=args.part if args.subject is not None else "stimuli", unit=args.unit,
                               eeg_channels=args.eeg_channels, ecg_channels=args.ecg_channels,
                               duration=args.duration, session=args.session)
    player = Player(recording, name=args.name, speed=args.speed, loop=args.loop, chunk=args.chunk)
    out.write(f"replaying {recording.describe()} at {args.speed:g}x{' in a loop' if args.loop else ''}\n")
    for modality, track in player.tracks.items():
        out.write(f"  {modality.upper()} → LSL stream {track.name!r} (type {modality.upper()}, "
                  f"{track.signal.n_channels} ch, {track.signal.sfreq:g} Hz, source_id {track.source_id!r})\n")
    out.flush()

    def handle(signum: int, frame: FrameType | None) -> None:
        player.stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.wait is not None:
            first = next(iter(player.tracks.values()))
            if not first.outlet.wait_for_consumers(args.wait):
                raise ConfigError(f"No consumer subscribed to {first.name!r} within {args.wait:g} s.")
        t0 = player.start()
        while not player.wait(0.5):
            pass
        if player.failure is not None:
            raise ConfigError(f"the replay stopped: {player.failure}")
        end = player.finished_at
        pushed = {m: t.next_index for m, t in player.tracks.items()}
        time.sleep(0.2)  # let consumers drain the last chunk before the outlets go
    finally:
        player.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = ", ".join(f"{m.upper()} {n} samples" for m, n in pushed.items())
    scheduled = max(player.due(m, n - 1) for m, n in pushed.items() if n) - t0 if any(pushed.values()) else 0.0
    out.write(f"done: {counts}; last sample pushed {end - t0:.3f} s after the first was due (scheduled "
              f"{scheduled:.3f} s); latest push {1e3 * player.max_late:.1f} ms after its due time; "
              f"{local_clock() - t0:.1f} s in all\n")
    return 0


def _cmd_devices(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.sources.devices import format_report, list_devices

    out.write(format_report(list_devices(args.wait, ble=args.ble)) + "\n")
    return 0
