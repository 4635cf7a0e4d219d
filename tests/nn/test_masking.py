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


def test_time_span_is_masked_in_every_lead_at_once() -> None:
    from rt_physio.nn.masking import dual_mask as draw

    gen = torch.Generator().manual_seed(4)
    span_only = draw((500, 4, 10), patch_ratio=0.0, lead_ratio=0.0, span_ratio=0.3, generator=gen)
    assert torch.equal(span_only, span_only[:, :1].expand_as(span_only))  # identical in every lead
    per_sample = span_only[:, 0]  # (B, N)
    assert bool((per_sample.sum(dim=1) == 3).all())
    starts = per_sample.argmax(dim=1)
    for b in range(per_sample.shape[0]):
        assert per_sample[b, starts[b]:starts[b] + 3].sum().item() == 3  # one contiguous span
    assert len(set(starts.tolist())) == 8  # every start 0..7 occurs
    # with all three parts on: the span stays hidden in all leads and something stays visible
    full = draw((2000, 3, 10), patch_ratio=0.9, lead_ratio=0.9, span_ratio=0.5, generator=gen)
    all_leads = full.bool().all(dim=1)  # (B, N): masked in every lead
    runs = torch.stack([all_leads[:, i:i + 5].all(dim=1) for i in range(6)], dim=1).any(dim=1)
    assert bool(runs.all())
    assert bool((full == 0).flatten(1).any(dim=1).all())


def test_span_never_covers_the_whole_window() -> None:
    from rt_physio.nn.masking import dual_mask as draw

    mask = draw((300, 1, 2), patch_ratio=0.99, lead_ratio=0.0, span_ratio=0.99,
                generator=torch.Generator().manual_seed(5))
    assert bool((mask.sum(dim=(1, 2)) == 1).all())  # span 1 of 2 patches; the other revealed if Bernoulli hid it


def test_standardised_targets_make_the_zero_predictor_score_one() -> None:
    from rt_physio.nn.masking import standardise, zero_mse

    gen = torch.Generator().manual_seed(6)
    x = 0.01 * torch.randn(16, 3, 5, 200, generator=gen) + 0.003  # EEG-like scale in model units
    z = standardise(x)
    assert z.flatten(2).mean(dim=2).abs().max().item() < 1e-4
    assert z.flatten(2).std(dim=2, unbiased=False).sub(1).abs().max().item() < 1e-3
    mask = dual_mask((16, 3, 5), 0.5, 0.2, generator=gen, span_ratio=0.2)
    zero = zero_mse(z, mask)
    assert zero.item() == pytest.approx(1.0, abs=0.05)
    assert (masked_mse(torch.zeros_like(z), z, mask) / zero).item() == pytest.approx(1.0)  # ratio of zeros = 1
    assert masked_mse(z, z, mask).item() == 0.0
    flat = standardise(torch.full((1, 1, 2, 200), 3.0))
    assert torch.equal(flat, torch.zeros_like(flat))  # a flat lead is not blown up
