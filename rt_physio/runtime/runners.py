"""How the executor runs one batch: eager PyTorch, a traced TorchScript graph (CPU), or CUDA-graph replay.

Every runner maps a batch ``{modality: (B, C, N, 200) float32 tensor on the runner's device}`` of one
:class:`ShapeKey` to ``(B, n_outputs)`` logits. The traced and CUDA-graph runners specialise per shape
(key + batch bucket), build that specialisation on first use, check it against eager on the same inputs, and
fall back to eager for that shape (logged once) when building or checking fails.

Which path is fastest is a measured question (``benchmarks/bench_inference.py``): at batch 1 the model is
bound by per-operator overhead (hundreds of small kernels), which a traced graph trims on the CPU and a CUDA
graph removes on the GPU.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from rt_physio.sources.base import Modality

__all__ = ["BUCKETS", "CudaGraphRunner", "Runner", "ShapeKey", "TracedRunner", "bucket_for",
           "make_runner"]

log = logging.getLogger(__name__)

BUCKETS = (1, 2, 4, 8, 16, 32, 64)
Backend = Literal["auto", "eager", "traced", "cuda-graph"]
Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_CHECK_TOL = 1e-4  # a specialised graph must match eager this closely on its first batch (fp32)


@dataclass(frozen=True, slots=True)
class ShapeKey:
    """What windows must share to be batched: present modalities, channels of each, patches."""

    modalities: tuple[Modality, ...]
    channels: tuple[int, ...]
    n_patches: int

    @classmethod
    def of(cls, inputs: dict[Modality, tuple[int, ...]]) -> ShapeKey:
        """Key of one window from its per-modality (C, N, 200) shapes."""
        mods = tuple(m for m in ("eeg", "ecg") if m in inputs)
        patches = {inputs[m][1] for m in mods}
        if len(patches) != 1:
            raise ValueError(f"All modalities of a window need the same number of patches, got {inputs}.")
        return cls(mods, tuple(inputs[m][0] for m in mods), patches.pop())


def bucket_for(n: int, max_batch: int) -> int:
    """Smallest bucket ≥ n (n itself when above the largest bucket ≤ max_batch)."""
    for b in BUCKETS:
        if b >= n and b <= max_batch:
            return b
    return n


class _Positional(nn.Module):
    """Bind the modalities of a shape key so the model takes positional tensors (tracing and graphs need it)."""

    def __init__(self, module: nn.Module, modalities: tuple[Modality, ...]) -> None:
        super().__init__()
        self.module = module
        self.modalities = modalities

    def forward(self, *xs: Tensor) -> Tensor:
        kwargs = dict(zip(self.modalities, xs, strict=True))
        out: Tensor = self.module(eeg=kwargs.get("eeg"), ecg=kwargs.get("ecg"))
        return out


class Runner:
    """Eager base: run the model on the batch as given (no shape specialisation, no padding).

    Reduced precision runs under ``torch.autocast`` (matmuls and convolutions in bf16/fp16, reductions,
    norms and the FFT of the patch embedding in float32), so the weights stay float32.
    """

    name = "eager"
    pads = False  # whether batches are padded up to a bucket (fixed-shape runners)

    def __init__(self, module: nn.Module, device: torch.device, precision: Precision = "fp32") -> None:
        self.device = device
        self.precision = precision
        self.module = module.to(device=device).eval()

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        # cache_enabled=False: cached casts of the weights would be captured into CUDA graphs
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision], cache_enabled=False)

    def __call__(self, key: ShapeKey, batch: list[Tensor]) -> Tensor:
        """Logits (B, n_outputs) as float32 for a batch given as one tensor per modality of ``key``."""
        with torch.inference_mode():
            return self._eager(key, batch)

    def _eager(self, key: ShapeKey, batch: list[Tensor]) -> Tensor:
        kwargs = dict(zip(key.modalities, batch, strict=True))
        with self._autocast():
            out: Tensor = self.module(eeg=kwargs.get("eeg"), ecg=kwargs.get("ecg"))
        return out.float()


class _SpecialisingRunner(Runner):
    """Builds one specialised callable per (key, batch size) on first use; eager when that fails."""

    pads = True

    def __init__(self, module: nn.Module, device: torch.device, precision: Precision = "fp32") -> None:
        super().__init__(module, device, precision)
        self._built: dict[tuple[ShapeKey, int], Callable[[list[Tensor]], Tensor] | None] = {}
        self.builds = 0

    @property
    def built_shapes(self) -> list[tuple[ShapeKey, int]]:
        """(key, batch size) of every shape built so far (including those that fell back to eager)."""
        return list(self._built)

    def __call__(self, key: ShapeKey, batch: list[Tensor]) -> Tensor:
        spec_key = (key, int(batch[0].shape[0]))
        if spec_key not in self._built:
            self.builds += 1
            self._built[spec_key] = self._try_build(key, batch)
        fn = self._built[spec_key]
        with torch.inference_mode():
            return fn(batch) if fn is not None else self._eager(key, batch)

    def _try_build(self, key: ShapeKey, batch: list[Tensor]) -> Callable[[list[Tensor]], Tensor] | None:
        try:
            fn = self._build(key, batch)
            with torch.inference_mode():
                got = fn(batch)
                want = self._eager(key, batch)
            err = float((got - want).abs().max())
            tol = _CHECK_TOL if self.precision == "fp32" else 1e-2
            if not err <= tol:
                log.warning("%s runner: %s batch %d differs from eager by %.2e; using eager for this shape",
                            self.name, key, batch[0].shape[0], err)
                return None
            log.info("%s runner: built %s batch %d (max |Δ| vs eager %.1e)", self.name, key, batch[0].shape[0],
                     err)
            return fn
        except Exception as exc:  # a backend that cannot handle this shape must not take the engine down
            log.warning("%s runner: could not build %s batch %d (%s); using eager for this shape", self.name, key,
                        batch[0].shape[0], exc)
            return None

    def _build(self, key: ShapeKey, batch: list[Tensor]) -> Callable[[list[Tensor]], Tensor]:
        raise NotImplementedError


class TracedRunner(_SpecialisingRunner):
    """TorchScript traces per shape: the same operators without the Python overhead between them (CPU)."""

    name = "traced"

    def _build(self, key: ShapeKey, batch: list[Tensor]) -> Callable[[list[Tensor]], Tensor]:
        with torch.inference_mode(), warnings.catch_warnings():
            # shape checks in the model become constants in the trace: exactly what a per-shape trace wants
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
            # torch 2.13 deprecates jit.trace in favour of torch.compile/export; neither is as fast to build for a
            # per-shape specialisation on the live path, and the check against eager below guards the result
            warnings.filterwarnings("ignore", message=".*torch.jit.trace.* is deprecated", category=DeprecationWarning)
            traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                _Positional(self.module, key.modalities), tuple(batch), check_trace=False)

        def run(xs: list[Tensor]) -> Tensor:
            out: Tensor = traced(*xs)
            return out

        return run


class CudaGraphRunner(_SpecialisingRunner):
    """Capture the forward pass once per shape into a CUDA graph; replay it with copy-in / copy-out.

    Static input buffers are written with ``copy_`` before each replay and the static output is cloned after,
    so a graph never aliases the caller's tensors. Capture follows PyTorch's recipe: warm-up iterations on a
    side stream, then ``torch.cuda.graph``.
    """

    name = "cuda-graph"

    def __init__(self, module: nn.Module, device: torch.device, precision: Precision = "fp32",
                 warmup_iters: int = 3) -> None:
        if device.type != "cuda":
            raise ValueError(f"CudaGraphRunner needs a CUDA device, got {device}.")
        super().__init__(module, device, precision)
        self._warmup_iters = warmup_iters

    def _build(self, key: ShapeKey, batch: list[Tensor]) -> Callable[[list[Tensor]], Tensor]:
        static_in = [x.clone() for x in batch]
        bound = _Positional(self.module, key.modalities)
        side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.cuda.stream(side), self._autocast():
            for _ in range(self._warmup_iters):
                bound(*static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph), self._autocast():
            static_out: Tensor = bound(*static_in)

        def run(xs: list[Tensor]) -> Tensor:
            for buf, x in zip(static_in, xs, strict=True):
                buf.copy_(x, non_blocking=True)
            graph.replay()
            return static_out.float().clone()

        return run


def make_runner(module: nn.Module, device: torch.device, backend: Backend = "auto",
                precision: Precision = "fp32") -> Runner:
    """Pick a runner: ``auto`` is CUDA graphs on a GPU and a traced graph on the CPU.

    A module with ``traceable = False`` (numpy inside, e.g. the classical model) always runs eagerly.
    """
    if not getattr(module, "traceable", True):
        backend = "eager"
    if backend == "auto":
        backend = "cuda-graph" if device.type == "cuda" else "traced"
    if backend == "traced" and precision != "fp32":
        log.info("traced graphs run in fp32; %s runs eagerly under autocast", precision)
        backend = "eager"
    if backend == "eager":
        return Runner(module, device, precision)
    if backend == "traced":
        return TracedRunner(module, device, precision)
    if backend == "cuda-graph":
        return CudaGraphRunner(module, device, precision)
    raise ValueError(f"The 'backend' parameter must be one of auto, eager, traced, cuda-graph; got {backend!r}.")
