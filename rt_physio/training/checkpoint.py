"""Resumable training state in one safetensors file: model, optimizer, epoch and a JSON record.

Tensors go in as tensors (``model.<key>``, ``optim.<param>.<key>``); everything else (optimizer hyper-parameters,
epoch, step, the run's configuration and history) goes into the file's string metadata as JSON. No pickle: a
checkpoint from an untrusted source cannot run code. Files are written to a temporary name and renamed, so an
interrupted save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rt_physio.errors import ModelError
from rt_physio.nn.checkpoint import load_state_dict_checked

__all__ = ["TrainingState", "load_training_state", "save_training_state"]


@dataclass(frozen=True)
class TrainingState:
    """What :func:`load_training_state` restored besides the module and optimizer."""

    epoch: int
    step: int
    record: dict[str, Any]


def save_training_state(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, *, epoch: int, step: int,
                        record: dict[str, Any]) -> None:
    """Write ``module`` and ``optimizer`` state plus ``epoch`` (completed epochs), ``step`` and ``record``."""
    import safetensors.torch

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in opt["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    metadata = {
        "format": "pt",
        "rt_physio": "training-state/1",
        "epoch": str(epoch),
        "step": str(step),
        "param_groups": json.dumps(opt["param_groups"]),
        "optim_scalars": json.dumps(scalars),
        "record": json.dumps(record),
    }
    data = safetensors.torch.save(tensors, metadata=metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load_training_state(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer | None) -> TrainingState:
    """Restore a :func:`save_training_state` file into ``module`` (strictly) and ``optimizer``.

    Raises
    ------
    ModelError
        The file is unreadable, is not a training state, or does not match the module (mismatches listed).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as exc:  # safetensors raises its own (Rust) error types
        raise ModelError(f"{path}: not a readable safetensors training checkpoint ({exc}).") from exc
    if metadata.get("rt_physio") != "training-state/1":
        raise ModelError(f"{path}: not an rt_physio training checkpoint (metadata {sorted(metadata)}).")
    model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    load_state_dict_checked(module, model_state, path)
    if optimizer is not None:
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value
        for idx, values in json.loads(metadata["optim_scalars"]).items():
            state.setdefault(int(idx), {}).update(values)
        try:
            optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
        except (ValueError, KeyError) as exc:
            raise ModelError(f"{path}: the optimizer state does not match this run ({exc}).") from exc
    return TrainingState(int(metadata["epoch"]), int(metadata["step"]), json.loads(metadata["record"]))
