"""Task heads over :class:`~fourm_core.backbone.Backbone` features.

* :class:`LinearHead` / :class:`MLPHead`: pooled features (B, D) → class logits (B, K).
* :class:`DenseHead`: a ConvNeXt-style decoder, feature map (B, D, rows, cols) → dense output (B, C, H, W):
  a 1×1 projection, then per stage a 2× bilinear upsampling and a ConvNeXt block (7×7 depth-wise conv,
  channel LayerNorm, 4× point-wise MLP, residual), a 1×1 output convolution and a final resize to (H, W).
  Depth: C = 1, normals: C = 3, semantic segmentation: C = the number of classes.
* :class:`TransferModel`: a backbone and a head; ``model(inputs, present)`` → the head's output.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import Backbone, BackboneError


class LinearHead(nn.Module):
    """Dropout and one linear layer (a linear probe when the backbone is frozen)."""

    def __init__(self, dim: int, num_classes: int, *, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.fc(self.dropout(pooled))


class MLPHead(nn.Module):
    """LayerNorm, Linear, GELU, dropout, Linear."""

    def __init__(self, dim: int, num_classes: int, *, hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        hidden = hidden or dim
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, num_classes))

    def forward(self, pooled: Tensor) -> Tensor:
        return self.net(pooled)


class _ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, H, W)."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.LayerNorm(c)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """7×7 depth-wise conv, channel LayerNorm, 1×1 conv to 4C, GELU, 1×1 conv back, residual."""

    def __init__(self, c: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = _ChannelNorm(c)
        self.pw1 = nn.Conv2d(c, 4 * c, 1)
        self.pw2 = nn.Conv2d(4 * c, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pw2(F.gelu(self.pw1(self.norm(self.dw(x)))))


class DenseHead(nn.Module):
    """Feature map → dense prediction (see the module docstring). ``stages`` 2× upsamplings; ``out_size``
    the (H, W) of the output (default: the upsampled grid)."""

    def __init__(self, dim: int, out_channels: int, *, width: int = 64, stages: int = 2,
                 out_size: tuple[int, int] | None = None):
        super().__init__()
        self.proj = nn.Conv2d(dim, width, 1)
        self.blocks = nn.ModuleList(ConvNeXtBlock(width) for _ in range(stages))
        self.out = nn.Conv2d(width, out_channels, 1)
        self.out_size = tuple(out_size) if out_size is not None else None

    def forward(self, feature_map: Tensor) -> Tensor:
        x = self.proj(feature_map)
        for blk in self.blocks:
            x = blk(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        x = self.out(x)
        if self.out_size is not None and tuple(x.shape[-2:]) != self.out_size:
            x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        return x


class TransferModel(nn.Module):
    """A :class:`Backbone` and a head: :class:`DenseHead` heads read the main input's feature map, the others
    the pooled features."""

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.dense = isinstance(head, DenseHead)
        if self.dense and not backbone.modalities[backbone.inputs[0]].grid:
            raise BackboneError(f"a dense head needs an image-grid main input; {backbone.inputs[0]!r} has no grid")

    def forward(self, inputs: Mapping[str, Tensor] | Tensor, present: Mapping[str, Tensor] | None = None) -> Tensor:
        out = self.backbone.forward_features(inputs, present)
        if self.dense:
            main = self.backbone.inputs[0]
            if main not in out.feature_maps:
                raise BackboneError(f"a dense head reads the main input {main!r}, absent from this batch")
            return self.head(out.feature_maps[main])
        if out.pooled is None:
            raise BackboneError("a classification head needs pooled features; build the backbone with pool='mean'")
        return self.head(out.pooled)
