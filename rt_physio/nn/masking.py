"""Masks for masked-patch pre-training, including **dual masking** for multi-lead ECG (arXiv 2512.15250).

Dual masking hides information at three scales at once (each part can be switched off with a zero ratio):

* intra-lead: every patch is masked independently with probability ``patch_ratio`` (CBraMod's Bernoulli masking);
* time span: one contiguous span of ``round(span_ratio * patches)`` patches (at most all but one) is hidden in
  **every** lead at once, so the encoder cannot copy a moment from a neighbouring lead and must predict it from
  the rhythm before and after;
* inter-lead: every lead (channel) is masked whole with probability ``lead_ratio``, so the encoder must rebuild a
  lead from the others (the leads of an ECG see the same heart from different angles).

At least one lead of every sample keeps at least one visible patch (outside the time span), so there is always
something to reconstruct from. Masks are drawn from an explicit :class:`torch.Generator`: the same generator
state gives the same mask.
A mask is 1 where a patch is hidden; :class:`~rt_physio.nn.CBraMod` replaces those patches by its
``mask_encoding`` (``model(x, mask=mask)``) and the loss is taken on them only (:func:`masked_mse`).

The reconstruction target is the input **standardised per sample and lead** (:func:`standardise`: zero mean,
unit variance over the window), so the loss is of order 1 whatever the signal's scale (EEG in model units is
~0.01 units², ECG ~1); predicting zeros then scores about 1 (:func:`zero_mse` gives it exactly), and a model's
masked MSE divided by it is the ratio that says whether pre-training learned anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["dual_mask", "heldout_mse", "masked_mse", "patch_mask", "standardise", "zero_mse"]


def _check_ratio(name: str, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"The '{name}' parameter must be in [0, 1), got {value!r}.")
    return float(value)


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ValueError(f"The 'shape' parameter must be (batch, leads, patches) with positive sizes, got {shape}.")
    return int(shape[0]), int(shape[1]), int(shape[2])


def patch_mask(shape: tuple[int, int, int], ratio: float, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Tensor:
    """Bernoulli mask of patches (CBraMod's pre-training mask), shape ``(batch, leads, patches)``.

    Equivalent to :func:`dual_mask` with ``lead_ratio=0`` and ``span_ratio=0``.
    """
    return dual_mask(shape, patch_ratio=ratio, lead_ratio=0.0, generator=generator, device=device)


def dual_mask(shape: tuple[int, int, int], patch_ratio: float = 0.5, lead_ratio: float = 0.25,
              generator: torch.Generator | None = None, device: torch.device | str | None = None,
              span_ratio: float = 0.0) -> Tensor:
    """Draw a dual (intra-lead + time span across all leads + inter-lead) mask.

    Parameters
    ----------
    shape : (batch, leads, patches)
        Mask shape (the first three dimensions of the model input).
    patch_ratio : float
        Probability in [0, 1) that a patch is masked on its own.
    lead_ratio : float
        Probability in [0, 1) that a whole lead is masked. Ignored for single-lead inputs.
    generator : torch.Generator | None
        Source of randomness (a CPU generator; the mask is moved to ``device`` afterwards). None uses the global
        generator.
    device : torch.device | str | None
        Where the returned mask lives (default CPU).
    span_ratio : float
        Fraction in [0, 1) of the patches covered by one contiguous time span masked in all leads (length
        ``min(patches - 1, round(span_ratio * patches))``, uniformly placed); 0 (the default) for none.

    Returns
    -------
    Tensor
        ``(batch, leads, patches)`` int64, 1 = masked. Every sample has at least one lead with a visible patch.
    """
    bsz, n_leads, n_patches = _check_shape(tuple(shape))
    patch_ratio = _check_ratio("patch_ratio", patch_ratio)
    lead_ratio = _check_ratio("lead_ratio", lead_ratio)
    span_ratio = _check_ratio("span_ratio", span_ratio)
    mask = torch.rand((bsz, n_leads, n_patches), generator=generator) < patch_ratio  # (B, L, N) intra-lead
    lead_draw = torch.rand((bsz, n_leads), generator=generator)  # (B, L)
    keeper = torch.randint(n_leads, (bsz,), generator=generator)  # (B,) a lead never masked whole
    keep_patch = torch.randint(n_patches, (bsz,), generator=generator)  # (B,) a patch of it kept if needed
    if n_leads > 1 and lead_ratio > 0:
        whole = lead_draw < lead_ratio  # (B, L)
        whole[torch.arange(bsz), keeper] = False
        mask |= whole.unsqueeze(-1)
    span_len = min(n_patches - 1, round(span_ratio * n_patches))
    if span_len > 0:
        start = torch.randint(n_patches - span_len + 1, (bsz,), generator=generator)  # (B,)
        pos = torch.arange(n_patches)
        span = (pos >= start.unsqueeze(1)) & (pos < (start + span_len).unsqueeze(1))  # (B, N)
        mask |= span.unsqueeze(1)
        # the patch revealed below must lie outside the span, or the span would not be hidden in every lead
        offset = torch.randint(n_patches - span_len, (bsz,), generator=generator)
        keep_patch = (start + span_len + offset) % n_patches
    # If Bernoulli masking hid everything a sample has, reveal one patch of its keeper lead.
    all_hidden = mask.flatten(1).all(dim=1)  # (B,)
    rows = all_hidden.nonzero().squeeze(1)
    mask[rows, keeper[rows], keep_patch[rows]] = False
    out = mask.to(torch.int64)
    return out if device is None else out.to(device)


def masked_mse(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the masked patches only.

    Parameters
    ----------
    prediction, target : Tensor
        ``(B, C, N, 200)`` reconstruction and original patches.
    mask : Tensor
        ``(B, C, N)``, 1 where masked.

    Returns
    -------
    Tensor
        Scalar loss (0 when nothing is masked).
    """
    selected = mask.bool()
    if not bool(selected.any()):
        return prediction.sum() * 0.0
    return torch.mean((prediction[selected] - target[selected]) ** 2)


def standardise(x: Tensor, eps: float = 1e-3) -> Tensor:
    """Standardise ``(B, C, N, P)`` patches per sample and lead over the whole window (all N·P samples).

    Parameters
    ----------
    x : Tensor
        Input patches.
    eps : float
        Floor of the standard deviation (a flat lead stays near zero instead of being blown up).

    Returns
    -------
    Tensor
        ``(x - mean) / max(std, eps)`` with mean and std over the last two dimensions.
    """
    flat = x.flatten(2)  # (B, C, N*P)
    mean = flat.mean(dim=2, keepdim=True)
    std = flat.std(dim=2, keepdim=True, unbiased=False).clamp_min(eps)
    return ((flat - mean) / std).view_as(x)


def zero_mse(target: Tensor, mask: Tensor) -> Tensor:
    """Return the masked MSE of predicting zeros (the trivial baseline beside every reported loss)."""
    return masked_mse(torch.zeros_like(target), target, mask)


def heldout_mse(batches: Sequence[tuple[Tensor, Tensor]], predict: Callable[[Tensor, Tensor, Tensor], Tensor],
                device: torch.device | None = None) -> tuple[float, float]:
    """Masked MSE of a predictor and of the zero predictor over fixed batches, weighted by masked patches.

    Parameters
    ----------
    batches : sequence of (Tensor, Tensor)
        ``(B, C, N, 200)`` inputs and their ``(B, C, N)`` masks (a run's fixed held-out set).
    predict : callable
        ``predict(x, mask, target)`` → the reconstruction of the standardised ``target`` (a model, or a reference
        such as a period copy).
    device : torch.device, optional
        Where to move each batch first.

    Returns
    -------
    tuple of float
        The predictor's and the zero predictor's loss (both NaN when nothing is masked).
    """
    err = zero = count = 0.0
    for x, mask in batches:
        if device is not None:
            x, mask = x.to(device), mask.to(device)
        n = float(mask.sum())
        if n == 0:
            continue
        target = standardise(x)
        err += masked_mse(predict(x, mask, target), target, mask).item() * n
        zero += zero_mse(target, mask).item() * n
        count += n
    if count == 0:
        return math.nan, math.nan
    return err / count, zero / count
