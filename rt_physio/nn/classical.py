"""The classical model: EEG band powers and ECG heart rate / HRV, then logistic regression per modality set.

Features come from :func:`rt_physio.dsp.features.channel_features` (numpy, one window at a time), so this
module is **not traceable** (``traceable = False``): the engine runs it eagerly on the CPU. It is also the cheapest
model for CPU-only deployments.

The feature vector is ``[EEG block (channels * bands * 2), ECG block (3)]``. Three logistic regressions share it,
one per modality set (EEG + ECG, EEG alone, ECG alone); each row uses the one of the blocks it has, and a
regression's weights on a block it does not use are zero. Two parameter sets exist: ``lr.*`` trained on raw
features, and ``cal.*`` trained on features centred on each person's rest baseline
(:mod:`rt_physio.training.calibration`); ``classify(..., calibrated=True)`` uses the latter and expects centred
features (:meth:`ClassicalModel.classify` is the same call as :meth:`FusionModel.classify`). Every parameter
is a plain tensor in the state dict (``lr.eeg_ecg.mean``, ``.scale``, ``.coef``, ``.intercept``, ...), so the
model folder needs no pickle.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rt_physio.checks import check_positive
from rt_physio.dsp.features import BANDS, ECG_FEATURES, channel_features, eeg_feature_count
from rt_physio.nn.architecture import check_architecture

__all__ = ["CLASSICAL_KEYS", "MODALITY_SETS", "ClassicalArchitecture", "ClassicalModel", "LogisticHead",
           "parse_classical_architecture"]

#: Keys of ``[architecture.classical]``.
CLASSICAL_KEYS: tuple[str, ...] = ("eeg_channels", "ecg", "bands")
#: Classifier names, one per modality set (state-dict prefixes ``lr.<set>.`` and ``cal.<set>.``).
MODALITY_SETS: tuple[str, str, str] = ("eeg_ecg", "eeg", "ecg")
_DEFAULT_BANDS = tuple((lo, hi) for _, lo, hi in BANDS)
_DEFAULT_EDGES = (*(lo for lo, _ in _DEFAULT_BANDS), _DEFAULT_BANDS[-1][1])


class LogisticHead(nn.Module):
    """Standardisation then a linear map: ``((x - mean) / scale) @ coef.T + intercept``.

    Parameters
    ----------
    n_features : int
        Input features.
    n_outputs : int
        Logits.
    """

    mean: Tensor
    scale: Tensor
    coef: Tensor
    intercept: Tensor

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.register_buffer("coef", torch.zeros(n_outputs, n_features))
        self.register_buffer("intercept", torch.zeros(n_outputs))

    def forward(self, feats: Tensor) -> Tensor:
        """``(B, F)`` features -> ``(B, n_outputs)`` logits."""
        z = (feats - self.mean) / self.scale  # (B, F)
        return z @ self.coef.T + self.intercept  # (B, n_outputs)


class ClassicalModel(nn.Module):
    """Band powers + HRV features and one logistic regression per modality set.

    Parameters
    ----------
    n_eeg_channels : int
        EEG channels the features are computed on (0: a model without EEG). The montage is fixed: features are per
        channel, in the order of ``inputs.eeg.channels``.
    ecg : bool
        Whether the model uses ECG (any number of leads: the first lead with plausible beats is used).
    n_outputs : int
        Logits.
    sfreq : float
        Input rate in Hz.
    bands : sequence of (low, high)
        EEG bands in Hz, contiguous (each band starts where the previous one ends).

    Attributes
    ----------
    feature_modality : Tensor of int64, shape (F,)
        0 for EEG features, 1 for ECG features (-1 would mark features that are never normalised).
    calibration_fallback : Tensor, shape (F,)
        Mean over training subjects of their rest-baseline feature means: the reference for a modality whose
        baseline is missing in a calibrated session.
    lr, cal : ModuleDict of LogisticHead
        Uncalibrated and calibrated classifiers, keyed by :data:`MODALITY_SETS`.
    """

    #: The features are numpy code: the engine must run this model eagerly (no TorchScript trace, no CUDA graph).
    traceable = False

    feature_modality: Tensor
    calibration_fallback: Tensor

    def __init__(self, n_eeg_channels: int = 20, ecg: bool = True, n_outputs: int = 1, sfreq: float = 200.0,
                 bands: Sequence[tuple[float, float]] = _DEFAULT_BANDS) -> None:
        super().__init__()
        edges = [*(lo for lo, _ in bands), bands[-1][1]] if len(bands) else []
        if any(hi != nxt for (_, hi), (nxt, _) in itertools.pairwise(bands)):
            raise ValueError(f"The 'bands' parameter must be contiguous (low, high) pairs, got {list(bands)}.")
        arch = parse_classical_architecture(
            {"type": "classical", "classical": {"eeg_channels": n_eeg_channels, "ecg": ecg, "bands": edges}}, n_outputs)
        check_positive("sfreq", sfreq)
        self.n_eeg_channels = arch.eeg_channels
        self.uses_ecg = arch.ecg
        self.n_outputs = arch.n_outputs
        self.sfreq = float(sfreq)
        self.bands = tuple((f"band{i}", lo, hi) for i, (lo, hi) in enumerate(arch.bands))
        n_eeg = eeg_feature_count(self.n_eeg_channels, len(self.bands))
        self.n_features = n_eeg + len(ECG_FEATURES)
        modality = torch.cat([torch.zeros(n_eeg, dtype=torch.int64), torch.ones(len(ECG_FEATURES), dtype=torch.int64)])
        self.register_buffer("feature_modality", modality)
        self.register_buffer("calibration_fallback", torch.zeros(self.n_features))
        self.lr = nn.ModuleDict({s: LogisticHead(self.n_features, self.n_outputs) for s in MODALITY_SETS})
        self.cal = nn.ModuleDict({s: LogisticHead(self.n_features, self.n_outputs) for s in MODALITY_SETS})

    @classmethod
    def from_config(cls, arch: Mapping[str, Any], n_outputs: int | None = None, sfreq: float = 200.0
                    ) -> ClassicalModel:
        """Build an (untrained) model from a validated ``[architecture]`` table (``type = "classical"``)."""
        parsed = parse_classical_architecture(arch, n_outputs)
        return cls(parsed.eeg_channels, parsed.ecg, parsed.n_outputs, sfreq, parsed.bands)

    @torch.no_grad()
    def features(self, eeg: Tensor | None = None, ecg: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Features and presence flags of a batch of windows.

        Parameters
        ----------
        eeg : Tensor, shape (B, C, N, 200), or None
            EEG windows in model units; ignored by a model without EEG.
        ecg : Tensor, shape (B, L, N, 200), or None
            ECG windows in model units; ignored by a model without ECG.

        Returns
        -------
        feats : Tensor of float32, shape (B, F)
            See :func:`~rt_physio.dsp.features.channel_features`; an absent block is zeros.
        present : Tensor of float32, shape (B, 2)
            0/1 flags, order eeg, ecg: whether each block was computed (a flat EEG window or an ECG window without
            plausible beats counts as absent).
        """
        x_eeg = eeg if self.n_eeg_channels > 0 else None
        x_ecg = ecg if self.uses_ecg else None
        given = [x for x in (eeg, ecg) if x is not None]
        if not given:
            raise ValueError("ClassicalModel.features needs at least one of 'eeg' and 'ecg', got neither.")
        for name, x in (("eeg", eeg), ("ecg", ecg)):
            if x is not None and x.ndim != 4:
                raise ValueError(f"The '{name}' parameter must be (batch, channels, patches, samples), got shape "
                                 f"{tuple(x.shape)}.")
        if x_eeg is not None and x_eeg.shape[1] != self.n_eeg_channels:
            raise ValueError(f"The 'eeg' parameter has {x_eeg.shape[1]} channels; this classical model was trained on "
                             f"{self.n_eeg_channels} (its features are per channel, in model.toml's order).")
        batch = {int(x.shape[0]) for x in given}
        if len(batch) != 1:
            raise ValueError(f"The 'eeg' and 'ecg' batches differ in size: {sorted(batch)}.")
        n = batch.pop()
        a_eeg = None if x_eeg is None else x_eeg.detach().float().cpu().numpy()
        a_ecg = None if x_ecg is None else x_ecg.detach().float().cpu().numpy()
        feats = np.zeros((n, self.n_features), dtype=np.float32)
        present = np.zeros((n, 2), dtype=np.float32)
        for i in range(n):
            feats[i], present[i] = channel_features(
                None if a_eeg is None else a_eeg[i], None if a_ecg is None else a_ecg[i], self.sfreq,
                n_eeg_channels=self.n_eeg_channels, bands=self.bands)
        device = given[0].device
        return torch.from_numpy(feats).to(device), torch.from_numpy(present).to(device)

    def classify(self, feats: Tensor, present: Tensor, calibrated: bool = False) -> Tensor:
        """Logits from features: each row uses the classifier of the blocks it has.

        Parameters
        ----------
        feats : Tensor, shape (B, F)
            From :meth:`features` (centred on the session's baseline when ``calibrated``).
        present : Tensor, shape (B, 2)
            0/1 or bool flags, order eeg, ecg.
        calibrated : bool
            Use the classifiers trained on baseline-centred features.

        Returns
        -------
        Tensor, shape (B, n_outputs)
            Logits; 0 for a row with neither block (no information: probability 0.5).
        """
        heads = self.cal if calibrated else self.lr
        flags = present > 0.5 if present.is_floating_point() else present.bool()
        has_eeg, has_ecg = flags[:, :1], flags[:, 1:2]  # (B, 1) each
        feats = feats.to(self.feature_modality.device, torch.float32)
        out = feats.new_zeros(feats.shape[0], self.n_outputs)
        out = torch.where(has_eeg & has_ecg, heads["eeg_ecg"](feats), out)
        out = torch.where(has_eeg & ~has_ecg, heads["eeg"](feats), out)
        return torch.where(~has_eeg & has_ecg, heads["ecg"](feats), out)

    def head(self, feats: Tensor, present: Tensor, calibrated: bool = False) -> Tensor:
        """Return :meth:`classify` (``classify`` is the fusion model's name; ``head`` is its MLP there)."""
        return self.classify(feats, present, calibrated)

    def forward(self, eeg: Tensor | None = None, ecg: Tensor | None = None) -> Tensor:
        """Uncalibrated logits ``(B, n_outputs)``: ``classify(*features(eeg, ecg), calibrated=False)``."""
        feats, present = self.features(eeg, ecg)
        return self.classify(feats, present, calibrated=False)


@dataclass(frozen=True)
class ClassicalArchitecture:
    """A validated ``[architecture]`` table of ``type = "classical"``."""

    eeg_channels: int
    ecg: bool
    bands: tuple[tuple[float, float], ...]
    n_outputs: int

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities the model reads, in order eeg, ecg."""
        return tuple(m for m, used in (("eeg", self.eeg_channels > 0), ("ecg", self.ecg)) if used)


def parse_classical_architecture(arch: Mapping[str, Any], n_outputs: int | None = None) -> ClassicalArchitecture:
    """Validate ``[architecture]`` with ``type = "classical"`` and its ``[architecture.classical]`` table.

    A legacy ``type = "baseline"`` table is mapped to this one by :func:`rt_physio.nn.model_types.model_type`
    before it gets here.

    ``eeg_channels`` (int >= 0, required), ``ecg`` (bool, required), ``bands`` (increasing band edges in Hz:
    ``[1, 4, 8, 13, 30, 45]`` = δ θ α β γ, the default; contiguous bands).

    Raises
    ------
    ValueError
        A missing, unknown or invalid key, named as ``architecture.classical.<key>``.
    """
    check_architecture(arch, "classical", ("classical",))
    table = arch.get("classical")
    if not isinstance(table, Mapping):
        raise ValueError("architecture.classical must be a table (eeg_channels, ecg, bands).")
    unknown = sorted(set(table) - set(CLASSICAL_KEYS))
    if unknown:
        raise ValueError(f"architecture.classical has unknown keys {unknown}; allowed: {list(CLASSICAL_KEYS)}.")
    n_ch = table.get("eeg_channels")
    if isinstance(n_ch, bool) or not isinstance(n_ch, int) or n_ch < 0:
        raise ValueError(f"architecture.classical.eeg_channels must be an integer >= 0, got {n_ch!r}.")
    ecg = table.get("ecg")
    if not isinstance(ecg, bool):
        raise ValueError(f"architecture.classical.ecg must be true or false, got {ecg!r}.")
    if n_ch == 0 and not ecg:
        raise ValueError("architecture.classical needs EEG channels (eeg_channels > 0) or ECG (ecg = true).")
    raw = table.get("bands", list(_DEFAULT_EDGES))
    if (not isinstance(raw, list | tuple) or len(raw) < 2
            or not all(isinstance(f, int | float) and not isinstance(f, bool) for f in raw)
            or raw[0] < 0 or any(b <= a for a, b in itertools.pairwise(raw))):
        raise ValueError("architecture.classical.bands must be increasing band edges in Hz (at least two, >= 0), e.g. "
                         f"{list(_DEFAULT_EDGES)}, got {raw!r}.")
    bands = tuple((float(a), float(b)) for a, b in itertools.pairwise(raw))
    if n_outputs is None or isinstance(n_outputs, bool) or not isinstance(n_outputs, int) or n_outputs < 1:
        raise ValueError(f"A classical model needs a positive number of outputs, got {n_outputs!r}.")
    return ClassicalArchitecture(n_ch, ecg, bands, n_outputs)
