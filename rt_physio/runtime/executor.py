"""The inference executor: one thread owns the model and the device and runs every window of every session.

Sessions hand windows over with :meth:`InferenceExecutor.submit`, which never blocks. Windows of the same shape
(modalities present, channels, patches) are batched (see :mod:`rt_physio.runtime.batching`); the batch runs on
a runner (:mod:`rt_physio.runtime.runners`: a traced graph on the CPU, CUDA-graph replay on a GPU, eager as the
fallback). A calibratable model (:mod:`rt_physio.nn.calibration`) runs in two halves: the runner computes its
features, then its small head runs on each row, on features centred on the person's baseline for a calibrated
session. Fixed-shape runners pad a batch up to its bucket by repeating its last real row; rows are
independent in eval mode, so padding cannot change real rows (tested). When inference cannot keep up, the
oldest waiting window is dropped, counted and logged — a stale estimate is worth less than a fresh one.

Run to completion. Handing a window to the executor thread costs a thread wake-up and a fight for the GIL
(~0.2–0.4 ms on a 2-core VM, measured). When batching could add nothing — the queue is empty, no other session
sends windows of this shape, and no batch is running — a window is run on the thread that cut it, inside
:meth:`InferenceExecutor.submit`; its quality score then goes to the executor's quality thread, so it is still
computed while the model runs. This is on by default on the CPU with one intra-op thread (``inline=None``);
with several OpenMP threads every calling thread would get its own thread team, and a CUDA device is
thread-bound, so there the executor thread runs everything.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from rt_physio.clock import local_clock
from rt_physio.errors import ConfigError, ModelError
from rt_physio.nn.calibration import as_numpy, is_calibratable
from rt_physio.nn.registry import LoadedModel
from rt_physio.runtime.batching import BatchQueue
from rt_physio.runtime.calibration import CalibrationStep, SessionCalibration
from rt_physio.runtime.runners import Backend, Precision, Runner, ShapeKey, bucket_for, make_runner
from rt_physio.runtime.session import Window
from rt_physio.sources.base import MODALITIES, Modality

__all__ = ["InferenceExecutor", "InferenceResult", "resolve_device"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """Probabilities for one window, one per model output name (none while calibrating, or when not finite).

    ``calibration`` is None for a session without calibration, else ``{"state": "calibrating" | "calibrated",
    ...}`` with the baseline's length, progress or window count. ``unused`` lists the window's modalities that the
    model found unusable and left out (a model that reports presence flags: flat EEG, an ECG without plausible
    beats); with every modality unused (``nothing_usable``) the output is the model's output for no input, which
    says nothing.
    """

    probabilities: dict[str, float]
    calibration: dict[str, Any] | None = None
    nonfinite: bool = False  # the model's output was NaN or infinite: ``probabilities`` is empty
    unused: tuple[Modality, ...] = ()
    nothing_usable: bool = False  # every modality of the window is in ``unused``


class _FeaturesOut(nn.Module):
    """A calibratable model's feature half as one tensor ``(B, F + 2)``: features, then the presence flags."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.traceable = getattr(module, "traceable", True)

    def forward(self, eeg: torch.Tensor | None = None, ecg: torch.Tensor | None = None) -> torch.Tensor:
        feats, present = self.module.features(eeg, ecg)  # type: ignore[operator]  # a Calibratable
        return torch.cat((feats, present.to(feats.dtype)), dim=1)


ResultCallback = Callable[[Window, InferenceResult], None]

#: What usually makes a modality unusable to a model with presence flags (for the log).
_UNUSABLE: dict[Modality, str] = {"eeg": "a flat EEG", "ecg": "no plausible heartbeats, 30-220 bpm, in the ECG"}

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "softmax": lambda logits: torch.softmax(logits, dim=-1),
}


def resolve_device(device: str) -> torch.device:
    """Turn ``auto | cpu | cuda[:N]`` into a torch device, with a clear error when CUDA is asked for but absent."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device} was requested but this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu or auto."
            )
        return torch.device(device)
    raise ConfigError(f"The 'device' parameter must be one of auto, cpu, cuda, cuda:N; got {device!r}.")


def window_key(window: Window) -> ShapeKey:
    """Return the batching key of a window."""
    return ShapeKey.of({m: tuple(x.shape) for m, x in window.inputs.items()})


class InferenceExecutor:
    """Run windows through a model on a dedicated thread, batching windows of the same shape.

    Parameters
    ----------
    model : LoadedModel
        The model; the executor moves it to ``device`` and owns it from then on.
    on_result : callable, optional
        Called with each window and its result, on the executor thread or, for a window run inline, on the
        thread that submitted it; never for two batches at once. Must not block.
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    max_batch : int
        Largest batch (buckets 1, 2, 4, … up to this).
    max_wait_s : float
        How long the oldest window of a batch may wait for more windows of its shape (only while some session
        known to send that shape is not in the batch yet).
    max_queue : int
        Windows waiting in total before the oldest is dropped.
    threads : int or None
        Intra-op CPU threads for torch. None: one per core minus one (at least one), leaving a core to the
        acquisition and publishing threads; OpenMP workers that share a core with them spin and stall.
    backend : str
        ``auto`` (CUDA graphs on a GPU, traced on the CPU), ``eager``, ``traced`` or ``cuda-graph``.
    precision : str
        ``fp32``, ``bf16`` or ``fp16`` weights and activations (outputs are always float32 probabilities).
    inline : bool or None
        Run a window on the submitting thread when batching could add nothing (module docstring). None: on a
        CPU device with one intra-op thread.
    """

    def __init__(self, model: LoadedModel, on_result: ResultCallback | None = None, *, device: str = "cpu",
                 max_batch: int = 64, max_wait_s: float = 0.002, max_queue: int = 256, threads: int | None = None,
                 backend: Backend = "auto", precision: Precision = "fp32", inline: bool | None = None) -> None:
        if max_batch < 1:
            raise ConfigError(f"The 'max_batch' parameter must be at least 1, got {max_batch}.")
        if not 0 <= max_wait_s <= 1:
            raise ConfigError(f"The 'max_wait' parameter must be in [0, 1] seconds, got {max_wait_s}.")
        if model.spec.activation not in _ACTIVATIONS:
            raise ModelError(
                f"{model.spec.path / 'model.toml'}: outputs.activation {model.spec.activation!r} does not give "
                f"probabilities; rt-physio run needs one of {sorted(_ACTIVATIONS)}."
            )
        self.device = resolve_device(device)
        self.model = model
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._threads = threads if threads is not None else max(1, (os.cpu_count() or 1) - 1)
        torch.set_num_threads(self._threads)
        # A calibratable model runs in two halves: the runner computes features (encoders: traced / CUDA graph),
        # then the small head runs per row, on centred features for calibrated sessions.
        self.calibratable = is_calibratable(model.module)
        runner_module = _FeaturesOut(model.module) if self.calibratable else model.module
        self.runner: Runner = make_runner(runner_module, self.device, backend, precision)
        self.calibrations: dict[str, SessionCalibration] = {}
        self._activation = _ACTIVATIONS[model.spec.activation]
        self._on_result = on_result
        self._queue: BatchQueue[ShapeKey, tuple[Window, Future[InferenceResult]]] = BatchQueue(max_queue,
                                                                                               local_clock)
        self._thread = threading.Thread(target=self._run, name="executor", daemon=True)
        self.inline = (self.device.type == "cpu" and self._threads == 1) if inline is None else inline
        self._run_lock = threading.Lock()  # one batch at a time, on the executor thread or a submitting one
        self._quality: queue.SimpleQueue[Window | None] = queue.SimpleQueue()
        self._quality_thread = threading.Thread(target=self._score_quality, name="quality", daemon=True)
        self.completed = 0
        self.failed = 0
        self.dropped_by_session: Counter[str] = Counter()  # windows dropped because inference fell behind
        self.nonfinite_by_session: Counter[str] = Counter()  # windows whose model output was NaN or infinite
        self.unused_by_session: Counter[str] = Counter()  # windows with a modality the model could not use
        self.nothing_usable_by_session: Counter[str] = Counter()  # windows with no modality the model could use
        self._counts_lock = threading.Lock()  # sessions' threads drop windows concurrently
        self.batches = 0
        self.inline_batches = 0

    @property
    def dropped(self) -> int:
        """Windows dropped because inference fell behind."""
        return self._queue.dropped

    @property
    def pending(self) -> int:
        """Windows waiting for inference."""
        return len(self._queue)

    def start(self) -> None:
        """Start the executor thread (and the quality thread of inline runs)."""
        self._thread.start()
        if self.inline:
            self._quality_thread.start()

    def warm_up(self, shapes: Mapping[Modality, tuple[int, ...]], batches: tuple[int, ...] = (1,),
                repeats: int = 2) -> float:
        """Build and exercise the runner for windows of these per-modality (C, N, 200) shapes.

        Call before :meth:`start`. Returns the duration of the last batch-1 run in seconds.
        """
        key = ShapeKey.of(dict(shapes))
        duration = float("nan")
        for size in batches:
            inputs = [torch.zeros((size, *shapes[m]), dtype=torch.float32, device=self.device)
                      for m in key.modalities]
            for _ in range(repeats):
                t0 = local_clock()
                self.runner(key, inputs)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                if size == batches[0]:
                    duration = local_clock() - t0
        return duration

    def submit(self, window: Window) -> Future[InferenceResult]:
        """Queue a window for inference, or run it now on this thread when batching could add nothing.

        The queued case never blocks and the future resolves on the executor thread; the inline case (see the
        module docstring) returns a resolved future after one forward pass.
        """
        future: Future[InferenceResult] = Future()
        key = window_key(window)
        if (self.inline and self._thread.is_alive() and self._queue.runs_alone(key, window.session, window.trace.cut)
                and self._run_lock.acquire(blocking=False)):
            try:
                self.inline_batches += 1
                self._guarded_batch(key, [(window, future)], inline=True)
            finally:
                self._run_lock.release()
            return future
        dropped = self._queue.put(key, window.session, (window, future), window.trace.cut)
        if dropped is not None:
            old, old_future = dropped
            old_future.cancel()
            with self._counts_lock:
                self.dropped_by_session[old.session] += 1
            log.warning("executor: inference is behind, dropped window %s#%d (%d dropped so far)",
                        old.session, old.seq, self._queue.dropped)
        return future

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Finish the queued windows (up to ``drain_timeout`` s), then stop the thread."""
        self._queue.close()
        if self._thread.is_alive():
            self._thread.join(timeout=drain_timeout)
        if self._quality_thread.is_alive():
            self._quality.put(None)
            self._quality_thread.join(timeout=drain_timeout)

    # -- executor thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            got = self._queue.take(self.max_batch, self.max_wait_s, timeout=0.5)
            if got is None:
                if self._queue.closed:
                    return
                continue
            key, jobs = got
            with self._run_lock:
                self._guarded_batch(key, jobs)

    def _guarded_batch(self, key: ShapeKey, jobs: list[tuple[Window, Future[InferenceResult]]],
                       inline: bool = False) -> None:
        """Run a batch (the caller holds the run lock); a failure fails its futures, never the caller."""
        try:
            self._run_batch(key, jobs, inline)
        except Exception as exc:
            self.failed += len(jobs)
            log.exception("executor: inference failed for a batch of %d %s windows", len(jobs), key)
            for _, future in jobs:
                if not future.cancelled() and not future.done():
                    future.set_exception(exc)

    def _score_quality(self) -> None:
        """Quality thread: score the windows that run inline (their cutting thread is running the model)."""
        while (window := self._quality.get()) is not None:
            try:
                window.score_quality()
            except Exception:
                log.exception("executor: quality scoring failed for window %s#%d", window.session, window.seq)

    def _heads(self, windows: list[Window], out: torch.Tensor
               ) -> tuple[NDArray[np.float32], list[CalibrationStep | None], list[tuple[Modality, ...]]]:
        """Run the head of a calibratable model per row: calibrated sessions on centred features.

        Also returns, per row, the window's modalities that the model's presence flags say it could not use.
        """
        module = self.model.module
        feats, present = out[:, :-2], out[:, -2:]
        with torch.inference_mode():
            probs: NDArray[np.float32] = self._activation(module.classify(feats, present, False)).cpu().numpy()
        steps: list[CalibrationStep | None] = []
        centred_rows: list[int] = []
        centred: list[NDArray[np.float32]] = []
        feats_np, present_np = as_numpy(feats), as_numpy(present)
        finite = np.asarray(np.isfinite(feats_np).all(axis=1))
        for i, window in enumerate(windows):
            cal = self.calibrations.get(window.session)
            # non-finite features must not enter a baseline: one such window would poison it for good
            step = None if cal is None or not finite[i] else cal.step(window.t_start, window.t_end, feats_np[i],
                                                                      present_np[i])
            steps.append(step)
            if step is not None and step.features is not None:
                centred_rows.append(i)
                centred.append(step.features)
        if centred_rows:
            x = torch.from_numpy(np.stack(centred)).to(out.device)
            with torch.inference_mode():
                cal_logits = module.classify(x, present[centred_rows], True)
            probs[centred_rows] = self._activation(cal_logits).cpu().numpy()
        # the flags are (eeg, ecg), in MODALITIES order
        unused = [tuple(m for j, m in enumerate(MODALITIES) if m in window.inputs and not present_np[i, j] > 0.5)
                  for i, window in enumerate(windows)]
        return probs, steps, unused

    def _count_nonfinite(self, window: Window) -> None:
        self.nonfinite_by_session[window.session] += 1  # on the thread holding the run lock: one at a time
        n = self.nonfinite_by_session[window.session]
        if n == 1 or n % 100 == 0:
            log.warning("executor: session %s window #%d: the model's output is not finite (NaN or infinite; input "
                        "far out of range?), published without outputs (%d so far)", window.session, window.seq, n)

    def _count_unused(self, window: Window, unused: tuple[Modality, ...], nothing_usable: bool) -> None:
        self.unused_by_session[window.session] += 1  # on the thread holding the run lock: one at a time
        if nothing_usable:
            self.nothing_usable_by_session[window.session] += 1
        n = self.unused_by_session[window.session]
        if n == 1 or n % 100 == 0:
            why = " and ".join(_UNUSABLE[m] for m in unused)
            log.warning("session %s window #%d: the model could not use its %s (%s?); such windows are published "
                        "with 'unused_modalities' (and a warning when nothing was usable; %d so far)", window.session,
                        window.seq, "+".join(m.upper() for m in unused), why, n)

    def add_calibration(self, session_id: str, window_s: float) -> SessionCalibration:
        """Give a session a calibration state (before any window of it is submitted); returns it.

        Raises
        ------
        ModelError
            The model has no calibrated head.
        """
        if not self.calibratable:
            raise ModelError(f"Model {self.model.spec.name!r} cannot be calibrated: it has no calibrated head "
                             "([calibration] in its model.toml). Choose a calibratable model, e.g. eegmat-baseline.")
        module = self.model.module
        fallback = as_numpy(module.calibration_fallback)  # type: ignore[arg-type]  # checked by is_calibratable
        cal = SessionCalibration(session_id, as_numpy(module.feature_modality).astype(np.int64), fallback, window_s)
        self.calibrations[session_id] = cal
        return cal

    def _batch_tensors(self, key: ShapeKey, windows: list[Window], size: int) -> list[torch.Tensor]:
        tensors = []
        for modality in key.modalities:
            arrays: list[NDArray[np.float32]] = [w.inputs[modality] for w in windows]
            arrays.extend(arrays[-1:] * (size - len(arrays)))  # padding rows repeat the last real row
            tensors.append(torch.from_numpy(np.stack(arrays)).to(self.device, non_blocking=True))
        return tensors

    def _run_batch(self, key: ShapeKey, jobs: list[tuple[Window, Future[InferenceResult]]], inline: bool = False
                   ) -> None:
        windows = [w for w, _ in jobs]
        size = bucket_for(len(windows), self.max_batch) if self.runner.pads else len(windows)
        start = local_clock()
        batch = self._batch_tensors(key, windows, size)
        for window in windows:
            window.started.set()
            if inline:  # the thread that would score it is running the model: the quality thread does, meanwhile
                self._quality.put(window)
        out = self.runner(key, batch)[: len(windows)]
        unused: list[tuple[Modality, ...]] = [()] * len(windows)
        if self.calibratable:
            probs, steps, unused = self._heads(windows, out)
        else:
            probs, steps = self._activation(out).cpu().numpy(), [None] * len(windows)
        end = local_clock()
        self.batches += 1
        names = self.model.spec.outputs
        for (window, future), row, step, left_out in zip(jobs, probs, steps, unused, strict=True):
            window.trace.infer_start, window.trace.infer_end = start, end
            window.trace.batch_size = len(windows)
            calibration = None if step is None else {"state": step.state, **(step.info or {})}
            nonfinite = False
            if step is not None and step.state == "calibrating":
                outputs: dict[str, float] = {}
            elif not np.isfinite(row).all():  # JSON has no NaN: published without outputs, with a warning
                outputs, nonfinite = {}, True
                self._count_nonfinite(window)
            else:
                outputs = {name: float(p) for name, p in zip(names, row, strict=True)}
            nothing_usable = bool(left_out) and set(window.modalities) <= set(left_out)
            if left_out:
                self._count_unused(window, left_out, nothing_usable)
            result = InferenceResult(outputs, calibration, nonfinite, left_out, nothing_usable)
            self.completed += 1
            if not future.cancelled():
                future.set_result(result)
            if self._on_result is not None:
                try:
                    self._on_result(window, result)
                except Exception:
                    log.exception("executor: result callback failed for window %s#%d", window.session, window.seq)
