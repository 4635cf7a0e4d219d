"""Pre-trained encoders as frozen feature extractors.

An encoder folder (``rt-physio train pretrain``, e.g. ``models/encoders/ecg-cinc2017``) holds
``encoder.safetensors`` (a CBraMod state dict) and ``encoder.json`` (architecture, corpus, hold-out, history),
both rewritten after every epoch.

* :func:`load_encoder` reads one into a :class:`~rt_physio.nn.CBraMod` in eval mode;
* :func:`random_encoder` builds the same architecture randomly initialised (the baseline every probe is compared
  with);
* :func:`pooled_features` turns ``(B, C, N, 200)`` windows (model units: µV / 100 at 200 Hz) into one vector per
  window from the 200-d patch embeddings (the output before ``proj_out``): ``"mean-std"`` (default, ``(B, 400)``)
  the mean and the standard deviation over leads and patches: the standard deviation keeps what varies from
  beat to beat (e.g. the RR irregularity of atrial fibrillation), which a mean alone discards; ``"mean"``
  ``(B, 200)``; ``"mean-std-diff"`` ``(B, 600)`` adds the mean absolute change between consecutive patches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from rt_physio.nn.cbramod import CBraMod
from rt_physio.training.common import ENCODER_META, encoder_config_from_state, load_encoder_init

__all__ = ["POOLINGS", "encoder_meta", "load_encoder", "pooled_features", "random_encoder"]


def encoder_meta(path: str | Path) -> dict[str, Any]:
    """Read the ``encoder.json`` of an encoder folder (architecture, corpus, history)."""
    meta: dict[str, Any] = json.loads((Path(path) / ENCODER_META).read_text())
    return meta


def load_encoder(path: str | Path) -> CBraMod:
    """Load a pre-trained encoder folder (or a CBraMod state-dict file) as a CBraMod in eval mode.

    Raises
    ------
    rt_physio.errors.ModelError
        Missing or mismatching files.
    """
    encoder, _, _ = load_encoder_init(path)
    return encoder.eval()


def random_encoder(like: str | Path | CBraMod, seed: int = 0) -> CBraMod:
    """Build a randomly initialised CBraMod of the architecture of ``like`` (a folder or a model), in eval mode."""
    if isinstance(like, CBraMod):
        arch = encoder_config_from_state(like.state_dict())
        n_layer, ff, nhead = arch["n_layer"], arch["dim_feedforward"], arch["nhead"]
    else:
        arch = encoder_meta(like)["architecture"]
        n_layer, ff, nhead = int(arch["n_layer"]), int(arch["dim_feedforward"]), int(arch["nhead"])
    torch.manual_seed(seed)
    return CBraMod(n_layer=n_layer, dim_feedforward=ff, nhead=nhead).eval()


POOLINGS = ("mean", "mean-std", "mean-std-diff")


@torch.no_grad()
def pooled_features(encoder: CBraMod, x: NDArray[np.floating] | torch.Tensor, batch_size: int = 64,
                    pooling: str = "mean-std") -> NDArray[np.float32]:
    """Frozen embeddings of windows.

    Parameters
    ----------
    encoder : CBraMod
        From :func:`load_encoder` or :func:`random_encoder`.
    x : array or Tensor, shape (B, C, N, 200)
        Windows in model units.
    batch_size : int
        Windows per forward pass.
    pooling : str
        ``"mean-std"``, ``"mean"`` or ``"mean-std-diff"`` (see the module docstring).

    Returns
    -------
    ndarray of float32, shape (B, 400) for the default pooling
        ``[mean, std]`` of the patch embeddings over leads and patches.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"The 'pooling' parameter must be one of {POOLINGS}, got {pooling!r}.")
    was_training = encoder.training
    encoder.eval()
    data = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    if data.dim() != 4:
        raise ValueError(f"Expected windows of shape (B, C, N, 200), got {tuple(data.shape)}.")
    device = next(encoder.parameters()).device
    parts: list[NDArray[np.float32]] = []
    for s in range(0, int(data.shape[0]), batch_size):
        feats = encoder.encoder(encoder.patch_embedding(data[s:s + batch_size].to(device), None))  # (b, C, N, 200)
        flat = feats.flatten(1, 2)  # (b, C*N, 200)
        parts_b = [flat.mean(dim=1)]
        if pooling != "mean":
            parts_b.append(flat.std(dim=1, unbiased=False))
        if pooling == "mean-std-diff":
            step = (feats[:, :, 1:] - feats[:, :, :-1]).abs() if feats.shape[2] > 1 else torch.zeros_like(feats)
            parts_b.append(step.flatten(1, 2).mean(dim=1))
        pooled = torch.cat(parts_b, dim=1)
        parts.append(pooled.cpu().numpy().astype(np.float32))
    encoder.train(was_training)
    if not parts:
        return np.zeros((0, 200 * (POOLINGS.index(pooling) + 1)), dtype=np.float32)
    return np.concatenate(parts)
