"""Model configuration (:class:`ModelConfig`) and named size presets.

A config holds only the Transformer hyper-parameters; which modalities the model embeds comes from the
:class:`fourm_registry.ModalitySet` handed to :func:`fourm_core.model.build_model`.

Presets follow 4M's sizes (encoder blocks + decoder blocks × width, heads = width / 64), each in three
variants: ``"<size>"`` (GELU, biases everywhere), ``"<size>-swiglu"`` (SwiGLU, no biases) and
``"<size>-swiglu-qknorm"`` (SwiGLU, no biases, LayerNorm on queries and keys). ``"debug"`` is a tiny model
for tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from fourm_registry.strict import check_keys

#: activation names accepted by ``ModelConfig.act``
ACTIVATIONS = ("gelu", "swiglu")


class ConfigError(ValueError):
    """A model config is invalid (unknown key, bad value, unknown preset)."""


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"model config: {attribute.name} must be a positive int, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"model config: {attribute.name} must be an int >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class ModelConfig:
    """Hyper-parameters of a :class:`fourm_core.model.FourM` encoder-decoder.

    Attributes:
        dim: model width D.
        encoder_depth / decoder_depth: number of Transformer blocks on each side.
        num_heads: attention heads (``dim`` must be divisible by it).
        mlp_ratio: MLP hidden size = ``int(dim * mlp_ratio)``; for SwiGLU ``int(2 * int(dim * mlp_ratio) / 3)``
            (the reference's convention, so parameter counts match).
        act: ``"gelu"`` (exact erf form) or ``"swiglu"`` (``fc2(silu(fc1(x)) * fc3(x))``).
        qk_norm: LayerNorm over the head dimension of queries and keys (shared by all heads).
        qkv_bias / proj_bias / mlp_bias / norm_bias: biases of the attention input projections, the attention
            output projections, the MLP layers and the LayerNorms. ``decoder_proj_context`` always has a bias.
        norm_eps: LayerNorm epsilon.
        num_register_tokens: learned tokens prepended to the encoder input and dropped after the encoder.
        share_modality_embeddings: one modality embedding per modality, shared by encoder and decoder.
        tie_output_embeddings: output projection = decoder token table (no separate ``to_logits``).
        init_std: std of the truncated-normal init of token tables, modality / learned position embeddings,
            the mask token and the register tokens (linear layers use Xavier-uniform, MAE-style).
        input_token_init_std: std of the encoder's input token tables. ``None`` = ``init_std`` (the
            reference's choice). With 0.02 a token's identity is a few percent of its input vector next to the
            unit-scale sin-cos positions, and a fresh model spends its first hundreds of steps at ln(V) before it
            starts reading its inputs (measured: a 64-way copy task is still at 2.1 nats after 300 steps, while
            with std 0.3–1.0 it is at 0.09–0.12); default 0.5. It only changes initialisation.
        seq_pos_table_rows: minimum number of rows of 1-D sin-cos tables (the reference uses 512); a table
            always has at least ``2 * (max_length + 1)`` rows, enough for every slot of a sequence tensor.
        embedding_proj_bias: a bias on the linear projection of ``embedding_sequence`` inputs (the reference's
            ``emb_proj`` of ``t5_caption`` has one; fourm-trained models default to none).
    """

    dim: int = attrs.field(validator=_positive)
    encoder_depth: int = attrs.field(validator=_non_negative)
    decoder_depth: int = attrs.field(validator=_non_negative)
    num_heads: int = attrs.field(validator=_positive)
    mlp_ratio: float = 4.0
    act: str = "gelu"
    qk_norm: bool = False
    qkv_bias: bool = True
    proj_bias: bool = True
    mlp_bias: bool = True
    norm_bias: bool = True
    norm_eps: float = 1e-6
    num_register_tokens: int = attrs.field(default=0, validator=_non_negative)
    share_modality_embeddings: bool = True
    tie_output_embeddings: bool = True
    init_std: float = 0.02
    input_token_init_std: float | None = 0.5
    seq_pos_table_rows: int = attrs.field(default=512, validator=_positive)
    embedding_proj_bias: bool = False

    def __attrs_post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ConfigError(f"model config: dim {self.dim} must be divisible by num_heads {self.num_heads}")
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"model config: act {self.act!r} is not one of {', '.join(ACTIVATIONS)}")
        if not self.mlp_ratio > 0:
            raise ConfigError(f"model config: mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if (self.dim // self.num_heads) % 2:
            raise ConfigError(f"model config: head dim {self.dim // self.num_heads} must be even")
        if self.dim % 4:
            raise ConfigError(f"model config: dim {self.dim} must be divisible by 4 (2-D sin-cos positions)")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        hidden = int(self.dim * self.mlp_ratio)
        return int(2 * hidden / 3) if self.act == "swiglu" else hidden

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (what ``config.json`` stores)."""
        return attrs.asdict(self)

    @classmethod
    def valid_keys(cls) -> tuple[str, ...]:
        return tuple(a.name for a in attrs.fields(cls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build from a dict; ``preset`` names a preset the other keys override. Unknown keys raise."""
        data = dict(data)
        preset = data.pop("preset", None)
        check_keys(data, ["preset", *cls.valid_keys()], "model config", error=ConfigError)
        if preset is not None:
            return attrs.evolve(get_preset(preset), **data)
        missing = [k for k in ("dim", "encoder_depth", "decoder_depth", "num_heads") if k not in data]
        if missing:
            raise ConfigError(f"model config: missing key(s) {', '.join(missing)} (or give 'preset': one of {', '.join(PRESETS)})")
        return cls(**data)

    @classmethod
    def coerce(cls, config: ModelConfig | str | Mapping[str, Any]) -> ModelConfig:
        """A ``ModelConfig`` from a config, a preset name or a dict."""
        if isinstance(config, ModelConfig):
            return config
        if isinstance(config, str):
            return get_preset(config)
        if isinstance(config, Mapping):
            return cls.from_dict(config)
        raise ConfigError(f"model config must be a ModelConfig, a preset name or a dict, got {type(config).__name__}")


_SIZES = {
    "tiny": (6, 6, 384),
    "small": (8, 8, 512),
    "base": (12, 12, 768),
    "large": (24, 24, 1024),
    "xlarge": (24, 24, 2048),
}


def _variants(enc: int, dec: int, dim: int) -> dict[str, ModelConfig]:
    base = dict(dim=dim, encoder_depth=enc, decoder_depth=dec, num_heads=dim // 64)
    nobias = dict(qkv_bias=False, proj_bias=False, mlp_bias=False, norm_bias=False)
    return {
        "": ModelConfig(**base, act="gelu"),
        "-swiglu": ModelConfig(**base, act="swiglu", **nobias),
        "-swiglu-qknorm": ModelConfig(**base, act="swiglu", qk_norm=True, **nobias),
    }


#: named presets: tiny / small / base / large / xlarge × ("", "-swiglu", "-swiglu-qknorm"), and "debug"
PRESETS: dict[str, ModelConfig] = {
    f"{size}{suffix}": cfg for size, shape in _SIZES.items() for suffix, cfg in _variants(*shape).items()
}
PRESETS["debug"] = ModelConfig(dim=64, encoder_depth=2, decoder_depth=2, num_heads=2)


def get_preset(name: str) -> ModelConfig:
    """The preset called ``name``; unknown names raise listing the presets."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}") from None
