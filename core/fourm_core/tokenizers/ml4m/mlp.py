"""Point-wise MLP encoders / decoders of the released global-vector tokenizers (DINOv2 / ImageBind global, poses).

Both apply to ``(B, N, C)`` or, point-wise per pixel, to ``(B, C, H, W)``:

* :class:`BottleneckMLP`: ``linear_in`` (C_in → width), blocks ``x ← x + Linear(GELU(Linear(LayerNorm(x))))``
  (width → expansion·width → width; keys ``blocks.<i>.block.{0,2}``, ``layernorms.<i>``), ``linear_out``.
* :class:`StandardMLP`: ``linear_in``, then per layer ``x ← Linear(LayerNorm(x))`` (no activation, no
  residual; keys ``layers.<i>``, ``layernorms.<i>``), ``linear_out``.

The id string ``<Model>/B_<blocks>-Wi_<width>[-E_<expansion>]`` names them (see :func:`parse_mlp_id`).
"""

from __future__ import annotations

import re

import torch
from torch import nn

_MLP_ID = re.compile(r"^(BottleneckMLP|MLP)/B_(\d+)-Wi_(\d+)(?:-E_(\d+))?$")


def parse_mlp_id(arch: str) -> tuple[str, int, int, int] | None:
    """``"BottleneckMLP/B_6-Wi_1024"`` → ``("BottleneckMLP", 6, 1024, 4)`` (expansion defaults to 4); None if
    ``arch`` is not an MLP id."""
    m = _MLP_ID.match(arch)
    if m is None:
        return None
    model, blocks, width, expansion = m.groups()
    return model, int(blocks), int(width), int(expansion or 4)


def _pointwise(fn, x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 4:
        return fn(x)
    b, _, h, w = x.shape
    out = fn(x.flatten(2).transpose(1, 2))  # (B, H·W, C)
    return out.transpose(1, 2).reshape(b, -1, h, w)


class _Bottleneck(nn.Module):
    def __init__(self, thin: int, wide: int):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(thin, wide), nn.GELU(), nn.Linear(wide, thin))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class BottleneckMLP(nn.Module):
    """Residual bottleneck MLP (see the module docstring); ``dim_in`` / ``dim_out`` default to ``width``."""

    def __init__(self, *, num_blocks: int, width: int, expansion: int = 4, dim_in: int | None = None,
                 dim_out: int | None = None):
        super().__init__()
        self.dim_in, self.dim_out = dim_in or width, dim_out or width
        self.linear_in = nn.Linear(self.dim_in, width)
        self.blocks = nn.ModuleList(_Bottleneck(width, expansion * width) for _ in range(num_blocks))
        self.layernorms = nn.ModuleList(nn.LayerNorm(width) for _ in range(num_blocks))
        self.linear_out = nn.Linear(width, self.dim_out)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear_in(x)
        for block, norm in zip(self.blocks, self.layernorms):
            x = x + block(norm(x))
        return self.linear_out(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pointwise(self._run, x)


class StandardMLP(nn.Module):
    """Plain MLP of norm → linear layers (see the module docstring)."""

    def __init__(self, *, num_blocks: int, width: int, expansion: int = 4, dim_in: int | None = None,
                 dim_out: int | None = None):
        super().__init__()
        del expansion  # part of the id grammar; a plain MLP has no expansion
        self.dim_in, self.dim_out = dim_in or width, dim_out or width
        self.linear_in = nn.Linear(self.dim_in, width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(num_blocks - 1))
        self.layernorms = nn.ModuleList(nn.LayerNorm(width) for _ in range(num_blocks - 1))
        self.linear_out = nn.Linear(width, self.dim_out)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear_in(x)
        for layer, norm in zip(self.layers, self.layernorms):
            x = layer(norm(x))
        return self.linear_out(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pointwise(self._run, x)


MLP_CLASSES: dict[str, type[nn.Module]] = {"BottleneckMLP": BottleneckMLP, "MLP": StandardMLP}
