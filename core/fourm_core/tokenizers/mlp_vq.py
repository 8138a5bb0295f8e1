"""MLP VQ: a global vector (DINOv2/CLIP embedding, pose parameters) → K tokens and back."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import PretrainedTokenizer, TokenizerError, register_family
from .layers import init_weights
from .quantizers import build_quantizer, codebook_stats

LOSSES = ("mse", "l1", "cosine")


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers += [nn.LayerNorm(b), nn.GELU()]
    return nn.Sequential(*layers)


@register_family("mlp_vq")
class MLPVQ(PretrainedTokenizer):
    """``encode (B, in_dim) -> (B, num_tokens)``: an MLP maps the vector to ``num_tokens`` codes of
    ``code_dim``, each quantized independently; a mirror MLP decodes. ``loss``: mse / l1 / cosine."""

    def __init__(self, *, modality: str | None = None, in_dim: int = 768, num_tokens: int = 16, hidden_dim: int = 1024,
                 depth: int = 2, quantizer: str = "ema_vq", codebook_size: int = 8192, code_dim: int = 32,
                 fsq_levels: list[int] | None = None, ema_decay: float = 0.99, commitment_weight: float = 0.25,
                 dead_code_threshold: float = 1.0, loss: str = "mse", vocab_size: int | None = None):
        if vocab_size is not None:  # the name the specs use; same meaning as codebook_size
            codebook_size = vocab_size
        super().__init__(dict(
            modality=modality, in_dim=in_dim, num_tokens=num_tokens, hidden_dim=hidden_dim, depth=depth,
            quantizer=quantizer, codebook_size=codebook_size, code_dim=code_dim, fsq_levels=fsq_levels,
            ema_decay=ema_decay, commitment_weight=commitment_weight, dead_code_threshold=dead_code_threshold, loss=loss))
        name = self.display_name
        if loss not in LOSSES:
            raise TokenizerError(f"{name}: unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if in_dim < 1 or num_tokens < 1 or depth < 1:
            raise TokenizerError(f"{name}: in_dim, num_tokens and depth must be positive")
        self.in_dim, self._num_tokens, self.loss_type = in_dim, num_tokens, loss
        self.quantizer = build_quantizer(quantizer, codebook_size=codebook_size, code_dim=code_dim,
                                         fsq_levels=fsq_levels, decay=ema_decay, commitment_weight=commitment_weight,
                                         dead_code_threshold=dead_code_threshold, owner=name)
        cd = self.quantizer.code_dim
        self.encoder = _mlp([in_dim] + [hidden_dim] * depth + [num_tokens * cd])
        self.decoder = _mlp([num_tokens * cd] + [hidden_dim] * depth + [in_dim])
        init_weights(self)

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def num_tokens(self) -> int:
        return self._num_tokens

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        exp = f"(B, {self.in_dim}) float"
        if not isinstance(x, torch.Tensor):
            raise self._input_error(f"got a {type(x).__name__}", f"a torch.Tensor {exp}")
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise self._input_error(f"got shape {tuple(x.shape)}", exp)
        self._check_finite(x, exp)
        return x.to(self.device, torch.float32)

    def quantize(self, x: torch.Tensor):
        z = self.encoder(x).view(x.shape[0], self._num_tokens, -1)  # (B, K, code_dim)
        return self.quantizer(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim)`` → ``(B, num_tokens)`` int64."""
        with torch.no_grad():
            return self.quantize(self.prepare(x)).indices.long()

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, num_tokens)`` ids → ``(B, in_dim)`` float."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.shape[1] != self._num_tokens \
                or tokens.is_floating_point() or bool((tokens < 0).any()) or bool((tokens >= self.vocab_size).any()):
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise self._input_error(f"got tokens {shape}", f"(B, {self._num_tokens}) int64 ids in [0, {self.vocab_size})")
        with torch.no_grad():
            codes = self.quantizer.indices_to_codes(tokens.long().to(self.device))  # (B, K, code_dim)
            return self.decoder(codes.reshape(tokens.shape[0], -1))

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.prepare(x)
        q = self.quantize(x)
        recon = self.decoder(q.quantized.reshape(x.shape[0], -1))
        if self.loss_type == "mse":
            rl = F.mse_loss(recon, x)
        elif self.loss_type == "l1":
            rl = F.l1_loss(recon, x)
        else:
            rl = (1 - F.cosine_similarity(recon, x, dim=-1)).mean()
        metrics = {"recon_loss": rl.detach(), "quant_loss": q.loss.detach(), **codebook_stats(q.counts)}
        return rl + q.loss, metrics
