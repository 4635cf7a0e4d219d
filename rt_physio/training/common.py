"""Pieces shared by pre-training, fine-tuning and evaluation.

Encoder configs and initialisation, the per-row-presence forward pass, batched prediction, the learning-rate
schedule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from rt_physio.errors import ModelError
from rt_physio.nn.cbramod import CBraMod
from rt_physio.nn.checkpoint import load_state_dict_checked, read_state_dict
from rt_physio.nn.fusion import EMBED_DIM, MODALITIES, FusionModel
from rt_physio.nn.registry import ENCODER_META
from rt_physio.training.datasets.windows import Batch, WindowDataset

__all__ = [
    "ENCODER_FILE",
    "ENCODER_META",
    "cosine_lambda",
    "embed_present",
    "encoder_config_from_state",
    "forward_present",
    "load_encoder_init",
    "predict_proba",
    "set_threads",
]

#: Files of a pre-trained encoder folder (written by ``rt-physio train pretrain``).
ENCODER_FILE = "encoder.safetensors"


def set_threads(threads: int | None) -> None:
    """Use ``threads`` torch CPU threads (None: leave torch's default)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"The 'threads' parameter must be at least 1, got {threads}.")
        torch.set_num_threads(threads)


def cosine_lambda(total_steps: int, warmup_steps: int, floor: float) -> Any:
    """LambdaLR factor: linear warm-up to 1, then cosine decay to ``floor`` (a fraction of the base rate)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def encoder_config_from_state(state: Mapping[str, Tensor], nhead: int = 8) -> dict[str, int]:
    """Infer CBraMod constructor arguments (``n_layer``, ``dim_feedforward``, ...) from a state dict's shapes."""
    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")}
    ff = state.get("encoder.layers.0.linear1.weight")
    return {
        "d_model": 200,
        "dim_feedforward": int(ff.shape[0]) if ff is not None else 800,
        "seq_len": 30,
        "n_layer": len(layers),
        "nhead": nhead,
    }


def load_encoder_init(path: str | Path) -> tuple[CBraMod, dict[str, int], str]:
    """Build a CBraMod from an initialisation source.

    Parameters
    ----------
    path : str | Path
        A pre-trained encoder folder (``encoder.safetensors`` + ``encoder.json``, from ``rt-physio train
        pretrain``), or a CBraMod state dict file: the official ``pretrained_weights.pth`` or a ``.safetensors``.

    Returns
    -------
    (CBraMod, config, description)
        The filled encoder (``proj_out`` included), its constructor arguments, and a description for the card.

    Raises
    ------
    ModelError
        Missing file, unreadable checkpoint, or keys / shapes that do not form a CBraMod (mismatches listed).
    """
    path = Path(path)
    nhead = 8
    if path.is_dir():
        meta_file, weights = path / ENCODER_META, path / ENCODER_FILE
        if not weights.is_file() or not meta_file.is_file():
            raise ModelError(f"{path}: not a pre-trained encoder folder (needs {ENCODER_FILE} and {ENCODER_META}).")
        meta = json.loads(meta_file.read_text())
        state = read_state_dict(weights)
        config = {k: int(v) for k, v in meta["architecture"].items()}
        source = (f"{path.name} (rt-physio train pretrain, {meta.get('modality', '?')}, "
                  f"{meta.get('epochs', '?')} epochs)")
    else:
        state = read_state_dict(path)
        config = encoder_config_from_state(state, nhead)
        source = path.name
    if not config["n_layer"]:
        raise ModelError(f"{path}: no 'encoder.layers.*' keys; this is not a CBraMod checkpoint.")
    encoder = CBraMod(**config)
    load_state_dict_checked(encoder, state, path)
    return encoder, config, source


def forward_present(model: FusionModel, inputs: Mapping[str, Tensor], present: Tensor) -> Tensor:
    """Logits for a batch whose rows may lack a modality (a row needs at least one present modality).

    Each encoder runs only on the rows where its modality is present; absent rows get a zero embedding and a 0
    flag, exactly as :meth:`FusionModel.forward` treats a missing modality.

    Parameters
    ----------
    model : FusionModel
        The network.
    inputs : Mapping[str, Tensor]
        ``(B, C, N, 200)`` per modality (rows where absent are ignored).
    present : Tensor
        ``(B, 2)`` bool or 0/1 flags (order: eeg, ecg).

    Returns
    -------
    Tensor
        ``(B, n_outputs)`` logits.
    """
    eeg_emb, ecg_emb, flags = embed_present(model, inputs, present)
    return model.fuse(eeg_emb, ecg_emb, flags)


def embed_present(model: FusionModel, inputs: Mapping[str, Tensor], present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pooled embeddings ``(B, 200)`` per modality (zeros where absent) and the float flags ``(B, 2)`` actually used.

    As :func:`forward_present`, without the head.
    """
    flags = present.bool().clone()
    ref = next(iter(inputs.values()))
    bsz = flags.shape[0]
    embs: list[Tensor] = []
    for i, (m, enc) in enumerate(zip(MODALITIES, (model.eeg_encoder, model.ecg_encoder), strict=True)):
        emb = ref.new_zeros(bsz, EMBED_DIM)  # (B, 200)
        x = inputs.get(m)
        if enc is None or x is None:
            flags[:, i] = False
        else:
            rows = flags[:, i].nonzero().squeeze(1)
            if rows.numel() == bsz:
                emb = enc(x).mean(dim=(1, 2))  # (B, C, N, 200) -> (B, 200)
            elif rows.numel():
                emb = emb.index_copy(0, rows, enc(x[rows]).mean(dim=(1, 2)))
        embs.append(emb)
    return embs[0], embs[1], flags.to(ref.dtype)


def batch_tensors(batch: Batch, device: torch.device) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Return a :class:`Batch` as tensors on ``device``: inputs, presence flags, labels."""
    inputs = {m: torch.from_numpy(x).to(device) for m, x in batch.inputs.items()}
    return inputs, torch.from_numpy(batch.present).to(device), torch.from_numpy(batch.labels).to(device)


@torch.no_grad()
def predict_proba(model: FusionModel, dataset: WindowDataset, modalities: Sequence[str], *, batch_size: int = 64,
                  device: torch.device | str = "cpu", activation: str = "sigmoid"
                  ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Predict every window of ``dataset`` using only ``modalities``.

    Returns
    -------
    probs : ndarray of float64, shape (n, n_outputs)
        Activated outputs (NaN for unscored windows).
    scored : ndarray of bool, shape (n,)
        Windows that had at least one of the requested modalities (the others are not scored).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    wanted = np.array([m in modalities for m in MODALITIES])
    present = dataset.present & wanted[None, :]
    scored = present.any(axis=1)
    probs = np.full((len(dataset), model.n_outputs), np.nan)
    rows = np.flatnonzero(scored)
    for start in range(0, rows.size, batch_size):
        idx = rows[start:start + batch_size]
        inputs, _, _ = batch_tensors(dataset.batch(idx), device)
        logits = forward_present(model, inputs, torch.from_numpy(present[idx]).to(device))
        if activation == "sigmoid":
            out = torch.sigmoid(logits)
        elif activation == "softmax":
            out = torch.softmax(logits, dim=-1)
        else:
            out = logits
        probs[idx] = out.double().cpu().numpy()
    model.train(was_training)
    return probs, scored
