"""Reference modalities → fourm :class:`~fourm_registry.ModalitySpec` s of the installed plugins.

A reference name (``tok_depth@224``) maps to the installed plugin modality that declares it as an alias (or has
that name). An image modality at another resolution (``tok_depth@448``) is the same plugin's modality at
another grid, under the plugin's name with the size (``depth_448``, alias ``tok_depth@448``). With ``missing="generic"`` (the
conformance sets), names no plugin claims get a generic spec; with ``missing="error"`` (released checkpoints)
they raise an error naming the plugin distribution to install.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from fourm_registry import ModalitySet, ModalitySpec

from ...checkpoint import SYNTHESIZED_PLUGIN
from ...kinds import adapter_for
from . import table
from .config import ML4MImportError, sanitize_name

log = logging.getLogger(__name__)

SERIALIZER = "fourm_core.compat.serializer:PlainTextSerializer"
#: reference type -> fourm kinds a plugin modality may have for it
_KINDS = {"seq": ("sequence",), "img": ("image", "vector", "pixels"), "seq_emb": ("embedding_sequence",)}


def _emb_info(info: Mapping[str, Any]) -> Mapping[str, Any]:
    return info.get("encoder_embedding") or info.get("decoder_embedding") or {}


def _grid(ref_name: str, info: Mapping[str, Any]) -> tuple[tuple[int, int], int]:
    emb = _emb_info(info)
    size = emb.get("image_size") or [224, 224]
    patch = emb.get("patch_size") or [16, 16]
    if int(patch[0]) != int(patch[1]):
        raise ML4MImportError(f"reference modality {ref_name!r}: non-square patches {patch} are not supported")
    return (int(size[0]) // int(patch[0]), int(size[1]) // int(patch[1])), int(patch[0])


def _synthesize_spec(ref_name: str, info: Mapping[str, Any]) -> ModalitySpec:
    name = sanitize_name(ref_name)
    emb = _emb_info(info)
    typ = info.get("type")
    pos = "sincos" if emb.get("sincos_pos_emb", True) else "learned"
    common = dict(name=name, aliases=(ref_name,) if ref_name != name else (), encoder=bool(info.get("in_encoder", True)),
                  decoder=bool(info.get("in_decoder", False)), pos_emb=pos, plugin=SYNTHESIZED_PLUGIN,
                  description=f"imported from the reference modality {ref_name!r}")
    if typ == "seq":
        return ModalitySpec(kind="sequence", vocab_size=int(info["vocab_size"]), max_length=int(info["max_tokens"]),
                            serializer=SERIALIZER, **common)
    if typ == "seq_emb":
        return ModalitySpec(kind="embedding_sequence", max_length=int(info["max_tokens"]),
                            embed_dim=int(emb.get("orig_emb_dim", 4096)), **{**common, "decoder": False})
    if typ == "img":
        grid, patch = _grid(ref_name, info)
        if info.get("vocab_size") is None:
            return ModalitySpec(kind="pixels", grid=grid, patch_size=patch,
                                channels=int(emb.get("num_channels", 3)), **{**common, "decoder": False})
        return ModalitySpec(kind="image", vocab_size=int(info["vocab_size"]), grid=grid, **common)
    raise ML4MImportError(f"reference modality {ref_name!r} has type {typ!r}; supported: 'img', 'seq', 'seq_emb'")


def _adapt_installed(spec: ModalitySpec, ref_name: str, info: Mapping[str, Any], *,
                     rename: bool = False) -> ModalitySpec:
    """An installed plugin's spec adjusted to the reference modality (sides, positions, length, grid).

    ``rename``: ``ref_name`` is a resolution variant of ``spec`` (same plugin, another grid, own name)."""
    emb = _emb_info(info)
    typ = info.get("type")
    if spec.kind not in _KINDS.get(typ, ()):
        raise ML4MImportError(f"reference modality {ref_name!r} ({typ}) maps to the installed modality "
                              f"{spec.name!r} of {spec.plugin}, whose kind {spec.kind!r} does not fit")
    changes: dict[str, Any] = dict(encoder=bool(info.get("in_encoder", True)),
                                   decoder=bool(info.get("in_decoder", False)),
                                   pos_emb="sincos" if emb.get("sincos_pos_emb", True) else "learned")
    kind = adapter_for(spec)
    if rename:
        size = ref_name.rpartition("@")[2]
        changes.update(name=sanitize_name(f"{spec.name}_{size}"), aliases=(ref_name,),
                       description=f"{spec.description} (at the reference's {ref_name!r} resolution)")
    if typ == "img" and spec.grid is not None:
        grid, patch = _grid(ref_name, info)
        if spec.kind == "pixels" and spec.patch_size != patch:
            raise ML4MImportError(f"reference modality {ref_name!r} uses {patch}-pixel patches; the installed "
                                  f"{spec.name!r} ({spec.plugin}) uses {spec.patch_size}")
        if tuple(spec.grid) != grid:
            if not rename:
                raise ML4MImportError(f"reference modality {ref_name!r} has a {grid[0]}x{grid[1]} grid but the "
                                      f"installed modality {spec.name!r} ({spec.plugin}) has {spec.grid[0]}x{spec.grid[1]}")
            changes.update(grid=grid, num_tokens=grid[0] * grid[1])
    if typ == "seq_emb":
        dim = int(emb.get("orig_emb_dim", spec.embed_dim))
        if dim != spec.embed_dim:
            raise ML4MImportError(f"reference modality {ref_name!r} projects {dim}-d vectors; the installed "
                                  f"{spec.name!r} ({spec.plugin}) has embed_dim {spec.embed_dim}")
        changes["max_length"] = int(info["max_tokens"])
    elif kind.autoregressive:  # variable length: the reference's max_tokens is its max_length
        changes["max_length"] = int(info["max_tokens"])
        changes["num_tokens"] = None
    elif "grid" not in changes and int(info.get("max_tokens", spec.num_tokens)) != spec.num_tokens:
        raise ML4MImportError(f"reference modality {ref_name!r} has {info.get('max_tokens')} tokens but the installed "
                              f"modality {spec.name!r} ({spec.plugin}) has {spec.num_tokens}")
    if changes["pos_emb"] == "sincos" and typ == "img" and len(kind.position_layout(spec, None)) != 2:
        raise ML4MImportError(f"reference modality {ref_name!r} uses 2-D sin-cos positions; the installed "
                              f"modality {spec.name!r} is a vector (1-D positions)")
    return attrs.evolve(spec, **changes)


def _missing_plugin(ref_name: str) -> ML4MImportError:
    entry = table.lookup(ref_name)
    alias = table.base_name(ref_name)
    if entry is not None:
        return ML4MImportError(
            f"the checkpoint uses the reference modality {ref_name!r}, which the plugin {entry.plugin} provides "
            f"(as the alias {alias!r}) but no installed plugin declares it; install it with "
            f"`pip install {entry.plugin}`")
    return ML4MImportError(f"the checkpoint uses the reference modality {ref_name!r}, which no installed plugin "
                           f"declares (ModalitySpec.aliases); install the plugin that provides it")


def modalities_from_reference(ref_config: Mapping[str, Any], installed: ModalitySet | None = None, *,
                              missing: str = "generic") -> tuple[ModalitySet, dict[str, str], dict[str, int]]:
    """(ModalitySet, reference name → our name, our name → vocab size) for a reference config.

    ``missing``: ``"generic"`` synthesizes a spec for a name no installed plugin claims; ``"error"`` raises
    an error naming the plugin to install."""
    if missing not in ("generic", "error"):
        raise ValueError(f"missing must be 'generic' or 'error', got {missing!r}")
    if installed is None:
        from fourm_registry import get_modalities

        installed = get_modalities()
    specs, names, vocab = [], {}, {}
    for ref_name, info in ref_config["modalities"].items():
        base = table.base_name(ref_name)
        if ref_name in installed:  # name or alias of an installed plugin
            spec = _adapt_installed(installed[ref_name], ref_name, info)
            log.info("reference modality %r -> installed %r (%s)", ref_name, spec.name, spec.plugin)
        elif base != ref_name and base in installed:
            spec = _adapt_installed(installed[base], ref_name, info, rename=True)
            log.info("reference modality %r -> installed %r at grid %s (%s)", ref_name, spec.name, spec.grid,
                     spec.plugin)
        elif missing == "error":
            raise _missing_plugin(ref_name)
        else:
            spec = _synthesize_spec(ref_name, info)
        specs.append(spec)
        names[ref_name] = spec.name
        if info.get("vocab_size") is not None:
            vocab[spec.name] = int(info["vocab_size"])
    return ModalitySet(specs), names, vocab
