"""CBraMod: the criss-cross transformer EEG foundation model (Wang et al., ICLR 2025, arXiv 2412.07236).

Written from the architecture facts in ``shared/reference/cbramod.md``. The module tree reproduces the
official state-dict key names (``patch_embedding.*``, ``encoder.layers.{i}.*``, ``proj_out.0.*``) so that the
authors' ``pretrained_weights.pth`` loads with ``strict=True`` and gives the reference outputs.

Input is ``(batch, channels, patches, 200)``: one-second patches at 200 Hz, in units of 100 µV. Any number of
channels and patches works: attention runs over channels (spatial) and over patches (temporal) separately, and
the positional encoding is a padded depthwise convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rt_physio.checks import check_int

__all__ = [
    "PATCH_SIZE",
    "CBraMod",
    "CrissCrossEncoder",
    "CrissCrossEncoderLayer",
    "PatchEmbedding",
    "check_cbramod_args",
]

#: Samples per patch (one second at 200 Hz); fixed by the time-branch convolutions and the 101-bin spectrum.
PATCH_SIZE = 200
_CONV_CHANNELS = 25  # time-branch conv channels; 25 channels x 8 positions = 200 features
_N_FREQS = PATCH_SIZE // 2 + 1  # rfft bins of a 200-sample patch


class PatchEmbedding(nn.Module):
    """Embed each 200-sample patch: time-domain convolutions + spectral magnitudes + positional convolution.

    Parameters
    ----------
    in_dim : int
        Samples per patch. Must be 200.
    d_model : int
        Embedding size. Must be 200 (25 convolution channels x 8 positions).
    """

    def __init__(self, in_dim: int = PATCH_SIZE, d_model: int = 200) -> None:
        super().__init__()
        self.d_model = d_model
        # Not trained (the official checkpoint stores zeros); it replaces the raw samples of masked patches.
        self.mask_encoding = nn.Parameter(torch.zeros(in_dim), requires_grad=False)
        # Sequential indices are part of the checkpoint key names: keep the GELUs as separate modules.
        self.proj_in = nn.Sequential(
            nn.Conv2d(1, _CONV_CHANNELS, kernel_size=(1, 49), stride=(1, 25), padding=(0, 24)),
            nn.GroupNorm(5, _CONV_CHANNELS),
            nn.GELU(),
            nn.Conv2d(_CONV_CHANNELS, _CONV_CHANNELS, kernel_size=(1, 3), stride=(1, 1), padding=(0, 1)),
            nn.GroupNorm(5, _CONV_CHANNELS),
            nn.GELU(),
            nn.Conv2d(_CONV_CHANNELS, _CONV_CHANNELS, kernel_size=(1, 3), stride=(1, 1), padding=(0, 1)),
            nn.GroupNorm(5, _CONV_CHANNELS),
            nn.GELU(),
        )
        self.spectral_proj = nn.Sequential(
            nn.Linear(_N_FREQS, d_model),
            nn.Dropout(0.1),
        )
        # Depthwise: one 19-channel x 7-patch kernel per feature, padded so any (C, N) keeps its size.
        self.positional_encoding = nn.Sequential(
            nn.Conv2d(d_model, d_model, kernel_size=(19, 7), stride=(1, 1), padding=(9, 3), groups=d_model),
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Embed the patches.

        Parameters
        ----------
        x : Tensor
            ``(B, C, N, 200)`` patches.
        mask : Tensor | None
            ``(B, C, N)``; patches where ``mask == 1`` are replaced by ``mask_encoding`` before embedding.

        Returns
        -------
        Tensor
            ``(B, C, N, d_model)`` patch embeddings.
        """
        bsz, n_chans, n_patches, patch_size = x.shape
        if mask is not None:
            # Same values as the reference's `x[mask == 1] = mask_encoding`, without in-place indexing.
            x = torch.where((mask == 1).unsqueeze(-1), self.mask_encoding.to(x.dtype), x)  # (B, C, N, 200)

        # Time branch: every patch is one "row" of a single-channel image. The GroupNorms therefore pool their
        # statistics over all C*N patches of a window, so a patch's embedding depends on the whole window
        # (zero-padded or flat channels change every patch's embedding).
        t = x.reshape(bsz, 1, n_chans * n_patches, patch_size)  # (B, 1, C*N, 200)
        t = self.proj_in(t)  # (B, 25, C*N, 8)
        t = t.permute(0, 2, 1, 3).reshape(bsz, n_chans, n_patches, self.d_model)  # (B, C, N, 200), channel-major

        # Spectral branch: magnitude of the normalised real FFT of each patch.
        s = torch.fft.rfft(x.reshape(-1, patch_size), dim=-1, norm="forward").abs()  # (B*C*N, 101)
        s = self.spectral_proj(s.reshape(bsz, n_chans, n_patches, _N_FREQS))  # (B, C, N, 200)

        emb: Tensor = t + s  # (B, C, N, 200)
        pos: Tensor = self.positional_encoding(emb.permute(0, 3, 1, 2))  # (B, 200, C, N)
        return emb + pos.permute(0, 2, 3, 1)  # (B, C, N, 200)


class CrissCrossEncoderLayer(nn.Module):
    """Pre-norm transformer layer whose self-attention is split into a spatial and a temporal half.

    The first ``d_model // 2`` features attend across channels (one sequence per batch item and patch), the
    last ``d_model // 2`` across patches (one sequence per batch item and channel).

    Parameters
    ----------
    d_model : int
        Feature size (even).
    nhead : int
        Total attention heads; each half gets ``nhead // 2``.
    dim_feedforward : int
        Hidden size of the feed-forward block.
    dropout : float
        Dropout in attention, after attention, and in/after the feed-forward block (inactive in eval mode).
    layer_norm_eps : float
        LayerNorm epsilon.
    """

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1, layer_norm_eps: float = 1e-5
    ) -> None:
        super().__init__()
        half = d_model // 2
        self.self_attn_s = nn.MultiheadAttention(half, nhead // 2, dropout=dropout, batch_first=True)
        self.self_attn_t = nn.MultiheadAttention(half, nhead // 2, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer to ``(B, C, N, d_model)`` features; returns the same shape."""
        x = x + self.dropout1(self._criss_cross_attention(self.norm1(x)))
        h = self.dropout(F.gelu(self.linear1(self.norm2(x))))  # (B, C, N, dim_feedforward)
        ff: Tensor = self.dropout2(self.linear2(h))  # (B, C, N, d_model)
        return x + ff

    def _criss_cross_attention(self, x: Tensor) -> Tensor:
        bsz, n_chans, n_patches, d_model = x.shape
        half = d_model // 2
        # Spatial half: sequences over channels, one per (batch, patch).
        xs = x[..., :half].transpose(1, 2).reshape(bsz * n_patches, n_chans, half)  # (B*N, C, half)
        xs = self.self_attn_s(xs, xs, xs, need_weights=False)[0]  # (B*N, C, half)
        xs = xs.reshape(bsz, n_patches, n_chans, half).transpose(1, 2)  # (B, C, N, half)
        # Temporal half: sequences over patches, one per (batch, channel).
        xt = x[..., half:].reshape(bsz * n_chans, n_patches, half)  # (B*C, N, half)
        xt = self.self_attn_t(xt, xt, xt, need_weights=False)[0]  # (B*C, N, half)
        xt = xt.reshape(bsz, n_chans, n_patches, half)  # (B, C, N, half)
        return torch.cat((xs, xt), dim=-1)  # (B, C, N, d_model)


class CrissCrossEncoder(nn.Module):
    """A stack of :class:`CrissCrossEncoderLayer` (no final normalisation, as in the reference).

    Parameters
    ----------
    n_layer : int
        Number of layers.
    d_model, nhead, dim_feedforward, dropout :
        Passed to every :class:`CrissCrossEncoderLayer`.
    """

    def __init__(self, n_layer: int, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            CrissCrossEncoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(n_layer)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layers in order to ``(B, C, N, d_model)`` features."""
        for layer in self.layers:
            x = layer(x)
        return x


class CBraMod(nn.Module):
    """The CBraMod encoder: patch embedding, criss-cross transformer, per-patch output projection.

    Parameters
    ----------
    in_dim : int
        Samples per patch; must be 200 (one second at 200 Hz).
    out_dim : int
        Output features per patch of ``proj_out`` (200 reconstructs the raw patch in pre-training).
    d_model : int
        Embedding size; must be 200 (fixed by the patch embedding).
    dim_feedforward : int
        Hidden size of each layer's feed-forward block.
    seq_len : int
        Number of patches used in pre-training (30). Kept for reference; any number of patches works.
    n_layer : int
        Number of criss-cross transformer layers.
    nhead : int
        Attention heads in total; even, ``nhead // 2`` per half, and ``d_model // 2`` divisible by ``nhead // 2``.

    Notes
    -----
    Downstream models replace ``proj_out`` by :class:`torch.nn.Identity` and use the ``(B, C, N, 200)`` patch
    embeddings. Weights are initialised deterministically under :func:`torch.manual_seed`.
    """

    def __init__(
        self,
        in_dim: int = PATCH_SIZE,
        out_dim: int = 200,
        d_model: int = 200,
        dim_feedforward: int = 800,
        seq_len: int = 30,
        n_layer: int = 12,
        nhead: int = 8,
    ) -> None:
        super().__init__()
        check_cbramod_args(in_dim, out_dim, d_model, dim_feedforward, seq_len, n_layer, nhead)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.d_model = d_model
        self.dim_feedforward = dim_feedforward
        self.seq_len = seq_len
        self.n_layer = n_layer
        self.nhead = nhead

        self.patch_embedding = PatchEmbedding(in_dim, d_model)
        self.encoder = CrissCrossEncoder(n_layer, d_model, nhead, dim_feedforward)
        self.proj_out: nn.Module = nn.Sequential(nn.Linear(d_model, out_dim))
        self.apply(_init_weights)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encode patches.

        Parameters
        ----------
        x : Tensor
            ``(B, C, N, 200)`` float patches at 200 Hz, in units of 100 µV.
        mask : Tensor | None
            Optional ``(B, C, N)`` tensor; patches where it equals 1 are replaced by ``mask_encoding``.

        Returns
        -------
        Tensor
            ``(B, C, N, out_dim)``, or ``(B, C, N, d_model)`` when ``proj_out`` is an Identity.
        """
        if x.dim() != 4 or x.shape[-1] != self.in_dim:
            raise ValueError(f"CBraMod expects input of shape (B, C, N, {self.in_dim}), got {tuple(x.shape)}.")
        if mask is not None and mask.shape != x.shape[:3]:
            raise ValueError(f"The mask must have shape {tuple(x.shape[:3])} (B, C, N), got {tuple(mask.shape)}.")
        emb = self.patch_embedding(x, mask)  # (B, C, N, 200)
        feats = self.encoder(emb)  # (B, C, N, 200)
        out: Tensor = self.proj_out(feats)  # (B, C, N, out_dim)
        return out


def check_cbramod_args(
    in_dim: int, out_dim: int, d_model: int, dim_feedforward: int, seq_len: int, n_layer: int, nhead: int
) -> None:
    """Raise ValueError, naming the argument, when :class:`CBraMod` cannot be built with these arguments."""
    if in_dim != PATCH_SIZE:
        raise ValueError(f"The 'in_dim' parameter must be {PATCH_SIZE} (samples per 1-s patch), got {in_dim}.")
    if d_model != _CONV_CHANNELS * 8:
        raise ValueError(f"The 'd_model' parameter must be 200 (25 conv channels x 8 positions), got {d_model}.")
    for arg, value in (("out_dim", out_dim), ("dim_feedforward", dim_feedforward), ("seq_len", seq_len)):
        check_int(arg, value)
    check_int("n_layer", n_layer, minimum=0)
    if nhead < 2 or nhead % 2 or (d_model // 2) % (nhead // 2):
        raise ValueError(
            f"The 'nhead' parameter must be even and nhead // 2 must divide d_model // 2 = {d_model // 2}, got {nhead}."
        )


def _init_weights(module: nn.Module) -> None:
    # As in the reference: Kaiming-normal for every Linear (incl. attention out_proj); other layers keep
    # PyTorch defaults (MHA in_proj Xavier-uniform, convolutions Kaiming-uniform, norms 1/0).
    # Meta tensors (shape-only models built before loading weights) are skipped: initialising them goes through
    # torch's reference ops, whose first use imports the compiler stack (~3 s of start-up).
    if isinstance(module, nn.Linear) and not module.weight.is_meta:
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
