"""What the model returns: encoder outputs, the decoder cache of the generation interface, training outputs.

Plain dataclasses of tensors (see :mod:`fourm_core.model.fourm` for what each field means in the generation
interface); they hold no parameters and import nothing of the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["DecoderCache", "DecoderRows", "EncoderOutput", "FourMOutput"]


@dataclass
class EncoderOutput:
    """Result of :meth:`FourM.encode` (see the module docstring)."""

    hidden: Tensor  # (B, N, D) after encoder_norm
    padding_mask: Tensor  # (B, N) bool, True = padding slot
    pos: Tensor  # (B, N, D) additive position + modality embedding, zero at padding
    modality_index: Tensor  # (B, N) long, index into `modalities`, -1 = padding
    position: Tensor  # (B, N) long, token position inside its modality, -1 = padding
    modalities: tuple[str, ...]  # encoder modalities present in the mod_dict, in slot-concatenation order


@dataclass
class DecoderCache:
    """Per-layer cross-attention K/V (computed once per encoding) and self-attention K/V (grown by decode)."""

    context: Tensor  # (B, N, D) projected context (decoder_proj_context(hidden) + pos)
    context_kv: list[tuple[Tensor, Tensor]]  # per layer, each (B, H, N, hd)
    cross_allowed: Tensor | None  # (B, 1, 1, N) bool True = may attend, None = no padding
    self_kv: list[tuple[Tensor, Tensor] | None] = field(default_factory=list)

    @property
    def self_length(self) -> int:
        """Number of positions in the self-attention cache."""
        kv = self.self_kv[0] if self.self_kv else None
        return 0 if kv is None else kv[0].shape[2]

    def reset_self(self) -> None:
        """Forget the self-attention cache (keep the cross-attention K/V)."""
        self.self_kv = [None] * len(self.context_kv)

    def _map(self, fn) -> DecoderCache:
        return DecoderCache(
            context=fn(self.context),
            context_kv=[(fn(k), fn(v)) for k, v in self.context_kv],
            cross_allowed=None if self.cross_allowed is None else fn(self.cross_allowed),
            self_kv=[None if kv is None else (fn(kv[0]), fn(kv[1])) for kv in self.self_kv],
        )

    def repeat_interleave(self, n: int) -> DecoderCache:
        """A cache whose batch repeats every sample ``n`` times (b0, b0, b1, b1, ...)."""
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def index_select(self, index: Tensor) -> DecoderCache:
        """A cache holding the samples ``index`` (1-D long) of this one."""
        return self._map(lambda t: t.index_select(0, index))


@dataclass
class DecoderRows:
    """Decoder outputs of one modality's target rows, in (batch, slot) order."""

    hidden: Tensor  # (R, D) after decoder_norm
    batch: Tensor  # (R,) sample index
    position: Tensor  # (R,) slot position (sequence: input position i whose target is token i+1)
    targets: Tensor  # (R,) target ids
    logits: Tensor  # (R, V)


@dataclass
class FourMOutput:
    """Result of :meth:`FourM.forward`."""

    loss: Tensor  # scalar
    losses: dict[str, Tensor]  # per target modality: mean cross-entropy (0 for a modality without rows)
    num_targets: dict[str, int]  # rows per target modality
    encoder: EncoderOutput | None = None  # with return_details=True
    decoder_rows: dict[str, DecoderRows] | None = None  # with return_details=True
