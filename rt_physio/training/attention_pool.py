"""Learning the attention queries of a hybrid model with ``pooling = "attention"`` on frozen patch embeddings.

:func:`~rt_physio.nn.hybrid.attention_pool` weighs each patch of each channel by a softmax of its dot product with
a query per modality. The queries are the only trained part of the pooling; they are learned here, jointly with a
throw-away logistic head, on the patch embeddings of the training windows (the encoders stay frozen):

* the head reads the attention-pooled embedding of each present modality, standardised by the mean-pooled
  embeddings' mean and SD over the training rows (fixed), plus a presence flag per modality;
* every row with both modalities also enters as EEG-only and as ECG-only (modality dropout), as in
  :func:`~rt_physio.training.hybrid.fit_head`; the loss is class-balanced binary cross-entropy plus L2 on the head's
  weights and on the queries;
* full-batch Adam from zero queries (= mean pooling).

The pooled embeddings with the learned queries then go through the usual head fitting (C chosen by inner CV, Platt
maps per modality set): :func:`pool_with_queries`. The regularisation and step counts are fixed defaults, not
chosen on any scored subject.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from rt_physio.nn.cbramod import CBraMod
from rt_physio.nn.fusion import EMBED_DIM, MODALITIES
from rt_physio.nn.hybrid import attention_pool
from rt_physio.training.datasets.windows import WindowDataset

__all__ = ["fit_queries", "patch_embeddings", "pool_with_queries"]


def patch_embeddings(encoder: CBraMod, windows: WindowDataset, modality: str, batch_size: int = 32
                     ) -> NDArray[np.float32]:
    """Frozen patch embeddings ``(n, C, N, 200)`` of every window (zeros where the window lacks ``modality``).

    ``encoder.proj_out`` must already be the identity (as in :class:`~rt_physio.nn.hybrid.HybridModel`).
    """
    k = MODALITIES.index(modality)
    out: NDArray[np.float32] | None = None
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            idx = np.arange(start, min(start + batch_size, len(windows)))
            batch = windows.batch(idx)
            rows = np.flatnonzero(batch.present[:, k])
            if modality not in batch.inputs or rows.size == 0:
                continue
            emb = encoder(torch.from_numpy(batch.inputs[modality][rows]).float()).float().numpy()
            if out is None:
                out = np.zeros((len(windows), *emb.shape[1:]), dtype=np.float32)
            out[idx[rows]] = emb
    if out is None:
        raise ValueError(f"No window has {modality!r}: no patch embeddings to pool.")
    return out


def pool_with_queries(embeddings: dict[str, NDArray[np.float32]], queries: dict[str, NDArray[np.float32]],
                      batch_size: int = 256) -> NDArray[np.float32]:
    """Attention-pooled embeddings ``(n, 200 * len(embeddings))``, modalities in :data:`MODALITIES` order."""
    parts = []
    for m in MODALITIES:
        if m not in embeddings:
            continue
        emb, q = embeddings[m], torch.from_numpy(np.asarray(queries[m], dtype=np.float32))
        pooled = [attention_pool(torch.from_numpy(emb[i:i + batch_size]), q).numpy()
                  for i in range(0, len(emb), batch_size)]
        parts.append(np.concatenate(pooled))
    return np.concatenate(parts, axis=1).astype(np.float32)


def fit_queries(embeddings: dict[str, NDArray[np.float32]], present: NDArray[np.bool_], y: NDArray[np.floating],
                rows: NDArray[np.bool_], *, l2_head: float = 1e-2, l2_query: float = 1e-3, steps: int = 300,
                lr: float = 0.05, seed: int = 0) -> dict[str, NDArray[np.float32]]:
    """Learn one attention query per modality in ``embeddings`` on the training ``rows`` (see the module docstring).

    Parameters
    ----------
    embeddings : dict
        Modality -> patch embeddings ``(n, C, N, 200)`` of every window (:func:`patch_embeddings`).
    present : ndarray of bool, shape (n, 2)
        Presence flags (eeg, ecg) of every window.
    y : ndarray, shape (n,)
        0/1 labels.
    rows : ndarray of bool, shape (n,)
        The training windows (nothing else is read).
    l2_head, l2_query : float
        L2 penalties on the head's weights and on the queries.
    steps, lr : int, float
        Full-batch Adam steps and learning rate.
    seed : int
        Seeds the head's initial weights.

    Returns
    -------
    dict
        Modality -> query ``(200,)``.

    Raises
    ------
    ValueError
        No modality given, or the training rows lack one of the two classes.
    """
    mods = [m for m in MODALITIES if m in embeddings]
    if not mods:
        raise ValueError("fit_queries needs the patch embeddings of at least one modality, got none.")
    labels = np.asarray(y, dtype=np.float64)[rows]
    if len(np.unique(labels)) != 2:
        raise ValueError(f"fit_queries needs both classes among the training rows, got {np.unique(labels)}.")
    flags = np.asarray(present, dtype=bool)[rows][:, [MODALITIES.index(m) for m in mods]]
    both = flags.all(axis=1)
    copies = [np.arange(len(labels))] + ([np.flatnonzero(both)] * len(mods) if len(mods) > 1 else [])
    keep_sets = [flags] + [np.eye(len(mods), dtype=bool)[j][None, :] & flags[both] for j in range(len(copies) - 1)]
    index = np.concatenate(copies)
    keep = torch.from_numpy(np.concatenate(keep_sets).astype(np.float32))  # (R, M)
    target = torch.from_numpy(labels[index].astype(np.float32))
    pos = float(target.mean())
    weight = torch.where(target > 0.5, 0.5 / pos, 0.5 / (1.0 - pos))
    tokens = [torch.from_numpy(embeddings[m][rows]) for m in mods]
    stats = []
    for m, t in zip(range(len(mods)), tokens, strict=True):
        mean_pooled = t[torch.from_numpy(flags[:, m])].mean(dim=(1, 2))
        stats.append((mean_pooled.mean(dim=0), mean_pooled.std(dim=0).clamp(min=1e-6)))
    gen = torch.Generator().manual_seed(seed)
    queries = [torch.zeros(EMBED_DIM, requires_grad=True) for _ in mods]
    w = [(0.01 * torch.randn(EMBED_DIM, generator=gen)).requires_grad_() for _ in mods]
    flag_w = torch.zeros(len(mods), requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([*queries, *w, flag_w, bias], lr=lr)
    idx_t = torch.from_numpy(index)
    for _ in range(steps):
        opt.zero_grad()
        logit = bias + keep @ flag_w
        for j, (t, q, (mu, sd)) in enumerate(zip(tokens, queries, stats, strict=True)):
            z = (attention_pool(t, q) - mu) / sd  # (rows, D)
            logit = logit + keep[:, j] * (z[idx_t] @ w[j])
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, target, weight=weight, reduction="sum")
        loss: Tensor = bce / weight.sum() + l2_head * _sq(*w) + l2_query * _sq(*queries)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return {m: q.detach().numpy().astype(np.float32) for m, q in zip(mods, queries, strict=True)}


def _sq(*vs: Tensor) -> Tensor:
    return torch.stack([(v * v).sum() for v in vs]).sum()
