"""Self-supervised pre-training of an EEG or ECG encoder by masked-patch reconstruction, in resumable chunks.

CBraMod's recipe with three changes that make the loss mean something and move:

* **dual masking** (:func:`rt_physio.nn.masking.dual_mask`): random patches within each lead, one time span hidden
  in all leads at once, and whole leads;
* **normalised targets**: the model sees the input in model units (µV / 100, as in fine-tuning and live) but
  reconstructs it standardised per sample and lead (:func:`~rt_physio.nn.masking.standardise`), so the loss is
  of order 1 and predicting zeros scores about 1;
* **output layer at zero** (``output_init="zero"``, the default): training starts at the zero predictor; CBraMod's
  Kaiming-initialised ``proj_out`` started at ~4x the targets' variance, and the encoder spent its first epochs
  shrinking it.

After every epoch the model is scored on a fixed set of held-out windows (records or subjects that training
never sees, :mod:`rt_physio.training.pretrain_data`) with fixed masks, beside the zero predictor on the very same
windows and masks; ``history.json`` keeps train loss, held-out loss, zero loss and their ratio per epoch. For ECG,
a non-learned reference (:mod:`rt_physio.training.pretrain_reference`: copy the visible signal from one beat period
away) is scored once on the same windows and masks and recorded in ``encoder.json`` (``reference``), so that a
ratio can be read against what a simple predictor reaches.

A run is cut into chunks: ``minutes`` (or ``chunk_epochs``) ends this call after the epoch that reaches it; the
checkpoint (``checkpoint.safetensors``) stays, the encoder folder is written as it is, and ``resume=True``
continues the same schedule. An epoch is at most ``steps_per_epoch`` batches drawn without replacement.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rt_physio.errors import ConfigError, DatasetError
from rt_physio.nn.cbramod import CBraMod
from rt_physio.nn.masking import dual_mask, heldout_mse, masked_mse, standardise
from rt_physio.training.checkpoint import load_training_state, save_training_state
from rt_physio.training.common import ENCODER_FILE, ENCODER_META, cosine_lambda, set_threads
from rt_physio.training.datasets.prepare import PreparedRecording, default_cache_dir
from rt_physio.training.datasets.windows import WindowDataset
from rt_physio.training.pretrain_data import build_corpus
from rt_physio.training.pretrain_reference import period_copy

__all__ = ["CHECKPOINT_FILE", "HISTORY_FILE", "OUTPUT_INITS", "EpochStats", "PretrainConfig", "PretrainResult",
           "heldout_batches", "pretrain"]

log = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.safetensors"
HISTORY_FILE = "history.json"
#: Initialisations of the output projection (``PretrainConfig.output_init``).
OUTPUT_INITS = ("zero", "kaiming")
REFERENCE_METHOD = ("period copy x0.5: hidden samples = 0.5 x mean of the visible samples 1-3 beat periods "
                    "(masked autocorrelation) away (rt_physio.training.pretrain_reference)")


@dataclass
class PretrainConfig:
    """A pre-training run (recorded in ``encoder.json``). ``None`` fields take a per-modality default."""

    modality: str = "ecg"
    data: tuple[str, ...] = ()
    out: str = ""
    n_layer: int = 2
    dim_feedforward: int = 400
    nhead: int = 8
    epochs: int = 5
    steps_per_epoch: int = 200
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    output_init: str = "zero"  # proj_out at 0 (starts at the zero predictor), or "kaiming" (CBraMod init)
    window_s: float | None = None  # ECG 10 s (several beats), EEG 5 s
    hop_s: float | None = None  # half a window
    patch_ratio: float = 0.3
    span_ratio: float = 0.2
    lead_ratio: float | None = None  # ECG 0.25, EEG 0.1
    max_abs_uv: float | None = None  # EEG 100 µV, ECG none
    eegmat_subjects: tuple[int, ...] = ()
    holdout_fraction: float = 0.1
    heldout_windows: int = 512
    line_freq: float = 50.0
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    cache: str | None = None
    resume: bool = False
    minutes: float | None = None
    chunk_epochs: int | None = None
    command: str = ""


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean train loss, held-out masked MSE of the model and of the zero predictor, their ratio."""

    epoch: int
    train_loss: float
    heldout_loss: float
    zero_loss: float
    ratio: float
    seconds: float


@dataclass(frozen=True)
class PretrainResult:
    """What :func:`pretrain` wrote (``finished`` is False when a chunk stopped before the last epoch)."""

    out: Path
    history: list[EpochStats]
    n_windows: int
    n_recordings: int
    seconds: float
    finished: bool
    description: dict[str, Any] = field(default_factory=dict)


def _defaults(cfg: PretrainConfig) -> tuple[float, float, float, float | None]:
    ecg = cfg.modality == "ecg"
    window = cfg.window_s if cfg.window_s is not None else (10.0 if ecg else 5.0)
    hop = cfg.hop_s if cfg.hop_s is not None else window / 2
    lead = cfg.lead_ratio if cfg.lead_ratio is not None else (0.25 if ecg else 0.1)
    max_abs = cfg.max_abs_uv if cfg.max_abs_uv is not None else (None if ecg else 100.0)
    return window, hop, lead, max_abs


def _windows(recs: list[PreparedRecording], modality: str, window: float, hop: float,
             max_abs: float | None) -> list[tuple[WindowDataset, np.ndarray]]:
    """One dataset per lead count, with the indices of the windows kept (peak below ``max_abs`` µV)."""
    by_leads: dict[int, list[PreparedRecording]] = {}
    for rec in recs:
        by_leads.setdefault(rec.signals[modality].shape[0], []).append(rec)
    out: list[tuple[WindowDataset, np.ndarray]] = []
    for _, members in sorted(by_leads.items()):
        ds = WindowDataset(members, (), window_s=window, hop_s=hop, modalities=(modality,))
        keep = np.arange(len(ds))
        if max_abs is not None and len(ds):
            peak = np.array([np.abs(ds.batch([int(j)]).inputs[modality]).max() for j in keep])
            keep = keep[peak < max_abs / 100.0]
        if keep.size:
            out.append((ds, keep))
    return out


def heldout_batches(held: list[tuple[WindowDataset, np.ndarray]], cfg: PretrainConfig,
                    lead_ratio: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Draw the fixed held-out evaluation set of a run: the same ``cfg`` gives the same windows and masks.

    Parameters
    ----------
    held : list of (WindowDataset, ndarray)
        Held-out windows per lead count (and the indices kept), as the run builds them.
    cfg : PretrainConfig
        The run (``seed``, ``heldout_windows``, ``batch_size``, masking ratios).
    lead_ratio : float
        The resolved whole-lead masking probability.

    Returns
    -------
    list of (Tensor, Tensor)
        ``(B, C, N, 200)`` windows and their ``(B, C, N)`` masks.
    """
    eval_gen = torch.Generator().manual_seed(cfg.seed + 7919)
    eval_batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    per_group = max(1, cfg.heldout_windows // len(held))
    for ds, keep in held:
        pick = keep[torch.randperm(len(keep), generator=eval_gen)[:per_group].numpy()]
        for s in range(0, len(pick), cfg.batch_size):
            x = torch.from_numpy(ds.batch(pick[s:s + cfg.batch_size]).inputs[cfg.modality])
            shape = (int(x.shape[0]), int(x.shape[1]), int(x.shape[2]))
            eval_batches.append((x, dual_mask(shape, cfg.patch_ratio, lead_ratio, generator=eval_gen,
                                              span_ratio=cfg.span_ratio)))
    return eval_batches


def pretrain(cfg: PretrainConfig, on_epoch: Callable[[EpochStats], None] | None = None,
             progress: bool = True) -> PretrainResult:
    """Pre-train (or continue pre-training) an encoder and write its folder ``cfg.out``.

    Parameters
    ----------
    cfg : PretrainConfig
        The run.
    on_epoch : callable(EpochStats), optional
        Called after every epoch.
    progress : bool
        Show a tqdm progress bar (stderr).

    Raises
    ------
    ConfigError
        Invalid settings. DatasetError: no usable data.
    """
    from tqdm import tqdm

    started = time.monotonic()
    if cfg.modality not in ("eeg", "ecg"):
        raise ConfigError(f"The 'modality' parameter must be 'eeg' or 'ecg', got {cfg.modality!r}.")
    if cfg.output_init not in OUTPUT_INITS:
        raise ConfigError(f"The 'output_init' parameter must be one of {OUTPUT_INITS}, got {cfg.output_init!r}.")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.steps_per_epoch < 1:
        raise ConfigError("epochs, steps per epoch and batch size must be positive, got "
                          f"{cfg.epochs}, {cfg.steps_per_epoch} and {cfg.batch_size}.")
    window, hop, lead_ratio, max_abs = _defaults(cfg)
    set_threads(cfg.threads)
    device = torch.device(cfg.device)
    out = Path(cfg.out)
    done = _finished_before(out, cfg)
    if done is not None:
        return done
    cache = Path(cfg.cache) if cfg.cache else default_cache_dir() / "prepared"
    corpus = build_corpus(cfg.modality, cfg.data, eegmat_subjects=cfg.eegmat_subjects,
                          holdout_fraction=cfg.holdout_fraction, seed=cfg.seed, line_freq=cfg.line_freq, cache=cache)
    train = _windows(corpus.train, cfg.modality, window, hop, max_abs)
    held = _windows(corpus.heldout, cfg.modality, window, window, max_abs)
    n_windows = sum(len(k) for _, k in train)
    if n_windows == 0:
        raise DatasetError(f"No {window:g}-s training windows in {list(cfg.data)}.")
    if not held:
        raise DatasetError(f"No {window:g}-s held-out windows in {list(cfg.data)} (need 2+ subjects or cinc2017).")
    eval_batches = heldout_batches(held, cfg, lead_ratio)
    reference = _reference(eval_batches) if cfg.modality == "ecg" else None
    if reference is not None:
        log.info("held-out reference (period copy): %.4f, zero predictor %.4f, ratio %.3f", reference["heldout_loss"],
                 reference["zero_loss"], reference["ratio"])
    torch.manual_seed(cfg.seed)
    model = CBraMod(n_layer=cfg.n_layer, dim_feedforward=cfg.dim_feedforward, nhead=cfg.nhead).to(device)
    if cfg.output_init == "zero":
        # CBraMod's Kaiming init makes the first outputs ~4x the targets' variance (train loss ~4 where zeros
        # score 1); the encoder then spends its first steps shrinking them. Starting at zero starts at the zero
        # predictor (a resumed run loads its weights over this).
        for layer in model.proj_out.modules():
            if isinstance(layer, nn.Linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = np.array([len(k) for _, k in train], dtype=np.float64)
    steps_per_epoch = min(cfg.steps_per_epoch, max(1, n_windows // cfg.batch_size))
    schedule = cosine_lambda(cfg.epochs * steps_per_epoch, max(1, steps_per_epoch // 2), 1e-2)
    history: list[EpochStats] = []
    first_epoch, step, spent = 0, 0, 0.0
    ckpt = out / CHECKPOINT_FILE
    if cfg.resume and ckpt.is_file():
        state = load_training_state(ckpt, model, optimizer)
        first_epoch, step = state.epoch, state.step
        history = [EpochStats(**h) for h in state.record.get("history", [])]
        spent = float(state.record.get("train_seconds", 0.0))
        log.info("resuming %s after epoch %d", out, first_epoch)
    elif cfg.resume:
        log.info("no checkpoint in %s: starting from scratch", out)

    for epochs_now, epoch in enumerate(range(first_epoch, cfg.epochs), start=1):
        t0 = time.monotonic()
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        torch.manual_seed(cfg.seed * 1000 + epoch)
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)
        groups = rng.choice(len(train), size=steps_per_epoch, p=weights / weights.sum())
        model.train()
        losses: list[float] = []
        bar = tqdm(groups, desc=f"pretrain {cfg.modality} {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, leave=False, mininterval=5.0)
        for g in bar:
            ds, keep = train[int(g)]
            idx = rng.choice(keep, size=min(cfg.batch_size, len(keep)), replace=False)
            x = torch.from_numpy(ds.batch(idx).inputs[cfg.modality]).to(device)  # (B, C, N, 200)
            shape = (int(x.shape[0]), int(x.shape[1]), int(x.shape[2]))
            mask = dual_mask(shape, cfg.patch_ratio, lead_ratio, generator=gen, device=device,
                             span_ratio=cfg.span_ratio)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * schedule(step)
            loss = masked_mse(model(x, mask=mask), standardise(x), mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        bar.close()
        held_loss, zero = _evaluate(model, eval_batches, device)
        seconds = time.monotonic() - t0
        spent += seconds
        stats = EpochStats(epoch + 1, float(np.mean(losses)), held_loss, zero, held_loss / zero, round(seconds, 2))
        history.append(stats)
        log.info("epoch %d: train %.4f, held-out %.4f, zero predictor %.4f, ratio %.3f (%.0f s)", stats.epoch,
                 stats.train_loss, held_loss, zero, stats.ratio, seconds)
        save_training_state(ckpt, model, optimizer, epoch=epoch + 1, step=step,
                            record={"history": [asdict(h) for h in history], "train_seconds": spent,
                                    "config": asdict(cfg)})
        # the encoder folder is current after every epoch: a chunk killed outright still leaves a usable encoder
        _write_encoder(out, model, cfg, history, dict(corpus.description), n_windows, epoch + 1 >= cfg.epochs,
                       spent, {"window_s": window, "hop_s": hop, "lead_ratio": lead_ratio, "max_abs_uv": max_abs},
                       reference)
        if on_epoch is not None:
            on_epoch(stats)
        elapsed = time.monotonic() - started
        if cfg.chunk_epochs is not None and epochs_now >= cfg.chunk_epochs:
            break
        if cfg.minutes is not None and elapsed + seconds > cfg.minutes * 60.0:
            break
    finished = bool(history) and history[-1].epoch >= cfg.epochs
    desc = dict(corpus.description)
    _write_encoder(out, model, cfg, history, desc, n_windows, finished, spent,
                   {"window_s": window, "hop_s": hop, "lead_ratio": lead_ratio, "max_abs_uv": max_abs}, reference)
    if finished:
        ckpt.unlink(missing_ok=True)
    return PretrainResult(out, history, n_windows, len(corpus.train), time.monotonic() - started, finished, desc)


def _finished_before(out: Path, cfg: PretrainConfig) -> PretrainResult | None:
    """With ``resume``, an encoder folder that already finished ``cfg.epochs`` (and has no checkpoint) is kept."""
    meta_file = out / ENCODER_META
    if not cfg.resume or (out / CHECKPOINT_FILE).is_file() or not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text())
    if not meta.get("finished") or int(meta.get("epochs", 0)) < cfg.epochs:
        return None
    log.info("%s already finished %d epochs; nothing to resume", out, meta["epochs"])
    history = [EpochStats(**h) for h in meta.get("history", [])]
    return PretrainResult(out, history, int(meta.get("train_windows", 0)),
                          int(meta.get("corpus", {}).get("n_train_recordings", 0)), 0.0, True, meta.get("corpus", {}))


@torch.no_grad()
def _evaluate(model: CBraMod, batches: list[tuple[torch.Tensor, torch.Tensor]],
              device: torch.device) -> tuple[float, float]:
    """Masked MSE of the model and of the zero predictor on the fixed held-out set (weighted by masked patches)."""
    model.eval()
    losses = heldout_mse(batches, lambda x, mask, _: model(x, mask=mask), device)
    model.train()
    return losses


def _reference(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """Masked MSE of the non-learned period-copy reference on the fixed held-out set, beside the zero predictor."""
    err, zero = heldout_mse(batches, lambda _, mask, target: period_copy(target, mask))
    return {"method": REFERENCE_METHOD, "heldout_loss": err, "zero_loss": zero, "ratio": err / zero}


def _write_encoder(out: Path, model: CBraMod, cfg: PretrainConfig, history: list[EpochStats],
                   corpus: dict[str, Any], n_windows: int, finished: bool, seconds: float,
                   resolved: dict[str, Any], reference: dict[str, Any] | None = None) -> None:
    import safetensors.torch

    from rt_physio.training.finetune import DEFAULT_PREPROCESSING

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(out / ENCODER_FILE), metadata={"format": "pt"})
    pre = DEFAULT_PREPROCESSING[cfg.modality]
    hist = [asdict(h) for h in history]
    meta = {
        "schema": "rt_physio.encoder/2",
        "modality": cfg.modality,
        "architecture": {"d_model": 200, "dim_feedforward": cfg.dim_feedforward, "seq_len": 30,
                         "n_layer": cfg.n_layer, "nhead": cfg.nhead},
        "objective": "masked-patch reconstruction of the input standardised per sample and lead; MSE on masked "
                     "patches (the zero predictor scores ~1)",
        "masking": {"patch_ratio": cfg.patch_ratio, "span_ratio": cfg.span_ratio,
                    "lead_ratio": resolved["lead_ratio"]},
        "preprocessing": {"bandpass": list(pre.bandpass) if pre.bandpass else None, "notch_hz": cfg.line_freq,
                          "sfreq": 200.0, "scale_uv": 100.0, "max_abs_uv": resolved["max_abs_uv"]},
        "window_s": resolved["window_s"],
        "hop_s": resolved["hop_s"],
        "epochs": len(history),
        "epochs_planned": cfg.epochs,
        "finished": finished,
        "train_windows": n_windows,
        "final": hist[-1] if hist else None,
        "reference": reference,
        "train_wall_time_s": round(seconds, 1),
        "corpus": corpus,
        "history": hist,
        "config": asdict(cfg),
    }
    (out / ENCODER_META).write_text(json.dumps(meta, indent=2) + "\n")
    (out / HISTORY_FILE).write_text(json.dumps(hist, indent=2) + "\n")
