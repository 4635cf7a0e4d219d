"""A calibrated head for a trained fusion model: ``rt-physio train calibrate-head``.

The encoders stay as fine-tuned; what changes is what the head sees. Each subject's first ``seconds`` of rest
are that subject's baseline (:func:`rt_physio.training.calibration.baseline_mask`); the pooled embeddings of
every later window are centred on the baseline's mean embedding (per modality), and a new head
(``calibrated_head``) learns from the centred embeddings: by default (``hidden = 0``) a logistic regression on
standardised embeddings, its strength ``C`` chosen on the validation subjects and the standardisation folded
into one linear layer; with ``hidden > 0`` an MLP of the model's head shape, trained with AdamW. (Over 8
subject folds the logistic regression generalised better than the MLP: see docs/results.md.) Calibration
windows are never trained on or scored. Rows are trained with every modality subset the model supports (EEG +
ECG, EEG alone, ECG alone), so the calibrated model also copes with a modality that drops out. The result is
a model folder that ``rt-physio run --calibrate S`` and ``rt-physio evaluate --calibrate S`` use.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from rt_physio.nn.fusion import EMBED_DIM, MODALITIES, FusionModel, make_head
from rt_physio.nn.registry import LoadedModel, save_model
from rt_physio.training.calibration import baseline_mask, center_by_subject, population_fallback
from rt_physio.training.common import embed_present
from rt_physio.training.datasets.windows import WindowDataset
from rt_physio.training.metrics import binary_metrics

__all__ = ["CalibratedFinetune", "CalibratedHeadResult", "embed_windows", "finetune_calibrated", "fit_calibrated_head",
           "save_calibrated", "subsets_of", "train_calibrated_head"]

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
        inputs = {m: torch.from_numpy(x) for m, x in batch.inputs.items()}
        eeg_emb, ecg_emb, _ = embed_present(module, inputs, torch.from_numpy(present[idx]))
        feats[idx] = torch.cat((eeg_emb, ecg_emb), dim=1).numpy()
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
    epoch: int  # selected epoch of an MLP head (0 for a linear one)
    c: float | None = None  # chosen inverse regularisation strength of a linear head


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
    if hidden == 0:
        return _fit_linear_head(centred, present, windows.labels[:, 0], x_tr, p_tr, y_tr, val_mask, sets, fallback,
                                seed)
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


@dataclass(frozen=True)
class CalibratedFinetune:
    """Options of :func:`finetune_calibrated` (end-to-end training on centred embeddings)."""

    epochs: int = 3
    lr: float = 1e-4  # encoders (they start fine-tuned)
    head_lr: float = 1e-3  # both heads
    weight_decay: float = 0.05
    subjects_per_step: int = 4
    baseline_per_subject: int = 4  # baseline windows whose mean embedding centres that subject's others
    windows_per_subject: int = 8
    train_hop_s: float = 2.0
    modality_dropout: float = 0.5
    clip_grad: float = 1.0


def finetune_calibrated(module: FusionModel, head: nn.Sequential, prepared: Sequence[Any], label_names: Sequence[str],
                        windows: WindowDataset, train_subjects: Sequence[str], val_subjects: Sequence[str], *,
                        seconds: float, window_s: float, opts: CalibratedFinetune, seed: int = 0
                        ) -> tuple[CalibratedHeadResult, list[dict[str, Any]]]:
    """Train the encoders, the calibrated head and the plain head together, on embeddings centred per subject.

    The calibrated head is trained as the engine uses it: each step takes ``subjects_per_step`` training
    subjects; per subject, the mean embedding of ``baseline_per_subject`` of its calibration windows (its
    first ``seconds`` of rest, cut on a ``train_hop_s`` grid) is subtracted from the embeddings of
    ``windows_per_subject`` of its other windows, and gradients flow through both. The plain head is trained on
    the same windows' raw embeddings (so the model still works uncalibrated with the new encoders). Modality
    dropout as in fine-tuning. After every epoch (and before the first) the validation subjects are scored
    calibrated, exactly as ``rt-physio evaluate --calibrate`` does; the best epoch is kept (``module`` and
    ``head`` are left in that state).

    Returns
    -------
    (CalibratedHeadResult, history)
        The head with the population fallback recomputed on the final encoders and its validation metrics; and
        per epoch, the training loss and validation AUROC.
    """
    modality = np.repeat(np.arange(len(MODALITIES)), EMBED_DIM)
    sets = [("eeg", "ecg"), ("eeg",), ("ecg",)]
    train_recs = [r for r in prepared if r.subject in set(train_subjects)]
    encoder_params = [p for n, p in module.named_parameters() if "head" not in n]
    head_params = [*module.head.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW([{"params": encoder_params, "lr": opts.lr},
                                   {"params": head_params, "lr": opts.head_lr}], weight_decay=opts.weight_decay)

    def evaluate_now() -> tuple[float, dict[str, dict[str, float | int]], NDArray[np.float64]]:
        module.eval()
        head.eval()
        feats, present = embed_windows(module, windows)
        subjects = windows.subjects.astype(str)
        is_base = baseline_mask(windows, seconds)
        train_mask = np.isin(subjects, list(train_subjects))
        _, baselines = center_by_subject(feats[train_mask], present[train_mask], subjects[train_mask],
                                         is_base[train_mask], modality)
        fallback = population_fallback(baselines, modality)
        centred, _ = center_by_subject(feats, present, subjects, is_base, modality, fallback)
        val_mask = np.isin(subjects, list(val_subjects)) & ~is_base
        metrics = _score(head, centred, present, windows.labels[:, 0], val_mask, sets)
        return float(metrics["eeg,ecg"]["auroc"]), metrics, fallback

    auroc, metrics, fallback = evaluate_now()
    best = (auroc, 0, copy.deepcopy(module.state_dict()), copy.deepcopy(head.state_dict()), metrics, fallback)
    history: list[dict[str, Any]] = [{"epoch": 0, "validation_auroc": auroc}]
    log.info("calibrated fine-tuning: validation AUROC %.4f before training", auroc)
    for epoch in range(1, opts.epochs + 1):
        rng = np.random.default_rng([seed, epoch])
        torch.manual_seed(seed * 1000 + epoch)
        ds = WindowDataset(train_recs, list(label_names), window_s=window_s, hop_s=opts.train_hop_s,
                           modalities=windows.modalities, offset_s=float(rng.uniform(0, opts.train_hop_s)))
        base = baseline_mask(ds, seconds)
        subj = ds.subjects.astype(str)
        pools = {s: (np.flatnonzero(base & (subj == s)), np.flatnonzero(~base & (subj == s)))
                 for s in sorted(set(subj.tolist()))}
        pools = {s: p for s, p in pools.items() if p[0].size and p[1].size}
        names = sorted(pools)
        labels_all = ds.labels[:, 0]
        others = np.concatenate([p[1] for p in pools.values()])
        pos = float(labels_all[others].sum())
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([(others.size - pos) / max(pos, 1.0)]))
        n_steps = max(1, others.size // (opts.subjects_per_step * opts.windows_per_subject))
        module.train()
        head.train()
        losses: list[float] = []
        for _ in range(n_steps):
            chosen = rng.choice(len(names), size=min(opts.subjects_per_step, len(names)), replace=False)
            idx_base, idx_other, owner_base, owner_other = [], [], [], []
            for j, k in enumerate(chosen):
                b, o = pools[names[k]]
                idx_base.append(rng.choice(b, size=min(opts.baseline_per_subject, b.size), replace=False))
                idx_other.append(rng.choice(o, size=min(opts.windows_per_subject, o.size), replace=False))
                owner_base.append(np.full(idx_base[-1].size, j))
                owner_other.append(np.full(idx_other[-1].size, j))
            nb = int(sum(a.size for a in idx_base))
            batch = ds.batch(np.concatenate(idx_base + idx_other))
            inputs = {m: torch.from_numpy(x) for m, x in batch.inputs.items()}
            eeg_emb, ecg_emb, flags = embed_present(module, inputs, torch.from_numpy(batch.present))
            emb = torch.cat((eeg_emb, ecg_emb), dim=1)  # (B, 400)
            ob, oo = np.concatenate(owner_base), np.concatenate(owner_other)
            centred = emb[nb:].clone()
            for j in range(len(chosen)):
                rows_o = torch.from_numpy(np.flatnonzero(oo == j) + 0)
                rows_b = np.flatnonzero(ob == j)
                for m in range(len(MODALITIES)):
                    cols = slice(m * EMBED_DIM, (m + 1) * EMBED_DIM)
                    have = rows_b[flags[rows_b, m].numpy() > 0]
                    ref = (emb[torch.from_numpy(have), cols].mean(dim=0) if have.size else
                           torch.from_numpy(fallback[cols].astype(np.float32)))
                    centred[rows_o, cols] = centred[rows_o, cols] - ref
            keep = flags[nb:].clone()
            if opts.modality_dropout > 0:  # drop EEG or ECG from rows that have both
                both = (keep > 0).all(dim=1).numpy()
                drop = np.flatnonzero(both & (rng.random(both.size) < opts.modality_dropout))
                keep[torch.from_numpy(drop), torch.from_numpy(rng.integers(0, 2, drop.size))] = 0.0
            mask = keep.repeat_interleave(EMBED_DIM, dim=1)
            y = torch.from_numpy(batch.labels[nb:, :1])
            cal_logits = head(torch.cat((centred * mask, keep), dim=1))
            raw = emb[nb:] * mask
            plain_logits = module.fuse(raw[:, :EMBED_DIM], raw[:, EMBED_DIM:], keep)
            loss = loss_fn(cal_logits, y) + loss_fn(plain_logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_([*encoder_params, *head_params], opts.clip_grad)
            optimizer.step()
            losses.append(loss.item())
        auroc, metrics, fallback = evaluate_now()
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "validation_auroc": auroc})
        log.info("calibrated fine-tuning epoch %d: loss %.4f, validation AUROC %.4f", epoch, np.mean(losses), auroc)
        if auroc > best[0]:
            best = (auroc, epoch, copy.deepcopy(module.state_dict()), copy.deepcopy(head.state_dict()), metrics,
                    fallback)
    module.load_state_dict(best[2])
    head.load_state_dict(best[3])
    module.eval()
    head.eval()
    return CalibratedHeadResult(head, best[5], best[4], best[1]), history


#: Candidate inverse regularisation strengths of the linear calibrated head.
LINEAR_C_GRID: tuple[float, ...] = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def _fit_linear_head(centred: NDArray[np.float64], present: NDArray[np.bool_], labels: NDArray[np.float32],
                     x_tr: NDArray[np.float32], p_tr: NDArray[np.bool_], y_tr: NDArray[np.float32],
                     val_mask: NDArray[np.bool_], sets: Sequence[Sequence[str]], fallback: NDArray[np.float64],
                     seed: int) -> CalibratedHeadResult:
    """Logistic regression on standardised ``[centred embeddings, flags]``, C by validation AUROC (EEG + ECG)."""
    from sklearn.linear_model import LogisticRegression

    z = np.concatenate([x_tr, p_tr.astype(np.float32)], axis=1).astype(np.float64)
    mean = z.mean(axis=0)
    scale = z.std(axis=0)
    scale[scale < 1e-8] = 1.0  # a constant column (e.g. a flag always set) carries nothing
    zs = (z - mean) / scale
    best: tuple[float, float, nn.Sequential, dict[str, dict[str, float | int]]] | None = None
    for c in LINEAR_C_GRID:
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
        clf.fit(zs, y_tr.astype(int))
        head = make_head(0, 0.0, 1)
        linear = head[0]
        assert isinstance(linear, nn.Linear)
        with torch.no_grad():  # w·(z − mean)/scale + b  ==  (w/scale)·z + (b − Σ w·mean/scale)
            weight = clf.coef_[0] / scale
            linear.weight.copy_(torch.from_numpy(weight[None, :]))
            linear.bias.copy_(torch.tensor([float(clf.intercept_[0] - weight @ mean)]))
        metrics = _score(head, centred, present, labels, val_mask, sets)
        auroc = float(metrics["eeg,ecg"]["auroc"])
        if best is None or auroc > best[0]:
            best = (auroc, c, head, metrics)
    assert best is not None
    log.info("linear calibrated head: best validation AUROC %.4f at C = %g", best[0], best[1])
    return CalibratedHeadResult(best[2], fallback, best[3], 0, c=best[1])


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
                          hidden: int = 0, epochs: int = 150, seed: int = 0, cache: Path | None = None,
                          train_subjects: Sequence[str] | None = None, val_subjects: Sequence[str] | None = None,
                          command: str = "", finetune: CalibratedFinetune | None = None
                          ) -> tuple[CalibratedHeadResult, str]:
    """Load a fusion model and EEGMAT, fit a calibrated head, write the new model folder (see the module doc).

    Raises
    ------
    ModelError
        ``model`` is not a fusion model.
    """
    from rt_physio.errors import ModelError
    from rt_physio.nn.registry import load_model
    from rt_physio.training.datasets.prepare import default_cache_dir, prepare
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
    tuned: dict[str, Any] = {}
    fitted_c = result.c
    if finetune is not None and finetune.epochs > 0:
        result, history = finetune_calibrated(loaded.module, result.head, prepared, spec.outputs, windows, train, val,
                                              seconds=seconds, window_s=spec.window_s, opts=finetune, seed=seed)
        tuned = {"finetune": {**asdict(finetune), "selected_epoch": result.epoch,
                              "validation_auroc_per_epoch": [round(h["validation_auroc"], 4) for h in history],
                              "loss_per_epoch": [round(h["loss"], 5) for h in history[1:]],
                              "note": "encoders, head and calibrated head trained together on centred embeddings; "
                                      "epoch 0 is the head fitted on the source encoders"}}
    metrics = {k: {name: round(float(v), 4) for name, v in m.items()} for k, m in result.validation.items()}
    extra = {"calibrated_head": {**tuned,
        "source_model": spec.name, "source_weights_sha256": loaded.sha256, "command": command,
        "baseline": f"each subject's first {seconds:g} s of rest; those windows are never trained on or scored",
        "train_subjects": train, "validation_subjects": val, "seed": seed,
        **({"head": "logistic regression on standardised centred embeddings", "C": fitted_c} if hidden == 0 else
           {"head": f"MLP, {hidden} hidden units", "selected_epoch": result.epoch}),
        "validation_metrics_calibrated": metrics,
    }}
    sha256 = save_calibrated(loaded, result, Path(out), seconds=seconds, hidden=hidden, extra_provenance=extra)
    return result, sha256


def _spec_fields(loaded: LoadedModel) -> dict[str, Any]:
    from rt_physio.config import load_toml

    data = dict(load_toml(loaded.spec.model_file))
    data["provenance"] = {k: v for k, v in data["provenance"].items() if k not in ("weights_sha256", "weights_dtype")}
    return data
