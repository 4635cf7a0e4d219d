"""Self-supervised pre-training of an EEG or ECG encoder by masked-patch reconstruction.

CBraMod's recipe: hide patches (replaced by the model's ``mask_encoding``), reconstruct their 200 raw samples
with ``proj_out``, MSE on the masked patches only; AdamW, cosine schedule, gradient clipping 1.0. For ECG the mask
is **dual** (:func:`rt_physio.nn.masking.dual_mask`): random patches within each lead *and* whole leads, so the
encoder learns both the beat-to-beat structure of a lead and the relation between leads.

Preprocessing per lead is the fine-tuning / live one (:data:`rt_physio.training.finetune.DEFAULT_PREPROCESSING`):
EEG band-pass 0.3-75 Hz, ECG 0.5-45 Hz, notch at the mains frequency, resampled to 200 Hz, µV / 100. Recordings
with different lead counts are batched separately (one batch = one lead count).

The output folder holds ``encoder.safetensors`` (the CBraMod state dict, ``proj_out`` included) and
``encoder.json`` (architecture, data, losses); ``checkpoint.safetensors`` is written after every epoch so that
``--resume`` continues an interrupted run, and is removed when the run completes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rt_physio.errors import ConfigError
from rt_physio.nn.cbramod import CBraMod
from rt_physio.nn.masking import dual_mask, masked_mse
from rt_physio.training.checkpoint import load_training_state, save_training_state
from rt_physio.training.common import ENCODER_FILE, ENCODER_META, cosine_lambda, set_threads
from rt_physio.training.datasets.base import DatasetError, WindowDataset, default_cache_dir, prepare
from rt_physio.training.datasets.edf import find_corpus

__all__ = ["PretrainConfig", "PretrainResult", "pretrain"]

log = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.safetensors"


@dataclass
class PretrainConfig:
    """A pre-training run (recorded in ``encoder.json``)."""

    modality: str = "ecg"
    data: tuple[str, ...] = ()
    out: str = ""
    n_layer: int = 2
    dim_feedforward: int = 400
    nhead: int = 8
    epochs: int = 5
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    window_s: float = 5.0
    hop_s: float = 2.5
    patch_ratio: float = 0.5
    lead_ratio: float | None = None
    max_abs_uv: float | None = None
    line_freq: float = 50.0
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    cache: str | None = None
    resume: bool = False
    command: str = ""


@dataclass(frozen=True)
class PretrainResult:
    """What :func:`pretrain` wrote."""

    out: Path
    losses: list[float]
    n_samples: int
    n_recordings: int
    seconds: float


def pretrain(cfg: PretrainConfig, on_epoch: Callable[[int, float, float], None] | None = None,
             progress: bool = True) -> PretrainResult:
    """Pre-train an encoder and write its folder ``cfg.out``.

    Parameters
    ----------
    cfg : PretrainConfig
        The run.
    on_epoch : callable(epoch, loss, seconds), optional
        Called after every epoch.
    progress : bool
        Show a tqdm progress bar (stderr) with the running loss.

    Raises
    ------
    ConfigError
        Invalid settings. DatasetError: no usable data.
    """
    from tqdm import tqdm

    from rt_physio.training.finetune import DEFAULT_PREPROCESSING

    started = time.monotonic()
    if cfg.modality not in ("eeg", "ecg"):
        raise ConfigError(f"The 'modality' parameter must be 'eeg' or 'ecg', got {cfg.modality!r}.")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError(f"epochs and batch size must be positive, got {cfg.epochs} and {cfg.batch_size}.")
    lead_ratio = cfg.lead_ratio if cfg.lead_ratio is not None else (0.25 if cfg.modality == "ecg" else 0.0)
    max_abs = cfg.max_abs_uv if cfg.max_abs_uv is not None else (100.0 if cfg.modality == "eeg" else None)
    set_threads(cfg.threads)
    device = torch.device(cfg.device)
    out = Path(cfg.out)

    recordings = find_corpus(cfg.data, cfg.modality)
    cache = Path(cfg.cache) if cfg.cache else default_cache_dir() / "prepared"
    pre = {cfg.modality: DEFAULT_PREPROCESSING[cfg.modality]}
    prepared = [r for r in prepare(recordings, pre, line_freq=cfg.line_freq, scale_uv=100.0, cache_dir=cache)
                if cfg.modality in r.signals]
    groups: dict[int, list[int]] = {}
    datasets: dict[int, WindowDataset] = {}
    by_leads: dict[int, list[int]] = {}
    for i, rec in enumerate(prepared):
        by_leads.setdefault(rec.signals[cfg.modality].shape[0], []).append(i)
    for n_leads, members in sorted(by_leads.items()):
        ds = WindowDataset([prepared[i] for i in members], (), window_s=cfg.window_s, hop_s=cfg.hop_s,
                           modalities=(cfg.modality,))
        keep = np.arange(len(ds))
        if max_abs is not None and len(ds):
            peak = np.array([np.abs(ds.batch([int(j)]).inputs[cfg.modality]).max() for j in keep])
            keep = keep[peak < max_abs / 100.0]
        if keep.size:
            datasets[n_leads] = ds
            groups[n_leads] = [int(j) for j in keep]
    n_samples = sum(len(v) for v in groups.values())
    if n_samples == 0:
        raise DatasetError(f"No {cfg.window_s:g}-s samples in {list(cfg.data)} (recordings too short, or every "
                           f"sample exceeded {max_abs} µV).")

    torch.manual_seed(cfg.seed)
    model = CBraMod(n_layer=cfg.n_layer, dim_feedforward=cfg.dim_feedforward, nhead=cfg.nhead).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = sum(math.ceil(len(v) / cfg.batch_size) for v in groups.values())
    schedule = cosine_lambda(cfg.epochs * steps_per_epoch, max(1, steps_per_epoch // 4), 1e-2)
    losses: list[float] = []
    first_epoch, step = 0, 0
    ckpt = out / CHECKPOINT_FILE
    if cfg.resume and ckpt.is_file():
        state = load_training_state(ckpt, model, optimizer)
        first_epoch, step, losses = state.epoch, state.step, list(state.record.get("losses", []))
        log.info("resuming %s after epoch %d", out, first_epoch)

    for epoch in range(first_epoch, cfg.epochs):
        t0 = time.monotonic()
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        torch.manual_seed(cfg.seed * 1000 + epoch)
        batches: list[tuple[int, list[int]]] = []
        for n_leads, members in groups.items():
            order = [members[j] for j in torch.randperm(len(members), generator=gen).tolist()]
            batches += [(n_leads, order[s:s + cfg.batch_size]) for s in range(0, len(order), cfg.batch_size)]
        batches = [batches[j] for j in torch.randperm(len(batches), generator=gen).tolist()]
        model.train()
        epoch_losses: list[float] = []
        bar = tqdm(batches, desc=f"pretrain {cfg.modality} {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, leave=False, mininterval=2.0)
        for n_leads, idx in bar:
            x = torch.from_numpy(datasets[n_leads].batch(idx).inputs[cfg.modality]).to(device)  # (B, C, N, 200)
            shape = (int(x.shape[0]), int(x.shape[1]), int(x.shape[2]))
            mask = dual_mask(shape, cfg.patch_ratio, lead_ratio, generator=gen, device=device)
            for g in optimizer.param_groups:
                g["lr"] = cfg.lr * schedule(step)
            loss = masked_mse(model(x, mask=mask), x, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            epoch_losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(epoch_losses[-20:]):.4f}")
        bar.close()
        losses.append(float(np.mean(epoch_losses)))
        save_training_state(ckpt, model, optimizer, epoch=epoch + 1, step=step,
                            record={"losses": losses, "config": asdict(cfg)})
        if on_epoch is not None:
            on_epoch(epoch + 1, losses[-1], time.monotonic() - t0)

    _write_encoder(out, model, cfg, losses, n_samples, len(prepared), lead_ratio, max_abs, recordings_desc=[
        str(r.source) for r in recordings], seconds=time.monotonic() - started)
    ckpt.unlink(missing_ok=True)
    return PretrainResult(out, losses, n_samples, len(prepared), time.monotonic() - started)


def _write_encoder(out: Path, model: CBraMod, cfg: PretrainConfig, losses: list[float], n_samples: int,
                   n_recordings: int, lead_ratio: float, max_abs: float | None, recordings_desc: list[str],
                   seconds: float) -> None:
    import safetensors.torch

    from rt_physio.training.finetune import DEFAULT_PREPROCESSING

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(out / ENCODER_FILE), metadata={"format": "pt"})
    pre = DEFAULT_PREPROCESSING[cfg.modality]
    meta = {
        "schema": "rt_physio.encoder/1",
        "modality": cfg.modality,
        "architecture": {"d_model": 200, "dim_feedforward": cfg.dim_feedforward, "seq_len": 30,
                         "n_layer": cfg.n_layer, "nhead": cfg.nhead},
        "objective": "masked-patch reconstruction, MSE on masked patches",
        "masking": {"patch_ratio": cfg.patch_ratio, "lead_ratio": lead_ratio},
        "preprocessing": {"bandpass": list(pre.bandpass) if pre.bandpass else None, "notch_hz": cfg.line_freq,
                          "sfreq": 200.0, "scale_uv": 100.0, "max_abs_uv": max_abs},
        "epochs": len(losses),
        "losses": losses,
        "samples_per_epoch": n_samples,
        "recordings": n_recordings,
        "data": recordings_desc,
        "config": asdict(cfg),
        "wall_time_s": round(seconds, 1),
    }
    (out / ENCODER_META).write_text(json.dumps(meta, indent=2) + "\n")
