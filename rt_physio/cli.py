"""The ``rt-physio`` command: ``run``, ``devices``, ``models``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from rt_physio import __version__
from rt_physio.bench import cli as bench_cli
from rt_physio.checks import number_arg
from rt_physio.console import LinePrinter
from rt_physio.dashboard import DEFAULT_BIND
from rt_physio.dashboard import cli as dashboard_cli
from rt_physio.errors import RtPhysioError
from rt_physio.sources import commands as sources_cli
from rt_physio.training import cli as training_cli

if TYPE_CHECKING:
    from rt_physio.config import EngineConfig

__all__ = ["build_parser", "format_prediction", "main"]

log = logging.getLogger("rt_physio.cli")

SPEC_HELP = ("SPEC: synthetic | brainflow:<board>[?k=v&...] | lsl:<name> | lsl:type=<type> | "
             "lsl:source_id=<id> | profile:<name> | none")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``rt-physio``."""
    parser = argparse.ArgumentParser(
        prog="rt-physio",
        description="Real-time EEG + ECG inference: LSL/BrainFlow in, CBraMod fusion model, ZeroMQ out.",
    )
    parser.add_argument("--version", action="version", version=f"rt-physio {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run live sessions and publish predictions",
                         description="Run live sessions and publish predictions. " + SPEC_HELP,
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("--config", type=Path, help="engine config TOML (sessions, model, publish URLs)")
    run.add_argument("--eeg", metavar="SPEC", help="EEG source (default: synthetic)")
    run.add_argument("--ecg", metavar="SPEC", help="ECG source (default: synthetic)")
    run.add_argument("--model", metavar="NAME|PATH", help="model folder or name in models/ (default: eegmat-fusion)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="inference device (default: auto)")
    run.add_argument("--window", type=number_arg(), metavar="S", help="window length in seconds (default: 5)")
    run.add_argument("--hop", type=number_arg(), metavar="S", help="seconds between predictions (default: 1)")
    run.add_argument("--publish", action="append", metavar="URL",
                     help="where to publish, repeatable: zmq://HOST:PORT or mqtt://[USER@]HOST[:PORT][/PREFIX] "
                          "(password in $RT_PHYSIO_MQTT_PASSWORD), options ?format=msgpack, ?qos=1, ?tls=1&cafile=… "
                          "(default: zmq://127.0.0.1:5556)")
    run.add_argument("--control", metavar="URL",
                     help="accept control commands (JSON, e.g. {\"cmd\": \"ping\"}) on a ZeroMQ REP socket at "
                          "zmq://HOST:PORT, e.g. zmq://127.0.0.1:5557; with an mqtt:// --publish URL, commands also "
                          "arrive on <prefix>/<session>/control (default: no ZeroMQ control)")
    run.add_argument("--calibrate", type=number_arg(), metavar="S",
                     help="treat the first S seconds of each session as the person's rest baseline (no outputs "
                          "meanwhile), then centre the model's features on it; needs a model with a [calibration] "
                          "table, e.g. eegmat-baseline (default: no calibration)")
    run.add_argument("--smoothing", type=number_arg(maximum=3600.0, exclusive_minimum=False), metavar="S",
                     help="publish each output as its mean (in logits) over the windows of the last S seconds of "
                          "the session, 0 for every window on its own (default: the model's outputs.smoothing_s)")
    run.add_argument("--session", metavar="ID", help="session id used in topics (default: default)")
    run.add_argument("--duration", type=number_arg(), metavar="S",
                     help="stop after S seconds (default: Ctrl-C)")
    run.add_argument("--line-freq", type=float, choices=[50.0, 60.0], help="mains frequency to notch (default: 50)")
    run.add_argument("--missing-after", type=number_arg(), metavar="S",
                     help="leave a modality out of a window when it lags this long (default: 1)")
    run.add_argument("--resolve-timeout", type=number_arg(), metavar="S",
                     help="how long to look for LSL streams (default: 5)")
    run.add_argument("--stall-after", type=number_arg(), metavar="S",
                     help="a stream with no sample for S seconds (also before its first) is 'stalled' and the "
                          "session 'degraded' in the status messages (default: 2)")
    run.add_argument("--give-up-after", type=number_arg(), metavar="S",
                     help="end the run (exit status 3, naming the source) when a stream stays out of 'streaming' "
                          "for S seconds (default: never; the session stays 'degraded' and recovers)")
    run.add_argument("--status-every", type=number_arg(), metavar="S",
                     help="publish each session's status at least every S seconds, besides on every change "
                          "(default: 5)")
    run.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: cores - 1, at least 1)")
    run.add_argument("--backend", choices=["auto", "eager", "traced", "cuda-graph"],
                     help="how the model runs (default: auto = CUDA graphs on a GPU, traced on the CPU)")
    run.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="model precision (default: fp32)")
    run.add_argument("--max-batch", type=int, metavar="N", help="largest batch across sessions (default: 64)")
    run.add_argument("--max-wait-ms", type=number_arg(exclusive_minimum=False), metavar="MS",
                     help="longest a window waits for others of its shape to batch with (default: 2)")
    run.add_argument("--no-inline", dest="inline", action="store_const", const=False, default=None,
                     help="run every window on the executor thread (default: a lone session's window runs on the "
                          "thread that cut it, on a CPU with one torch thread; saves a thread hand-over)")
    run.add_argument("--insecure", action="store_true", default=None,
                     help="allow publishing on a non-loopback address without encryption")
    run.add_argument("--record", metavar="DIR",
                     help="record raw streams and predictions to a new folder in DIR (Parquet; crash-safe)")
    run.add_argument("--quiet", action="store_true", help="do not print one line per prediction")
    run.add_argument("--preview", action="store_true", default=None,
                     help="also publish a decimated copy (<= 25 Hz per channel) of each filtered stream on "
                          "<prefix>/<session>/preview, for displays such as the dashboard (default: off)")
    run.add_argument("--dashboard", nargs="?", const=DEFAULT_BIND, metavar="HOST:PORT",
                     help=f"also serve the live dashboard page (HOST:PORT default {DEFAULT_BIND}) from a child "
                          "process that reads the engine's own --publish like any subscriber, so it never holds up "
                          "the engine (default: no dashboard)")
    run.set_defaults(handler=_cmd_run)

    # Other command groups register themselves here: each module's register(sub) adds subparsers whose
    # handler(args, out) -> int does the work.
    sources_cli.register(sub)
    sub.add_parser("models", help="list the models found in models/ folders").set_defaults(handler=_cmd_models)
    bench_cli.register(sub)
    training_cli.register(sub)
    dashboard_cli.register(sub)
    return parser


def format_prediction(msg: dict[str, Any]) -> str:
    """One console line per prediction."""
    outputs = "  ".join(f"{name} {p:.3f}" for name, p in msg["outputs"].items())
    if msg.get("nonfinite_output"):
        outputs = "no outputs: the model's output was not finite"
    elif msg.get("calibrating"):
        cal = msg.get("calibration", {})
        outputs = f"calibrating {100 * cal.get('progress', 0.0):3.0f} % of {cal.get('seconds', 0):g} s"
    elif msg.get("calibrated"):
        outputs += "  (calibrated)"
    unused = msg.get("unused_modalities")
    if unused:
        names = "+".join(unused)
        outputs += f"  (no usable input: {names})" if set(msg["modalities"]) <= set(unused) else f"  ({names} unused)"
    quality = " ".join(f"{m}:{q:.2f}" for m, q in msg["quality"].items())
    mods = "+".join(msg["modalities"])
    tag = "" if msg["model"]["trained"] else "[UNTRAINED] "
    return (f"{tag}{msg['session']} #{msg['seq']:<4d} t_end={msg['t_end']:.3f}  {outputs}  | {mods} "
            f"q({quality}) | {msg['latency_ms']['total']:.1f} ms")


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.config import EngineConfig, SessionConfig, load_engine_config

    def spec(value: str | None, default: str | None) -> str | None:
        if value is None:
            return default
        return None if value.lower() == "none" else value

    options: dict[str, Any] = {
        "model": args.model, "device": args.device, "window_s": args.window, "hop_s": args.hop,
        "publish": tuple(args.publish) if args.publish else None, "duration_s": args.duration,
        "line_freq": args.line_freq, "missing_after_s": args.missing_after,
        "resolve_timeout_s": args.resolve_timeout, "insecure": args.insecure, "record": args.record,
        "threads": args.threads,
        "backend": args.backend, "precision": args.precision, "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms, "control": args.control, "calibrate_s": args.calibrate,
        "inline": args.inline, "stall_after_s": args.stall_after, "give_up_after_s": args.give_up_after,
        "status_every_s": args.status_every, "preview": args.preview, "smoothing_s": args.smoothing,
    }
    overrides = {k: v for k, v in options.items() if v is not None}
    if args.eeg is not None or args.ecg is not None or args.session is not None:
        # With no source given, both come from the synthetic board; once the user names one real source, the
        # other is left out unless named too (mixing a real headset with synthetic ECG would mislead).
        default = "synthetic" if args.eeg is None and args.ecg is None else None
        overrides["sessions"] = (SessionConfig(session_id=args.session or "default", eeg=spec(args.eeg, default),
                                               ecg=spec(args.ecg, default)),)
    config = load_engine_config(args.config, **overrides) if args.config is not None else EngineConfig(**overrides)
    # Lines go through a printer with its own thread and bounded queue: a stdout that nobody reads (a full pipe)
    # must not stop acquisition, inference or publishing, which call `show` on their own threads.
    printer = LinePrinter(out)
    try:
        return _run_engine(args, config, printer)
    finally:
        printer.close()


def _prediction_line(prediction: Any) -> Callable[[], str]:
    return lambda: format_prediction(prediction.to_message())  # formatted on the printer's thread


def _run_engine(args: argparse.Namespace, config: EngineConfig, printer: LinePrinter) -> int:
    from rt_physio.runtime.engine import Engine

    def show(prediction: Any) -> None:
        printer.put(_prediction_line(prediction))

    dashboard = None
    if args.dashboard is not None:  # a child process, started while the engine loads its model and opens devices
        from rt_physio.dashboard.child import EngineDashboard

        dashboard = EngineDashboard(config.publish, args.dashboard, control=config.control, insecure=config.insecure)
        dashboard.start()
    try:
        engine = Engine(config, on_prediction=None if args.quiet else show)
        if dashboard is not None:
            dashboard.wait_ready()
    except BaseException:
        if dashboard is not None:
            dashboard.close()
        raise
    engine.count_drops("printer", lambda: printer.dropped)

    signals_seen = [0]

    def handle(signum: int, frame: FrameType | None) -> None:
        # SIGINT/SIGTERM: stop gracefully (flush, offline, finish the recording); a second one: stop now
        signals_seen[0] += 1
        if signals_seen[0] > 1:
            raise KeyboardInterrupt
        engine.request_stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        model = engine.model.spec
        note = " — UNTRAINED: outputs are random" if not model.trained else ""
        urls = ", ".join(config.publish)
        recording = f"; recording to {engine.recorder.path}" if engine.recorder is not None else ""
        control = f"; commands on {config.control}" if config.control is not None else ""
        page = f"; dashboard on {dashboard.url}" if dashboard is not None else ""
        printer.put(f"rt-physio {__version__}: model {model.name}{note}; publishing on {urls}{control}{recording}"
                    f"{page}; {len(config.sessions)} session(s); Ctrl-C to stop")
        engine.run(config.duration_s)
    finally:
        if dashboard is not None:
            dashboard.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for sid, session in engine.sessions.items():
        printer.put(f"session {sid}: {session.windows_cut} windows, {engine.predictions} predictions published, "
                    f"{engine.executor.dropped} dropped, missing {session.missing_counts}")
        reason = session.why_no_window()
        if reason is not None:
            log.warning("session %s: no prediction: %s", sid, reason)
    if len(engine.handoff_s):
        handoff = sorted(engine.handoff_s.values().tolist())
        p50, p99 = (1e6 * handoff[min(len(handoff) - 1, int(q * len(handoff)))] for q in (0.5, 0.99))
        dropped = sum(p.dropped for p in engine.publishers)
        printer.put(f"publishing: encode + hand-off to {len(engine.publishers)} publisher(s) p50 {p50:.0f} us, "
                    f"p99 {p99:.0f} us; {dropped} message(s) dropped by publishers")
    if engine.recorder is not None:
        rec = engine.recorder
        printer.put(f"recording: {rec.path} ({rec.chunks} chunks, {rec.predictions} predictions, {rec.dropped} "
                    f"dropped, {rec.write_errors} write errors)")
    if printer.dropped:
        printer.put(f"printer: {printer.dropped} line(s) not printed (the output was not read fast enough); "
                    "publishing was not affected")
    return 0


def _cmd_models(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.nn.registry import list_models

    models = list_models()
    if not models:
        out.write("no models found\n")
    for spec in models:
        state = "trained" if spec.trained else "UNTRAINED"
        out.write(f"{spec.name:24s} {state:9s} inputs={'+'.join(spec.modalities)} outputs={','.join(spec.outputs)} "
                  f"({spec.path})\n")
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``rt-physio``; returns the exit status (2 for user errors, 3 for a source given up on).

    Both are shown as ``rt-physio: error: …`` without a traceback.
    """
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    stream = sys.stdout if out is None else out
    handler: Callable[[argparse.Namespace, TextIO], int] = args.handler
    try:
        return handler(args, stream)
    except RtPhysioError as exc:
        sys.stderr.write(f"rt-physio: error: {exc}\n")
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
