"""Linear probe of a frozen ECG encoder: atrial fibrillation (A) versus normal rhythm (N).

The records are the cinc2017 records that the encoder's pre-training held out.

Each held-out record labelled A or N is cut into 10-s windows (hop 5 s, preprocessing as in pre-training); every
window is embedded by :func:`rt_physio.training.encoders.pooled_features` (mean + std of the patch embeddings)
and the record is the mean of its windows. A logistic regression (features standardised, ``C`` fixed beforehand,
class-balanced) is scored by stratified k-fold cross-validation **inside** the held-out records (AUROC of the
out-of-fold probabilities, and mean ± SD over folds). The same probe, folds and seed are run on a randomly
initialised encoder of the same architecture: the pre-trained one must beat it to have learned anything.

``rt-physio train probe --encoder DIR [--data ../shared/data/cinc2017] [--json OUT]``
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.errors import ConfigError
from rt_physio.nn.cbramod import CBraMod
from rt_physio.training.datasets.cinc2017 import holdout_split, load_cinc_record, read_reference
from rt_physio.training.datasets.prepare import default_cache_dir, prepare
from rt_physio.training.datasets.windows import WindowDataset
from rt_physio.training.encoders import encoder_meta, load_encoder, pooled_features, random_encoder

__all__ = ["probe_af"]

log = logging.getLogger(__name__)


def _record_features(encoder: CBraMod, windows: list[NDArray[np.float32]], pooling: str) -> NDArray[np.float32]:
    sizes = [len(w) for w in windows]
    feats = pooled_features(encoder, np.concatenate(windows), pooling=pooling)
    bounds = np.cumsum([0, *sizes])
    return np.stack([feats[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])


def _cv_auroc(features: NDArray[np.float32], y: NDArray[np.int64], folds: int, seed: int, c: float
              ) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    oof = np.zeros(len(y), dtype=np.float64)
    per_fold: list[float] = []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, y):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000))
        clf.fit(features[tr], y[tr])
        oof[te] = clf.predict_proba(features[te])[:, 1]
        per_fold.append(float(roc_auc_score(y[te], oof[te])))
    return {"auroc": float(roc_auc_score(y, oof)), "auroc_fold_mean": float(np.mean(per_fold)),
            "auroc_fold_sd": float(np.std(per_fold)), "auroc_per_fold": per_fold}


def probe_af(encoder_dir: str | Path, data: str | Path, *, folds: int = 5, seed: int = 0, c: float = 0.1,
             window_s: float = 10.0, hop_s: float = 5.0, cache: Path | None = None,
             max_records: int | None = None, pooling: str = "mean-std", split: str = "heldout") -> dict[str, Any]:
    """Run the probe described in the module docstring on the pre-trained encoder and on a random one.

    Parameters
    ----------
    encoder_dir : str | Path
        A ``train pretrain`` folder whose corpus held cinc2017 records out.
    data : str | Path
        The cinc2017 folder.
    folds : int
        Stratified folds inside the held-out records.
    seed : int
        Fold shuffling and the random encoder's initialisation.
    c : float
        Inverse regularisation of the logistic regression (fixed, not tuned on these records).
    window_s, hop_s : float
        Windows per record.
    cache : Path | None
        Preprocessing cache.
    max_records : int | None
        Use at most this many records per class (tests).
    pooling : str
        :func:`~rt_physio.training.encoders.pooled_features` pooling.
    split : str
        ``"heldout"`` (the reported figure) or ``"design"``: up to 400 A and 400 N records drawn (seeded) from the
        records pre-training used, whose labels it never saw. Choices about the probe (pooling) are made on
        ``design`` so that the held-out records are scored once.

    Raises
    ------
    ConfigError
        The encoder did not hold cinc2017 records out, or too few A / N records.
    """
    import torch

    from rt_physio.training.finetune import DEFAULT_PREPROCESSING

    meta = encoder_meta(encoder_dir)
    corpus = meta.get("corpus", {})
    held = corpus.get("cinc2017_heldout_records")
    labels = read_reference(data)
    if held is None:
        raise ConfigError(f"{encoder_dir}: its corpus had no cinc2017 hold-out; the probe needs records the encoder "
                          "never saw.")
    # the recorded list must be what the recorded (fraction, seed) gives on this folder
    expected = holdout_split(labels, float(corpus["holdout_fraction"]), int(corpus["holdout_seed"]))[1]
    if sorted(held) != expected:
        raise ConfigError(f"{data}: the held-out records of {encoder_dir} are not this folder's hold-out.")
    if split not in ("heldout", "design"):
        raise ConfigError(f"The 'split' parameter must be 'heldout' or 'design', got {split!r}.")
    pool = held
    if split == "design":
        rng = np.random.default_rng(seed + 1)
        held_set = set(held)
        pool = []
        for k in ("N", "A"):
            side = sorted(r for r, lab in labels.items() if lab == k and r not in held_set)
            pool += [side[i] for i in sorted(rng.permutation(len(side))[:400])]
    chosen = {k: sorted(r for r in pool if labels[r] == k) for k in ("N", "A")}
    if max_records is not None:
        chosen = {k: v[:max_records] for k, v in chosen.items()}
    records = [(r, int(k == "A")) for k in ("N", "A") for r in chosen[k]]
    pre = {"ecg": DEFAULT_PREPROCESSING["ecg"]}
    line_freq = float(meta.get("preprocessing", {}).get("notch_hz", 50.0))
    prepared = prepare([load_cinc_record(data, r, labels[r]) for r, _ in records], pre, line_freq=line_freq,
                       scale_uv=100.0, cache_dir=cache if cache is not None else default_cache_dir() / "prepared")
    windows: list[NDArray[np.float32]] = []
    y: list[int] = []
    used: list[str] = []
    for (name, label), rec in zip(records, prepared, strict=True):
        ds = WindowDataset([rec], (), window_s=window_s, hop_s=hop_s, modalities=("ecg",))
        if len(ds) == 0:
            continue
        windows.append(ds.batch(np.arange(len(ds))).inputs["ecg"])
        y.append(label)
        used.append(name)
    target = np.array(y, dtype=np.int64)
    if min(int(target.sum()), int((1 - target).sum())) < folds:
        raise ConfigError(f"Too few held-out records for a {folds}-fold probe ({int(target.sum())} A, "
                          f"{int((1 - target).sum())} N).")
    torch.set_grad_enabled(False)
    try:
        trained_feats = _record_features(load_encoder(encoder_dir), windows, pooling)
        random_feats = _record_features(random_encoder(encoder_dir, seed), windows, pooling)
        pretrained = _cv_auroc(trained_feats, target, folds, seed, c)
        baseline = _cv_auroc(random_feats, target, folds, seed, c)
    finally:
        torch.set_grad_enabled(True)
    log.info("AF probe: pre-trained AUROC %.3f, random encoder %.3f", pretrained["auroc"], baseline["auroc"])
    return {"task": f"cinc2017 A vs N, {split} records, record = mean of 10-s window embeddings", "split": split,
            "pooling": pooling,
            "encoder": str(encoder_dir), "n_records": len(used), "n_af": int(target.sum()),
            "n_normal": int((1 - target).sum()), "folds": folds, "seed": seed, "C": c, "window_s": window_s,
            "hop_s": hop_s, "features": f"{pooling} over patches of the frozen 200-d patch embeddings",
            "pretrained": pretrained, "random_init": baseline, "records": used}
