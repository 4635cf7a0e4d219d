"""A calibrated head for a trained fusion model: ``rt-physio train calibrate-head``.

The encoders stay as fine-tuned; what changes is what the head sees. Each subject's first ``seconds`` of rest
are that subject's baseline (:func:`rt_physio.training.calibration.baseline_mask`); the pooled embeddings of
every later window are centred on the baseline's mean embedding (per modality), and a new head
(``calibrated_head``, the same MLP shape as the model's head) learns from the centred embeddings. Calibration
windows are never trained on or scored. Rows are trained with every modality subset the model supports (EEG +
ECG, EEG alone, ECG alone), so the calibrated model also copes with a modality that drops out. The result is
a model folder that ``rt-physio run --calibrate S`` and ``rt-physio evaluate --calibrate S`` use.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from rt_physio.nn.fusion import EMBED_DIM, MODALITIES, FusionModel, make_head
from rt_physio.nn.registry import LoadedModel, save_model
from rt_physio.training.calibration import baseline_mask, center_by_subject, population_fallback
from rt_physio.training.datasets.base import WindowDataset
from rt_physio.training.metrics import binary_metrics

__all__ = ["CalibratedHeadResult", "embed_windows", "fit_calibrated_head", "save_calibrated", "subsets_of",
           "train_calibrated_head"]

log = logging.getLogger(__name__)


@torch.no_grad()
def embed_windows(module: FusionModel, windows: WindowDataset, batch_size: int = 64
                  ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Pooled embeddings ``(n, 400)`` of every window (zeros where a modality is absent) and ``(n, 2)`` flags."""
    module.eval()
    feats = np.zeros((len(windows), len(MODALITIES) * EMBED_DIM), dtype=np.float32)
    encoders = (module.eeg_encoder, module.ecg_encoder)
    present = windows.present & np.array([enc is not None for enc in encoders])[None, :]
    for start in range(0, len(windows), batch_size):
        idx = np.arange(start, min(start + batch_size, len(windows)))
        batch = windows.batch(idx)
        for k, (m, enc) in enumerate(zip(MODALITIES, encoders, strict=True)):
            rows = np.flatnonzero(present[idx, k])
            if enc is None or m not in batch.inputs or rows.size == 0:
                continue
            x = torch.from_numpy(batch.inputs[m][rows])
            feats[idx[rows], k * EMBED_DIM:(k + 1) * EMBED_DIM] = enc(x).mean(dim=(1, 2)).numpy()
    return feats, present


def subsets_of(feats: NDArray[np.float32], present: NDArray[np.bool_], sets: Sequence[Sequence[str]]
               ) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.int64]]:
    """Rows restricted to each modality set (absent blocks zeroed); returns features, flags and source rows."""
    out_f, out_p, out_i = [], [], []
    for s in sets:
        keep = np.array([m in s for m in MODALITIES])
        flags = present & keep[None, :]
        rows = np.flatnonzero(flags.any(axis=1))
        f = feats[rows].copy()
        for k in range(len(MODALITIES)):
            f[~flags[rows, k], k * EMBED_DIM:(k + 1) * EMBED_DIM] = 0.0
        out_f.append(f)
        out_p.append(flags[rows])
        out_i.append(rows)
    return np.concatenate(out_f), np.concatenate(out_p), np.concatenate(out_i)


@dataclass
class CalibratedHeadResult:
    """The fitted head and what it scored on the validation subjects."""

    head: nn.Sequential
    fallback: NDArray[np.float64]
    validation: dict[str, dict[str, float | int]]
    epoch: int


def fit_calibrated_head(module: FusionModel, windows: WindowDataset, feats: NDArray[np.float32],
                        present: NDArray[np.bool_], train_subjects: Sequence[str], val_subjects: Sequence[str], *,
                        seconds: float, hidden: int, dropout: float = 0.3, epochs: int = 300, lr: float = 1e-3,
                        weight_decay: float = 1e-2, seed: int = 0) -> CalibratedHeadResult:
    """Train a head on subject-centred embeddings; keep the epoch with the best validation AUROC (EEG + ECG)."""
    is_base = baseline_mask(windows, seconds)
    modality = np.repeat(np.arange(len(MODALITIES)), EMBED_DIM)
    subjects = windows.subjects.astype(str)
    train_mask = np.isin(subjects, list(train_subjects))
    _, baselines = center_by_subject(feats[train_mask], present[train_mask], subjects[train_mask],
                                     is_base[train_mask], modality)
    fallback = population_fallback(baselines, modality)
    centred, _ = center_by_subject(feats, present, subjects, is_base, modality, fallback)
    sets = [("eeg", "ecg"), ("eeg",), ("ecg",)]
    scored = ~is_base
    tr_rows = np.flatnonzero(train_mask & scored)
    x_tr, p_tr, src = subsets_of(centred[tr_rows].astype(np.float32), present[tr_rows], sets)
    y_tr = windows.labels[tr_rows][src, 0]
    val_mask = np.isin(subjects, list(val_subjects)) & scored
    torch.manual_seed(seed)
    head = make_head(hidden, dropout, 1)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    pos_weight = torch.tensor([(y_tr == 0).sum() / max(1, (y_tr == 1).sum())], dtype=torch.float32)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    xt = torch.from_numpy(np.concatenate([x_tr, p_tr.astype(np.float32)], axis=1))
    yt = torch.from_numpy(y_tr.astype(np.float32))[:, None]
    rng = np.random.default_rng(seed)
    best: tuple[float, int, dict[str, Any], dict[str, dict[str, float | int]]] | None = None
    for epoch in range(1, epochs + 1):
        head.train()
        for idx in np.array_split(rng.permutation(len(xt)), max(1, len(xt) // 128)):
            opt.zero_grad()
            loss = loss_fn(head(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        if epoch % 5 and epoch != epochs:
            continue
        metrics = _score(head, centred, present, windows.labels[:, 0], val_mask, sets)
        auroc = float(metrics["eeg,ecg"]["auroc"])
        if best is None or auroc > best[0]:
            best = (auroc, epoch, copy.deepcopy(head.state_dict()), metrics)
    assert best is not None
    head.load_state_dict(best[2])
    head.eval()
    log.info("calibrated head: best validation AUROC %.4f at epoch %d", best[0], best[1])
    return CalibratedHeadResult(head, fallback, best[3], best[1])


@torch.no_grad()
def _score(head: nn.Sequential, centred: NDArray[np.float64], present: NDArray[np.bool_], labels: NDArray[np.float32],
           rows_mask: NDArray[np.bool_], sets: Sequence[Sequence[str]]) -> dict[str, dict[str, float | int]]:
    head.eval()
    out = {}
    rows = np.flatnonzero(rows_mask)
    for s in sets:
        x, p, src = subsets_of(centred[rows].astype(np.float32), present[rows], [s])
        z = torch.from_numpy(np.concatenate([x, p.astype(np.float32)], axis=1))
        prob = torch.sigmoid(head(z))[:, 0].numpy()
        out[",".join(s)] = binary_metrics(labels[rows][src], prob)
    return out


def save_calibrated(loaded: LoadedModel, result: CalibratedHeadResult, out: Path, *, seconds: float, hidden: int,
                    extra_provenance: dict[str, Any]) -> str:
    """Write a model folder: the source model plus ``calibrated_head`` and ``[calibration]``; returns the sha256."""
    spec = loaded.spec
    arch = copy.deepcopy(spec.architecture)
    arch["calibrated_head"] = {"hidden": hidden}
    module = FusionModel.from_config(arch, n_outputs=len(spec.outputs))
    state = loaded.module.state_dict()
    state.update({f"calibrated_head.{k}": v for k, v in result.head.state_dict().items()})
    state["calibration_fallback"] = torch.from_numpy(result.fallback.astype(np.float32))
    module.load_state_dict(state)
    fields = _spec_fields(loaded)
    fields["architecture"] = arch
    fields["calibration"] = {"seconds": float(seconds), "level": "embeddings", "expects": True}
    fields["provenance"] = {**fields["provenance"], **extra_provenance}
    fields["name"] = out.name
    return save_model(out, module, fields, dtype=torch.float16)


def train_calibrated_head(model: str | Path, data: str | Path, out: str | Path, *, seconds: float = 60.0,
                          hidden: int = 129, epochs: int = 150, seed: int = 0, cache: Path | None = None,
                          train_subjects: Sequence[str] | None = None, val_subjects: Sequence[str] | None = None,
                          command: str = "") -> tuple[CalibratedHeadResult, str]:
    """Load a fusion model and EEGMAT, fit a calibrated head, write the new model folder (see the module doc).

    Raises
    ------
    ModelError
        ``model`` is not a fusion model.
    """
    from rt_physio.errors import ModelError
    from rt_physio.nn.registry import load_model
    from rt_physio.training.datasets.base import default_cache_dir, prepare
    from rt_physio.training.evaluate import load_labelled, select_channels
    from rt_physio.training.splits import eegmat_split

    loaded = load_model(model)
    if not isinstance(loaded.module, FusionModel):
        raise ModelError(f"Model {loaded.spec.name!r} is not a fusion model; calibrate-head needs one.")
    spec = loaded.spec
    split = eegmat_split()
    train = list(train_subjects or split.train)
    val = list(val_subjects or split.validation)
    recs, line_freq = load_labelled("eegmat", Path(data), [*train, *val], 3.0, spec.modalities)
    recs = select_channels(recs, {m: spec.channels.get(m, ()) for m in spec.modalities})
    prepared = prepare(recs, {m: spec.preprocessing[m] for m in spec.modalities}, line_freq=line_freq,
                       scale_uv=spec.scale_uv, sfreq_out=spec.sfreq,
                       cache_dir=cache if cache is not None else default_cache_dir() / "prepared")
    windows = WindowDataset(prepared, list(spec.outputs), window_s=spec.window_s, hop_s=spec.window_s,
                            modalities=spec.modalities)
    feats, present = embed_windows(loaded.module, windows)
    result = fit_calibrated_head(loaded.module, windows, feats, present, train, val, seconds=seconds, hidden=hidden,
                                 epochs=epochs, seed=seed)
    metrics = {k: {name: round(float(v), 4) for name, v in m.items()} for k, m in result.validation.items()}
    extra = {"calibrated_head": {
        "source_model": spec.name, "source_weights_sha256": loaded.sha256, "command": command,
        "baseline": f"each subject's first {seconds:g} s of rest; those windows are never trained on or scored",
        "train_subjects": train, "validation_subjects": val, "selected_epoch": result.epoch, "seed": seed,
        "validation_metrics_calibrated": metrics,
    }}
    sha256 = save_calibrated(loaded, result, Path(out), seconds=seconds, hidden=hidden, extra_provenance=extra)
    return result, sha256


def _spec_fields(loaded: LoadedModel) -> dict[str, Any]:
    from rt_physio.config import load_toml

    data = dict(load_toml(loaded.spec.model_file))
    data["provenance"] = {k: v for k, v in data["provenance"].items() if k not in ("weights_sha256", "weights_dtype")}
    return data
