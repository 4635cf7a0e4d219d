"""The hybrid model: deep embeddings and/or classical features, one linear head, calibrated per modality set.

Features of a window are ``[EEG embedding, ECG embedding, classical features]``: each embedding comes from a
CBraMod encoder (optional; pooled over channels and patches by the mean, ``pooling = "mean"``, the mean and the SD,
``"mean_sd"``, or attention, ``"attention"``), the classical block from
:func:`rt_physio.dsp.summary_features.summary_features` (optional; montage-agnostic spectral summaries and heart
rate / HRV). With no encoder this is the classical model; with no classical block it is a deep model with a linear
head. The EEG montage is free either way. ``mean_sd``
adds the standard deviation over channels and patches to the mean (as :func:`rt_physio.training.encoders.
pooled_features` does). ``attention`` weighs every patch of every channel by a softmax of its dot product with a
learned query per modality (``eeg_query``, ``ecg_query``; scaled by 1/sqrt(200)), so the pooled vector can lean on
the channels and moments that matter while the montage stays free; a zero query is the mean.
:func:`rt_physio.training.attention_pool.fit_queries` learns the queries on frozen patch embeddings.

One head serves every modality set (EEG + ECG, EEG alone, ECG alone): features are standardised, a missing
modality's standardised features are 0 (its training mean: the head was trained with those rows, i.e. modality
dropout) and its presence flag is 0. The logit of each row then goes through a Platt map ``a * logit + b`` chosen
by the row's modality set, fitted on held-out training-side subjects with balanced class weights, so that each
set's probabilities mean the same thing and the output does not jump when a modality drops out or returns.
Two parameter sets exist: ``lr`` (raw features) and ``cal`` (features centred on the person's rest baseline,
:mod:`rt_physio.nn.calibration`). Not traceable: the classical block is numpy.

``model.toml``::

    [architecture]
    type = "hybrid"
    [architecture.hybrid]
    features = true          # the classical block
    pooling = "mean"         # or "mean_sd", "attention"
    [architecture.eeg]       # optional CBraMod encoder (fusion.ENCODER_KEYS)
    [architecture.ecg]       # optional
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rt_physio.dsp.summary_features import ECG_FEATURES, EEG_FEATURES, summary_features
from rt_physio.nn.architecture import check_architecture
from rt_physio.nn.cbramod import CBraMod
from rt_physio.nn.fusion import EMBED_DIM, MODALITIES, _parse_encoder

__all__ = [
    "POOLINGS",
    "QUERY_NAMES",
    "SET_NAMES",
    "HybridArchitecture",
    "HybridHead",
    "HybridModel",
    "attention_pool",
    "parse_hybrid_architecture",
    "set_index",
]

#: Pooling of an encoder's (B, C, N, D) patch embeddings.
POOLINGS: tuple[str, ...] = ("mean", "mean_sd", "attention")
#: Buffer names of the attention queries, per modality (eeg, ecg).
QUERY_NAMES: tuple[str, str] = ("eeg_query", "ecg_query")
#: Modality sets, in the order of the Platt rows.
SET_NAMES: tuple[str, str, str] = ("eeg,ecg", "eeg", "ecg")


def set_index(present: Tensor) -> Tensor:
    """``(B, 2)`` presence flags -> ``(B,)`` index into :data:`SET_NAMES` (-1: neither modality)."""
    flags = present > 0.5 if present.is_floating_point() else present.bool()
    eeg, ecg = flags[:, 0], flags[:, 1]
    out = torch.full(eeg.shape, -1, dtype=torch.long, device=present.device)
    out = torch.where(eeg & ecg, 0, out)
    out = torch.where(eeg & ~ecg, 1, out)
    return torch.where(~eeg & ecg, 2, out)


def attention_pool(emb: Tensor, query: Tensor) -> Tensor:
    """Pool ``(B, C, N, D)`` patch embeddings to ``(B, D)``: softmax(tokens @ query / sqrt(D)) weights over C x N.

    A zero ``query`` gives equal weights (the mean). Differentiable in ``query`` (for
    :func:`rt_physio.training.attention_pool.fit_queries`).
    """
    tokens = emb.flatten(1, 2)  # (B, C*N, D)
    weights = torch.softmax(tokens @ query.to(tokens.dtype) / tokens.shape[-1] ** 0.5, dim=1)  # (B, C*N)
    return (weights.unsqueeze(-1) * tokens).sum(dim=1)


class HybridHead(nn.Module):
    """Standardise, zero a missing modality's block, linear map with flag terms, then a Platt map per set.

    Parameters
    ----------
    n_features : int
        Features (embeddings and classical block).
    n_outputs : int
        Logits.
    """

    mean: Tensor
    scale: Tensor
    coef: Tensor
    flag_coef: Tensor
    intercept: Tensor
    platt: Tensor

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.register_buffer("coef", torch.zeros(n_outputs, n_features))
        self.register_buffer("flag_coef", torch.zeros(n_outputs, len(MODALITIES)))
        self.register_buffer("intercept", torch.zeros(n_outputs))
        platt = torch.zeros(len(SET_NAMES), n_outputs, 2)
        platt[..., 0] = 1.0
        self.register_buffer("platt", platt)  # (set, output, [a, b])

    def raw(self, feats: Tensor, flags: Tensor, feature_modality: Tensor) -> Tensor:
        """Logits before the Platt map, ``(B, n_outputs)``; ``flags`` are 0/1 floats ``(B, 2)``."""
        z = (feats - self.mean) / self.scale  # (B, F)
        keep = flags[:, feature_modality.clamp(min=0)] * (feature_modality >= 0)  # (B, F): 0 where absent
        z = z * keep + (feature_modality < 0) * z
        return z @ self.coef.T + flags @ self.flag_coef.T + self.intercept

    def forward(self, feats: Tensor, flags: Tensor, feature_modality: Tensor) -> Tensor:
        """Calibrated logits ``(B, n_outputs)``; 0 for rows with neither modality."""
        logits = self.raw(feats, flags, feature_modality)
        idx = set_index(flags)
        ab = self.platt[idx.clamp(min=0)]  # (B, n_outputs, 2)
        out = ab[..., 0] * logits + ab[..., 1]
        return torch.where((idx >= 0)[:, None], out, torch.zeros_like(out))


class HybridModel(nn.Module):
    """Optional CBraMod encoders + optional classical features, one linear head per calibration state.

    Parameters
    ----------
    eeg_encoder, ecg_encoder : CBraMod | None
        Encoders (their ``proj_out`` is replaced by the identity: patch embeddings).
    features : bool
        Whether the classical block is part of the features.
    pooling : str
        ``"mean"``, ``"mean_sd"`` or ``"attention"`` (see the module docstring).
    n_outputs : int
        Logits.
    sfreq : float
        Input rate in Hz (for the classical block).

    Attributes
    ----------
    feature_modality : Tensor of int64, shape (F,)
        0 EEG, 1 ECG for every feature.
    calibration_fallback : Tensor, shape (F,)
        Population mean of the training people's baselines.
    lr, cal : HybridHead
        Uncalibrated and calibrated heads.
    eeg_query, ecg_query : Tensor, shape (200,)
        Attention queries (``pooling = "attention"`` only; zeros = mean pooling).
    """

    #: The classical block is numpy code: the engine runs this model eagerly.
    traceable = False

    feature_modality: Tensor
    calibration_fallback: Tensor

    def __init__(self, eeg_encoder: CBraMod | None, ecg_encoder: CBraMod | None, *, features: bool = True,
                 pooling: str = "mean", n_outputs: int = 1, sfreq: float = 200.0) -> None:
        super().__init__()
        if eeg_encoder is None and ecg_encoder is None and not features:
            raise ValueError("A HybridModel needs an encoder or the classical features; got neither.")
        if pooling not in POOLINGS:
            raise ValueError(f"The 'pooling' parameter must be one of {list(POOLINGS)}, got {pooling!r}.")
        for enc in (eeg_encoder, ecg_encoder):
            if enc is not None:
                enc.proj_out = nn.Identity()
        self.eeg_encoder = eeg_encoder
        self.ecg_encoder = ecg_encoder
        self.use_features = features
        self.pooling = pooling
        self.n_outputs = n_outputs
        self.sfreq = float(sfreq)
        width = EMBED_DIM * (2 if pooling == "mean_sd" else 1)
        self.emb_dims = tuple(width if enc is not None else 0 for enc in (eeg_encoder, ecg_encoder))
        n_classical = (len(EEG_FEATURES), len(ECG_FEATURES)) if features else (0, 0)
        modality = [0] * self.emb_dims[0] + [1] * self.emb_dims[1] + [0] * n_classical[0] + [1] * n_classical[1]
        self.n_features = len(modality)
        self.register_buffer("feature_modality", torch.tensor(modality, dtype=torch.int64))
        self.register_buffer("calibration_fallback", torch.zeros(self.n_features))
        self.lr = HybridHead(self.n_features, n_outputs)
        self.cal = HybridHead(self.n_features, n_outputs)
        if pooling == "attention":
            for name, enc in zip(QUERY_NAMES, (eeg_encoder, ecg_encoder), strict=True):
                if enc is not None:
                    self.register_buffer(name, torch.zeros(EMBED_DIM))

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities the model reads."""
        encs = (self.eeg_encoder, self.ecg_encoder)
        return tuple(m for m, e in zip(MODALITIES, encs, strict=True) if e is not None or self.use_features)

    @classmethod
    def from_config(cls, arch: Mapping[str, Any], n_outputs: int | None = None, sfreq: float = 200.0
                    ) -> HybridModel:
        """Build an untrained model from a validated ``[architecture]`` table (``type = "hybrid"``)."""
        parsed = parse_hybrid_architecture(arch, n_outputs)
        encs = [None if cfg is None else CBraMod(**cfg) for cfg in parsed.encoders]
        return cls(encs[0], encs[1], features=parsed.features, pooling=parsed.pooling, n_outputs=parsed.n_outputs,
                   sfreq=sfreq)

    def _pool(self, emb: Tensor, modality: int) -> Tensor:
        if self.pooling == "attention":
            query: Tensor = getattr(self, QUERY_NAMES[modality])
            return attention_pool(emb, query)
        pooled = emb.mean(dim=(1, 2))  # (B, C, N, D) -> (B, D)
        if self.pooling == "mean_sd":
            sd = emb.std(dim=(1, 2), unbiased=False)  # (B, D): over channels and patches
            return torch.cat([pooled, sd], dim=1)
        return pooled

    @torch.no_grad()
    def features(self, eeg: Tensor | None = None, ecg: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Features ``(B, F)`` and presence flags ``(B, 2)`` of a batch of ``(B, C, N, 200)`` windows.

        A modality is present when given and, with the classical block, when that block is usable (non-flat EEG,
        plausible ECG beats); an absent modality's features are zeros.

        Raises
        ------
        ValueError
            Neither input given, or batches of different sizes.
        """
        given = [x for x in (eeg, ecg) if x is not None]
        if not given:
            raise ValueError("HybridModel.features needs at least one of 'eeg' and 'ecg', got neither.")
        if len({int(x.shape[0]) for x in given}) != 1:
            raise ValueError(f"eeg and ecg must have the same batch size, got {[tuple(x.shape) for x in given]}.")
        ref = given[0]
        n = int(ref.shape[0])
        present = torch.tensor([[float(eeg is not None), float(ecg is not None)]]).repeat(n, 1)
        parts: list[Tensor] = []
        for m, (x, enc) in enumerate(((eeg, self.eeg_encoder), (ecg, self.ecg_encoder))):
            if enc is None:
                continue
            parts.append(torch.zeros(n, self.emb_dims[m]) if x is None else self._pool(enc(x.float()), m).float().cpu())
        if self.use_features:
            a_eeg = None if eeg is None else eeg.detach().float().cpu().numpy()
            a_ecg = None if ecg is None else ecg.detach().float().cpu().numpy()
            block = np.zeros((n, len(EEG_FEATURES) + len(ECG_FEATURES)), dtype=np.float32)
            flags = np.zeros((n, 2), dtype=np.float32)
            for i in range(n):
                block[i], flags[i] = summary_features(None if a_eeg is None else a_eeg[i],
                                                            None if a_ecg is None else a_ecg[i], self.sfreq)
            parts.append(torch.from_numpy(block))
            present = present * torch.from_numpy(flags)
        feats = torch.cat(parts, dim=1)
        feats = feats * present[:, self.feature_modality.cpu()]  # an absent modality's features are zeros
        return feats.to(ref.device), present.to(ref.device)

    def classify(self, feats: Tensor, present: Tensor, calibrated: bool = False) -> Tensor:
        """Logits ``(B, n_outputs)`` from :meth:`features` output (centred when ``calibrated``)."""
        flags = (present > 0.5 if present.is_floating_point() else present.bool()).to(torch.float32)
        head = self.cal if calibrated else self.lr
        logits: Tensor = head(feats.to(torch.float32), flags, self.feature_modality)
        return logits

    def forward(self, eeg: Tensor | None = None, ecg: Tensor | None = None) -> Tensor:
        """Uncalibrated logits: ``classify(*features(eeg, ecg))``."""
        feats, present = self.features(eeg, ecg)
        return self.classify(feats, present, calibrated=False)


@dataclass(frozen=True)
class HybridArchitecture:
    """A validated ``[architecture]`` table of ``type = "hybrid"``."""

    encoders: tuple[dict[str, int] | None, dict[str, int] | None]
    features: bool
    pooling: str
    n_outputs: int

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities the model reads."""
        return tuple(m for m, e in zip(MODALITIES, self.encoders, strict=True) if e is not None or self.features)


def parse_hybrid_architecture(arch: Mapping[str, Any], n_outputs: int | None = None) -> HybridArchitecture:
    """Validate ``[architecture]`` with ``type = "hybrid"`` (see the module docstring).

    Raises
    ------
    ValueError
        A missing, unknown or invalid key, named as ``architecture.<table>.<key>``.
    """
    check_architecture(arch, "hybrid", ("hybrid", *MODALITIES))
    table = arch.get("hybrid", {})
    if not isinstance(table, Mapping) or sorted(set(table) - {"features", "pooling"}):
        raise ValueError(f"architecture.hybrid must be a table with keys features, pooling; got {table!r}.")
    features = table.get("features", True)
    if not isinstance(features, bool):
        raise ValueError(f"architecture.hybrid.features must be true or false, got {features!r}.")
    pooling = table.get("pooling", "mean")
    if pooling not in POOLINGS:
        raise ValueError(f"architecture.hybrid.pooling must be one of {list(POOLINGS)}, got {pooling!r}.")
    encoders = tuple(_parse_encoder(arch[m], f"architecture.{m}") if m in arch else None for m in MODALITIES)
    if encoders == (None, None) and not features:
        raise ValueError("architecture (hybrid) needs [architecture.eeg], [architecture.ecg] or hybrid.features.")
    if n_outputs is None or isinstance(n_outputs, bool) or not isinstance(n_outputs, int) or n_outputs < 1:
        raise ValueError(f"A hybrid model needs a positive number of outputs, got {n_outputs!r}.")
    return HybridArchitecture((encoders[0], encoders[1]), features, str(pooling), n_outputs)
