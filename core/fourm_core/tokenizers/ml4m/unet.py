"""The patched, condition-concatenating UNet of the released 4M DiVAE tokenizers (``unet_*`` decoders).

The network is the ADM ("guided diffusion") UNet applied to patches: the noisy image ``x_t (B, C, H, W)`` is
folded into ``(B, C·P·P, H/P, W/P)`` (feature order channel, row-in-patch, column-in-patch), the quantised latent
is resized (nearest) to that grid and concatenated along channels, the UNet predicts ``C·P·P`` channels that are
unfolded back to ``(B, C, H, W)``.

UNet: sinusoidal time embedding (``[cos, sin]`` of ``t·10000^(-i/half)``) → Linear → SiLU → Linear (width
4·model_channels); an input 3x3 conv; per level ``num_res_blocks`` residual blocks (GroupNorm(32) → SiLU → conv,
plus the projected time embedding, GroupNorm → SiLU → dropout → conv, 1x1 skip when the width changes) with
self-attention at the downsample rates listed in ``attention_resolutions``, a strided 3x3 conv between levels;
a middle res/attention/res block; the mirrored decoder, which concatenates the stored encoder activations; and
GroupNorm → SiLU → 3x3 conv. Attention uses the "legacy" channel layout: the 1x1 qkv projection's output
channels are ordered head-major, then (q, k, v), then channel. Parameter names follow the released state dicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (the result is cast back)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(N, dim)`` of timesteps ``t (N,)``: ``[cos(t·f), sin(t·f)]`` with
    ``f_i = max_period^(-i/half)``, ``half = dim // 2``; an odd ``dim`` gets a trailing zero column."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def as_timestep_batch(timestep: torch.Tensor | int | float, batch: int, device: torch.device) -> torch.Tensor:
    """``timestep`` (a number, a 0-d tensor, or one value per sample) as a ``(1,)`` or ``(batch,)`` tensor."""
    t = torch.as_tensor(timestep, device=device)
    if t.dim() == 0:
        return t[None]
    if t.dim() != 1 or t.shape[0] not in (1, batch):
        raise ValueError(f"timestep must be a scalar or have shape ({batch},); got {tuple(t.shape)}")
    return t


class EmbedSequential(nn.ModuleList):
    """Runs its children in order; those with ``takes_emb = True`` also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if getattr(layer, "takes_emb", False) else layer(x)
        return x


class ResBlock(nn.Module):
    """Residual block with an additive time embedding (no scale-shift norm, no up/down sampling)."""

    takes_emb = True

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(GroupNorm32(32, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(32, out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Spatial self-attention over the ``H·W`` positions, legacy head-major (q, k, v) channel layout."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1):
        super().__init__()
        if num_head_channels != -1:
            if channels % num_head_channels:
                raise ValueError(f"attention width {channels} is not divisible by num_head_channels "
                                 f"{num_head_channels}")
            num_heads = channels // num_head_channels
        self.num_heads = num_heads
        self.norm = GroupNorm32(32, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        length = x.shape[-1]
        qkv = self.qkv(self.norm(x)).reshape(b, self.num_heads, 3, c // self.num_heads, length)
        q, k, v = qkv.transpose(-1, -2).unbind(2)  # each (B, heads, T, ch)
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q·kᵀ / sqrt(ch)) v
        h = h.transpose(-1, -2).reshape(b, c, length)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class Downsample(nn.Module):
    """Strided 3x3 conv (``conv_resample``) or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool = True):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest 2x upsampling followed by a 3x3 conv (``conv_resample``)."""

    def __init__(self, channels: int, use_conv: bool = True):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class UNet(nn.Module):
    """The ADM UNet on ``(B, in_channels, h, w)`` feature maps (``h, w`` divisible by 2^(levels-1))."""

    def __init__(self, *, in_channels: int, out_channels: int, model_channels: int = 256, num_res_blocks: int = 3,
                 attention_resolutions: Sequence[int] = (8, 16), channel_mult: Sequence[int] = (1, 2, 4, 8),
                 dropout: float = 0.0, conv_resample: bool = True, num_heads: int = 1, num_head_channels: int = -1,
                 image_size: int | Sequence[int] = 224):
        super().__init__()
        self.sample_size = image_size
        self.model_channels = model_channels
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, emb_dim, cout, dropout)

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, num_heads=num_heads, num_head_channels=num_head_channels)

        ch = first = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential([nn.Conv2d(in_channels, ch, 3, padding=1)])])
        skip_chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(attn(ch))
                self.input_blocks.append(EmbedSequential(layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(EmbedSequential([Downsample(ch, conv_resample)]))
                skip_chans.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential([res(ch, ch), attn(ch), res(ch, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch, conv_resample))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(layers))
        self.out = nn.Sequential(GroupNorm32(32, ch), nn.SiLU(), nn.Conv2d(first, out_channels, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor | int | float) -> torch.Tensor:
        t = as_timestep_batch(timestep, x.shape[0], x.device)
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(x.dtype))
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


class PatchedUNetCondCat(UNet):
    """UNet on ``patch_size``-folded images with the condition resized (nearest) and concatenated.

    ``forward(sample (B, C, H, W), timestep, cond (B, D, h, w), cond_mask=None)``; ``cond_mask (B, h, w)``
    (True = masked) zeroes the masked condition vectors. H and W must be multiples of ``patch_size``.
    """

    def __init__(self, *, in_channels: int, out_channels: int, cond_channels: int, patch_size: int, **kwargs):
        super().__init__(in_channels=in_channels * patch_size ** 2 + cond_channels,
                         out_channels=out_channels * patch_size ** 2, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.cond_channels = cond_channels
        self.patch_size = patch_size

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float, cond: torch.Tensor,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, hgt, wid = sample.shape
        p = self.patch_size
        if hgt % p or wid % p:
            raise ValueError(f"image size {hgt}x{wid} is not divisible by the decoder's patch size {p}")
        nh, nw = hgt // p, wid // p
        x = sample.reshape(b, c, nh, p, nw, p).permute(0, 1, 3, 5, 2, 4).reshape(b, c * p * p, nh, nw)
        if cond_mask is not None:
            cond = cond.masked_fill(cond_mask[:, None], 0.0)
        x = torch.cat([x, F.interpolate(cond, (nh, nw), mode="nearest").to(x.dtype)], dim=1)
        x = super().forward(x, timestep)
        co = self.out_channels
        return x.reshape(b, co, p, p, nh, nw).permute(0, 1, 4, 2, 5, 3).reshape(b, co, hgt, wid)
