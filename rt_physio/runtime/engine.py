"""The engine: sessions + one inference executor + publishers, started and stopped as one unit."""

from __future__ import annotations

import functools
import gc
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.clock import local_clock
from rt_physio.config import EngineConfig, SessionConfig
from rt_physio.dsp import StreamProcessor
from rt_physio.errors import ConfigError, SourceLostError
from rt_physio.io.channels import label_key
from rt_physio.nn.preprocessing import build_processor
from rt_physio.nn.registry import LoadedModel, load_model
from rt_physio.nn.smoothing import OutputSmoother
from rt_physio.nn.spec import ModelSpec
from rt_physio.publish.base import Publisher
from rt_physio.publish.control import ControlServer
from rt_physio.publish.publishers import open_publisher
from rt_physio.publish.schema import Format, Prediction, encode
from rt_physio.runtime.commands import engine_commands
from rt_physio.runtime.executor import InferenceExecutor, InferenceResult, resolve_device
from rt_physio.runtime.heap import HeapTrimmer
from rt_physio.runtime.preview import Previewer
from rt_physio.runtime.runners import BUCKETS, bucket_for
from rt_physio.runtime.session import ModalityStream, Session, Window
from rt_physio.runtime.status import StatusReporter
from rt_physio.runtime.tracing import SampleLog
from rt_physio.sources.base import MODALITIES, Chunk, Modality, Source, StreamInfo
from rt_physio.sources.spec import open_source, parse_spec

if TYPE_CHECKING:
    from rt_physio.publish.recorder import Recorder

__all__ = ["Engine", "match_channels", "processor_for"]

log = logging.getLogger(__name__)

PredictionCallback = Callable[[Prediction], None]


def match_channels(expected: Sequence[str], available: Sequence[str], who: str, what: str) -> NDArray[np.intp] | None:
    """Which columns of a stream feed a model that names its channels (None: all, in stream order).

    Labels are compared without case and without an ``EEG``/``ECG`` prefix. A stream holding every named channel
    is reordered (and trimmed) to the model's order. A stream with the right count but other names (``ch1``…)
    is used in its own order, with a warning. Anything else is a :class:`ConfigError` naming what is missing.
    """
    if not expected:
        return None
    names = [label_key(c) for c in available]
    wanted = [label_key(c) for c in expected]
    if all(w in names for w in wanted):
        idx = np.array([names.index(w) for w in wanted], dtype=np.intp)
        if len(idx) == len(names) and np.array_equal(idx, np.arange(len(names))):
            return None
        log.info("%s: using channels %s of %s in the model's order", what, list(expected), list(available))
        return idx
    if len(expected) == len(available):
        log.warning("%s: channel names %s do not match %s's %s; using the stream's order", what, list(available),
                    who, list(expected))
        return None
    missing = [c for c, w in zip(expected, wanted, strict=True) if w not in names]
    raise ConfigError(f"{who} expects {len(expected)} channels ({', '.join(expected)}); {what} delivers "
                      f"{len(available)} ({', '.join(available)}) and lacks {', '.join(missing)}.")


def processor_for(spec: ModelSpec, modality: Modality, info: StreamInfo, line_freq: float,
                  window_s: float, n_channels: int | None = None) -> StreamProcessor:
    """Set up one stream's filters and resampler from the model's preprocessing and the stream's rate.

    ``n_channels`` overrides the stream's channel count (when only some of its channels feed the model). The
    processor comes from :func:`rt_physio.nn.preprocessing.build_processor`, as in training.

    Raises
    ------
    ConfigError
        The stream is too slow to carry any of the model's band-pass (whose upper edge is otherwise clipped below
        the stream's Nyquist frequency, with a warning).
    """
    preprocessing = spec.preprocessing.get(modality)
    if preprocessing is not None and preprocessing.bandpass is not None:
        low, high = preprocessing.bandpass
        top = 0.9 * info.sfreq / 2  # StreamProcessor clips the upper edge here
        if low >= top:
            what = modality.upper()
            raise ConfigError(f"The {what} stream {info.name!r} runs at {info.sfreq:g} Hz, too slow for model "
                              f"{spec.name!r}: its {what} band-pass starts at {low:g} Hz (up to {high:g} Hz), and a "
                              f"{info.sfreq:g}-Hz stream carries at most {top:g} Hz. Is its rate right (--rate / "
                              "rate= of a CSV file)?")
    return build_processor(preprocessing, info.sfreq, n_channels or info.n_channels,
                           line_freq=line_freq, fs_out=spec.sfreq, capacity_s=max(30.0, 4 * window_s))


class Engine:
    """Run every configured session on one executor and publish each prediction.

    Construction resolves every source and loads the model, so user errors (unknown stream, bad profile,
    missing model) surface here, before anything starts.

    Parameters
    ----------
    config : EngineConfig
        What to run.
    on_prediction : callable, optional
        Called with each :class:`Prediction` after it is published (the CLI prints it); must not block.
    model : LoadedModel, optional
        An already loaded model (otherwise ``config.model`` is loaded).
    """

    def __init__(self, config: EngineConfig, on_prediction: PredictionCallback | None = None,
                 model: LoadedModel | None = None) -> None:
        self.config = config
        resolve_device(config.device)  # a CUDA request on a CPU-only machine fails before any device is opened
        self.model = model if model is not None else load_model(config.model)
        if not self.model.spec.trained:
            log.warning("model %r is UNTRAINED (random weights): its outputs carry no meaning", self.model.spec.name)
        self._on_prediction = on_prediction
        self._stop = threading.Event()
        self._opened: list[Source] = []
        self.publishers: list[Publisher] = []
        self.recorder: Recorder | None = None
        self.control: ControlServer | None = None
        self.sessions: dict[str, Session] = {}
        self._drop_counters: dict[str, Callable[[], int]] = {}  # outside parts' drops (the CLI's line printer)
        self._stopped = False
        self.started_at = float("nan")  # set by start(); control commands wait for it
        self.commands = engine_commands(self)  # before the transports that dispatch to it
        # seconds per prediction to encode it and hand it to every publisher and the recorder (after the trace's
        # "serialised" mark, so not in the message's own latency_ms)
        self.handoff_s = SampleLog(100_000)
        #: gives the allocator's free pages back to the system every 30 s, from the watchdog (see runtime/heap.py)
        self.heap = HeapTrimmer(30.0)
        try:
            # A SPEC that does not parse is named before any port is bound; then publishers: a busy port or a
            # refused MQTT password is reported before any device is opened.
            for sc in config.sessions:
                for modality in MODALITIES:
                    text = getattr(sc, modality)
                    if text is not None:
                        parse_spec(text)
            session_ids = [sc.session_id for sc in config.sessions]
            self.publishers = [open_publisher(url, session_ids, insecure=config.insecure,
                                              on_control=self.handle_control) for url in config.publish]
            if config.control is not None:
                self.control = ControlServer(config.control, handler=self.handle_control, session_ids=session_ids,
                                             insecure=config.insecure)
            for session_config in config.sessions:
                self.sessions[session_config.session_id] = self._build_session(session_config)
            self.executor = InferenceExecutor(
                self.model, self._on_result, device=config.device, threads=config.threads,
                backend=config.backend, precision=config.precision,  # type: ignore[arg-type]  # validated
                max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1e3, inline=config.inline)
            self._setup_calibration()
            if config.record is not None:
                self.recorder = self._make_recorder(config.record)
        except BaseException:
            self._close_all()
            raise
        self.predictions = 0
        self.first_prediction_at = float("nan")
        #: outputs.smoothing_s (or --smoothing): one running mean per session (rt_physio.nn.smoothing)
        self.smoothing_s = (config.smoothing_s if config.smoothing_s is not None
                            else self.model.spec.smoothing_s)
        self._smoothers = ({sid: OutputSmoother(self.smoothing_s, self.model.spec.activation) for sid in self.sessions}
                           if self.smoothing_s > 0 else {})
        self._smoothed_head: dict[str, object] = {}  # per session: the calibration state its running mean is of
        #: liveness per modality → rt_physio.status/1 messages (the watchdog ticks it; see runtime/status.py)
        self.status = StatusReporter(self.sessions, self._publish_status, model_name=self.model.spec.name,
                                     every=config.status_every_s, give_up_after=config.give_up_after_s,
                                     drops=self.drop_counts, dropped=lambda: self.executor.dropped,
                                     queues=self.queue_depths, memory=self.heap.report)
        #: --preview: decimated filtered streams for displays, from a thread of its own (see runtime/preview.py)
        self.preview = Previewer(self.sessions, self._publish_preview) if config.preview else None

    # -- construction ------------------------------------------------------------------------------------------
    def _build_session(self, sc: SessionConfig) -> Session:
        spec = self.model.spec
        streams: dict[Modality, ModalityStream] = {}
        for modality in MODALITIES:
            source_spec = getattr(sc, modality)
            if source_spec is None:
                continue
            if modality not in spec.modalities:
                raise ConfigError(
                    f"Model {spec.name!r} has no {modality.upper()} encoder (it reads {', '.join(spec.modalities)}); "
                    f"pass --{modality} none or choose another model."
                )
            source = open_source(source_spec, modality, resolve_timeout=self.config.resolve_timeout_s)
            self._opened.append(source)
            select = match_channels(spec.channels.get(modality, ()), source.info.channel_names,
                                    f"Model {spec.name!r}", f"{source_spec!r} ({modality.upper()})")
            processor = processor_for(spec, modality, source.info, self.config.line_freq, self.config.window_s,
                                        n_channels=None if select is None else len(select))
            streams[modality] = ModalityStream(modality, source, processor, select=select, spec=source_spec)
            log.info("session %s: %s from %s (%s, %d ch at %g Hz)", sc.session_id, modality.upper(), source_spec,
                     source.info.name, source.info.n_channels, source.info.sfreq)
        if not streams:
            raise ConfigError(f"Session {sc.session_id!r}: none of its modalities is read by model {spec.name!r}.")
        tap = functools.partial(self._record_chunk, sc.session_id) if self.config.record is not None else None
        return Session(sc.session_id, streams, window_s=self.config.window_s, hop_s=self.config.hop_s,
                       on_window=self._on_window, sfreq=spec.sfreq, scale_uv=spec.scale_uv,
                       missing_after=self.config.missing_after_s, line_freqs=(self.config.line_freq,), on_chunk=tap,
                       stall_after=self.config.stall_after_s)

    def _make_recorder(self, root: str) -> Recorder:
        from rt_physio import __version__
        from rt_physio.publish.recorder import Recorder

        spec = self.model.spec
        streams = {sid: {m: st.source.info for m, st in sess.streams.items()} for sid, sess in self.sessions.items()}
        info: dict[str, Any] = {
            "rt_physio_version": __version__, "window_s": self.config.window_s, "hop_s": self.config.hop_s,
            "model": {"name": spec.name, "sha256": self.model.sha256, "trained": spec.trained},
        }
        return Recorder(root, streams, spec.outputs, info=info)

    # -- hot path ----------------------------------------------------------------------------------------------
    def _on_window(self, window: Window) -> None:
        self.executor.submit(window)

    def _record_chunk(self, session_id: str, modality: Modality, chunk: Chunk) -> None:
        recorder = self.recorder
        if recorder is not None:
            recorder.record_chunk(session_id, modality, chunk)

    def _on_result(self, window: Window, result: InferenceResult) -> None:
        spec = self.model.spec
        quality: dict[str, float] = {m: q for m, q in window.wait_quality().items()}
        outputs, smoothing = self._smooth(window, result)
        prediction = Prediction(
            session=window.session, seq=window.seq, t_start=window.t_start, t_end=window.t_end,
            t_wall=time.time(), outputs=outputs, model_name=spec.name, model_sha256=self.model.sha256,
            trained=spec.trained, modalities=list(window.modalities), quality=quality,
            calibration=result.calibration, nonfinite=result.nonfinite, smoothing=smoothing,
            unused=list(result.unused),
        )
        window.trace.serialised = local_clock()
        prediction.latency_ms = window.trace.to_ms()
        message = prediction.to_message()
        payloads: dict[Format, bytes] = {}
        for publisher in self.publishers:  # each format is encoded once, whatever the number of publishers
            fmt = publisher.format
            payload = payloads.get(fmt)
            if payload is None:
                payload = payloads[fmt] = encode(message, fmt)
            publisher.prediction(window.session, payload)
        if self.recorder is not None:
            self.recorder.record_prediction(prediction)
        self.handoff_s.append(local_clock() - window.trace.serialised)
        self.predictions += 1
        if self.predictions == 1:
            self.first_prediction_at = local_clock()
        if self._on_prediction is not None:
            self._on_prediction(prediction)

    def _smooth(self, window: Window, result: InferenceResult) -> tuple[dict[str, float], dict[str, Any] | None]:
        """Return the outputs to publish: the window's own, or their running mean over ``smoothing_s`` seconds.

        The mean restarts when the session's calibration state changes (the calibrated head's outputs are not
        mixed with the uncalibrated ones) and skips windows without outputs (calibrating, not finite). A window with
        no usable input stays out of the mean and publishes the mean of the usable windows before it (its own
        output when there is none; ``windows`` is then 0), see :mod:`rt_physio.nn.smoothing`.
        """
        smoother = self._smoothers.get(window.session)
        if smoother is None:
            return result.probabilities, None
        head = None if result.calibration is None else result.calibration.get("state")
        if head != self._smoothed_head.get(window.session, head):  # calibrating → calibrated, or a recalibration
            smoother.reset()
        self._smoothed_head[window.session] = head
        if not result.probabilities:
            return result.probabilities, None
        names = list(result.probabilities)
        mean = smoother.update(window.t_end, [result.probabilities[n] for n in names],
                               usable=not result.nothing_usable)
        smoothed = {n: float(v) for n, v in zip(names, mean, strict=True)}
        return smoothed, {"seconds": smoother.seconds, "windows": len(smoother),
                          "window_outputs": dict(result.probabilities)}

    def _publish_status(self, session_id: str, message: dict[str, Any]) -> None:
        for publisher in self.publishers:
            publisher.status(session_id, message)

    def _publish_preview(self, session_id: str, message: dict[str, Any]) -> None:
        for publisher in self.publishers:
            preview = getattr(publisher, "preview", None)  # optional: ZeroMQ and MQTT publishers have it
            if preview is not None:
                preview(session_id, message)

    def count_drops(self, name: str, counter: Callable[[], int]) -> None:
        """Report an outside part's drops (e.g. the CLI's line printer) under ``name`` in :meth:`drop_counts`.

        ``counter()`` is called on whatever thread asks for the counts: it must be cheap and never block.
        """
        self._drop_counters[name] = counter

    def drop_counts(self, session_id: str) -> dict[str, int]:
        """Every loss that concerns ``session_id``, by where it happened (for the status message).

        Keys, always present (0 where that part is not in use): ``executor`` (this session's windows dropped
        because inference fell behind), ``recorder`` (chunks and predictions the recorder's writer had no room
        for), ``zmq`` (messages ZeroMQ refused, all sessions: they share the socket), ``mqtt`` (this session's
        predictions dropped from full MQTT buffers), ``mqtt_control`` (this session's incoming control messages
        dropped from a full inbox), ``nonfinite_outputs`` (this session's windows whose model output was not
        finite: published without outputs), ``no_usable_input`` (this session's windows in which the model could
        use none of the modalities: published with ``unused_modalities`` and a warning, their own output kept out of
        any running mean); then one key per :meth:`count_drops` counter (``printer``: lines the CLI could not
        print, all sessions).
        """
        counts = {"executor": 0, "recorder": 0, "zmq": 0, "mqtt": 0, "mqtt_control": 0, "nonfinite_outputs": 0,
                  "no_usable_input": 0}
        executor = getattr(self, "executor", None)  # None while the engine is being built
        if executor is not None:
            counts["executor"] = executor.dropped_by_session.get(session_id, 0)
            counts["nonfinite_outputs"] = executor.nonfinite_by_session.get(session_id, 0)
            counts["no_usable_input"] = executor.nothing_usable_by_session.get(session_id, 0)
        if self.recorder is not None:
            counts["recorder"] = self.recorder.dropped_for(session_id)
        for publisher in self.publishers:
            per_session = getattr(publisher, "drop_counts", None)
            if per_session is not None:  # MQTT: one buffer and one control inbox per session
                for key, n in per_session(session_id).items():
                    counts[key] = counts.get(key, 0) + n
            else:  # ZeroMQ: one socket for every session
                counts["zmq"] += publisher.dropped
        for name, counter in self._drop_counters.items():
            counts[name] = counter()
        return counts

    def queue_depths(self, session_id: str) -> dict[str, int]:
        """Return what waits in the engine's bounded queues now, as seen by ``session_id`` (for the status).

        Keys, always present (0 where that part is not in use): ``executor`` (windows waiting for inference, all
        sessions), ``recorder`` and ``recorder_bytes`` (items and bytes waiting for the recorder's writer, all
        sessions), ``mqtt`` (this session's predictions buffered for the broker, summed over MQTT publishers).
        A queue that keeps growing, or stays near its bound, is where the engine is falling behind.
        """
        depths = {"executor": 0, "recorder": 0, "recorder_bytes": 0, "mqtt": 0}
        executor = getattr(self, "executor", None)
        if executor is not None:
            depths["executor"] = executor.pending
        if self.recorder is not None:
            depths["recorder"] = self.recorder.queued
            depths["recorder_bytes"] = self.recorder.queued_bytes
        for publisher in self.publishers:
            queued = getattr(publisher, "queued", None)
            if queued is not None:  # MQTT: one buffer per session
                depths["mqtt"] += queued(session_id)
        return depths

    def handle_control(self, session_id: str, command: Mapping[str, Any]) -> dict[str, Any]:
        """Carry out one control command for a session (called on a transport thread; see :mod:`.commands`)."""
        return self.commands(session_id, command)

    def _setup_calibration(self) -> None:
        spec = self.model.spec
        seconds = self.config.calibrate_s
        if not self.executor.calibratable:
            if seconds is not None:
                raise ConfigError(f"--calibrate needs a model with a calibrated head ([calibration] in model.toml); "
                                  f"{spec.name!r} has none. Try --model eegmat-baseline.")
            return
        if seconds is None and spec.calibration is not None and spec.calibration.expects:
            log.warning("model %r is meant to run calibrated (it was trained on %g-s baselines); without "
                        "--calibrate (or a calibrate control message) it uses its uncalibrated head", spec.name,
                        spec.calibration.seconds)
        for session_id in self.sessions:
            calibration = self.executor.add_calibration(session_id, self.config.window_s)
            if seconds is not None:
                calibration.start(seconds)  # from the first window's start

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Warm the model up, start the executor and every session's sources."""
        self.started_at = local_clock()
        # Build the runner for every session shape now (traces / CUDA graphs), batch buckets included, so the
        # first live windows do not pay for it.
        per_patch = round(self.model.spec.sfreq)
        shapes: dict[tuple[tuple[Modality, tuple[int, ...]], ...], int] = {}
        for session in self.sessions.values():
            shape: tuple[tuple[Modality, tuple[int, ...]], ...] = tuple(
                (m, (s.source.info.n_channels if s.select is None else len(s.select), session.n_patches, per_patch))
                for m, s in session.streams.items())
            shapes[shape] = shapes.get(shape, 0) + 1
        for shape, count in shapes.items():
            buckets = tuple(b for b in BUCKETS if b <= bucket_for(count, self.config.max_batch))
            warm = self.executor.warm_up(dict(shape), batches=buckets)
            log.info("model %s on %s (%s): %.1f ms per window after warm-up", self.model.spec.name,
                     self.executor.device, self.executor.runner.name, 1e3 * warm)
            # A modality that drops out changes the shape: build those too, or the first window without it would
            # build a trace on the live path (seconds of GIL-heavy work that starves the acquisition threads).
            for subset in itertools.combinations(shape, len(shape) - 1):
                if subset:
                    self.executor.warm_up(dict(subset), repeats=1)
        self.executor.start()
        # Everything allocated so far (model, traces, modules) lives as long as the engine: move it out of the
        # cyclic collector's reach, so that a full collection on the live path scans only what is new. No
        # gc.collect() first: it runs the finalizers of start-up garbage on this thread, and in one replay run
        # that collection blocked for over 9 s, before any source had started.
        gc.freeze()
        for session in self.sessions.values():
            session.start()
        self.status.start()
        if self.preview is not None:
            self.preview.start()

    def run(self, duration_s: float | None = None) -> None:
        """Start, then block until ``duration_s`` passes (or :meth:`request_stop`), then stop cleanly.

        Raises
        ------
        SourceLostError
            After stopping cleanly, when a modality stayed out of streaming for ``give_up_after_s`` seconds.
        """
        self.start()
        deadline = None if duration_s is None else local_clock() + duration_s
        lost = None
        try:
            while not self._stop.is_set():
                if deadline is not None and local_clock() >= deadline:
                    break
                self._stop.wait(0.1)
                lost = self._watchdog()
                if lost is not None:
                    break
        finally:
            self.stop()
        if lost is not None:
            raise lost

    def _watchdog(self) -> SourceLostError | None:
        """Cut the windows silent modalities were holding up; update liveness and publish status (main thread)."""
        for session in self.sessions.values():
            session.poll()
        self.heap.tick()
        return self.status.tick()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def stop(self) -> None:
        """Shut down in order, losing nothing that can be saved (idempotent).

        Stop the sources (no new data), let the executor finish the queued windows (their predictions are
        published and recorded), publish ``offline``, flush and close every publisher, then finish the recording.
        """
        self._stop.set()
        if self._stopped:
            return
        self._stopped = True
        for session in self.sessions.values():
            session.stop()
        if self.preview is not None:
            self.preview.stop()
        self.executor.stop()
        self.status.stop()
        self._close_all()
        gc.unfreeze()  # what start() froze is collectable again (tests and notebooks start many engines)

    def _close_all(self) -> None:
        if self.control is not None:  # no commands while the sessions shut down
            try:
                self.control.close()
            except Exception:
                log.exception("error while closing the control server")
        for source in self._opened:
            try:
                source.stop()
            except Exception:
                log.exception("error while stopping a source")
        for publisher in self.publishers:
            try:
                publisher.close()
            except Exception:
                log.exception("error while closing a publisher")
        if self.recorder is not None:
            self.recorder.close()
