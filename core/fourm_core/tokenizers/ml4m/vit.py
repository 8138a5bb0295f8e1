"""ViT encoder / decoder of the released 4M tokenizers (state-dict keys as in the released checkpoints).

Encoder: ``proj`` Conv2d patch embedding (kernel = stride = patch, or 1x1 when ``patch_proj`` is false and the
input is already a feature map), ``pos_emb`` (1, D, Nh, Nw) 2-D sin-cos table resized bicubically to the input's
token grid, pre-norm ``blocks`` (LayerNorm eps 1e-6, qkv with bias, exact-GELU MLP), no final norm, and with
``post_mlp`` a residual ``post_mlp(norm_mlp(x))`` (fc1 → Tanh → fc2). Output (B, D, Nh, Nw).

Decoder: the same stack on a (B, D, Nh, Nw) latent, then ``out_proj`` (D → C·P·P, or D → C without
``patch_proj``) un-patchified with channel-slowest feature order (c, py, px), optionally two ConvNeXt blocks
(``out_conv``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6


def sincos_pos_emb_2d(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """The (1, dim, h, w) 2-D sine-cosine table the released ViTs were built with (MoCo-v3 style).

    Channel blocks: [sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)], ω_k = temperature^(-k / (dim/4)); the flat
    position index runs over (x, y) with y fastest and is then read as an (h, w) grid (the released layout).
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embedding needs a dimension divisible by 4, got {dim}")
    gx, gy = torch.meshgrid(torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    ox = gx.flatten()[:, None] * omega[None]
    oy = gy.flatten()[:, None] * omega[None]
    table = torch.cat([ox.sin(), ox.cos(), oy.sin(), oy.cos()], dim=1)  # (h*w, dim)
    return table.t().reshape(1, dim, h, w).contiguous()


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (SDPA)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, hd)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv → LayerNorm → Linear(4C) → GELU → Linear(C), scaled by ``gamma``, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


def _pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = (int(x) for x in v)
    return (a, b)


class _ViTTrunk(nn.Module):
    """What encoder and decoder share: the position table, the blocks and the optional post-MLP."""

    def __init__(self, *, patch_size, resolution, dim_tokens: int, depth: int, num_heads: int, mlp_ratio: float,
                 qkv_bias: bool, post_mlp: bool, what: str):
        super().__init__()
        self.patch = _pair(patch_size)
        self.resolution = _pair(resolution)
        (h, w), (ph, pw) = self.resolution, self.patch
        if h % ph or w % pw:
            raise ValueError(f"{what}: resolution {h}x{w} is not divisible by the patch size {ph}x{pw}")
        self.dim_tokens = dim_tokens
        self.pos_emb = nn.Parameter(sincos_pos_emb_2d(h // ph, w // pw, dim_tokens), requires_grad=False)
        self.blocks = nn.Sequential(*(Block(dim_tokens, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)))
        if post_mlp:
            self.norm_mlp = nn.LayerNorm(dim_tokens, eps=LN_EPS)
            self.post_mlp = Mlp(dim_tokens, int(mlp_ratio * dim_tokens), act=nn.Tanh)

    def _transform(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``x (B, N, D)`` tokens of a ``grid`` → blocks (+ post-MLP) output (B, N, D)."""
        pos = F.interpolate(self.pos_emb, size=grid, mode="bicubic", align_corners=False)
        x = self.blocks(x + pos.flatten(2).transpose(1, 2))
        if hasattr(self, "post_mlp"):
            x = x + self.post_mlp(self.norm_mlp(x))
        return x


class ViTEncoder(_ViTTrunk):
    """Image / feature map (B, C, H, W) → token features (B, D, H/P, W/P) (see the module docstring)."""

    def __init__(self, *, in_channels: int, patch_size, resolution, dim_tokens: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, patch_proj: bool = True, post_mlp: bool = False):
        super().__init__(patch_size=patch_size, resolution=resolution, dim_tokens=dim_tokens, depth=depth,
                         num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, post_mlp=post_mlp,
                         what="ViT encoder")
        self.in_channels = in_channels
        self.patch_proj = patch_proj
        kernel = self.patch if patch_proj else (1, 1)
        self.proj = nn.Conv2d(in_channels, dim_tokens, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch_proj and (x.shape[-2] % self.patch[0] or x.shape[-1] % self.patch[1]):
            raise ValueError(f"ViT encoder: input size {tuple(x.shape[-2:])} is not divisible by the patch size "
                             f"{self.patch}")
        z = self.proj(x)  # (B, D, nh, nw)
        grid = (z.shape[-2], z.shape[-1])
        z = self._transform(z.flatten(2).transpose(1, 2), grid)
        return z.transpose(1, 2).reshape(z.shape[0], self.dim_tokens, *grid)


class ViTDecoder(_ViTTrunk):
    """Latent (B, D, nh, nw) → image / feature map (B, C, nh·P, nw·P) (see the module docstring)."""

    def __init__(self, *, out_channels: int, patch_size, resolution, dim_tokens: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, patch_proj: bool = True, post_mlp: bool = False,
                 out_conv: bool = False):
        super().__init__(patch_size=patch_size, resolution=resolution, dim_tokens=dim_tokens, depth=depth,
                         num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, post_mlp=post_mlp,
                         what="ViT decoder")
        self.out_channels = out_channels
        self.patch_proj = patch_proj
        ph, pw = self.patch if patch_proj else (1, 1)
        self.out_proj = nn.Linear(dim_tokens, out_channels * ph * pw)
        if out_conv:
            self.out_conv = nn.Sequential(ConvNeXtBlock(out_channels), ConvNeXtBlock(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, nh, nw = x.shape
        z = self.out_proj(self._transform(x.flatten(2).transpose(1, 2), (nh, nw)))  # (B, N, C·ph·pw)
        ph, pw = self.patch if self.patch_proj else (1, 1)
        c = self.out_channels
        z = z.view(b, nh, nw, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, nh * ph, nw * pw)
        if hasattr(self, "out_conv"):
            z = self.out_conv(z)
        return z
