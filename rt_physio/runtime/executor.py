"""The inference executor: one thread owns the model and the device and runs every window.

Sessions hand windows over with :meth:`InferenceExecutor.submit`, which never blocks: the queue is bounded and,
when inference cannot keep up, the oldest waiting window is dropped and counted (a stale emotion estimate is
worth less than a fresh one). Batching across sessions and CUDA graphs come on top of this thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from rt_physio.clock import local_clock
from rt_physio.errors import ConfigError, ModelError
from rt_physio.nn.registry import LoadedModel
from rt_physio.runtime.queues import DropOldestQueue
from rt_physio.runtime.session import Window
from rt_physio.sources.base import Modality

__all__ = ["InferenceExecutor", "InferenceResult", "resolve_device"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """Probabilities for one window, one per model output name."""

    probabilities: dict[str, float]


ResultCallback = Callable[[Window, InferenceResult], None]

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


class InferenceExecutor:
    """Run windows through a model on a dedicated thread.

    Parameters
    ----------
    model : LoadedModel
        The model; the executor moves it to ``device`` and owns it from then on.
    on_result : callable
        Called on the executor thread with each window and its result; must not block.
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    max_queue : int
        Windows waiting for inference before the oldest is dropped.
    threads : int or None
        Intra-op CPU threads for torch. None: one per core minus one (at least one), leaving a core to the
        acquisition and publishing threads; OpenMP workers that have to share a core with them spin and stall
        (measured on the 2-core machine: 37 ms per window with 1 thread, over 1 s with 2 under load).
    """

    def __init__(self, model: LoadedModel, on_result: ResultCallback, *, device: str = "cpu",
                 max_queue: int = 64, threads: int | None = None) -> None:
        self.device = resolve_device(device)
        if model.spec.activation not in _ACTIVATIONS:
            raise ModelError(
                f"{model.spec.path / 'model.toml'}: outputs.activation {model.spec.activation!r} does not give "
                f"probabilities; rt-physio run needs one of {sorted(_ACTIVATIONS)}."
            )
        self._activation = _ACTIVATIONS[model.spec.activation]
        self.model = model
        self.module = model.module.to(self.device).eval()
        self._on_result = on_result
        self._queue: DropOldestQueue[Window] = DropOldestQueue(max_queue)
        self._threads = threads if threads is not None else max(1, (os.cpu_count() or 1) - 1)
        self._thread = threading.Thread(target=self._run, name="executor", daemon=True)
        self._stopping = threading.Event()
        self.completed = 0
        self.failed = 0

    @property
    def dropped(self) -> int:
        """Windows dropped because inference fell behind."""
        return self._queue.dropped

    @property
    def pending(self) -> int:
        """Windows waiting for inference."""
        return len(self._queue)

    def start(self) -> None:
        """Start the executor thread."""
        torch.set_num_threads(self._threads)
        self._thread.start()

    def warm_up(self, shapes: Mapping[Modality, tuple[int, ...]], repeats: int = 2) -> float:
        """Run dummy windows of the given per-modality shapes so the first real window is not slow.

        Returns the last warm-up's duration in seconds. Call before :meth:`start` (same thread rules apply:
        nothing else uses the model yet).
        """
        torch.set_num_threads(self._threads)
        duration = float("nan")
        for _ in range(repeats):
            t0 = local_clock()
            self._forward({m: np.zeros(s, dtype=np.float32) for m, s in shapes.items()})
            duration = local_clock() - t0
        return duration

    def submit(self, window: Window) -> None:
        """Queue a window for inference; never blocks (drops the oldest waiting window when full)."""
        dropped = self._queue.put(window)
        if dropped is not None:
            log.warning("executor: inference is behind, dropped window %s#%d (%d dropped so far)",
                        dropped.session, dropped.seq, self._queue.dropped)

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Finish the queued windows (up to ``drain_timeout`` s), then stop the thread."""
        self._queue.close()
        self._thread.join(timeout=drain_timeout)

    def _forward(self, inputs: Mapping[Modality, NDArray[np.float32]]) -> NDArray[np.float32]:
        tensors = {m: torch.from_numpy(x).unsqueeze(0).to(self.device, non_blocking=True) for m, x in inputs.items()}
        with torch.inference_mode():
            logits = self.module(eeg=tensors.get("eeg"), ecg=tensors.get("ecg"))
            probs = self._activation(logits)[0]
        out: NDArray[np.float32] = probs.float().cpu().numpy()
        return out

    def _run(self) -> None:
        names = self.model.spec.outputs
        while True:
            window = self._queue.get(timeout=0.5)
            if window is None:
                if self._queue.closed:
                    return
                continue
            window.trace.infer_start = local_clock()
            try:
                probs = self._forward(window.inputs)
            except Exception:
                self.failed += 1
                log.exception("executor: inference failed for window %s#%d", window.session, window.seq)
                continue
            window.trace.infer_end = local_clock()
            self.completed += 1
            result = InferenceResult({name: float(p) for name, p in zip(names, probs, strict=True)})
            try:
                self._on_result(window, result)
            except Exception:
                log.exception("executor: result callback failed for window %s#%d", window.session, window.seq)
