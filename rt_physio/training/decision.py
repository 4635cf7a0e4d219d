"""Move a fusion model's decision point for windows that have *both* modalities, exactly, inside the model.

A model fine-tuned with modality dropout serves three input sets (EEG + ECG, EEG alone, ECG alone) with one head,
and their probabilities need not be calibrated alike on new people: on EEGMAT validation subjects the fusion set
ranked windows best (highest AUROC) but put its 0.5 threshold too high, while the single-modality sets were
balanced at 0.5. :func:`offset_fusion_logit` adds ``delta`` to the logit of rows where both modalities are present
and leaves every other row bit-for-bit unchanged, by appending one unit to the head's hidden layer::

    h_extra = ELU(eeg_present + ecg_present - 1)   # 1 when both are present, 0 with one, never reached with none
    logit  += delta * h_extra

so ``sigmoid(logit + delta) >= 0.5`` exactly when ``sigmoid(logit) >= threshold`` with
``delta = -log(threshold / (1 - threshold))``. The model stays an ordinary :class:`~rt_physio.nn.FusionModel`
(``architecture.head.hidden`` grows by one) that the registry and the engine load as any other.

Usage::

    python -m rt_physio.training.decision SRC_MODEL DST_MODEL --fusion-threshold 0.2
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from rt_physio.config import load_toml
from rt_physio.nn.fusion import EMBED_DIM, FusionModel
from rt_physio.nn.registry import load_model, save_model

__all__ = ["main", "offset_fusion_logit", "threshold_to_offset"]


def threshold_to_offset(threshold: float) -> float:
    """Logit offset that moves the decision point from ``threshold`` to 0.5."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"The 'threshold' parameter must be in (0, 1), got {threshold!r}.")
    return -math.log(threshold / (1.0 - threshold))


def offset_fusion_logit(model: FusionModel, delta: float | Sequence[float]) -> FusionModel:
    """Return a copy of ``model`` whose logits gain ``delta`` on rows with both modalities present.

    Parameters
    ----------
    model : FusionModel
        The trained model (its head is ``Linear → ELU → Dropout → Linear``).
    delta : float or sequence of float
        Offset per output (one value for all outputs).

    Returns
    -------
    FusionModel
        A new model, in eval mode, with ``head.hidden + 1`` hidden units; the encoders are shared copies.
    """
    first, last = model.head[0], model.head[3]
    assert isinstance(first, torch.nn.Linear) and isinstance(last, torch.nn.Linear)
    hidden = first.out_features
    deltas = torch.as_tensor(delta, dtype=torch.float32).reshape(-1).expand(model.n_outputs)
    dropout = model.head[2]
    assert isinstance(dropout, torch.nn.Dropout)
    new = FusionModel(model.eeg_encoder, model.ecg_encoder, model.n_outputs, hidden=hidden + 1, dropout=dropout.p)
    new_first, new_last = new.head[0], new.head[3]
    assert isinstance(new_first, torch.nn.Linear) and isinstance(new_last, torch.nn.Linear)
    with torch.no_grad():
        new_first.weight.zero_()
        new_first.weight[:hidden] = first.weight
        new_first.bias[:hidden] = first.bias
        flags = 2 * EMBED_DIM  # the head input is [eeg_emb, ecg_emb, eeg_present, ecg_present]
        new_first.weight[hidden, flags] = 1.0
        new_first.weight[hidden, flags + 1] = 1.0
        new_first.bias[hidden] = -1.0
        new_last.weight[:, :hidden] = last.weight
        new_last.weight[:, hidden] = deltas
        new_last.bias.copy_(last.bias)
    return new.eval()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m rt_physio.training.decision",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("src", help="trained model folder or name")
    parser.add_argument("dst", type=Path, help="model folder to write (its name becomes the model name)")
    parser.add_argument("--fusion-threshold", type=float, required=True,
                        help="probability threshold (chosen on validation data) that becomes 0.5 for EEG + ECG rows")
    args = parser.parse_args(argv)
    loaded = load_model(args.src)
    if not isinstance(loaded.module, FusionModel):
        parser.error(f"{args.src}: not a fusion model")
    delta = threshold_to_offset(args.fusion_threshold)
    model = offset_fusion_logit(loaded.module, delta)
    fields = load_toml(loaded.spec.model_file)
    fields["name"] = args.dst.resolve().name
    fields["architecture"]["head"]["hidden"] = model.head[0].out_features
    provenance = fields["provenance"]
    provenance["decision_offset"] = {
        "fusion_threshold": args.fusion_threshold,
        "fusion_logit_offset": round(delta, 6),
        "note": "logit + offset on windows with both EEG and ECG (one extra head unit driven by the presence "
                "flags); EEG-only and ECG-only outputs unchanged. Threshold chosen on the validation subjects.",
        "source_model": loaded.spec.name,
        "source_weights_sha256": loaded.sha256,
        "command": f"python -m rt_physio.training.decision {args.src} {args.dst} "
                   f"--fusion-threshold {args.fusion_threshold}",
    }
    dtype = getattr(torch, str(provenance.get("weights_dtype", "float16")))
    sha256 = save_model(args.dst, model, fields, dtype=dtype)
    print(f"wrote {args.dst} (fusion logit offset {delta:+.4f}, weights sha256 {sha256})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
