"""Reference state dicts ↔ fourm :class:`~fourm_core.model.FourM` parameters.

Key scheme differences handled here:

* modality names inside ``encoder_embeddings.<m>.`` / ``decoder_embeddings.<m>.`` (reference → fourm names);
* ``emb_proj`` of ``seq_emb`` modalities is fourm's ``proj``;
* a shared modality embedding: the reference file keeps it under either side (released checkpoints keep the
  decoder's copy and drop the encoder's, listing the dropped name in the safetensors metadata); fourm holds it
  once, on the encoder side;
* sin-cos tables (buffers; 512 rows for 1-D ones) are checked against ours, not loaded; bias-free LayerNorms'
  zero ``.bias`` buffers are checked to be zero and skipped; untied image decoders' unused input tables skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ...model import FourM
from ...model.embeddings import ProjEncoderEmbedding
from .config import ML4MImportError

_SIDES = ("encoder_embeddings.", "decoder_embeddings.")
#: reference sub-key → fourm sub-key inside an embedding module
_SUBKEYS = {"emb_proj.": "proj."}


def _rename(key: str, names: Mapping[str, str]) -> str:
    for side in _SIDES:
        if key.startswith(side):
            rest = key[len(side):]
            # '@' is common in reference names: match the longest known prefix
            for ref in sorted(names, key=len, reverse=True):
                if rest.startswith(ref + "."):
                    sub = rest[len(ref) + 1:]
                    for old, new in _SUBKEYS.items():
                        if sub.startswith(old):
                            sub = new + sub[len(old):]
                    return f"{side}{names[ref]}.{sub}"
            raise ML4MImportError(f"state dict key {key!r} names a modality that is not in the reference config")
    return key


def _shared_counterpart(k: str, ours: Mapping[str, Tensor]) -> str | None:
    """fourm's name of a shared modality embedding stored under the other side (decoder → encoder)."""
    if k.startswith("decoder_embeddings.") and k.endswith(".mod_emb"):
        other = "encoder_embeddings." + k[len("decoder_embeddings."):]
        return other if other in ours else None
    return None


def _classify(key: str, names: Mapping[str, str], model: FourM, ours: Mapping[str, Tensor],
              buffers: Mapping[str, Tensor]) -> tuple[str, str]:
    """(what the reference ``key`` is to ``model``, fourm key): ``param``, ``buffer`` (a sin-cos table),
    ``zero_bias`` (a bias the fourm model does not have: must be zero), ``unused`` (untied image decoders'
    input table) or ``unknown``."""
    k = _rename(key, names)
    if k not in ours and k not in buffers:
        k = _shared_counterpart(k, ours) or k
    if k in ours:
        return "param", k
    if k in buffers:
        return "buffer", k
    if k.endswith(".bias") and k[: -len(".bias")] + ".weight" in ours:
        return "zero_bias", k
    if (k.startswith("decoder_embeddings.") and k.endswith(".token_emb.weight")
            and not model.config.tie_output_embeddings):
        return "unused", k
    return "unknown", k


def reference_key_problems(model: FourM, shapes: Mapping[str, Sequence[int]], names: Mapping[str, str]) -> list[str]:
    """What keeps a reference state dict with these key → shape entries from loading into ``model`` (no values
    needed: the model may live on the meta device). Empty when every key maps and every parameter is covered."""
    ours = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    problems, covered = [], set()
    for key, shape in shapes.items():
        try:
            what, k = _classify(key, names, model, ours, buffers)
        except ML4MImportError as exc:
            problems.append(str(exc))
            continue
        if what == "param":
            covered.add(k)
            if tuple(ours[k].shape) != tuple(shape):
                problems.append(f"{key} {tuple(shape)} vs fourm {k} {tuple(ours[k].shape)}")
        elif what == "buffer" and tuple(buffers[k].shape[::2]) != tuple(shape)[::2]:  # rows may differ
            problems.append(f"{key} {tuple(shape)} vs fourm table {k} {tuple(buffers[k].shape)}")
        elif what == "unknown":
            problems.append(f"{key} has no counterpart (fourm {k})")
    problems += [f"fourm parameter {k} has no reference key" for k in sorted(set(ours) - covered)]
    return problems


def load_reference_state_dict(model: FourM, state: Mapping[str, Tensor], names: Mapping[str, str],
                              *, tied: Mapping[str, str] | None = None) -> None:
    """Copy a reference state dict (reference modality names) into ``model`` (float32, strict).

    ``tied``: dropped name → kept name of tied tensors (released files' metadata); used to check that both
    sides of a shared embedding end up in one fourm parameter. Sin-cos tables and the zero bias buffers of
    bias-free LayerNorms are checked against ours and otherwise ignored (ours are rebuilt)."""
    ours = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    loaded: set[str] = set()
    for key, value in state.items():
        what, k = _classify(key, names, model, ours, buffers)
        value = value.float()
        if what == "param":
            p = ours[k]
            if tuple(p.shape) != tuple(value.shape):
                raise ML4MImportError(f"reference {key!r} has shape {tuple(value.shape)}, fourm {k!r} {tuple(p.shape)}")
            if k in loaded and not torch.equal(p.detach(), value):
                raise ML4MImportError(f"reference {key!r} and another tensor both map to fourm's shared {k!r} "
                                      f"but differ: the checkpoint does not share that embedding")
            with torch.no_grad():
                p.copy_(value)
            loaded.add(k)
        elif what == "buffer":  # sin-cos table: ours may have more rows, the reference's 512 may be more than ours
            buf = buffers[k]
            rows = min(buf.shape[1], value.shape[1])
            if buf.shape[2] != value.shape[2] or (buf[:, :rows] - value[:, :rows]).abs().max() > 1e-4:
                raise ML4MImportError(f"reference position table {key!r} differs from fourm's sin-cos table {k!r}")
            buf[:, :rows] = value[:, :rows]
        elif what == "zero_bias":
            if value.abs().max() != 0:
                raise ML4MImportError(f"reference {key!r} is a non-zero bias but the fourm model built from the "
                                      f"config has none there (norm_bias / qkv_bias / proj_bias / mlp_bias?)")
        elif what == "unknown":
            raise ML4MImportError(f"reference state dict key {key!r} (fourm {k!r}) has no counterpart in the model")
    for dropped, kept in (tied or {}).items():
        if dropped in state or kept not in state:
            continue
        a, b = (_classify(x, names, model, ours, buffers)[1] for x in (dropped, kept))
        if a != b:
            raise ML4MImportError(f"the checkpoint ties {dropped!r} to {kept!r}, but fourm keeps them apart "
                                  f"({a!r}, {b!r}): share_modality_embeddings must be true")
    missing = sorted(set(ours) - loaded)
    if missing:
        raise ML4MImportError(f"reference state dict lacks {len(missing)} parameter(s) the model needs: "
                              f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")


def to_reference_state_dict(model: FourM, names: Mapping[str, str], *, buffers: bool = True) -> dict[str, Tensor]:
    """The inverse map: our parameters (and sin-cos buffers) under reference key names (tied aliases omitted)."""
    back = {v: k for k, v in names.items()}
    inverse_sub = {v: k for k, v in _SUBKEYS.items()}
    out = {}
    for k, t in [*model.named_parameters(), *(model.named_buffers() if buffers else ())]:
        key = k
        for side in _SIDES:
            if k.startswith(side):
                mod, _, rest = k[len(side):].partition(".")
                table = getattr(model, side[:-1])
                emb = table[mod] if mod in table else None
                if isinstance(emb, ProjEncoderEmbedding):  # the reference calls its projection emb_proj
                    for old, new in inverse_sub.items():
                        if rest.startswith(old):
                            rest = new + rest[len(old):]
                key = f"{side}{back.get(mod, mod)}.{rest}"
        out[key] = t.detach().clone()
    return out
