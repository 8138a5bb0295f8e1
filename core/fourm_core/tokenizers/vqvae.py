"""ViT VQ-VAE: a patchify Transformer encoder, a quantizer, and a swappable decoder.

Works for any channel count (RGB, depth, normals, one-hot class maps, edges, feature maps): the input is
``(B, C, H, W)`` float (or ``(B, H, W)`` / ``(B, 1, H, W)`` integer class ids with ``loss="ce"``); the
tokens are the ``(H/p) × (W/p)`` grid flattened row-major, ``(B, num_tokens)`` int64.

The decoder is chosen by the ``decoder`` config (``{"type": "vit", ...}``); other decoders (e.g. a
diffusion decoder) register themselves with :func:`register_decoder` and receive the quantized grid
``(B, h, w, code_dim)``. A decoder may define ``loss(codes, target) -> Tensor`` to replace the
pixel-space reconstruction loss (a diffusion decoder needs that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import PretrainedTokenizer, TokenizerError, register_family
from .layers import Transformer, init_weights
from .quantizers import build_quantizer, codebook_stats

LOSSES = ("mse", "l1", "ce", "cosine")
#: decoder type -> factory(code_dim, out_channels, grid, patch_size, **config)
DECODERS: dict[str, Callable[..., nn.Module]] = {}


def register_decoder(name: str):
    """Decorator: make a decoder class selectable with ``decoder={"type": name, ...}``."""

    def deco(cls):
        if name in DECODERS and DECODERS[name] is not cls:
            raise TokenizerError(f"VQ-VAE decoder type {name!r} is already registered")
        DECODERS[name] = cls
        return cls

    return deco


def _pair(v: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise TokenizerError(f"image size must be an int or (height, width), got {v}")
    return v  # type: ignore[return-value]


@register_decoder("vit")
class ViTDecoder(nn.Module):
    """Transformer over the token grid, then a linear projection of each token to its ``p × p`` patch."""

    def __init__(self, code_dim: int, out_channels: int, grid: tuple[int, int], patch_size: int, *,
                 dim: int = 256, depth: int = 4, num_heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        self.grid, self.patch_size, self.out_channels = grid, patch_size, out_channels
        self.proj_in = nn.Linear(code_dim, dim)
        self.transformer = Transformer(grid[0] * grid[1], dim, depth, num_heads, mlp_ratio)
        self.proj_out = nn.Linear(dim, patch_size * patch_size * out_channels)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = codes.shape
        p, c = self.patch_size, self.out_channels
        x = self.transformer(self.proj_in(codes.reshape(b, h * w, -1)))  # (B, N, D)
        x = self.proj_out(x).view(b, h, w, p, p, c)  # (B, h, w, p, p, C)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h * p, w * p)  # (B, C, H, W)


@register_family("vit_vqvae")
class ViTVQVAE(PretrainedTokenizer):
    """Image-like tokenizer: ``encode (B, C, H, W) -> (B, (H/p)·(W/p))`` ids, ``decode`` back.

    ``loss``: ``"mse"`` / ``"l1"`` (pixels, depth, normals), ``"ce"`` (class maps; set ``num_classes``;
    decode returns class probabilities ``(B, num_classes, H, W)``), ``"cosine"`` (feature maps: 1 − cosine
    similarity along channels). ``quantizer``: ``"ema_vq"`` (``codebook_size`` codes of ``code_dim``) or
    ``"fsq"`` (``fsq_levels``; ``vocab_size = prod(levels)``).
    """

    def __init__(self, *, modality: str | None = None, in_channels: int = 3, image_size: int | list[int] = 224,
                 patch_size: int = 16, dim: int = 256, depth: int = 4, num_heads: int = 4, mlp_ratio: float = 4.0,
                 quantizer: str = "ema_vq", codebook_size: int = 8192, code_dim: int = 32,
                 fsq_levels: list[int] | None = None, ema_decay: float = 0.99, commitment_weight: float = 0.25,
                 dead_code_threshold: float = 1.0, loss: str = "mse", num_classes: int | None = None,
                 ignore_index: int | None = 255, decoder: dict[str, Any] | None = None, vocab_size: int | None = None):
        decoder = dict(decoder or {"type": "vit"})
        if vocab_size is not None:  # the name the specs use; same meaning as codebook_size
            codebook_size = vocab_size
        super().__init__(dict(
            modality=modality, in_channels=in_channels, image_size=image_size, patch_size=patch_size, dim=dim,
            depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, quantizer=quantizer, codebook_size=codebook_size,
            code_dim=code_dim, fsq_levels=fsq_levels, ema_decay=ema_decay, commitment_weight=commitment_weight,
            dead_code_threshold=dead_code_threshold, loss=loss, num_classes=num_classes, ignore_index=ignore_index,
            decoder=decoder))
        name = self.display_name
        if loss not in LOSSES:
            raise TokenizerError(f"{name}: unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if loss == "ce":
            if not num_classes or num_classes < 2:
                raise TokenizerError(f"{name}: loss 'ce' needs num_classes >= 2 (the class-map vocabulary)")
            if in_channels not in (1, num_classes):
                raise TokenizerError(f"{name}: with loss 'ce', in_channels must be num_classes ({num_classes}), got {in_channels}")
            in_channels = num_classes
        self.in_channels = in_channels  # channels the encoder sees (num_classes for class maps)
        self.ignore_index = ignore_index
        self.image_size = _pair(image_size)
        self.patch_size = patch_size
        h, w = self.image_size
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise TokenizerError(f"{name}: image size {h}x{w} is not a multiple of patch_size {patch_size}")
        self.grid = (h // patch_size, w // patch_size)
        self.loss_type = loss
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.encoder = Transformer(self.grid[0] * self.grid[1], dim, depth, num_heads, mlp_ratio)
        self.quantizer = build_quantizer(quantizer, codebook_size=codebook_size, code_dim=code_dim,
                                         fsq_levels=fsq_levels, decay=ema_decay, commitment_weight=commitment_weight,
                                         dead_code_threshold=dead_code_threshold, owner=name)
        self.to_code = nn.Linear(dim, self.quantizer.code_dim)
        dec_cfg = dict(decoder)
        dec_type = dec_cfg.pop("type", "vit")
        if dec_type not in DECODERS:
            raise TokenizerError(f"{name}: unknown decoder type {dec_type!r}; registered: {', '.join(sorted(DECODERS))}")
        dec_cfg.setdefault("dim", dim)
        dec_cfg.setdefault("depth", depth)
        dec_cfg.setdefault("num_heads", num_heads)
        self.decoder = DECODERS[dec_type](self.quantizer.code_dim, in_channels, self.grid, patch_size, **dec_cfg)
        init_weights(self.encoder)
        init_weights(self.decoder)
        if quantizer != "fsq":  # FSQ needs unit-scale inputs to spread over its levels: keep the default init
            nn.init.trunc_normal_(self.to_code.weight, std=0.02)

    # -- protocol --------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` the encoder expects."""
        return self.image_size

    def expected_shape(self) -> str:
        h, w = self.image_size
        if self.loss_type == "ce":
            return (f"(B, 1, {h}, {w}) or (B, {h}, {w}) class ids in [0, {self.in_channels})"
                    f"{'' if self.ignore_index is None else f' or {self.ignore_index} (ignored)'}, "
                    f"or (B, {self.in_channels}, {h}, {w}) one-hot/probabilities")
        return f"(B, {self.in_channels}, {h}, {w}) float"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Validate ``x`` and bring it to ``(B, C, H, W)`` float on the module's device (class ids → one-hot)."""
        exp = self.expected_shape()
        if not isinstance(x, torch.Tensor):
            raise self._input_error(f"got a {type(x).__name__}", f"a torch.Tensor {exp}")
        h, w = self.image_size
        if self.loss_type == "ce" and (x.dim() == 3 or (x.dim() == 4 and x.shape[1] == 1 and self.in_channels > 1)):
            ids = x[:, 0] if x.dim() == 4 else x
            if tuple(ids.shape[1:]) != (h, w):
                raise self._input_error(f"got class ids of shape {tuple(x.shape)}", exp)
            self._check_finite(ids, exp)
            ids = ids.round().long().to(self.device) if ids.is_floating_point() else ids.long().to(self.device)
            ignored = ids == self.ignore_index if self.ignore_index is not None else torch.zeros_like(ids, dtype=torch.bool)
            bad = ((ids < 0) | (ids >= self.in_channels)) & ~ignored
            if bool(bad.any()):
                raise self._input_error(f"class ids out of range: {sorted(set(ids[bad].tolist()))[:8]}", exp)
            onehot = F.one_hot(ids.clamp(0, self.in_channels - 1), self.in_channels).permute(0, 3, 1, 2).float()
            return onehot * (~ignored).unsqueeze(1)  # ignored pixels: all-zero one-hot
        if x.dim() != 4:
            raise self._input_error(f"got a {x.dim()}-D tensor of shape {tuple(x.shape)}", exp)
        if x.shape[1] != self.in_channels:
            raise self._input_error(f"got {x.shape[1]} channels (shape {tuple(x.shape)})", exp)
        if tuple(x.shape[2:]) != (h, w):
            raise self._input_error(f"got spatial size {tuple(x.shape[2:])} (shape {tuple(x.shape)})", exp)
        self._check_finite(x, exp)
        return x.to(self.device, torch.float32)

    def quantize(self, x: torch.Tensor):
        """Encoder + quantizer on a prepared batch → :class:`QuantizerOutput` with a ``(B, h, w, ·)`` grid."""
        b = x.shape[0]
        z = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        z = self.to_code(self.encoder(z))  # (B, N, code_dim)
        out = self.quantizer(z.view(b, *self.grid, -1))
        return out

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, num_tokens)`` int64 ids (row-major grid)."""
        with torch.no_grad():
            return self.quantize(self.prepare(x)).indices.reshape(x.shape[0], -1).long()

    def decode_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Decoder output before any output activation: ``(B, C, H, W)``."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.shape[1] != self.num_tokens:
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise self._input_error(f"got tokens {shape}", f"(B, {self.num_tokens}) int64 ids in [0, {self.vocab_size})")
        if tokens.is_floating_point() or bool((tokens < 0).any()) or bool((tokens >= self.vocab_size).any()):
            raise self._input_error("token ids out of range or not integers", f"(B, {self.num_tokens}) int64 ids in [0, {self.vocab_size})")
        codes = self.quantizer.indices_to_codes(tokens.long().to(self.device))  # (B, N, code_dim)
        return self.decoder(codes.view(tokens.shape[0], *self.grid, -1))

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, num_tokens)`` ids → ``(B, C, H, W)`` float (class probabilities for ``loss="ce"``)."""
        with torch.no_grad():
            out = self.decode_logits(tokens)
            return out.softmax(dim=1) if self.loss_type == "ce" else out

    def reconstruction_loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss_type == "mse":
            return F.mse_loss(recon, target)
        if self.loss_type == "l1":
            return F.l1_loss(recon, target)
        if self.loss_type == "ce":
            ids = target.argmax(dim=1).masked_fill(target.sum(dim=1) == 0, -100)  # all-zero one-hot = ignored
            return F.cross_entropy(recon, ids, ignore_index=-100)
        return (1 - F.cosine_similarity(recon, target, dim=1)).mean()

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruction + quantizer loss; metrics: recon_loss, quant_loss, usage, perplexity."""
        x = self.prepare(x)
        q = self.quantize(x)
        if hasattr(self.decoder, "loss"):
            recon_loss = self.decoder.loss(q.quantized, x)
        else:
            recon_loss = self.reconstruction_loss(self.decoder(q.quantized), x)
        total = recon_loss + q.loss
        metrics = {"recon_loss": recon_loss.detach(), "quant_loss": q.loss.detach(), **codebook_stats(q.counts)}
        return total, metrics
