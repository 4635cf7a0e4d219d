"""CBraMod: shapes, parameter count, checkpoint key names, masking, and an independent recomputation.

The recomputation below is our guard for parity with the official implementation: it rebuilds the patch
embedding and the criss-cross layers from the architecture facts with different code (explicit loops, explicit
DFT, hand-written GroupNorm/LayerNorm/attention) and compares in float64 with tight tolerances, so a wrong
reshape order, split, or normalisation axis shows up as a large difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rt_physio.nn import CBraMod
from rt_physio.nn.cbramod import CrissCrossEncoderLayer, PatchEmbedding

# The state-dict table of shared/reference/cbramod.md ("every layer repeats the encoder.layers.0 block").
PATCH_KEYS: dict[str, tuple[int, ...]] = {
    "patch_embedding.mask_encoding": (200,),
    "patch_embedding.positional_encoding.0.weight": (200, 1, 19, 7),
    "patch_embedding.positional_encoding.0.bias": (200,),
    "patch_embedding.proj_in.0.weight": (25, 1, 1, 49),
    "patch_embedding.proj_in.0.bias": (25,),
    "patch_embedding.proj_in.1.weight": (25,),
    "patch_embedding.proj_in.1.bias": (25,),
    "patch_embedding.proj_in.3.weight": (25, 25, 1, 3),
    "patch_embedding.proj_in.3.bias": (25,),
    "patch_embedding.proj_in.4.weight": (25,),
    "patch_embedding.proj_in.4.bias": (25,),
    "patch_embedding.proj_in.6.weight": (25, 25, 1, 3),
    "patch_embedding.proj_in.6.bias": (25,),
    "patch_embedding.proj_in.7.weight": (25,),
    "patch_embedding.proj_in.7.bias": (25,),
    "patch_embedding.spectral_proj.0.weight": (200, 101),
    "patch_embedding.spectral_proj.0.bias": (200,),
}
LAYER_KEYS: dict[str, tuple[int, ...]] = {
    "self_attn_s.in_proj_weight": (300, 100),
    "self_attn_s.in_proj_bias": (300,),
    "self_attn_s.out_proj.weight": (100, 100),
    "self_attn_s.out_proj.bias": (100,),
    "self_attn_t.in_proj_weight": (300, 100),
    "self_attn_t.in_proj_bias": (300,),
    "self_attn_t.out_proj.weight": (100, 100),
    "self_attn_t.out_proj.bias": (100,),
    "linear1.weight": (800, 200),
    "linear1.bias": (800,),
    "linear2.weight": (200, 800),
    "linear2.bias": (200,),
    "norm1.weight": (200,),
    "norm1.bias": (200,),
    "norm2.weight": (200,),
    "norm2.bias": (200,),
}
OUT_KEYS: dict[str, tuple[int, ...]] = {"proj_out.0.weight": (200, 200), "proj_out.0.bias": (200,)}


def official_keys(n_layer: int = 12) -> dict[str, tuple[int, ...]]:
    keys = dict(PATCH_KEYS)
    for i in range(n_layer):
        keys.update({f"encoder.layers.{i}.{k}": v for k, v in LAYER_KEYS.items()})
    keys.update(OUT_KEYS)
    return keys


# --- independent float64 recomputation ------------------------------------------------------------------------


def ref_group_norm(h: Tensor, groups: int, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """h: (B, P, K, L) per-patch conv outputs; statistics over all patches, K/groups channels and positions."""
    b, p, k, length = h.shape
    g = h.reshape(b, p, groups, k // groups, length)
    mean = g.mean(dim=(1, 3, 4), keepdim=True)
    var = ((g - mean) ** 2).mean(dim=(1, 3, 4), keepdim=True)
    g = (g - mean) / torch.sqrt(var + eps)
    return g.reshape(b, p, k, length) * weight[None, None, :, None] + bias[None, None, :, None]


def ref_gelu(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def ref_conv_patch(x: Tensor, weight: Tensor, bias: Tensor, stride: int, pad: int) -> Tensor:
    """Cross-correlation of one patch (K_in, L) with weight (K_out, K_in, W) by an explicit loop over outputs."""
    k_in, length = x.shape
    width = weight.shape[-1]
    xp = torch.cat([x.new_zeros(k_in, pad), x, x.new_zeros(k_in, pad)], dim=1)
    n_out = (length + 2 * pad - width) // stride + 1
    cols = [torch.einsum("oiw,iw->o", weight, xp[:, j * stride : j * stride + width]) for j in range(n_out)]
    return torch.stack(cols, dim=1) + bias[:, None]  # (K_out, n_out)


def ref_patch_embedding(pe: PatchEmbedding, x: Tensor, mask: Tensor | None = None) -> Tensor:
    sd = {k: v.detach().to(torch.float64) for k, v in pe.state_dict().items()}
    x = x.to(torch.float64)
    bsz, n_ch, n_p, _ = x.shape
    patches = []  # patch order: channel-major, then patch (c * N + n)
    for b in range(bsz):
        for c in range(n_ch):
            for n in range(n_p):
                masked = mask is not None and bool(mask[b, c, n] == 1)
                patches.append(sd["mask_encoding"] if masked else x[b, c, n])
    raw = torch.stack(patches).reshape(bsz, n_ch * n_p, 200)

    # time branch, per patch
    h = torch.stack(
        [
            torch.stack(
                [
                    ref_conv_patch(raw[b, i][None], sd["proj_in.0.weight"][:, :, 0], sd["proj_in.0.bias"], 25, 24)
                    for i in range(n_ch * n_p)
                ]
            )
            for b in range(bsz)
        ]
    )  # (B, P, 25, 8)
    h = ref_gelu(ref_group_norm(h, 5, sd["proj_in.1.weight"], sd["proj_in.1.bias"]))
    for conv, norm in ((3, 4), (6, 7)):
        w, bias = sd[f"proj_in.{conv}.weight"][:, :, 0], sd[f"proj_in.{conv}.bias"]
        h = torch.stack(
            [torch.stack([ref_conv_patch(h[b, i], w, bias, 1, 1) for i in range(h.shape[1])]) for b in range(bsz)]
        )
        h = ref_gelu(ref_group_norm(h, 5, sd[f"proj_in.{norm}.weight"], sd[f"proj_in.{norm}.bias"]))
    time_emb = h.reshape(bsz, n_ch, n_p, 25 * 8)  # feature = conv channel * 8 + position

    # spectral branch: explicit DFT, |X_k| / 200 for k = 0..100
    t = np.arange(200)
    k = np.arange(101)
    angle = 2 * np.pi * np.outer(t, k) / 200
    re = raw @ torch.from_numpy(np.cos(angle))
    im = raw @ torch.from_numpy(-np.sin(angle))
    mag = torch.sqrt(re**2 + im**2) / 200  # (B, P, 101)
    spec_emb = (mag @ sd["spectral_proj.0.weight"].T + sd["spectral_proj.0.bias"]).reshape(bsz, n_ch, n_p, 200)

    emb = time_emb + spec_emb  # (B, C, N, 200)
    # depthwise positional conv: kernel rows span channels (19), columns span patches (7), zero padding
    w = sd["positional_encoding.0.weight"][:, 0]  # (200, 19, 7)
    padded = F.pad(emb.permute(0, 3, 1, 2), (3, 3, 9, 9)).permute(0, 2, 3, 1)  # (B, C+18, N+6, 200)
    pos = sd["positional_encoding.0.bias"].expand(bsz, n_ch, n_p, 200).clone()
    for i in range(19):
        for j in range(7):
            pos += w[:, i, j] * padded[:, i : i + n_ch, j : j + n_p, :]
    return emb + pos


def ref_layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ref_attention(seq: Tensor, sd: dict[str, Tensor], prefix: str, n_heads: int) -> Tensor:
    """Multi-head self-attention of one sequence (L, E), written out."""
    e = seq.shape[1]
    qkv = seq @ sd[f"{prefix}.in_proj_weight"].T + sd[f"{prefix}.in_proj_bias"]
    q, k, v = qkv[:, :e], qkv[:, e : 2 * e], qkv[:, 2 * e :]
    d = e // n_heads
    heads = []
    for h in range(n_heads):
        sl = slice(h * d, (h + 1) * d)
        scores = q[:, sl] @ k[:, sl].T / math.sqrt(d)
        heads.append(torch.softmax(scores, dim=-1) @ v[:, sl])
    return torch.cat(heads, dim=1) @ sd[f"{prefix}.out_proj.weight"].T + sd[f"{prefix}.out_proj.bias"]


def ref_layer(layer: CrissCrossEncoderLayer, x: Tensor, n_heads: int) -> Tensor:
    sd = {k: v.detach().to(torch.float64) for k, v in layer.state_dict().items()}
    x = x.to(torch.float64)
    bsz, n_ch, n_p, _ = x.shape
    y = ref_layer_norm(x, sd["norm1.weight"], sd["norm1.bias"])
    att = torch.zeros_like(y)
    for b in range(bsz):
        for n in range(n_p):  # spatial: features 0..99, sequence over channels
            att[b, :, n, :100] = ref_attention(y[b, :, n, :100], sd, "self_attn_s", n_heads)
        for c in range(n_ch):  # temporal: features 100..199, sequence over patches
            att[b, c, :, 100:] = ref_attention(y[b, c, :, 100:], sd, "self_attn_t", n_heads)
    x = x + att
    y = ref_layer_norm(x, sd["norm2.weight"], sd["norm2.bias"])
    ff = ref_gelu(y @ sd["linear1.weight"].T + sd["linear1.bias"]) @ sd["linear2.weight"].T + sd["linear2.bias"]
    return x + ff


# --- tests ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "n"), [(1, 1, 1), (2, 1, 5), (1, 14, 5), (2, 20, 5), (1, 21, 30), (3, 2, 1), (1, 19, 30)]
)
def test_output_shape(b: int, c: int, n: int) -> None:
    model = CBraMod(n_layer=1).eval()
    with torch.no_grad():
        out = model(torch.randn(b, c, n, 200))
    assert out.shape == (b, c, n, 200)
    assert torch.isfinite(out).all()


def test_long_window_shape_and_out_dim() -> None:
    model = CBraMod(out_dim=7, n_layer=2).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 21, 30, 200))
    assert out.shape == (1, 21, 30, 7)


def test_parameter_count() -> None:
    assert sum(p.numel() for p in CBraMod().parameters()) == 4_924_000


def test_state_dict_keys_and_shapes_match_official_table() -> None:
    sd = CBraMod().state_dict()
    assert len(sd) == 211
    assert {k: tuple(v.shape) for k, v in sd.items()} == official_keys(12)


def test_state_dict_keys_follow_n_layer() -> None:
    sd = CBraMod(n_layer=3).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == official_keys(3)


def test_mask_encoding_is_frozen_zeros() -> None:
    pe = CBraMod(n_layer=0).patch_embedding
    assert not pe.mask_encoding.requires_grad
    assert torch.equal(pe.mask_encoding, torch.zeros(200))


@pytest.mark.parametrize(("b", "c", "n"), [(1, 1, 1), (2, 3, 4), (1, 21, 2)])
def test_patch_embedding_matches_independent_recomputation(
    b: int, c: int, n: int, randomize: Callable[..., nn.Module]
) -> None:
    pe = randomize(PatchEmbedding(), seed=b * 100 + c * 10 + n).double().eval()
    x = torch.randn(b, c, n, 200, dtype=torch.float64)
    with torch.no_grad():
        got = pe(x)
    torch.testing.assert_close(got, ref_patch_embedding(pe, x), rtol=1e-9, atol=1e-9)


def test_patch_embedding_float32_close_to_reference(randomize: Callable[..., nn.Module]) -> None:
    pe = randomize(PatchEmbedding(), seed=3).eval()
    x = torch.randn(2, 4, 3, 200)
    with torch.no_grad():
        got = pe(x).double()
    torch.testing.assert_close(got, ref_patch_embedding(pe, x), rtol=0, atol=1e-5)


def test_masked_patch_embedding_matches_recomputation(randomize: Callable[..., nn.Module]) -> None:
    pe = randomize(PatchEmbedding(), seed=5).double().eval()
    x = torch.randn(2, 3, 4, 200, dtype=torch.float64)
    mask = torch.bernoulli(torch.full((2, 3, 4), 0.5), generator=torch.Generator().manual_seed(1)).long()
    assert 0 < mask.sum() < mask.numel()
    with torch.no_grad():
        got = pe(x, mask)
    torch.testing.assert_close(got, ref_patch_embedding(pe, x, mask), rtol=1e-9, atol=1e-9)


def test_masked_patches_feed_mask_encoding_to_both_branches() -> None:
    pe = PatchEmbedding().eval()
    with torch.no_grad():
        pe.mask_encoding.copy_(torch.linspace(-1.0, 1.0, 200))
    seen: list[Tensor] = []
    handle = pe.proj_in.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0].detach().clone()))
    spectral: list[Tensor] = []
    handle2 = pe.spectral_proj.register_forward_hook(lambda _m, inp, _out: spectral.append(inp[0].detach().clone()))
    x = torch.randn(1, 2, 3, 200)
    x_before = x.clone()
    mask = torch.tensor([[[1, 0, 0], [0, 0, 1]]])
    with torch.no_grad():
        pe(x, mask)
    handle.remove()
    handle2.remove()
    rows = seen[0].reshape(2, 3, 200)  # proj_in input is (B, 1, C*N, 200)
    for c in range(2):
        for n in range(3):
            expected = pe.mask_encoding if mask[0, c, n] == 1 else x[0, c, n]
            torch.testing.assert_close(rows[c, n], expected, rtol=0, atol=0)
    expected_mag = torch.fft.rfft(pe.mask_encoding, norm="forward").abs()
    torch.testing.assert_close(spectral[0][0, 1, 2], expected_mag)
    torch.testing.assert_close(spectral[0][0, 1, 1], torch.fft.rfft(x[0, 1, 1], norm="forward").abs())
    assert torch.equal(x, x_before)  # the caller's input is not modified


def test_mask_all_zeros_equals_no_mask(randomize: Callable[..., nn.Module]) -> None:
    model = randomize(CBraMod(n_layer=1), seed=2).eval()
    x = torch.randn(1, 3, 4, 200)
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.zeros(1, 3, 4)), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(("b", "c", "n"), [(1, 1, 1), (2, 3, 4), (1, 5, 1)])
def test_criss_cross_layer_matches_independent_recomputation(
    b: int, c: int, n: int, randomize: Callable[..., nn.Module]
) -> None:
    layer = randomize(CrissCrossEncoderLayer(200, 8, 800), seed=7).double().eval()
    x = torch.randn(b, c, n, 200, dtype=torch.float64)
    with torch.no_grad():
        got = layer(x)
    torch.testing.assert_close(got, ref_layer(layer, x, n_heads=4), rtol=1e-9, atol=1e-9)


def test_criss_cross_layer_float32_fast_path_close_to_reference(randomize: Callable[..., nn.Module]) -> None:
    # In eval under inference_mode, nn.MultiheadAttention takes its fused "fast path"; it must still agree.
    layer = randomize(CrissCrossEncoderLayer(200, 8, 800), seed=8).eval()
    x = torch.randn(2, 6, 5, 200)
    with torch.inference_mode():
        got = layer(x).double()
    torch.testing.assert_close(got, ref_layer(layer, x, n_heads=4), rtol=0, atol=1e-5)


def test_full_model_is_embedding_then_layers_then_projection(randomize: Callable[..., nn.Module]) -> None:
    model = randomize(CBraMod(n_layer=2), seed=11).double().eval()
    x = torch.randn(2, 3, 2, 200, dtype=torch.float64)
    with torch.no_grad():
        got = model(x)
    h = ref_patch_embedding(model.patch_embedding, x)
    for layer in model.encoder.layers:
        assert isinstance(layer, CrissCrossEncoderLayer)
        h = ref_layer(layer, h, n_heads=4)
    sd = model.state_dict()
    expected = h @ sd["proj_out.0.weight"].T + sd["proj_out.0.bias"]
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_attention_heads_follow_nhead(randomize: Callable[..., nn.Module]) -> None:
    layer = randomize(CrissCrossEncoderLayer(200, 4, 64), seed=9).double().eval()
    assert layer.self_attn_s.num_heads == 2
    x = torch.randn(1, 3, 3, 200, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref_layer(layer, x, n_heads=2), rtol=1e-9, atol=1e-9)


def test_channels_and_patches_are_mixed_only_as_designed(randomize: Callable[..., nn.Module]) -> None:
    # Changing one patch changes other channels and other patches (attention + positional conv)...
    model = randomize(CBraMod(n_layer=1), seed=4).eval()
    x = torch.randn(1, 4, 5, 200)
    y = x.clone()
    y[0, 1, 2] += 1.0
    with torch.no_grad():
        diff = (model(x) - model(y)).abs().amax(dim=-1)[0]  # (C, N)
    assert (diff > 1e-4).all()
    # ...but batch items never mix.
    xb = torch.cat([x, torch.randn(1, 4, 5, 200)])
    with torch.no_grad():
        torch.testing.assert_close(model(xb)[:1], model(x), rtol=0, atol=1e-5)


def test_init_is_deterministic_under_manual_seed() -> None:
    torch.manual_seed(123)
    a = CBraMod(n_layer=2).state_dict()
    torch.manual_seed(123)
    b = CBraMod(n_layer=2).state_dict()
    torch.manual_seed(124)
    c = CBraMod(n_layer=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["encoder.layers.0.linear1.weight"], c["encoder.layers.0.linear1.weight"])
    # layers are initialised independently (not copies of one layer)
    assert not torch.equal(a["encoder.layers.0.linear1.weight"], a["encoder.layers.1.linear1.weight"])


def test_linear_init_is_kaiming_normal() -> None:
    torch.manual_seed(0)
    w = CBraMod(n_layer=1).encoder.layers[0].linear1.weight.detach()  # (800, 200), fan_in 200
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / 200), rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"in_dim": 100}, "in_dim"),
        ({"d_model": 256}, "d_model"),
        ({"nhead": 3}, "nhead"),
        ({"nhead": 6}, "nhead"),  # 3 heads do not divide 100
        ({"dim_feedforward": 0}, "dim_feedforward"),
        ({"n_layer": -1}, "n_layer"),
    ],
)
def test_invalid_constructor_arguments_are_named(kwargs: dict[str, int], name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}'"):
        CBraMod(**kwargs)


@pytest.mark.parametrize("shape", [(1, 3, 200), (1, 3, 4, 100), (3, 4, 200, 1)])
def test_wrong_input_shape_is_a_clear_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(B, C, N, 200\)"):
        CBraMod(n_layer=0)(torch.randn(*shape))


def test_wrong_mask_shape_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="mask"):
        CBraMod(n_layer=0)(torch.randn(1, 3, 4, 200), torch.zeros(1, 4, 3))
