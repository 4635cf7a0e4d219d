from __future__ import annotations

import pytest
import torch

from rt_physio.nn import CBraMod
from rt_physio.nn.masking import dual_mask, masked_mse, patch_mask


def test_ratios_within_tolerance() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = dual_mask((4000, 4, 5), patch_ratio=0.5, lead_ratio=0.25, generator=gen)
    whole = mask.all(dim=2).float().mean().item()  # leads masked entirely (by lead masking or by chance)
    # P(lead masked whole) = 0.25 (minus the kept lead) + 0.75 * 0.5**5; P(patch) = 1 - 0.5 * 0.75
    assert whole == pytest.approx(0.25 * 3 / 4 + 0.75 * 0.5**5, abs=0.02)
    assert mask.float().mean().item() == pytest.approx(1 - 0.5 * (1 - 0.25 * 3 / 4), abs=0.02)
    single = patch_mask((20000, 1, 5), ratio=0.3, generator=gen)
    assert single.float().mean().item() == pytest.approx(0.3, abs=0.01)


def test_at_least_one_lead_visible_even_with_extreme_ratios() -> None:
    gen = torch.Generator().manual_seed(1)
    for leads in (1, 2, 12):
        mask = dual_mask((3000, leads, 3), patch_ratio=0.95, lead_ratio=0.95, generator=gen)
        visible = (mask == 0).any(dim=2)  # (B, L): lead has a visible patch
        assert bool(visible.any(dim=1).all())


def test_single_lead_gets_no_lead_masking() -> None:
    mask = dual_mask((5000, 1, 5), patch_ratio=0.2, lead_ratio=0.9, generator=torch.Generator().manual_seed(2))
    assert mask.float().mean().item() == pytest.approx(0.2, abs=0.02)


def test_reproducible_with_generator() -> None:
    a = dual_mask((8, 3, 5), generator=torch.Generator().manual_seed(7))
    b = dual_mask((8, 3, 5), generator=torch.Generator().manual_seed(7))
    c = dual_mask((8, 3, 5), generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.int64
    assert a.shape == (8, 3, 5)


def test_masked_positions_use_mask_encoding() -> None:
    torch.manual_seed(0)
    model = CBraMod(n_layer=1, dim_feedforward=64).eval()
    with torch.no_grad():
        model.patch_embedding.mask_encoding.copy_(torch.linspace(-1, 1, 200))
    x = torch.randn(2, 3, 4, 200)
    mask = dual_mask((2, 3, 4), 0.5, 0.3, generator=torch.Generator().manual_seed(3))
    replaced = x.clone()
    replaced[mask == 1] = model.patch_embedding.mask_encoding
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask=mask), model(replaced), rtol=0, atol=0)
        assert not torch.allclose(model(x, mask=mask), model(x))


def test_masked_mse_only_counts_masked_patches() -> None:
    target = torch.zeros(1, 2, 2, 200)
    pred = torch.zeros(1, 2, 2, 200)
    pred[0, 0, 0] = 2.0  # error on a masked patch
    pred[0, 1, 1] = 100.0  # error on a visible patch: ignored
    mask = torch.tensor([[[1, 0], [0, 0]]])
    assert masked_mse(pred, target, mask).item() == pytest.approx(4.0)
    assert masked_mse(pred, target, torch.zeros_like(mask)).item() == 0.0


@pytest.mark.parametrize(("kwargs", "word"),
                         [({"patch_ratio": 1.0}, "patch_ratio"), ({"lead_ratio": -0.1}, "lead_ratio")])
def test_bad_ratios_are_named(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        dual_mask((1, 2, 3), **kwargs)
