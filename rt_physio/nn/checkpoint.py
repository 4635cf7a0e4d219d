"""Loading state dicts into our modules with errors a user can act on.

:func:`load_cbramod_checkpoint` reads the official CBraMod ``pretrained_weights.pth`` (or a ``.safetensors``
file) into :class:`~rt_physio.nn.cbramod.CBraMod`. :func:`load_state_dict_checked` is the strict loader shared
with the model registry: every problem becomes a :class:`~rt_physio.errors.ModelError` that names the file and
lists the first missing / unexpected keys, shape mismatches and tensors holding NaN or ±inf (a model that can
only output NaN is refused at load, not discovered window by window), instead of a raw torch traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from rt_physio.errors import ModelError
from rt_physio.nn.cbramod import CBraMod

__all__ = ["load_cbramod_checkpoint", "load_state_dict_checked", "nonfinite_tensors", "read_state_dict",
           "state_dict_mismatches"]

_SHOW = 5  # keys listed per kind of mismatch
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from a PyTorch ``.pth``/``.pt`` file or a ``.safetensors`` file.

    PyTorch files are read with ``weights_only=True`` (no arbitrary code runs). A dict that wraps the state
    dict under ``'state_dict'``, ``'model'`` or ``'model_state_dict'`` is unwrapped, and a ``module.`` prefix
    on every key (a model saved from ``DataParallel``/``DistributedDataParallel``) is removed.

    Parameters
    ----------
    path : str | Path
        The checkpoint file.

    Returns
    -------
    dict[str, Tensor]
        Parameter name to tensor, on the CPU.

    Raises
    ------
    ModelError
        The file is missing or is not a checkpoint holding a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found.")
    if path.suffix == ".safetensors":
        import safetensors.torch

        try:
            state: object = safetensors.torch.load(path.read_bytes())
        except Exception as exc:  # safetensors raises its own (Rust) error types
            raise ModelError(f"{path}: not a readable safetensors file ({exc}).") from exc
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            raise ModelError(
                f"{path}: not a PyTorch checkpoint that can be loaded safely (weights_only=True): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
    state = _unwrap(state)
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelError(
            f"{path}: the checkpoint does not hold a state dict (a mapping of parameter names to tensors); "
            f"found {type(state).__name__}."
        )
    tensors = {str(k): v for k, v in state.items()}
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def _unwrap(state: object) -> object:
    if isinstance(state, Mapping) and not all(isinstance(v, Tensor) for v in state.values()):
        for key in _WRAPPER_KEYS:
            inner = state.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                return inner
    return state


def state_dict_mismatches(expected: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> str:
    """Describe how ``state`` differs from ``expected`` in keys and shapes; empty when they match.

    The description lists the first few missing keys, unexpected keys and shape mismatches, with counts.
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:_SHOW]) + (f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else "")
            problems.append(f"{len(items)} {label}: {shown}")
    return "; ".join(problems)


def load_state_dict_checked(
    module: nn.Module, state: Mapping[str, Tensor], source: str | Path, *, assign: bool = False
) -> None:
    """Load ``state`` into ``module`` strictly, or raise a :class:`ModelError` describing every mismatch.

    Parameters
    ----------
    module : nn.Module
        The module to fill.
    state : Mapping[str, Tensor]
        Parameter name to tensor.
    source : str | Path
        The file the state came from; named in the error message.
    assign : bool
        Use the tensors of ``state`` as the parameters (for a module built on the ``meta`` device) instead of
        copying them into the existing ones (which keeps the module's dtype and device).

    Raises
    ------
    ModelError
        Keys missing from ``state``, keys the module does not have, tensors of the wrong shape, or tensors that
        hold NaN or infinite values. The message lists the first few of each kind and how many there are.
    """
    expected = module.state_dict()
    problems = state_dict_mismatches(expected, state)
    if problems:
        raise ModelError(
            f"{source}: the weights do not match the model architecture ({len(expected)} tensors expected, "
            f"{len(state)} found). {problems}."
        )
    bad = nonfinite_tensors(state)
    if bad:
        shown = ", ".join(bad[:_SHOW]) + (f", ... ({len(bad) - _SHOW} more)" if len(bad) > _SHOW else "")
        raise ModelError(
            f"{source}: {len(bad)} weight tensor(s) hold NaN or infinite values: {shown}. Such a model outputs NaN; "
            "the file is corrupt or training diverged (or values overflowed float16 when saved): restore or "
            "retrain it."
        )
    module.load_state_dict(dict(state), strict=True, assign=assign)


def nonfinite_tensors(state: Mapping[str, Tensor]) -> list[str]:
    """Name each floating-point tensor of ``state`` that holds NaN or ±inf, with how many such values."""
    bad = []
    for key, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                bad.append(f"{key} ({int((~finite).sum())} of {tensor.numel()} values)")
    return bad


def load_cbramod_checkpoint(path: str | Path, model: CBraMod | None = None) -> CBraMod:
    """Load CBraMod weights, e.g. the official ``pretrained_weights.pth``, with ``strict=True``.

    Parameters
    ----------
    path : str | Path
        A ``.pth``/``.pt`` PyTorch state dict or a ``.safetensors`` file (see :func:`read_state_dict`).
    model : CBraMod | None
        The model to fill; by default a new ``CBraMod()`` with the official architecture.

    Returns
    -------
    CBraMod
        ``model`` (or the new model) holding the weights, in eval mode.

    Raises
    ------
    ModelError
        The file is missing, is not a checkpoint, or its keys or shapes do not match the model.
    """
    model = CBraMod() if model is None else model
    load_state_dict_checked(model, read_state_dict(path), path)
    return model.eval()
