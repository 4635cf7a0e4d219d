"""Feature blocks for the cross-validation arms of :mod:`rt_physio.experiments.hybrid_cv`.

A block is ``(features, presence, feature_modality)`` (:data:`rt_physio.training.hybrid.Block`): one row per
window, the EEG / ECG presence flags of each row, and which modality each column belongs to. Each builder caches
its features under ``cache`` (per window set, encoder and seed), so that arms sharing a block compute it once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rt_physio.nn.cbramod import CBraMod
from rt_physio.nn.hybrid import HybridModel
from rt_physio.training.hybrid import SFREQ, Block, Windows, cached_features, fingerprint

__all__ = ["ENCODER_SIZES", "attention_blocks", "combine", "montage_block", "pretrained_block", "random_block",
           "region_block", "without_missing_encoders"]

log = logging.getLogger("rt_physio.experiments.hybrid_cv")
#: The shipped fusion model's encoder sizes (fit two CPU cores).
ENCODER_SIZES: dict[str, dict[str, int]] = {
    "eeg": {"d_model": 200, "seq_len": 30, "nhead": 8, "n_layer": 4, "dim_feedforward": 400},
    "ecg": {"d_model": 200, "seq_len": 30, "nhead": 8, "n_layer": 2, "dim_feedforward": 400},
}
def montage_block(windows: Windows, cache: Path) -> Block:
    """Per-channel band powers of the classical model (:mod:`rt_physio.dsp.features`; fixed montage)."""
    from rt_physio.nn.classical import ClassicalModel

    n_ch = int(windows.dataset.batch([0]).inputs["eeg"].shape[1])
    model = ClassicalModel(n_eeg_channels=n_ch)
    x, p = cached_features(model, windows, cache / "montage.npz")
    return x, p, model.feature_modality.numpy()


def region_block(windows: Windows, cache: Path, names: Sequence[str] | None = None,
                 channel_names: Sequence[str] | None = None) -> Block:
    """EEG features per scalp region (:func:`~rt_physio.experiments.region_features.region_features`; cached).

    ``names``: the columns to keep (default all of :data:`~rt_physio.experiments.region_features.REGION_FEATURES`);
    ``channel_names``: the EEG rows' labels (default the EEGMAT montage, the only dataset :func:`load_windows`
    reads). The block's ECG flag is always set, so :func:`combine` leaves the other blocks' ECG presence as it is.
    """
    import hashlib

    from rt_physio.experiments import region_features as module
    from rt_physio.experiments.region_features import REGION_FEATURES, region_features
    from rt_physio.training.datasets.eegmat import EEGMAT_EEG_CHANNELS

    labels = list(channel_names or EEGMAT_EEG_CHANNELS)
    ds = windows.dataset
    if ds.channels.get("eeg") != len(labels):
        raise ValueError(f"The windows have {ds.channels.get('eeg')} EEG channels, 'channel_names' names "
                         f"{len(labels)}.")
    h = hashlib.sha256("|".join([fingerprint(windows), *REGION_FEATURES, *labels]).encode())
    h.update(Path(module.__file__).read_bytes())  # an edited feature function must not read an old cache
    file = cache / f"regions-{h.hexdigest()[:16]}.npz"  # per window set, features, their code and montage
    if file.is_file():
        with np.load(file, allow_pickle=False) as z:
            x, eeg_ok = z["feats"], z["eeg_present"]
    else:
        x = np.zeros((len(windows), len(REGION_FEATURES)), dtype=np.float32)
        eeg_ok = np.zeros(len(windows), dtype=bool)
        for start in range(0, len(windows), 64):
            idx = np.arange(start, min(start + 64, len(windows)))
            batch = ds.batch(idx)
            for i, j in enumerate(idx):
                if not batch.present[i, 0]:
                    continue
                eeg = batch.inputs["eeg"][i]  # (C, N, 200)
                res = region_features(eeg.reshape(eeg.shape[0], -1), labels, SFREQ)
                if res is not None and np.all(np.isfinite(res[0])):
                    x[j], eeg_ok[j] = res[0], True
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(file, feats=x, eeg_present=eeg_ok)
    cols = [REGION_FEATURES.index(n) for n in (names or REGION_FEATURES)]
    present = np.stack([eeg_ok, np.ones_like(eeg_ok)], axis=1)
    return x[:, cols], present, np.zeros(len(cols), dtype=np.int64)


def random_block(windows: Windows, cache: Path, seed: int, pooling: str = "mean") -> Block:
    """Pooled embeddings of frozen randomly initialised encoders (seeded; cached)."""
    torch.manual_seed(seed)
    encs = [CBraMod(**ENCODER_SIZES[m]) for m in ("eeg", "ecg")]
    model = HybridModel(encs[0], encs[1], features=False, pooling=pooling).eval()
    x, p = cached_features(model, windows, cache / f"random-seed{seed}-{pooling}.npz")
    return x, p, model.feature_modality.numpy()


def pretrained_block(windows: Windows, cache: Path, encoders: dict[str, Path]) -> Block:
    """Mean + SD pooled embeddings of pre-trained encoders (``rt_physio.training.encoders``; cached).

    A modality without an encoder has no columns in this block (its presence flag is kept, for the hybrid arm).
    """
    from rt_physio.training import encoders as enc_api  # helper P's API

    loaded = {m: enc_api.load_encoder(path) for m, path in encoders.items()}
    model = HybridModel(loaded.get("eeg"), loaded.get("ecg"), features=False, pooling="mean_sd").eval()
    tag = "-".join(f"{m}_{p.name}" for m, p in sorted(encoders.items()))
    x, p = cached_features(model, windows, cache / f"pretrained-{tag}.npz")
    return x, p, model.feature_modality.numpy()


def attention_blocks(windows: Windows, cache: Path, encoders: list[dict[str, Path]],
                     folds: Sequence[Sequence[str]]) -> list[Block]:
    """Per fold: attention-pooled embeddings with queries learned on the other folds' windows (seed-free)."""
    from rt_physio.training import encoders as enc_api
    from rt_physio.training.attention_pool import fit_queries, patch_embeddings, pool_with_queries

    present = windows.dataset.present.copy()
    out: list[Block] = []
    loaded: dict[Path, np.ndarray] = {}
    for k, fold_encoders in enumerate(encoders):
        emb = {}
        for m, path in fold_encoders.items():
            if path not in loaded:
                file = cache / f"patches-{m}_{path.name}-{fingerprint(windows)}.npy"  # per window set
                if file.is_file():
                    loaded[path] = np.load(file)
                else:
                    enc = enc_api.load_encoder(path)
                    enc.proj_out = torch.nn.Identity()
                    loaded[path] = patch_embeddings(enc, windows.dataset, m)
                    np.save(file, loaded[path])
            emb[m] = loaded[path]
        mods = [m for m in ("eeg", "ecg") if m in emb]
        flags = present & np.array([m in emb for m in ("eeg", "ecg")])[None, :]
        train = ~np.isin(windows.subjects, list(folds[k])) & flags.any(axis=1)
        queries = fit_queries(emb, flags, windows.labels, train)
        fm = np.concatenate([np.full(200, ("eeg", "ecg").index(m), dtype=np.int64) for m in mods])
        out.append((pool_with_queries(emb, queries), flags, fm))
        log.info("fold %d: attention queries learned (|q| %s)", k,
                 ", ".join(f"{m} {np.linalg.norm(q):.2f}" for m, q in queries.items()))
    return out


def without_missing_encoders(block: Block, encoders: dict[str, Path]) -> Block:
    """Mark a modality without an encoder absent (the deep-only arm has no features for it)."""
    p = block[1].copy()
    for k, m in enumerate(("eeg", "ecg")):
        if m not in encoders:
            p[:, k] = False
    return block[0], p, block[2]


def combine(*blocks: Block) -> Block:
    """Concatenate blocks; a modality counts as present only where every block has it."""
    x = np.concatenate([b[0] for b in blocks], axis=1)
    p = np.logical_and.reduce([b[1] for b in blocks])
    return x, p, np.concatenate([b[2] for b in blocks])
