"""Per-modality embedding modules and sin-cos position tables.

One encoder module and/or one decoder module per modality; the kind's adapter (:mod:`fourm_core.kinds`) picks
the encoder module and the position layout:

============================  =====================================================================
``image`` / ``vector``         ``token_emb`` table; position table (2-D sin-cos over the grid, 1-D sin-cos,
                               or learned, per ``spec.pos_emb``); ``mod_emb``
``sequence``                   ``token_emb`` table (padding id 0); 1-D sin-cos (or learned) positions
``pixels``                     ``proj``: linear patch projection (no bias); patches flattened in
                               (row-in-patch, col-in-patch, channel) order; 2-D positions
``embedding_sequence``         ``proj``: linear projection of continuous vectors; 1-D positions
============================  =====================================================================

Sin-cos tables are non-persistent buffers (rebuilt from the config, not saved); learned ones are
parameters. Parameter names mirror the reference (``token_emb.weight``, ``pos_emb``, ``mod_emb``, ``proj``,
``to_logits``) so that importing reference checkpoints is a thin key map.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from fourm_registry import ModalitySpec

from ..kinds import adapter_for
from .config import ModelConfig


def sincos_1d(num_positions: int, dim: int) -> Tensor:
    """(1, P, D) table: ``[sin(p·ω_k) for k < D/2, cos(p·ω_k) for k < D/2]``, ω_k = 10000^(−k/(D/2))."""
    half = dim // 2
    omega = 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float64) / half))
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * omega[None]  # (P, D/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()[None]


def sincos_2d(rows: int, cols: int, dim: int) -> Tensor:
    """(1, rows·cols, D) table for a row-major grid: ``[sin(a·ω), cos(a·ω), sin(b·ω), cos(b·ω)]`` with
    a = row, b = column, ω_k = 10000^(−k/(D/4))."""
    quarter = dim // 4
    omega = 1.0 / (10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    n = torch.arange(rows * cols)
    a = (n // cols).double()[:, None] * omega[None]
    b = (n % cols).double()[:, None] * omega[None]
    return torch.cat([a.sin(), a.cos(), b.sin(), b.cos()], dim=1).float()[None]


def seq_table_rows(spec: ModalitySpec, cfg: ModelConfig) -> int:
    """Rows of a sequence-like position table: enough for every slot of a ``2·(max_length+1)`` tensor."""
    return max(cfg.seq_pos_table_rows, 2 * (spec.max_length + 1))


def _trunc_normal(t: Tensor, std: float) -> None:
    nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


class _PositionMixin(nn.Module):
    """Holds ``pos_emb`` (buffer for sin-cos, parameter for learned) and ``mod_emb``."""

    pos_emb: Tensor
    mod_emb: nn.Parameter | None

    def _init_positions(self, spec: ModalitySpec, cfg: ModelConfig, with_mod_emb: bool) -> None:
        d = cfg.dim
        kind = adapter_for(spec)
        self.kind = spec.kind
        #: encoder position id = number of visible slots before (sequence-like kinds), else the slot index
        self.positions_count_visible = kind.positions_count_visible
        #: decoded left to right: teacher-forced token inputs, causal attention within the modality
        self.autoregressive = kind.autoregressive
        layout = kind.position_layout(spec, cfg)
        rows = math.prod(layout)
        table = None
        if spec.pos_emb == "sincos":
            table = sincos_2d(*layout, d) if len(layout) == 2 else sincos_1d(rows, d)
        self.sincos = table is not None
        if table is not None:
            self.register_buffer("pos_emb", table, persistent=False)
        else:
            self.pos_emb = nn.Parameter(torch.zeros(1, rows, d))
        self.mod_emb = nn.Parameter(torch.zeros(1, 1, d)) if with_mod_emb else None

    def position(self, ids: Tensor) -> Tensor:
        """Position vectors for integer position ids of any shape → (..., D)."""
        return self.pos_emb[0][ids]

    def reset_parameters_(self, cfg: ModelConfig) -> None:
        if not self.sincos:
            _trunc_normal(self.pos_emb.data, cfg.init_std)
        if self.mod_emb is not None:
            _trunc_normal(self.mod_emb.data, cfg.init_std)


class TokenEncoderEmbedding(_PositionMixin):
    """Encoder embedding of token modalities (``image``, ``vector``, ``sequence``)."""

    def __init__(self, spec: ModalitySpec, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.token_emb = nn.Embedding(vocab_size, cfg.dim, padding_idx=adapter_for(spec).padding_idx())
        self._init_positions(spec, cfg, with_mod_emb=True)

    def embed(self, values: Tensor) -> Tensor:
        """Token ids (R,) → (R, D)."""
        return self.token_emb(values)

    def reset_parameters_(self, cfg: ModelConfig) -> None:
        super().reset_parameters_(cfg)
        std = cfg.init_std if cfg.input_token_init_std is None else cfg.input_token_init_std
        _trunc_normal(self.token_emb.weight.data, std)


class PatchEncoderEmbedding(_PositionMixin):
    """Encoder embedding of raw ``pixels``: linear projection of flattened patches."""

    def __init__(self, spec: ModalitySpec, cfg: ModelConfig):
        super().__init__()
        self.patch_size = spec.patch_size
        self.channels = spec.channels
        self.grid = spec.grid
        self.proj = nn.Linear(spec.patch_size * spec.patch_size * spec.channels, cfg.dim, bias=False)
        self._init_positions(spec, cfg, with_mod_emb=True)

    def patches(self, images: Tensor) -> Tensor:
        """(B, C, H, W) → (B, rows·cols, p·p·C), patches row-major, features in (py, px, c) order."""
        b, c, _, _ = images.shape
        p, (gh, gw) = self.patch_size, self.grid
        x = images.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)  # (B, gh, gw, py, px, C)
        return x.reshape(b, gh * gw, p * p * c)

    def gather_patches(self, images: Tensor, batch_index: Tensor, patch_index: Tensor) -> Tensor:
        """Only the patches ``patch_index`` of samples ``batch_index`` (each (R,)) → (R, p·p·C), same order."""
        # one contiguous patch copy, then a row gather: faster than a 6-D advanced index of the image
        return self.patches(images)[batch_index, patch_index]

    def embed(self, values: Tensor) -> Tensor:
        """Flattened patches (R, p·p·C) → (R, D)."""
        return self.proj(values)

    def reset_parameters_(self, cfg: ModelConfig) -> None:
        super().reset_parameters_(cfg)
        # MAE: initialise the patch projection like a linear layer of the flattened patch
        nn.init.xavier_uniform_(self.proj.weight)


class ProjEncoderEmbedding(_PositionMixin):
    """Encoder embedding of an ``embedding_sequence``: linear projection of continuous vectors."""

    def __init__(self, spec: ModalitySpec, cfg: ModelConfig):
        super().__init__()
        self.embed_dim = spec.embed_dim
        self.proj = nn.Linear(spec.embed_dim, cfg.dim, bias=cfg.embedding_proj_bias)
        self._init_positions(spec, cfg, with_mod_emb=True)

    def embed(self, values: Tensor) -> Tensor:
        """Vectors (R, embed_dim) → (R, D)."""
        return self.proj(values)

    def reset_parameters_(self, cfg: ModelConfig) -> None:
        super().reset_parameters_(cfg)
        nn.init.xavier_uniform_(self.proj.weight)
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)


class TokenDecoderEmbedding(_PositionMixin):
    """Decoder embedding and output head of a decodable modality (``image``, ``vector``, ``sequence``).

    ``token_emb`` embeds teacher-forced sequence inputs and, when the output head is tied, is also the output
    projection. ``to_logits`` exists only for untied heads. ``mod_emb`` exists only when modality embeddings
    are not shared with the encoder (or the modality is decoder-only).
    """

    def __init__(self, spec: ModalitySpec, cfg: ModelConfig, vocab_size: int, own_mod_emb: bool):
        super().__init__()
        kind = adapter_for(spec)
        self.vocab_size = vocab_size
        self.max_length = spec.max_length
        self.tied = cfg.tie_output_embeddings
        needs_table = kind.autoregressive or self.tied  # teacher-forced inputs, or the tied output head
        self.token_emb = (nn.Embedding(vocab_size, cfg.dim, padding_idx=kind.padding_idx()) if needs_table else None)
        self.to_logits = None if self.tied else nn.Linear(cfg.dim, vocab_size, bias=False)
        self._init_positions(spec, cfg, with_mod_emb=own_mod_emb)

    @property
    def output_weight(self) -> Tensor:
        """(V, D) matrix of the output projection."""
        return self.token_emb.weight if self.tied else self.to_logits.weight

    def reset_parameters_(self, cfg: ModelConfig) -> None:
        super().reset_parameters_(cfg)
        if self.token_emb is not None:
            _trunc_normal(self.token_emb.weight.data, cfg.init_std)
        if self.to_logits is not None:
            nn.init.xavier_uniform_(self.to_logits.weight)


def build_encoder_embedding(spec: ModalitySpec, cfg: ModelConfig, vocab_size: int | None) -> nn.Module:
    """The encoder embedding module for ``spec``, chosen by its kind's adapter."""
    return adapter_for(spec).encoder_embedding(spec, cfg, vocab_size)


def xavier_qkv_(linear: nn.Linear, parts: int) -> None:
    """Xavier-uniform init treating a fused projection as ``parts`` separate (D_out/parts, D_in) matrices."""
    out_f, in_f = linear.weight.shape
    bound = math.sqrt(6.0 / (out_f // parts + in_f))
    nn.init.uniform_(linear.weight, -bound, bound)
