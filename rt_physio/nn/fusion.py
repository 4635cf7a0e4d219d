"""The dual-backbone fusion model: a CBraMod EEG encoder, a CBraMod-style ECG encoder, concatenation, a head.

Follows "Leveraging Foundational Models and Simple Fusion for Multi-modal Physiological Signal Analysis"
(arXiv 2512.15250): each encoder's patch embeddings are mean-pooled to one 200-vector, the two vectors are
concatenated with two presence flags, and an MLP maps them to one logit per output. A modality that is absent
(no input this window, or no encoder in this model) contributes a zero vector and a 0 flag, so the same model
runs on EEG only, ECG only, or both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rt_physio.checks import check_int, positive_int_entry
from rt_physio.io.channels import MODALITIES as IO_MODALITIES
from rt_physio.nn.architecture import check_architecture
from rt_physio.nn.cbramod import PATCH_SIZE, CBraMod, check_cbramod_args

__all__ = [
    "EMBED_DIM",
    "ENCODER_KEYS",
    "MODALITIES",
    "FusionArchitecture",
    "FusionModel",
    "make_head",
    "parse_architecture",
]

#: Size of each modality's pooled embedding (CBraMod's d_model).
EMBED_DIM = 200
#: Modalities in the order of the fused vector: the channel vocabulary's order (:data:`rt_physio.io.MODALITIES`).
MODALITIES: tuple[str, ...] = IO_MODALITIES
#: Keys of an ``[architecture.eeg]`` / ``[architecture.ecg]`` table; all required.
ENCODER_KEYS: tuple[str, ...] = ("d_model", "dim_feedforward", "seq_len", "n_layer", "nhead")
_HEAD_KEYS = ("hidden", "dropout", "n_outputs")


class FusionModel(nn.Module):
    """EEG and/or ECG encoders, mean-pooled and concatenated with presence flags, then an MLP head.

    Parameters
    ----------
    eeg_encoder : CBraMod | None
        EEG encoder, or None for a model without EEG. Its ``proj_out`` is replaced by Identity (in place).
    ecg_encoder : CBraMod | None
        ECG encoder (leads as channels), or None. Its ``proj_out`` is replaced by Identity (in place).
    n_outputs : int
        Number of logits (one per output, e.g. arousal / valence / dominance).
    hidden : int
        Hidden size of the head.
    dropout : float
        Dropout probability in the head.
    calibrated_hidden : int | None
        Hidden size of a second head that reads embeddings centred on the person's baseline (None: no such head;
        0: a linear head).

    Notes
    -----
    The head input is always ``[eeg_emb (200), ecg_emb (200), eeg_present, ecg_present]``, whichever encoders
    exist, so heads of EEG-only, ECG-only and dual models have the same shape. State-dict keys are
    ``eeg_encoder.*``, ``ecg_encoder.*`` and ``head.*``.
    """

    def __init__(
        self,
        eeg_encoder: CBraMod | None,
        ecg_encoder: CBraMod | None,
        n_outputs: int,
        hidden: int = 256,
        dropout: float = 0.1,
        calibrated_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if eeg_encoder is None and ecg_encoder is None:
            raise ValueError("A FusionModel needs at least one encoder; got eeg_encoder=None and ecg_encoder=None.")
        check_int("n_outputs", n_outputs)
        check_int("hidden", hidden)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"The 'dropout' parameter must be in [0, 1), got {dropout!r}.")
        for name, enc in (("eeg_encoder", eeg_encoder), ("ecg_encoder", ecg_encoder)):
            if enc is not None:
                if not isinstance(enc, CBraMod):
                    raise TypeError(f"The '{name}' parameter must be a CBraMod or None, got {type(enc).__name__}.")
                enc.proj_out = nn.Identity()  # downstream convention: use the (B, C, N, 200) patch embeddings
        self.eeg_encoder = eeg_encoder
        self.ecg_encoder = ecg_encoder
        self.n_outputs = n_outputs
        self.head = make_head(hidden, dropout, n_outputs)
        #: Head trained on embeddings centred on each person's baseline (see rt_physio.nn.calibration), or None.
        self.calibrated_head: nn.Sequential | None = None
        if calibrated_hidden is not None:
            self.calibrated_head = make_head(calibrated_hidden, dropout, n_outputs)
            # population mean of the per-person baselines: stands in for a modality whose baseline is missing
            self.register_buffer("calibration_fallback", torch.zeros(len(MODALITIES) * EMBED_DIM))

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model has an encoder for, in fusion order."""
        encoders = (self.eeg_encoder, self.ecg_encoder)
        return tuple(m for m, enc in zip(MODALITIES, encoders, strict=True) if enc is not None)

    def forward(self, eeg: Tensor | None = None, ecg: Tensor | None = None) -> Tensor:
        """Compute one logit per output.

        Parameters
        ----------
        eeg : Tensor | None
            ``(B, C, N, 200)`` EEG patches (any channel count), or None when EEG is absent.
        ecg : Tensor | None
            ``(B, L, N, 200)`` ECG patches (leads as channels), or None when ECG is absent.

        Returns
        -------
        Tensor
            ``(B, n_outputs)`` logits.

        Raises
        ------
        ValueError
            No modality is usable (both inputs None, or only inputs for encoders the model lacks), or the two
            inputs have different batch sizes.
        """
        feats, present = self.features(eeg, ecg)
        return self.classify(feats, present)

    @property
    def feature_modality(self) -> Tensor:
        """``(400,)`` long: the modality (0 eeg, 1 ecg) each feature of :meth:`features` belongs to."""
        return torch.arange(len(MODALITIES)).repeat_interleave(EMBED_DIM)

    def features(self, eeg: Tensor | None = None, ecg: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pooled embeddings and presence flags: what the head reads, and what calibration centres.

        Parameters
        ----------
        eeg, ecg : Tensor | None
            As in :meth:`forward`.

        Returns
        -------
        tuple[Tensor, Tensor]
            ``(B, 400)`` embeddings ``[eeg (200), ecg (200)]`` (zeros for an absent modality) and ``(B, 2)``
            float presence flags (eeg, ecg).

        Raises
        ------
        ValueError
            As in :meth:`forward`.
        """
        pairs = ((eeg, self.eeg_encoder), (ecg, self.ecg_encoder))
        used = [(x, enc) if x is not None and enc is not None else None for x, enc in pairs]
        given = [u[0] for u in used if u is not None]
        if not given:
            raise ValueError(
                f"No usable modality: this model has encoders for {list(self.modalities)}, got "
                f"eeg={'a tensor' if eeg is not None else 'None'}, ecg={'a tensor' if ecg is not None else 'None'}."
            )
        ref = given[0]
        bsz = ref.shape[0]
        if any(x.shape[0] != bsz for x in given):
            raise ValueError(f"eeg and ecg must have the same batch size, got {[tuple(x.shape) for x in given]}.")

        embs: list[Tensor] = []
        for u in used:
            if u is None:
                embs.append(ref.new_zeros(bsz, EMBED_DIM))  # (B, 200)
            else:
                x, enc = u
                embs.append(enc(x).mean(dim=(1, 2)))  # (B, C, N, 200) -> (B, 200)
        # Fill kernels, not a host-to-device copy: keeps the forward capturable in a CUDA graph.
        flags = torch.cat([ref.new_full((bsz, 1), float(u is not None)) for u in used], dim=1)  # (B, 2)
        return torch.cat(embs, dim=1), flags

    def classify(self, features: Tensor, present: Tensor, calibrated: bool = False) -> Tensor:
        """Logits from :meth:`features` output; ``calibrated`` picks the head trained on centred embeddings.

        Raises
        ------
        ValueError
            ``calibrated`` is asked of a model without a calibrated head.
        """
        if calibrated:
            if self.calibrated_head is None:
                raise ValueError("This model has no calibrated head ([architecture.calibrated_head]).")
            z = torch.cat((features, present.to(features.dtype)), dim=-1)
            out: Tensor = self.calibrated_head(z)
            return out
        return self.fuse(features[:, :EMBED_DIM], features[:, EMBED_DIM:], present)

    def fuse(self, eeg_emb: Tensor, ecg_emb: Tensor, present: Tensor) -> Tensor:
        """Apply the head to pooled embeddings and per-row presence flags.

        Separate from :meth:`forward` so that a batch can mix rows with different modalities present: zero
        the absent rows' embeddings and set their flags.

        Parameters
        ----------
        eeg_emb, ecg_emb : Tensor
            ``(B, 200)`` pooled embeddings (zeros where the modality is absent).
        present : Tensor
            ``(B, 2)`` float flags, 1 where the modality is present (order: eeg, ecg).

        Returns
        -------
        Tensor
            ``(B, n_outputs)`` logits.
        """
        z = torch.cat((eeg_emb, ecg_emb, present.to(eeg_emb.dtype)), dim=-1)  # (B, 402)
        out: Tensor = self.head(z)  # (B, n_outputs)
        return out

    @classmethod
    def from_config(cls, arch: Mapping[str, Any], n_outputs: int | None = None) -> FusionModel:
        """Build an (untrained) model from the ``[architecture]`` table of a ``model.toml``.

        Parameters
        ----------
        arch : Mapping[str, Any]
            ``{"type": "fusion", "eeg": {...}, "ecg": {...}, "head": {"hidden", "dropout", "n_outputs"}}``;
            ``eeg`` / ``ecg`` hold :data:`ENCODER_KEYS` and may be omitted (not both).
        n_outputs : int | None
            Number of outputs; overrides (and must agree with) ``head.n_outputs`` when both are given.

        Returns
        -------
        FusionModel
            A randomly initialised model (seed it with :func:`torch.manual_seed` for reproducibility).

        Raises
        ------
        ValueError
            A missing, unknown or invalid key; the message names it as ``architecture.<table>.<key>``.
        """
        parsed = parse_architecture(arch, n_outputs)
        encoders = [None if cfg is None else CBraMod(**cfg) for cfg in parsed.encoders]
        return cls(encoders[0], encoders[1], parsed.n_outputs, hidden=parsed.hidden, dropout=parsed.dropout,
                   calibrated_hidden=parsed.calibrated_hidden)


@dataclass(frozen=True)
class FusionArchitecture:
    """A validated ``[architecture]`` table: CBraMod keyword arguments per modality (None = no encoder)."""

    encoders: tuple[dict[str, int] | None, dict[str, int] | None]
    n_outputs: int
    hidden: int
    dropout: float
    calibrated_hidden: int | None = None


def parse_architecture(arch: Mapping[str, Any], n_outputs: int | None = None) -> FusionArchitecture:
    """Validate an ``[architecture]`` table without building the model (see :meth:`FusionModel.from_config`).

    Raises
    ------
    ValueError
        A missing, unknown or invalid key, named as ``architecture.<table>.<key>``.
    """
    check_architecture(arch, "fusion", (*MODALITIES, "head", "calibrated_head"))
    eeg, ecg = (_parse_encoder(arch[m], f"architecture.{m}") if m in arch else None for m in MODALITIES)
    if eeg is None and ecg is None:
        raise ValueError("architecture must have at least one of the tables [architecture.eeg], [architecture.ecg].")

    head = arch.get("head", {})
    if not isinstance(head, Mapping):
        raise ValueError(f"architecture.head must be a table, got {type(head).__name__}.")
    unknown = sorted(set(head) - set(_HEAD_KEYS))
    if unknown:
        raise ValueError(f"architecture.head has unknown keys {unknown}; allowed: {list(_HEAD_KEYS)}.")
    hidden = positive_int_entry("architecture.head.hidden", head.get("hidden", 256))
    dropout = head.get("dropout", 0.1)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"architecture.head.dropout must be a number in [0, 1), got {dropout!r}.")
    declared = head.get("n_outputs")
    if declared is not None:
        declared = positive_int_entry("architecture.head.n_outputs", declared)
    if n_outputs is None:
        if declared is None:
            raise ValueError("architecture.head.n_outputs is missing (and no n_outputs was given).")
        n_outputs = declared
    elif declared is not None and declared != n_outputs:
        raise ValueError(f"architecture.head.n_outputs is {declared} but the model declares {n_outputs} outputs.")
    calibrated_hidden = None
    if "calibrated_head" in arch:
        cal = arch["calibrated_head"]
        if not isinstance(cal, Mapping) or set(cal) != {"hidden"}:
            raise ValueError(f"architecture.calibrated_head must be a table with one key, hidden; got {cal!r}.")
        calibrated_hidden = cal["hidden"]
        if isinstance(calibrated_hidden, bool) or not isinstance(calibrated_hidden, int) or calibrated_hidden < 0:
            raise ValueError("architecture.calibrated_head.hidden must be a whole number >= 0 (0: a linear head, "
                             f"a logistic regression), got {calibrated_hidden!r}.")
    return FusionArchitecture((eeg, ecg), n_outputs, hidden, float(dropout), calibrated_hidden)


def make_head(hidden: int, dropout: float, n_outputs: int) -> nn.Sequential:
    """Build the fusion head: ``[eeg_emb, ecg_emb, flags] (402) -> hidden -> ELU -> dropout -> n_outputs``.

    ``hidden = 0`` gives a linear head, ``402 -> n_outputs`` (what a logistic regression fits).
    """
    if hidden == 0:
        return nn.Sequential(nn.Linear(len(MODALITIES) * EMBED_DIM + len(MODALITIES), n_outputs))
    return nn.Sequential(
        nn.Linear(len(MODALITIES) * EMBED_DIM + len(MODALITIES), hidden),
        nn.ELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_outputs),
    )


def _parse_encoder(cfg: object, where: str) -> dict[str, int]:
    if not isinstance(cfg, Mapping):
        raise ValueError(f"{where} must be a table, got {type(cfg).__name__}.")
    missing = [k for k in ENCODER_KEYS if k not in cfg]
    if missing:
        raise ValueError(f"{where} is missing keys {missing}.")
    unknown = sorted(set(cfg) - set(ENCODER_KEYS))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; allowed: {list(ENCODER_KEYS)}.")
    kwargs = {k: positive_int_entry(f"{where}.{k}", cfg[k]) for k in ENCODER_KEYS}
    try:
        check_cbramod_args(in_dim=PATCH_SIZE, out_dim=kwargs["d_model"], **kwargs)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return kwargs
