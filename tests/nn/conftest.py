"""Fixtures for the model tests: fully randomised parameters."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter (norm weights, biases and mask_encoding included) with seeded random values.

    Freshly initialised norms are 1/0 and mask_encoding is 0, which would hide bugs that swap or skip them.
    Matrices are scaled by 1/sqrt(fan_in) and norm scales drawn around 1, so activations stay O(1) and
    absolute tolerances mean what they say.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            for name, p in sub.named_parameters(recurse=False):
                value = torch.randn(p.shape, generator=gen, dtype=torch.float64)
                # matrices scaled by 1/sqrt(fan_in) (activations stay O(1)); vectors by 0.2
                value *= 1.0 / math.sqrt(p[0].numel()) if p.dim() >= 2 else 0.2
                if isinstance(sub, nn.LayerNorm | nn.GroupNorm) and name == "weight":
                    value += 1.0
                p.copy_(value)
    return module


@pytest.fixture
def randomize() -> Callable[..., nn.Module]:
    """``randomize(module, seed=0)``: see :func:`randomize_`."""
    return randomize_
