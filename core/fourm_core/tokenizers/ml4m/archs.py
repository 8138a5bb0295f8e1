"""Architecture names of the released tokenizers (``enc_type`` / ``dec_type`` in their ``config.json``).

A name maps to an :class:`Arch`: its ``kind`` and the hyper-parameters the released preset fixes; everything
else (channels, patch size, resolution, post-MLP, ...) comes from the tokenizer config.

* ``vit_encoder`` / ``vit_decoder``: the ``vit_{s,b,l}_{enc,dec}`` presets (dim / depth / heads below).
* MLP ids are parsed from the string: ``BottleneckMLP/B_<blocks>-Wi_<width>[-E_<expansion>]`` or
  ``MLP/B_<blocks>-Wi_<width>`` (kind ``mlp``); they need no registration.
* ``unet_*`` / ``uvit_*`` names are diffusion decoders (kind ``diffusion``); their hyper-parameters live with
  the diffusion module (``fourm_core.tokenizers.ml4m.diffusion``), which builds them from the config.

:func:`register_arch` adds names (e.g. small presets for tests); unknown names raise :class:`TokenizerError`
listing the known ones.
"""

from __future__ import annotations

import os

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..base import TokenizerError
from .mlp import MLP_CLASSES, parse_mlp_id

KINDS = ("vit_encoder", "vit_decoder", "mlp", "diffusion")
DIFFUSION_PREFIXES = ("unet_", "uvit_")
_VIT_PARAMS = ("dim_tokens", "depth", "num_heads", "mlp_ratio", "qkv_bias")


@dataclass(frozen=True)
class Arch:
    """``kind`` (one of :data:`KINDS`) and the preset's fixed hyper-parameters."""

    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)


ARCHS: dict[str, Arch] = {}


def register_arch(name: str, kind: str, *, replace: bool = False, **params: Any) -> Arch:
    """Make ``name`` usable as ``enc_type`` / ``dec_type``.

    ``kind`` ``vit_encoder`` / ``vit_decoder`` take ``dim_tokens``, ``depth``, ``num_heads`` and optionally
    ``mlp_ratio`` (4) and ``qkv_bias`` (True). Registering an existing name with other parameters raises
    unless ``replace``.
    """
    if kind not in ("vit_encoder", "vit_decoder"):
        raise TokenizerError(f"register_arch({name!r}): kind {kind!r} cannot be registered here; choose "
                             f"vit_encoder or vit_decoder (MLP ids are parsed from the name, diffusion decoders are "
                             f"registered with the diffusion module)")
    unknown = sorted(set(params) - set(_VIT_PARAMS))
    missing = sorted({"dim_tokens", "depth", "num_heads"} - set(params))
    if unknown or missing:
        raise TokenizerError(f"register_arch({name!r}): unknown parameter(s) {unknown}, missing {missing}; "
                             f"a ViT preset takes {', '.join(_VIT_PARAMS)}")
    if parse_mlp_id(name) is not None or name.startswith(DIFFUSION_PREFIXES):
        raise TokenizerError(f"register_arch({name!r}): names starting with {DIFFUSION_PREFIXES} or of the MLP id "
                             f"form are reserved")
    arch = Arch(name, kind, {"mlp_ratio": 4.0, "qkv_bias": True, **params})
    old = ARCHS.get(name)
    if old is not None and old != arch and not replace:
        raise TokenizerError(f"architecture {name!r} is already registered as {old.kind} {dict(old.params)}; "
                             f"pass replace=True to change it")
    ARCHS[name] = arch
    return arch


def known_arch_names() -> list[str]:
    """Registered names plus the forms parsed from the name."""
    return sorted(ARCHS) + ["BottleneckMLP/B_<blocks>-Wi_<width>[-E_<expansion>]", "MLP/B_<blocks>-Wi_<width>",
                            "unet_* / uvit_* (diffusion decoders)"]


def lookup_arch(name: Any, *, role: str, where: str = "tokenizer config") -> Arch:
    """The :class:`Arch` of ``name``; ``role`` (``encoder`` / ``decoder``) is checked against its kind."""
    if not isinstance(name, str):
        raise TokenizerError(f"{where}: {role} architecture must be a string, got {name!r}")
    parsed = parse_mlp_id(name)
    if parsed is not None:
        model, blocks, width, expansion = parsed
        arch = Arch(name, "mlp", {"model": model, "num_blocks": blocks, "width": width, "expansion": expansion})
    elif name.startswith(DIFFUSION_PREFIXES):
        arch = Arch(name, "diffusion")
    elif name in ARCHS:
        arch = ARCHS[name]
    else:
        hint = " (MLP ids look like 'BottleneckMLP/B_6-Wi_1024')" if "MLP" in name else ""
        raise TokenizerError(f"{where}: unknown {role} architecture {name!r}{hint}; known: "
                             f"{', '.join(known_arch_names())}; add one with "
                             f"fourm_core.tokenizers.ml4m.register_arch")
    allowed = {"encoder": ("vit_encoder", "mlp"), "decoder": ("vit_decoder", "mlp", "diffusion")}[role]
    if arch.kind not in allowed:
        raise TokenizerError(f"{where}: {name!r} is a {arch.kind} architecture and cannot be the {role}")
    return arch


def build_mlp(arch: Arch, *, dim_in: int | None, dim_out: int | None):
    p = arch.params
    return MLP_CLASSES[p["model"]](num_blocks=p["num_blocks"], width=p["width"], expansion=p["expansion"],
                                   dim_in=dim_in, dim_out=dim_out)


for _size, (_dim, _depth, _heads) in {"s": (512, 8, 8), "b": (768, 12, 12), "l": (1024, 24, 16)}.items():
    register_arch(f"vit_{_size}_enc", "vit_encoder", dim_tokens=_dim, depth=_depth, num_heads=_heads)
    register_arch(f"vit_{_size}_dec", "vit_decoder", dim_tokens=_dim, depth=_depth, num_heads=_heads)


#: environment variable: JSON files (``os.pathsep``-separated) of extra presets, registered on import
ARCHS_ENV = "FOURM_TOKENIZER_ARCHS"


def register_archs_file(path: str | os.PathLike) -> list[str]:
    """Register the encoder / decoder presets a JSON file names: ``{name: {"kind": "vit_encoder" |
    "vit_decoder" | "diffusion", <hyper-parameters>}}`` (keys starting with ``_`` are comments). For tokenizers
    whose ``enc_type`` / ``dec_type`` fourm does not ship; ``$FOURM_TOKENIZER_ARCHS`` names such files for
    every process (the command line included). Returns the names registered."""
    import json
    from pathlib import Path

    p = Path(path)
    try:
        table = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"architecture file {p}: {exc}") from None
    if not isinstance(table, dict):
        raise TokenizerError(f"architecture file {p} must hold a JSON object {{name: {{kind, ...}}}}")
    done = []
    for name, entry in table.items():
        if name.startswith("_"):
            continue
        params = dict(entry)
        kind = params.pop("kind", None)
        if kind in ("vit_encoder", "vit_decoder"):
            register_arch(name, kind, replace=True, **params)
        elif kind == "diffusion":
            from .diffusion import register_diffusion_arch

            register_diffusion_arch(name, params, replace=True)
        else:
            raise TokenizerError(f"architecture file {p}: {name!r} has kind {kind!r}; use vit_encoder, vit_decoder "
                                 f"or diffusion")
        done.append(name)
    return done


def register_env_archs() -> list[str]:
    """Register the files of ``$FOURM_TOKENIZER_ARCHS`` (called when the package is imported)."""
    files = [f for f in os.environ.get(ARCHS_ENV, "").split(os.pathsep) if f]
    return [n for f in files for n in register_archs_file(f)]
