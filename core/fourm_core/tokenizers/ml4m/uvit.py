"""UViT diffusion decoders of the 4M DiVAE tokenizers (``uvit_*``): a conv UNet with a Transformer bottleneck.

``x_t (B, C, H, W)`` is patch-embedded by a ``patch_size`` strided conv, run through UNet down blocks (ResNet
blocks with an additive time embedding: GroupNorm → SiLU → 3x3 conv, + Linear(SiLU(temb)), GroupNorm → SiLU →
dropout → 3x3 conv, 1x1 conv shortcut when the width changes; a strided 3x3 conv between blocks), optionally
one more strided conv, then a Transformer over the bottleneck positions that receives the condition either
added to its tokens (``concat``: the quantised latent resized (nearest) to the bottleneck grid, projected to the
Transformer width; masked positions take a learned mask token) or by cross-attention (``xattn``). Transformer
blocks are pre-norm with adaptive-LayerNorm shift/scale and gates from the time embedding. The mirrored up
blocks concatenate the stored down activations; GroupNorm → SiLU → a transposed ``patch_size`` conv unpatches.

Time embedding: ``[cos, sin]`` sinusoids of width ``block_out_channels[0]`` → Linear → SiLU → Linear
(width 4·block_out_channels[0]). Parameter names follow the released state dicts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fourm_core.tokenizers.ml4m.unet import as_timestep_batch, timestep_embedding


class ResnetBlock(nn.Module):
    """ResNet block with an additive, SiLU-activated time embedding projection."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, *, groups: int = 32,
                 eps: float = 1e-5, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class ConvDownsample(nn.Module):
    """Strided 3x3 conv (padding 1), stored under ``conv_name``."""

    def __init__(self, channels: int, conv_name: str = "conv"):
        super().__init__()
        self._conv_name = conv_name
        self.add_module(conv_name, nn.Conv2d(channels, channels, 3, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self._conv_name)(x)


class ConvUpsample(nn.Module):
    """Nearest upsampling (2x, or to ``size``) followed by a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest") if size is None else \
            F.interpolate(x, size=tuple(size), mode="nearest")
        return self.conv(x)


class DownBlock(nn.Module):
    """``num_layers`` ResNet blocks, then an optional strided conv; returns every intermediate for the skips."""

    def __init__(self, num_layers: int, in_channels: int, out_channels: int, temb_channels: int, *,
                 add_downsample: bool, groups: int, eps: float):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, temb_channels, groups=groups, eps=eps)
            for i in range(num_layers)])
        self.downsamplers = nn.ModuleList([ConvDownsample(out_channels)]) if add_downsample else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        states = []
        for resnet in self.resnets:
            x = resnet(x, temb)
            states.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, states


class UpBlock(nn.Module):
    """ResNet blocks that each concatenate one stored down activation, then an optional upsampling conv."""

    def __init__(self, num_layers: int, in_channels: int, out_channels: int, prev_output_channels: int,
                 temb_channels: int, *, add_upsample: bool, groups: int, eps: float):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock((prev_output_channels if i == 0 else out_channels)
                        + (in_channels if i == num_layers - 1 else out_channels),
                        out_channels, temb_channels, groups=groups, eps=eps)
            for i in range(num_layers)])
        self.upsamplers = nn.ModuleList([ConvUpsample(out_channels)]) if add_upsample else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor, skips: list[torch.Tensor],
                upsample_size: Sequence[int] | None) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class TimestepEmbedding(nn.Module):
    """Linear → SiLU → Linear."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


def sincos_posemb_2d(n: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """``(1, dim, n, n)`` 2-D sin-cos embedding: at (row r, column c) ``[sin(rω), cos(rω), sin(cω), cos(cω)]``
    with ``ω_i = temperature^(-i/(dim/4))``."""
    if dim % 4:
        raise ValueError(f"the 2-D sin-cos position embedding needs a width divisible by 4; got {dim}")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    pos = torch.arange(n, dtype=torch.float32)[:, None] * omega[None]  # (n, dim/4)
    rows = torch.cat([pos.sin(), pos.cos()], dim=1)[:, None, :].expand(n, n, dim // 2)
    cols = torch.cat([pos.sin(), pos.cos()], dim=1)[None, :, :].expand(n, n, dim // 2)
    return torch.cat([rows, cols], dim=-1).permute(2, 0, 1)[None].contiguous()


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1.0 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def _additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Boolean (True = not attended) ``(B, N, M)`` mask as a ``(B, 1, N, M)`` additive -max bias (a fully
    masked row then attends uniformly instead of producing NaN)."""
    if mask is None:
        return None
    return mask[:, None].to(dtype) * -torch.finfo(dtype).max


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=_additive_mask(mask, x.dtype))
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, dim_context: int, num_heads: int, qkv_bias: bool, drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim_context, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        h = self.num_heads
        q = self.q(x).reshape(b, n, h, c // h).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=_additive_mask(mask, x.dtype))
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class _AdaLNBlock(nn.Module):
    """Shared parts of the Transformer blocks: ``n_sub`` adaLN-modulated residual branches."""

    def __init__(self, dim: int, temb_dim: int, n_sub: int, mlp_ratio: float, drop: float, skip: bool):
        super().__init__()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.adaLN_modulation = nn.Linear(temb_dim, 2 * n_sub * dim)
        self.adaLN_gate = nn.Linear(temb_dim, n_sub * dim)
        nn.init.zeros_(self.adaLN_gate.weight)
        nn.init.zeros_(self.adaLN_gate.bias)
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self._n_sub = n_sub

    def _prepare(self, x: torch.Tensor, temb: torch.Tensor, skip: torch.Tensor | None):
        t = F.silu(temb)
        gates = self.adaLN_gate(t).unsqueeze(1).chunk(self._n_sub, dim=-1)
        mods = self.adaLN_modulation(t).chunk(2 * self._n_sub, dim=-1)
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        return x, gates, mods


class Block(_AdaLNBlock):
    """Self-attention + MLP, each ``x + gate · f(modulate(LN(x), shift, scale))``."""

    def __init__(self, dim: int, num_heads: int, temb_dim: int, mlp_ratio: float, qkv_bias: bool,
                 drop: float = 0.0, skip: bool = False):
        super().__init__(dim, temb_dim, 2, mlp_ratio, drop, skip)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, drop)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x, (g_msa, g_mlp), (sh_msa, sc_msa, sh_mlp, sc_mlp) = self._prepare(x, temb, skip)
        x = x + g_msa * self.attn(_modulate(self.norm1(x), sh_msa, sc_msa))
        return x + g_mlp * self.mlp(_modulate(self.norm2(x), sh_mlp, sc_mlp))


class DecoderBlock(_AdaLNBlock):
    """Self-attention + cross-attention to the (LayerNormed) condition + MLP, adaLN-modulated and gated."""

    def __init__(self, dim: int, num_heads: int, temb_dim: int, dim_context: int, mlp_ratio: float,
                 qkv_bias: bool, drop: float = 0.0, skip: bool = False):
        super().__init__(dim, temb_dim, 3, mlp_ratio, drop, skip)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads, qkv_bias, drop)
        self.cross_attn = CrossAttention(dim, dim_context, num_heads, qkv_bias, drop)
        self.query_norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(dim_context)

    def forward(self, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor,
                xa_mask: torch.Tensor | None = None, skip: torch.Tensor | None = None) -> torch.Tensor:
        x, (g_sa, g_xa, g_mlp), (sh_sa, sc_sa, sh_xa, sc_xa, sh_mlp, sc_mlp) = self._prepare(x, temb, skip)
        x = x + g_sa * self.self_attn(_modulate(self.norm1(x), sh_sa, sc_sa))
        x = x + g_xa * self.cross_attn(_modulate(self.query_norm(x), sh_xa, sc_xa), self.context_norm(context),
                                       xa_mask)
        return x + g_mlp * self.mlp(_modulate(self.norm2(x), sh_mlp, sc_mlp))


def _run_blocks(blocks: nn.ModuleList, x: torch.Tensor, long_skip: bool, call) -> torch.Tensor:
    """Run ``blocks`` (``call(block, x, skip)``); with ``long_skip`` the second half takes the first half's
    outputs in reverse order (the middle block takes none)."""
    if not long_skip:
        for blk in blocks:
            x = call(blk, x, None)
        return x
    half = len(blocks) // 2
    skips = []
    for blk in blocks[:half]:
        x = call(blk, x, None)
        skips.append(x)
    x = call(blocks[half], x, None)
    for blk in blocks[half + 1:]:
        x = call(blk, x, skips.pop())
    return x


class _MidTransformer(nn.Module):
    def __init__(self, unet_dim: int, mid_dim: int, mid_layers: int, hw_posemb: int, use_long_skip: bool):
        super().__init__()
        if use_long_skip and mid_layers % 2 != 1:
            raise ValueError(f"a long-skip UViT needs an odd number of mid layers; got {mid_layers}")
        self.mid_pos_emb = nn.Parameter(sincos_posemb_2d(hw_posemb, mid_dim), requires_grad=False)
        self.use_long_skip = use_long_skip
        self.mid_proj_in = nn.Linear(unet_dim, mid_dim)
        self.mid_proj_out = nn.Linear(mid_dim, unet_dim)

    def _tokens(self, x: torch.Tensor, pos_mode: str, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Feature map → tokens: ``proj_in(x) (+ cond) + position embedding resized to the grid``."""
        hw = x.shape[-2:]
        x = self.mid_proj_in(x.flatten(2).transpose(1, 2))
        if cond is not None:
            x = x + cond
        pos = F.interpolate(self.mid_pos_emb, hw, mode=pos_mode, **({"align_corners": False}
                                                                    if pos_mode == "bicubic" else {}))
        return x + pos.flatten(2).transpose(1, 2).to(x.dtype)

    def _untokens(self, x: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
        return self.mid_proj_out(x).transpose(1, 2).reshape(x.shape[0], -1, *hw)


class TransformerConcatCond(_MidTransformer):
    """Bottleneck Transformer with the condition projected and added to its tokens."""

    def __init__(self, *, unet_dim: int, cond_dim: int, mid_layers: int, mid_num_heads: int, mid_dim: int,
                 mid_mlp_ratio: float, mid_qkv_bias: bool, mid_drop_rate: float, time_embed_dim: int,
                 hw_posemb: int, use_long_skip: bool):
        super().__init__(unet_dim, mid_dim, mid_layers, hw_posemb, use_long_skip)
        self.mid_block = nn.ModuleList([
            Block(mid_dim, mid_num_heads, time_embed_dim, mid_mlp_ratio, mid_qkv_bias, mid_drop_rate,
                  skip=use_long_skip and i > mid_layers // 2) for i in range(mid_layers)])
        self.mid_cond_proj = nn.Linear(cond_dim, mid_dim)
        self.mask_token = nn.Parameter(torch.zeros(mid_dim))

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        hw = x.shape[-2:]
        c = self.mid_cond_proj(F.interpolate(cond, hw, mode="nearest").flatten(2).transpose(1, 2))
        if cond_mask is not None:
            m = F.interpolate(cond_mask[:, None].float(), hw, mode="nearest").flatten(1) > 0.5  # (B, N)
            c = torch.where(m[..., None], self.mask_token.to(c.dtype), c)
        x = self._tokens(x, "bicubic", c)
        x = _run_blocks(self.mid_block, x, self.use_long_skip, lambda blk, h, s: blk(h, temb, skip=s))
        return self._untokens(x, hw)


class TransformerXattnCond(_MidTransformer):
    """Bottleneck Transformer that cross-attends to the condition vectors."""

    def __init__(self, *, unet_dim: int, cond_dim: int, mid_layers: int, mid_num_heads: int, mid_dim: int,
                 mid_mlp_ratio: float, mid_qkv_bias: bool, mid_drop_rate: float, time_embed_dim: int,
                 hw_posemb: int, use_long_skip: bool):
        super().__init__(unet_dim, mid_dim, mid_layers, hw_posemb, use_long_skip)
        self.mid_block = nn.ModuleList([
            DecoderBlock(mid_dim, mid_num_heads, time_embed_dim, cond_dim, mid_mlp_ratio, mid_qkv_bias,
                         mid_drop_rate, skip=use_long_skip and i > mid_layers // 2) for i in range(mid_layers)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        hw = x.shape[-2:]
        x = self._tokens(x, "nearest")
        context = cond.flatten(2).transpose(1, 2)
        xa_mask = None if cond_mask is None else cond_mask.flatten(1)[:, None, :].expand(-1, x.shape[1], -1)
        x = _run_blocks(self.mid_block, x, self.use_long_skip,
                        lambda blk, h, s: blk(h, context, temb, xa_mask=xa_mask, skip=s))
        return self._untokens(x, hw)


class UViT(nn.Module):
    """``forward(sample (B, C, H, W), timestep, cond (B, D, h, w), cond_mask=None)`` → ``(B, C, H, W)``."""

    def __init__(self, *, sample_size: int | Sequence[int] | None = None, in_channels: int = 3,
                 out_channels: int = 3, patch_size: int = 4, block_out_channels: Sequence[int] = (128, 256, 512),
                 layers_per_block: int | Sequence[int] = 2, downsample_before_mid: bool = False,
                 mid_layers: int = 12, mid_num_heads: int = 12, mid_dim: int = 768, mid_mlp_ratio: float = 4,
                 mid_qkv_bias: bool = True, mid_drop_rate: float = 0.0, mid_hw_posemb: int = 32,
                 mid_use_long_skip: bool = False, cond_dim: int = 32, cond_type: str = "concat",
                 norm_num_groups: int = 32, norm_eps: float = 1e-5):
        super().__init__()
        if cond_type not in ("concat", "xattn"):
            raise ValueError(f"unknown UViT conditioning {cond_type!r}; use 'concat' or 'xattn'")
        self.sample_size = sample_size
        self.in_channels = in_channels
        self.out_channels = out_channels
        chans = list(block_out_channels)
        layers = [layers_per_block] * len(chans) if isinstance(layers_per_block, int) else list(layers_per_block)
        unet_dim, temb_dim = chans[-1], 4 * chans[0]
        self.conv_in = nn.Conv2d(in_channels, chans[0], kernel_size=patch_size, stride=patch_size)
        self.time_embedding = TimestepEmbedding(chans[0], temb_dim)
        norm = {"groups": norm_num_groups, "eps": norm_eps}
        self.down_blocks = nn.ModuleList([
            DownBlock(layers[i], chans[max(i - 1, 0)], chans[i], temb_dim, add_downsample=i < len(chans) - 1,
                      **norm) for i in range(len(chans))])
        if downsample_before_mid:
            self.downsample_mid = ConvDownsample(unet_dim, conv_name="Conv2d_0")
        mid_cls = TransformerConcatCond if cond_type == "concat" else TransformerXattnCond
        self.mid_block = mid_cls(unet_dim=unet_dim, cond_dim=cond_dim, mid_layers=mid_layers,
                                 mid_num_heads=mid_num_heads, mid_dim=mid_dim, mid_mlp_ratio=mid_mlp_ratio,
                                 mid_qkv_bias=mid_qkv_bias, mid_drop_rate=mid_drop_rate, time_embed_dim=temb_dim,
                                 hw_posemb=mid_hw_posemb, use_long_skip=mid_use_long_skip)
        if downsample_before_mid:
            self.upsample_mid = ConvUpsample(unet_dim)
        rev, rev_layers = chans[::-1], layers[::-1]
        self.up_blocks = nn.ModuleList([
            UpBlock(rev_layers[i] + 1, rev[min(i + 1, len(rev) - 1)], rev[i], rev[max(i - 1, 0)], temb_dim,
                    add_upsample=i < len(rev) - 1, **norm) for i in range(len(rev))])
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, chans[0], eps=norm_eps)
        self.conv_out = nn.ConvTranspose2d(chans[0], out_channels, kernel_size=patch_size, stride=patch_size)
        self._register_load_state_dict_pre_hook(self._alias_downsample_mid)
        self._time_channels = chans[0]

    @staticmethod
    def _alias_downsample_mid(state_dict, prefix, *args) -> None:
        """Accept the bottleneck downsampling conv under its alias ``downsample_mid.conv.*`` too (full state
        dicts hold both names for the one tensor; safetensors files keep ``Conv2d_0``)."""
        for leaf in ("weight", "bias"):
            alias, name = f"{prefix}downsample_mid.conv.{leaf}", f"{prefix}downsample_mid.Conv2d_0.{leaf}"
            if alias in state_dict:
                value = state_dict.pop(alias)
                state_dict.setdefault(name, value)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float, cond: torch.Tensor,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        t = as_timestep_batch(timestep, sample.shape[0], sample.device).expand(sample.shape[0])
        emb = self.time_embedding(timestep_embedding(t, self._time_channels).to(sample.dtype))
        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, states = block(x, emb)
            skips.extend(states)
        if hasattr(self, "downsample_mid"):
            x = self.downsample_mid(x)
        x = self.mid_block(x, emb, cond, cond_mask)
        if hasattr(self, "upsample_mid"):
            x = self.upsample_mid(x)
        for block in self.up_blocks:
            taken = skips[len(skips) - len(block.resnets):]
            del skips[len(skips) - len(block.resnets):]
            # the upsampling conv restores the size of the next stored activation (odd sizes included)
            x = block(x, emb, taken, skips[-1].shape[-2:] if block.upsamplers is not None else None)
        return self.conv_out(F.silu(self.conv_norm_out(x)))
