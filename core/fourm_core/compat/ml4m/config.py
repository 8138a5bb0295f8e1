"""Reference model configs → fourm's :class:`~fourm_core.model.ModelConfig`.

Two layouts are read:

* the *conformance* layout: ``{"model": {...}, "modalities": {name: {...}}}`` (the parity sets; the
  ``model`` section uses ``act`` / ``norm: {eps, bias}`` / ``decoder_share_embedding``);
* the *release* layout: the flat dict ``PyTorchModelHubMixin`` writes next to a released checkpoint
  (``domains_in``, ``domains_out``, ``dim``, ``act_layer``, ``norm_bias``, ...), whose modalities come from the
  reference's modality table (:mod:`.table`).

:func:`reference_config` turns either into the conformance layout, which the rest of the package reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fourm_registry.errors import FourmError
from fourm_registry.strict import check_keys

from ...model import ModelConfig
from . import table


class ML4MImportError(FourmError, ValueError):
    """A reference config or state dict cannot be mapped onto a fourm model."""


#: keys of a released checkpoint's config.json that fourm reads (all keys the reference's FM consumes)
RELEASE_KEYS = ("domains_in", "domains_out", "image_size", "patch_size", "dim", "encoder_depth", "decoder_depth",
                "num_heads", "mlp_ratio", "act_layer", "norm_bias", "qkv_bias", "proj_bias", "mlp_bias",
                "gated_mlp", "qk_norm", "decoder_causal_mask", "decoder_sep_mask", "num_register_tokens",
                "share_modality_embeddings")
#: keys the reference's FM accepts that do not change inference (training-only: drop path, checkpointing)
RELEASE_IGNORED = ("drop_path_rate_encoder", "drop_path_rate_decoder", "shared_drop_path", "use_act_checkpoint")


def sanitize_name(ref_name: str) -> str:
    """A valid fourm modality name for a reference name: ``tok_pose@224`` → ``tok_pose_224``."""
    name = re.sub(r"[^a-z0-9_]+", "_", ref_name.lower()).strip("_")
    name = re.sub(r"_+", "_", name)
    if not name or not name[0].isalpha():
        name = f"m_{name}"
    return name


def is_release_config(cfg: Mapping[str, Any]) -> bool:
    """A released checkpoint's flat hub config (rather than fourm's or the conformance layout)."""
    return "domains_in" in cfg and "model" not in cfg and "format_version" not in cfg


def model_config_from_reference(model: Mapping[str, Any]) -> ModelConfig:
    """Our :class:`ModelConfig` for the reference ``model`` section (raises on unsupported features)."""
    act = str(model.get("act", "GELU")).lower()
    gated = bool(model.get("gated_mlp", False))
    if gated:
        our_act = "swiglu"
        if act not in ("silu", "swish", "swiglu"):
            raise ML4MImportError(f"reference gated MLP with activation {model.get('act')!r} is not supported (SiLU only)")
    elif act in ("gelu",):
        our_act = "gelu"
    else:
        raise ML4MImportError(f"reference activation {model.get('act')!r} is not supported (GELU, or gated SiLU)")
    if model.get("decoder_causal_mask", False):
        raise ML4MImportError("reference decoder_causal_mask=True is not supported (fourm decoders use the "
                              "per-modality mask of decoder_sep_mask=True)")
    if not model.get("decoder_sep_mask", True):
        raise ML4MImportError("reference decoder_sep_mask=False is not supported (fourm decoders never attend "
                              "across modalities)")
    norm = model.get("norm", {}) or {}
    if norm.get("type", "LayerNorm") != "LayerNorm":
        raise ML4MImportError(f"reference norm {norm.get('type')!r} is not supported (LayerNorm only)")
    cfg = ModelConfig(
        dim=int(model["dim"]), encoder_depth=int(model["encoder_depth"]), decoder_depth=int(model["decoder_depth"]),
        num_heads=int(model["num_heads"]), mlp_ratio=float(model.get("mlp_ratio", 4.0)), act=our_act,
        qk_norm=bool(model.get("qk_norm", False)), qkv_bias=bool(model.get("qkv_bias", True)),
        proj_bias=bool(model.get("proj_bias", True)), mlp_bias=bool(model.get("mlp_bias", True)),
        norm_bias=bool(norm.get("bias", True)), norm_eps=float(norm.get("eps", 1e-6)),
        num_register_tokens=int(model.get("num_register_tokens", 0)),
        share_modality_embeddings=bool(model.get("share_modality_embeddings", True)),
        tie_output_embeddings=bool(model.get("decoder_share_embedding", True)),
        init_std=float(model.get("init_std", 0.02)),
        # the reference projects seq_emb inputs with a biased Linear
        embedding_proj_bias=bool(model.get("embedding_proj_bias", True)),
    )
    hidden = model.get("mlp_hidden_dim")
    if hidden is not None and int(hidden) != cfg.mlp_hidden_dim:
        raise ML4MImportError(f"reference mlp_hidden_dim {hidden} differs from fourm's {cfg.mlp_hidden_dim} for "
                              f"dim {cfg.dim}, mlp_ratio {cfg.mlp_ratio}, act {cfg.act}")
    if model.get("head_dim") is not None and int(model["head_dim"]) != cfg.head_dim:
        raise ML4MImportError(f"reference head_dim {model['head_dim']} != dim/num_heads = {cfg.head_dim}")
    return cfg


def release_to_reference(cfg: Mapping[str, Any], where: str = "config.json") -> dict[str, Any]:
    """The conformance layout (``model`` + ``modalities``) of a released checkpoint's flat config.

    Unknown keys raise (naming ``where``); modality properties come from :mod:`.table`; a modality the table
    does not know raises with the fix (a plugin that declares it as an alias)."""
    check_keys(cfg, [*RELEASE_KEYS, *RELEASE_IGNORED], where, error=ML4MImportError)
    for key in ("domains_in", "domains_out", "dim", "encoder_depth", "decoder_depth", "num_heads"):
        if key not in cfg:
            raise ML4MImportError(f"{where}: missing key {key!r} (a released 4M config.json has it)")
    model = {
        "dim": cfg["dim"], "encoder_depth": cfg["encoder_depth"], "decoder_depth": cfg["decoder_depth"],
        "num_heads": cfg["num_heads"], "mlp_ratio": cfg.get("mlp_ratio", 4.0),
        "act": cfg.get("act_layer", "GELU"), "gated_mlp": cfg.get("gated_mlp", False),
        "qk_norm": cfg.get("qk_norm", False), "qkv_bias": cfg.get("qkv_bias", True),
        "proj_bias": cfg.get("proj_bias", True), "mlp_bias": cfg.get("mlp_bias", True),
        "norm": {"type": "LayerNorm", "eps": 1e-6, "bias": cfg.get("norm_bias", True)},
        "decoder_causal_mask": cfg.get("decoder_causal_mask", False),
        "decoder_sep_mask": cfg.get("decoder_sep_mask", True),
        "num_register_tokens": cfg.get("num_register_tokens", 0),
        "share_modality_embeddings": cfg.get("share_modality_embeddings", True),
        # released FMs build their decoders with share_embedding=False: to_logits is its own tensor
        "decoder_share_embedding": False,
        "embedding_proj_bias": True,
    }
    ins, outs = list(cfg["domains_in"]), list(cfg["domains_out"])
    modalities: dict[str, Any] = {}
    for name in dict.fromkeys([*ins, *outs]):
        entry = table.lookup(name)
        if entry is None:
            raise ML4MImportError(
                f"{where}: the checkpoint uses the reference modality {name!r}, which fourm's table of the "
                f"reference's modalities does not know; install a plugin that declares {name!r} as an alias of "
                f"its modality (ModalitySpec.aliases) or load it with an explicit reference config")
        if entry.pixels and name in outs:
            raise ML4MImportError(f"{where}: {name!r} is raw pixels, which the reference never decodes; "
                                  f"remove it from domains_out")
        modalities[name] = entry.info(in_encoder=name in ins, in_decoder=name in outs)
    return {"model": model, "modalities": modalities, "release": {"domains_in": ins, "domains_out": outs}}
