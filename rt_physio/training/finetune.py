"""Fine-tuning the EEG + ECG fusion model on a labelled dataset (EEGMAT, DREAMER) and saving a model folder.

Recipe (CBraMod's, adapted to CPU budgets): AdamW with a lower rate for the encoders than for the head, weight
decay, linear warm-up then cosine decay, gradient clipping at 1.0, binary cross-entropy with a positive-class
weight (``n_negative / n_positive`` per output, so 0.5 stays the balanced decision point despite class
imbalance), **modality dropout** (a window with both modalities loses one of them with probability
``modality_dropout``, so the model also works from EEG alone or ECG alone), subject-wise splits, and model
selection on validation AUROC. Windows are preprocessed by the engine's own DSP (see
:mod:`rt_physio.training.datasets.prepare`), so the saved model sees at run time what it saw in training.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rt_physio.errors import ConfigError
from rt_physio.io import Recording
from rt_physio.nn.cbramod import CBraMod
from rt_physio.nn.fusion import MODALITIES, FusionModel
from rt_physio.nn.registry import save_model
from rt_physio.nn.spec import SCHEMA, Preprocessing
from rt_physio.training.checkpoint import load_training_state, save_training_state
from rt_physio.training.common import (
    batch_tensors,
    cosine_lambda,
    forward_present,
    load_encoder_init,
    predict_proba,
    set_threads,
)
from rt_physio.training.datasets.prepare import PreparedRecording, default_cache_dir, prepare
from rt_physio.training.datasets.windows import WindowDataset
from rt_physio.training.metrics import binary_metrics

__all__ = ["DEFAULT_PREPROCESSING", "EpochReport", "FinetuneConfig", "FinetuneResult", "finetune", "modality_sets"]

log = logging.getLogger(__name__)

#: Filtering per modality (applied live by the engine too; the notch is at the recording's / engine's mains).
DEFAULT_PREPROCESSING = {
    "eeg": Preprocessing(bandpass=(0.3, 75.0), notch=True),
    "ecg": Preprocessing(bandpass=(0.5, 45.0), notch=True),
}
CHECKPOINT_FILE = "train-state.safetensors"


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run depends on (recorded in the model card)."""

    dataset: str = "eegmat"
    data: str = ""
    out: str = ""
    modalities: tuple[str, ...] = ("eeg", "ecg")
    eeg_layers: int = 4
    eeg_ff: int = 400
    ecg_layers: int = 2
    ecg_ff: int = 400
    nhead: int = 8
    head_hidden: int = 128
    head_dropout: float = 0.3
    eeg_init: str | None = None
    ecg_init: str | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    clip_grad: float = 1.0
    modality_dropout: float = 0.5
    window_s: float = 5.0
    train_hop_s: float = 2.0
    patience: int = 0
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    line_freq: float = 50.0
    label_threshold: float = 3.0
    validation_subjects: tuple[str, ...] = ()
    train_subjects: tuple[str, ...] = ()
    weights_dtype: str = "float16"
    cache: str | None = None
    max_train_windows: int | None = None
    resume: bool = False
    description: str = ""
    command: str = ""


@dataclass(frozen=True)
class EpochReport:
    """One epoch: mean training loss, validation metrics per modality set (mean over outputs), wall time."""

    epoch: int
    loss: float
    validation: dict[str, dict[str, float]]
    seconds: float
    best: bool


@dataclass
class FinetuneResult:
    """What :func:`finetune` produced."""

    out: Path
    sha256: str
    best_epoch: int
    validation: dict[str, dict[str, Any]]
    history: list[EpochReport] = field(default_factory=list)
    seconds: float = 0.0


def modality_sets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Return the modality sets to score a model with these encoders on: both (if any), then each alone."""
    mods = tuple(m for m in MODALITIES if m in modalities)
    sets = [mods] if len(mods) > 1 else []
    return sets + [(m,) for m in mods]


def set_key(modalities: Sequence[str]) -> str:
    """``("eeg", "ecg")`` -> ``"eeg,ecg"`` (canonical order)."""
    return ",".join(m for m in MODALITIES if m in modalities)


def _load_dataset(cfg: FinetuneConfig) -> tuple[list[Recording], list[str], list[str], tuple[str, ...], str]:
    """Load recordings; return them, the train / validation subjects, the outputs and a description."""
    from rt_physio.training.splits import eegmat_split, subject_split

    if cfg.dataset == "eegmat":
        from rt_physio.training.datasets.eegmat import EEGMAT_LABEL, load_eegmat

        split = eegmat_split()
        train = list(cfg.train_subjects or split.train)
        val = list(cfg.validation_subjects or split.validation)
        wanted = sorted({int(s.removeprefix("Subject")) for s in train + val})
        recordings = load_eegmat(cfg.data, wanted, ecg="ecg" in cfg.modalities, eeg="eeg" in cfg.modalities)
        data = (f"PhysioNet EEGMAT 1.0.0 (Zyma et al. 2019), {len(recordings)} recordings; rest = 0, mental "
                "arithmetic = 1")
        return recordings, train, val, (EEGMAT_LABEL,), data
    if cfg.dataset == "dreamer":
        from rt_physio.training.datasets.dreamer import DREAMER_LABELS, load_dreamer

        recordings = [r for r in load_dreamer(cfg.data, threshold=cfg.label_threshold) if r.condition == "stimulus"]
        subjects = sorted({r.subject for r in recordings})
        if cfg.validation_subjects:
            val = list(cfg.validation_subjects)
            train = list(cfg.train_subjects) or [s for s in subjects if s not in val]
        else:
            split = subject_split(subjects, validation=max(1, len(subjects) // 8), seed=cfg.seed)
            train, val = list(split.train), list(split.validation)
        data = (f"DREAMER (Katsigiannis & Ramzan 2018), stimulus clips, self-reports > {cfg.label_threshold:g} = "
                "high")
        return recordings, train, val, DREAMER_LABELS, data
    raise ConfigError(f"The 'dataset' parameter must be 'eegmat' or 'dreamer', got {cfg.dataset!r}.")


def _build_model(cfg: FinetuneConfig, n_outputs: int) -> tuple[FusionModel, dict[str, Any], dict[str, str]]:
    encoders: list[CBraMod | None] = []
    arch: dict[str, Any] = {"type": "fusion"}
    inits: dict[str, str] = {}
    for m in MODALITIES:
        if m not in cfg.modalities:
            encoders.append(None)
            continue
        init = cfg.eeg_init if m == "eeg" else cfg.ecg_init
        if init:
            enc, enc_cfg, source = load_encoder_init(init)
            inits[m] = source
        else:
            enc_cfg = {"d_model": 200, "seq_len": 30, "nhead": cfg.nhead,
                       "n_layer": cfg.eeg_layers if m == "eeg" else cfg.ecg_layers,
                       "dim_feedforward": cfg.eeg_ff if m == "eeg" else cfg.ecg_ff}
            enc = CBraMod(**enc_cfg)
            inits[m] = "random initialisation"
        arch[m] = dict(enc_cfg)
        encoders.append(enc)
    arch["head"] = {"hidden": cfg.head_hidden, "dropout": cfg.head_dropout, "n_outputs": n_outputs}
    model = FusionModel(encoders[0], encoders[1], n_outputs, hidden=cfg.head_hidden, dropout=cfg.head_dropout)
    return model, arch, inits


def _validate(model: FusionModel, val: WindowDataset, device: torch.device, batch_size: int,
              label_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for mods in modality_sets(model.modalities):
        probs, scored = predict_proba(model, val, mods, batch_size=batch_size, device=device)
        per_output = {name: binary_metrics(val.labels[scored, k], probs[scored, k])
                      for k, name in enumerate(label_names)}
        summary: dict[str, Any] = {
            key: float(np.nanmean([float(v[key]) for v in per_output.values()]))
            if any(math.isfinite(float(v[key])) for v in per_output.values()) else math.nan
            for key in ("balanced_accuracy", "f1", "auroc", "auc_pr")
        }
        summary["n_windows"] = int(scored.sum())
        if len(label_names) > 1:
            summary["outputs"] = per_output
        results[set_key(mods)] = summary
    return results


def finetune(cfg: FinetuneConfig, on_epoch: Callable[[EpochReport], None] | None = None,
             progress: bool = True) -> FinetuneResult:
    """Fine-tune a fusion model and write the model folder ``cfg.out`` (``model.toml`` + weights).

    Parameters
    ----------
    cfg : FinetuneConfig
        The run.
    on_epoch : callable, optional
        Called after every epoch with its :class:`EpochReport`.
    progress : bool
        Show a tqdm progress bar (stderr) with the running loss.

    Returns
    -------
    FinetuneResult
        The folder, the weights' sha256, the selected epoch and its validation metrics.

    Raises
    ------
    ConfigError
        Invalid settings. DatasetError / ModelError: unusable data or initialisation checkpoints.
    """
    from tqdm import tqdm

    started = time.monotonic()
    if not cfg.modalities or any(m not in MODALITIES for m in cfg.modalities):
        raise ConfigError(f"The 'modalities' parameter must be a non-empty subset of {list(MODALITIES)}, got "
                          f"{list(cfg.modalities)}.")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError(f"epochs and batch size must be positive, got {cfg.epochs} and {cfg.batch_size}.")
    if not 0.0 <= cfg.modality_dropout <= 1.0:
        raise ConfigError(f"The 'modality_dropout' parameter must be in [0, 1], got {cfg.modality_dropout}.")
    set_threads(cfg.threads)
    device = torch.device(cfg.device)
    out = Path(cfg.out)
    recordings, train_subj, val_subj, label_names, data_desc = _load_dataset(cfg)
    line_freq = cfg.line_freq
    overlap = sorted(set(train_subj) & set(val_subj))
    if overlap:
        raise ConfigError(f"Subjects {overlap} are in both the training and the validation split.")
    preprocessing = {m: DEFAULT_PREPROCESSING[m] for m in cfg.modalities}
    cache = Path(cfg.cache) if cfg.cache else default_cache_dir() / "prepared"
    prepared = prepare(recordings, preprocessing, line_freq=line_freq, scale_uv=100.0, cache_dir=cache)
    train_recs = [r for r in prepared if r.subject in set(train_subj)]
    val_recs = [r for r in prepared if r.subject in set(val_subj)]
    if not train_recs or not val_recs:
        raise ConfigError(f"No recordings for the {'training' if not train_recs else 'validation'} subjects "
                          f"{train_subj if not train_recs else val_subj} in {cfg.data}.")
    val = WindowDataset(val_recs, label_names, window_s=cfg.window_s, hop_s=cfg.window_s, modalities=cfg.modalities)
    probe = WindowDataset(train_recs, label_names, window_s=cfg.window_s, hop_s=cfg.train_hop_s,
                          modalities=cfg.modalities)
    n_pos = probe.labels.sum(axis=0)
    n_neg = len(probe) - n_pos
    pos_weight = torch.tensor(np.where(n_pos > 0, n_neg / np.maximum(n_pos, 1), 1.0), dtype=torch.float32)

    torch.manual_seed(cfg.seed)
    model, arch, inits = _build_model(cfg, len(label_names))
    model.to(device)
    encoder_params = [p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": encoder_params, "lr": cfg.lr}, {"params": list(model.head.parameters()), "lr": cfg.head_lr}],
        weight_decay=cfg.weight_decay,
    )
    n_train = min(len(probe), cfg.max_train_windows or len(probe))
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    schedule = cosine_lambda(cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch), 1e-2)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(device))

    history: list[EpochReport] = []
    best: tuple[float, int, dict[str, torch.Tensor], dict[str, dict[str, Any]]] | None = None
    first_epoch, step = 0, 0
    ckpt = out / CHECKPOINT_FILE
    if cfg.resume and ckpt.is_file():
        state = load_training_state(ckpt, model, optimizer)
        first_epoch, step = state.epoch, state.step
        if state.record.get("best"):
            b = state.record["best"]
            best_model = copy.deepcopy(model)
            load_training_state(ckpt.with_name("best-" + ckpt.name), best_model, None)
            best = (b["score"], b["epoch"], best_model.state_dict(), b["validation"])
        history = [EpochReport(**h) for h in state.record.get("history", [])]
        log.info("resuming %s after epoch %d", out, first_epoch)

    for epoch in range(first_epoch, cfg.epochs):
        t0 = time.monotonic()
        torch.manual_seed(cfg.seed * 1000 + epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        offset = float(rng.uniform(0, cfg.train_hop_s))
        train = WindowDataset(train_recs, label_names, window_s=cfg.window_s, hop_s=cfg.train_hop_s,
                              modalities=cfg.modalities, offset_s=offset)
        order = rng.permutation(len(train))[:n_train]
        model.train()
        losses: list[float] = []
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, leave=False, mininterval=2.0)
        for start in bar:
            idx = order[start:start + cfg.batch_size]
            inputs, present, labels = batch_tensors(train.batch(idx), device)
            present = _modality_dropout(present, cfg.modality_dropout, rng)
            for g, base in zip(optimizer.param_groups, (cfg.lr, cfg.head_lr), strict=True):
                g["lr"] = base * schedule(step)
            loss = loss_fn(forward_present(model, inputs, present), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            step += 1
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        bar.close()
        validation = _validate(model, val, device, 2 * cfg.batch_size, label_names)
        score = validation[set_key(model.modalities)]["auroc"]
        score = score if math.isfinite(score) else -1.0
        is_best = best is None or score > best[0]
        if is_best:
            best = (score, epoch + 1, copy.deepcopy(model.state_dict()), validation)
        report = EpochReport(epoch + 1, float(np.mean(losses)), validation, time.monotonic() - t0, is_best)
        history.append(report)
        if on_epoch is not None:
            on_epoch(report)
        record = {"config": asdict(cfg), "history": [asdict(h) for h in history]}
        if best is not None:
            record["best"] = {"score": best[0], "epoch": best[1], "validation": best[3]}
            best_model = copy.deepcopy(model)
            best_model.load_state_dict(best[2])
            save_training_state(ckpt.with_name("best-" + ckpt.name), best_model, optimizer, epoch=best[1],
                                step=step, record={})
        save_training_state(ckpt, model, optimizer, epoch=epoch + 1, step=step, record=record)
        if cfg.patience and best is not None and epoch + 1 - best[1] >= cfg.patience:
            log.info("no validation AUROC gain for %d epochs: stopping after epoch %d", cfg.patience, epoch + 1)
            break

    assert best is not None
    model.load_state_dict(best[2])
    model.eval()
    fields = _card(cfg, arch, inits, label_names, preprocessing, data_desc, train_subj, val_subj, recordings,
                   best[1], best[3], history, time.monotonic() - started, line_freq)
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[cfg.weights_dtype]
    sha256 = save_model(out, model.cpu(), fields, dtype=dtype)
    for path in (ckpt, ckpt.with_name("best-" + ckpt.name)):
        path.unlink(missing_ok=True)
    return FinetuneResult(out, sha256, best[1], best[3], history, time.monotonic() - started)


def _modality_dropout(present: torch.Tensor, p: float, rng: np.random.Generator) -> torch.Tensor:
    """Drop EEG or ECG (50/50) from rows that have both, each with probability ``p``."""
    if p <= 0:
        return present
    both = present.all(dim=1).cpu().numpy()
    drop = both & (rng.random(both.size) < p)
    which = rng.integers(0, 2, both.size)
    out = present.clone()
    rows = np.flatnonzero(drop)
    out[rows, which[rows]] = False
    return out


def _card(cfg: FinetuneConfig, arch: dict[str, Any], inits: dict[str, str], label_names: Sequence[str],
          preprocessing: dict[str, Preprocessing], data_desc: str, train_subj: Sequence[str],
          val_subj: Sequence[str], recordings: Sequence[Recording | PreparedRecording], best_epoch: int,
          validation: dict[str, dict[str, Any]], history: Sequence[EpochReport], seconds: float,
          line_freq: float) -> dict[str, Any]:
    channels: dict[str, list[str]] = {}
    for rec in recordings:
        if isinstance(rec, Recording):
            for m, sig in rec.signals.items():
                channels.setdefault(m, list(sig.channel_names))
    missing = sorted({f"{r.name} ({m})" for r in recordings for m in r.missing})
    metrics = {k: {kk: vv for kk, vv in v.items() if kk != "outputs" and not (isinstance(vv, float)
                                                                             and not math.isfinite(vv))}
               for k, v in validation.items()}
    outputs_desc = ", ".join(label_names)
    description = cfg.description or (
        f"EEG + ECG fusion model (CBraMod-style encoders, concatenated pooled embeddings, MLP head) fine-tuned on "
        f"{cfg.dataset}; outputs: {outputs_desc}. Runs on EEG alone, ECG alone or both (modality dropout in "
        "training); any EEG montage is accepted, see provenance.trained_channels."
    )
    return {
        "schema": SCHEMA,
        "trained": True,
        "description": description,
        "architecture": arch,
        "inputs": {"sfreq": 200.0, "window_s": float(cfg.window_s), "scale_uv": 100.0,
                   **{m: {"channels": []} for m in MODALITIES if m in cfg.modalities}},
        "preprocessing": {m: ({"bandpass": list(p.bandpass)} if p.bandpass else {}) | {"notch": p.notch}
                          for m, p in preprocessing.items()},
        "outputs": {"names": list(label_names), "activation": "sigmoid"},
        "provenance": {
            "seed": cfg.seed,
            "data": data_desc,
            "split": {"train": list(train_subj), "validation": list(val_subj)},
            "windows": f"{cfg.window_s:g}-s windows; training hop {cfg.train_hop_s:g} s with a random offset per "
                       f"epoch; validation non-overlapping",
            "preprocessing_note": (
                f"each modality through the engine's StreamProcessor: band-pass (Butterworth order 4), notch at "
                f"the mains frequency ({line_freq:g} Hz for this data), polyphase resampling to 200 Hz, then "
                "µV / 100; 1-s patches"
            ),
            "trained_channels": {m: c for m, c in channels.items()},
            "missing_modalities": missing,
            "initialisation": inits,
            "training": {
                "epochs": cfg.epochs, "selected_epoch": best_epoch, "batch_size": cfg.batch_size,
                "lr_encoders": cfg.lr, "lr_head": cfg.head_lr, "weight_decay": cfg.weight_decay,
                "schedule": f"linear warm-up {cfg.warmup_epochs:g} epoch, cosine to 1 % of the base rate",
                "clip_grad": cfg.clip_grad, "modality_dropout": cfg.modality_dropout,
                "class_weighting": "BCE pos_weight = n_negative / n_positive (training windows)",
                "selection": "best validation AUROC of the full modality set",
                "loss_per_epoch": [round(h.loss, 5) for h in history],
                "validation_auroc_per_epoch": [
                    round(h.validation[set_key(cfg.modalities)]["auroc"], 4) for h in history],
                "wall_time_s": round(seconds, 1),
                "device": str(cfg.device),
            },
            "validation_metrics": metrics,
            "training_command": cfg.command or f"rt-physio train finetune --dataset {cfg.dataset} --data {cfg.data} "
                                                 f"--out {cfg.out}",
        },
    }
