"""Import checkpoints of the reference 4M implementation (apple/ml-4m) and verify parity with it.

A reference checkpoint is a state dict in the reference's parameter names plus a *reference config*, a dict
(or ``config.json``) with:

* ``model``: ``dim``, ``encoder_depth``, ``decoder_depth``, ``num_heads``, ``mlp_ratio`` / ``mlp_hidden_dim``,
  ``act`` + ``gated_mlp``, ``qk_norm``, ``qkv_bias``, ``proj_bias``, ``mlp_bias``, ``norm: {eps, bias}``,
  ``num_register_tokens``, ``share_modality_embeddings``, ``decoder_share_embedding``, ``decoder_sep_mask``,
  ``decoder_causal_mask``;
* ``modalities``: reference name → ``{type: img|seq, vocab_size, max_tokens, in_encoder, in_decoder,
  encoder_embedding: {class, sincos_pos_emb, patch_size, image_size, num_channels, ...}}``.

Reference modality names (``tok_depth@224``) map to installed plugins' modalities through
``ModalitySpec.aliases`` (or an equal name); modalities no installed plugin claims get a generic spec with a
sanitised name (``tok_pose@224`` → ``tok_pose_224``). Nothing here depends on a particular conformance set.

Command line::

    python -m fourm_core.compat.ml4m verify DIR      # DIR: config.json, weights/inputs/outputs.safetensors
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors.torch import load_file
from torch import Tensor

from fourm_registry import ModalitySet, ModalitySpec

from ..checkpoint import SYNTHESIZED_PLUGIN
from ..kinds import adapter_for
from ..model import FourM, ModelConfig

log = logging.getLogger(__name__)

SERIALIZER = "fourm_core.compat.serializer:PlainTextSerializer"
DEFAULT_TOLERANCES = {"losses_abs": 1e-4, "activations_abs": 1e-4, "logits_abs": 1e-4, "nll_abs": 1e-4,
                      "grads_rel": 1e-3}


class ML4MImportError(ValueError):
    """A reference config or state dict cannot be mapped onto a fourm model."""


# ----------------------------------------------------------------------------------------------- config
def sanitize_name(ref_name: str) -> str:
    """A valid fourm modality name for a reference name: ``tok_pose@224`` → ``tok_pose_224``."""
    name = re.sub(r"[^a-z0-9_]+", "_", ref_name.lower()).strip("_")
    name = re.sub(r"_+", "_", name)
    if not name or not name[0].isalpha():
        name = f"m_{name}"
    return name


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
    )
    hidden = model.get("mlp_hidden_dim")
    if hidden is not None and int(hidden) != cfg.mlp_hidden_dim:
        raise ML4MImportError(f"reference mlp_hidden_dim {hidden} differs from fourm's {cfg.mlp_hidden_dim} for "
                              f"dim {cfg.dim}, mlp_ratio {cfg.mlp_ratio}, act {cfg.act}")
    if model.get("head_dim") is not None and int(model["head_dim"]) != cfg.head_dim:
        raise ML4MImportError(f"reference head_dim {model['head_dim']} != dim/num_heads = {cfg.head_dim}")
    return cfg


def _emb_info(info: Mapping[str, Any]) -> Mapping[str, Any]:
    return info.get("encoder_embedding") or info.get("decoder_embedding") or {}


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
    if typ == "img":
        size = emb.get("image_size") or [224, 224]
        patch = emb.get("patch_size") or [16, 16]
        grid = (int(size[0]) // int(patch[0]), int(size[1]) // int(patch[1]))
        if info.get("vocab_size") is None:
            if int(patch[0]) != int(patch[1]):
                raise ML4MImportError(f"reference modality {ref_name!r}: non-square patches {patch} are not supported")
            return ModalitySpec(kind="pixels", grid=grid, patch_size=int(patch[0]),
                                channels=int(emb.get("num_channels", 3)), **{**common, "decoder": False})
        return ModalitySpec(kind="image", vocab_size=int(info["vocab_size"]), grid=grid, **common)
    raise ML4MImportError(f"reference modality {ref_name!r} has type {typ!r}; supported: 'img', 'seq'")


def _adapt_installed(spec: ModalitySpec, ref_name: str, info: Mapping[str, Any]) -> ModalitySpec:
    """An installed plugin's spec adjusted to the reference modality (sides, positions, sequence length)."""
    emb = _emb_info(info)
    typ = info.get("type")
    ok = {"seq": ("sequence",), "img": ("image", "vector", "pixels")}.get(typ, ())
    if spec.kind not in ok:
        raise ML4MImportError(f"reference modality {ref_name!r} ({typ}) maps to the installed modality "
                              f"{spec.name!r} of {spec.plugin}, whose kind {spec.kind!r} does not fit")
    changes: dict[str, Any] = dict(encoder=bool(info.get("in_encoder", True)),
                                   decoder=bool(info.get("in_decoder", False)),
                                   pos_emb="sincos" if emb.get("sincos_pos_emb", True) else "learned")
    kind = adapter_for(spec)
    if kind.autoregressive:  # variable length: the reference's max_tokens is its max_length
        changes["max_length"] = int(info["max_tokens"])
        changes["num_tokens"] = None
    elif int(info.get("max_tokens", spec.num_tokens)) != spec.num_tokens:
        raise ML4MImportError(f"reference modality {ref_name!r} has {info.get('max_tokens')} tokens but the installed "
                              f"modality {spec.name!r} ({spec.plugin}) has {spec.num_tokens}")
    if changes["pos_emb"] == "sincos" and typ == "img" and len(kind.position_layout(spec, None)) != 2:
        raise ML4MImportError(f"reference modality {ref_name!r} uses 2-D sin-cos positions; the installed "
                              f"modality {spec.name!r} is a vector (1-D positions)")
    return attrs.evolve(spec, **changes)


def modalities_from_reference(ref_config: Mapping[str, Any],
                              installed: ModalitySet | None = None) -> tuple[ModalitySet, dict[str, str], dict[str, int]]:
    """(ModalitySet, reference name → our name, our name → vocab size) for a reference config."""
    if installed is None:
        from fourm_registry import get_modalities

        installed = get_modalities()
    specs, names, vocab = [], {}, {}
    for ref_name, info in ref_config["modalities"].items():
        spec = None
        if ref_name in installed:  # name or alias of an installed plugin
            spec = _adapt_installed(installed[ref_name], ref_name, info)
            log.info("reference modality %r -> installed %r (%s)", ref_name, spec.name, spec.plugin)
        else:
            spec = _synthesize_spec(ref_name, info)
        specs.append(spec)
        names[ref_name] = spec.name
        if info.get("vocab_size") is not None:
            vocab[spec.name] = int(info["vocab_size"])
    return ModalitySet(specs), names, vocab


# ----------------------------------------------------------------------------------------------- weights
def _rename(key: str, names: Mapping[str, str]) -> str:
    for side in ("encoder_embeddings.", "decoder_embeddings."):
        if key.startswith(side):
            rest = key[len(side):]
            # reference names may contain '.'? they do not, but '@' is common: match the longest known prefix
            for ref in sorted(names, key=len, reverse=True):
                if rest.startswith(ref + "."):
                    return side + names[ref] + rest[len(ref):]
            raise ML4MImportError(f"state dict key {key!r} names a modality that is not in the reference config")
    return key


def load_reference_state_dict(model: FourM, state: Mapping[str, Tensor], names: Mapping[str, str]) -> None:
    """Copy a reference state dict (reference modality names) into ``model`` (float32, strict).

    Tied aliases absent from the file are fine (our model ties them itself). Sin-cos tables and the zero bias
    buffers of bias-free LayerNorms are checked against ours and otherwise ignored (ours are rebuilt)."""
    ours = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    loaded: set[str] = set()
    for key, value in state.items():
        k = _rename(key, names)
        value = value.float()
        if k in ours:
            p = ours[k]
            if tuple(p.shape) != tuple(value.shape):
                raise ML4MImportError(f"reference {key!r} has shape {tuple(value.shape)}, fourm {k!r} {tuple(p.shape)}")
            with torch.no_grad():
                p.copy_(value)
            loaded.add(k)
        elif k in buffers:  # sin-cos table: ours may have more rows
            buf = buffers[k]
            rows = min(buf.shape[1], value.shape[1])
            if buf.shape[2] != value.shape[2] or (buf[:, :rows] - value[:, :rows]).abs().max() > 1e-4:
                raise ML4MImportError(f"reference position table {key!r} differs from fourm's sin-cos table {k!r}")
            buf[:, :rows] = value[:, :rows]
        elif k.endswith(".bias") and value.abs().max() == 0 and k[: -len(".bias")] + ".weight" in ours:
            continue  # zero bias buffer of a bias-free LayerNorm
        elif (k.startswith("decoder_embeddings.") and k.endswith(".token_emb.weight")
              and not model.config.tie_output_embeddings):
            continue  # untied reference image decoders keep an unused input table
        else:
            raise ML4MImportError(f"reference state dict key {key!r} (fourm {k!r}) has no counterpart in the model")
    missing = sorted(set(ours) - loaded)
    if missing:
        raise ML4MImportError(f"reference state dict lacks {len(missing)} parameter(s) the model needs: "
                              f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")


def to_reference_state_dict(model: FourM, names: Mapping[str, str]) -> dict[str, Tensor]:
    """The inverse map: our parameters and sin-cos buffers under reference key names (tied aliases omitted)."""
    back = {v: k for k, v in names.items()}
    out = {}
    for k, t in [*model.named_parameters(), *model.named_buffers()]:
        key = k
        for side in ("encoder_embeddings.", "decoder_embeddings."):
            if k.startswith(side):
                mod, _, rest = k[len(side):].partition(".")
                key = f"{side}{back.get(mod, mod)}.{rest}"
        out[key] = t.detach().clone()
    return out


def _read_config(config: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ML4MImportError(f"reference config {path} not found") from None


def load_ml4m_checkpoint(path_or_state_dict: str | Path | Mapping[str, Tensor],
                         config: Mapping[str, Any] | str | Path,
                         *, installed: ModalitySet | None = None) -> FourM:
    """A :class:`FourM` holding the weights of a reference 4M checkpoint (e.g. to fine-tune it).

    ``path_or_state_dict``: a ``.safetensors`` file, a directory holding ``weights.safetensors`` /
    ``model.safetensors``, or a state dict. ``config``: the reference config (dict, ``config.json`` path or its
    directory). ``installed``: the modalities to map names through (default: the installed plugins)."""
    ref = _read_config(config)
    if "model" not in ref or "modalities" not in ref:
        raise ML4MImportError("reference config needs 'model' and 'modalities' sections (the reference's config layout)")
    if isinstance(path_or_state_dict, Mapping):
        state = dict(path_or_state_dict)
    else:
        p = Path(path_or_state_dict)
        if p.is_dir():
            cands = [p / "weights.safetensors", p / "model.safetensors"]
            p = next((c for c in cands if c.exists()), cands[0])
        if not p.exists():
            raise ML4MImportError(f"reference weights {p} not found")
        state = load_file(str(p))
    cfg = model_config_from_reference(ref["model"])
    mods, names, vocab = modalities_from_reference(ref, installed)
    model = FourM(mods, cfg, vocab_sizes=vocab)
    load_reference_state_dict(model, state, names)
    model.ml4m_names = dict(names)  # reference name -> our name, for callers mapping batches
    return model


def mod_dict_from_reference(inputs: Mapping[str, Tensor], names: Mapping[str, str]) -> dict[str, dict[str, Tensor]]:
    """``<ref>.<field>`` tensors → a mod_dict keyed by our modality names."""
    out: dict[str, dict[str, Tensor]] = {}
    for key, value in inputs.items():
        ref, _, fld = key.rpartition(".")
        if ref not in names:
            raise ML4MImportError(f"input {key!r} names modality {ref!r}, which is not in the reference config")
        out.setdefault(names[ref], {})[fld] = value
    return out


# ----------------------------------------------------------------------------------------------- verify
@attrs.define
class _Worst:
    tol: float
    value: float = 0.0
    where: str = "-"

    def add(self, err: float, where: str) -> None:
        if not math.isfinite(err) or err > self.value:
            self.value = err if math.isfinite(err) else float("inf")
            self.where = where

    @property
    def ok(self) -> bool:
        return self.value <= self.tol


def _abs(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _rel(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.double() - b.double()).norm() / max(float(b.double().norm()), 1e-12))


def verify(directory: str | Path, *, installed: ModalitySet | None = None) -> tuple[bool, str]:
    """Run the reference batch of ``directory`` and compare every quantity of ``outputs.safetensors``.

    Returns (passed, one-line summary)."""
    d = Path(directory)
    ref = _read_config(d)
    tol = {**DEFAULT_TOLERANCES, **ref.get("tolerances_suggested", {})}
    model = load_ml4m_checkpoint(d / ref.get("weights", {}).get("file", "weights.safetensors"), ref,
                                 installed=installed)
    names: dict[str, str] = model.ml4m_names
    model.eval()
    inputs = load_file(str(d / "inputs.safetensors"))
    expected = load_file(str(d / "outputs.safetensors"))
    md = mod_dict_from_reference(inputs, names)
    n_enc = ref.get("num_encoder_tokens")
    n_dec = ref.get("num_decoder_tokens")
    model.zero_grad(set_to_none=True)
    out = model(md, num_encoder_tokens=n_enc, num_decoder_tokens=n_dec, loss_type="mod_reference",
                return_details=True)
    out.loss.backward()
    with torch.no_grad():
        out_tok = model(md, num_encoder_tokens=n_enc, num_decoder_tokens=n_dec, loss_type="token_reference")

    w = {k: _Worst(tol[t]) for k, t in [("loss", "losses_abs"), ("encoder", "activations_abs"),
                                         ("decoder", "activations_abs"), ("nll", "nll_abs"),
                                         ("logits", "logits_abs"), ("grad", "grads_rel")]}
    structure: list[str] = []
    seen: set[str] = set()

    def exp(key: str) -> Tensor:
        seen.add(key)
        return expected[key]

    # losses
    if "loss.total_mod" in expected:
        w["loss"].add(_abs(out.loss.detach().reshape(1), exp("loss.total_mod").reshape(1)), "loss.total_mod")
    if "loss.total_token" in expected:
        w["loss"].add(_abs(out_tok.loss.reshape(1), exp("loss.total_token").reshape(1)), "loss.total_token")
    for ref_name, ours in names.items():
        key = f"loss.{ref_name}"
        if key in expected:
            if ours not in out.losses:
                structure.append(f"no loss for {ref_name}")
                continue
            w["loss"].add(_abs(out.losses[ours].detach().reshape(1), exp(key).reshape(1)), key)

    # encoder, compared by (sample, modality, position)
    enc = out.encoder
    if "encoder.output" in expected:
        e_out = exp("encoder.output")
        e_mod = exp("encoder.slot_modality_index").long()
        e_pos = exp("encoder.slot_position").long()
        e_pad = exp("encoder.padding_mask").bool()
        for key in ("encoder.mod_id",):
            if key in expected:
                ids = exp(key)
                from fourm_registry import modality_id

                order = ref["encoder_modality_order"]
                want = torch.tensor([modality_id(n) for n in order])[e_mod.clamp(min=0)].masked_fill(e_pad, -1)
                if not torch.equal(ids.long(), want.long()):
                    structure.append("encoder.mod_id disagrees with the reference modality ids")
        order = ref["encoder_modality_order"]
        our_index = {m: i for i, m in enumerate(enc.modalities)}
        if e_out.shape != enc.hidden.shape:
            structure.append(f"encoder.output shape {tuple(e_out.shape)} vs fourm {tuple(enc.hidden.shape)}")
        else:
            for b in range(e_out.shape[0]):
                lookup = {(int(m), int(p)): s for s, (m, p) in
                          enumerate(zip(enc.modality_index[b].tolist(), enc.position[b].tolist())) if m >= 0}
                our_pad = enc.padding_mask[b].nonzero().flatten().tolist()
                ref_pad = e_pad[b].nonzero().flatten().tolist()
                if len(our_pad) != len(ref_pad):
                    structure.append(f"sample {b}: {len(ref_pad)} reference padding slots, fourm {len(our_pad)}")
                    continue
                for s in range(e_out.shape[1]):
                    if e_pad[b, s]:
                        continue
                    ref_mod = order[int(e_mod[b, s])]
                    slot = lookup.get((our_index.get(names[ref_mod], -1), int(e_pos[b, s])))
                    if slot is None:
                        structure.append(f"sample {b}: {ref_mod}[{int(e_pos[b, s])}] not among fourm's encoder slots")
                        break
                    w["encoder"].add(_abs(enc.hidden[b, slot].detach(), e_out[b, s]), f"encoder {ref_mod}[{int(e_pos[b, s])}]")
                for rs, os_ in zip(ref_pad, our_pad):
                    w["encoder"].add(_abs(enc.hidden[b, os_].detach(), e_out[b, rs]), f"encoder padding slot {b},{rs}")
        for key in ("encoder.padding_mask", "encoder.slot_modality_index", "encoder.slot_position"):
            seen.add(key)

    # decoder rows per modality, compared by (sample, position)
    for ref_name, ours in names.items():
        pre = f"decoder.{ref_name}."
        if pre + "output" not in expected:
            continue
        rows = (out.decoder_rows or {}).get(ours)
        r_b, r_p = exp(pre + "row_batch").long(), exp(pre + "row_position").long()
        if rows is None:
            if r_b.numel():
                structure.append(f"fourm has no decoder rows for {ref_name}")
            continue
        lookup = {(int(b), int(p)): i for i, (b, p) in enumerate(zip(rows.batch.tolist(), rows.position.tolist()))}
        idx = [lookup.get((int(b), int(p)), -1) for b, p in zip(r_b, r_p)]
        if -1 in idx or len(lookup) != len(idx):
            structure.append(f"{ref_name}: decoder rows differ ({len(idx)} reference, {len(lookup)} fourm)")
            continue
        ix = torch.tensor(idx, dtype=torch.long)
        logits = rows.logits.detach()[ix]
        w["decoder"].add(_abs(rows.hidden.detach()[ix], exp(pre + "output")), pre + "output")
        if pre + "target_ids" in expected and not torch.equal(rows.targets[ix].long(), exp(pre + "target_ids").long()):
            structure.append(f"{ref_name}: target ids differ")
        lse = logits.logsumexp(-1)
        if pre + "logsumexp" in expected:
            w["nll"].add(_abs(lse, exp(pre + "logsumexp")), pre + "logsumexp")
        if pre + "nll" in expected:
            nll = lse - logits.gather(1, rows.targets[ix].long()[:, None])[:, 0]
            w["nll"].add(_abs(nll, exp(pre + "nll")), pre + "nll")
        if pre + "logits_rows" in expected:
            li = exp(pre + "logits_row_index").long()
            w["logits"].add(_abs(logits[li], exp(pre + "logits_rows")), pre + "logits_rows")

    # gradients (reference names)
    params = dict(model.named_parameters())
    tied = ref.get("weights", {}).get("tied_aliases", {})

    def our_param(ref_key: str):
        k = _rename(tied.get(ref_key, ref_key), names)
        return params.get(k)

    for key in expected:
        if key.startswith("grad.") and key != "grad.norms":
            pname = key[len("grad."):]
            p = our_param(pname)
            if p is None:
                structure.append(f"{key}: no such parameter")
                continue
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            w["grad"].add(_rel(g, exp(key)), key)
    if "grad.norms" in expected:
        norms = exp("grad.norms")
        names_list = ref.get("grad_norm_names", [])
        if len(names_list) != norms.numel():
            structure.append("grad.norms and grad_norm_names differ in length")
        else:
            mine = []
            for n in names_list:
                p = our_param(n)
                mine.append(float("nan") if p is None else (0.0 if p.grad is None else float(p.grad.norm())))  # fp32 norm, as the reference
            w["grad"].add(_rel(torch.tensor(mine, dtype=torch.float64), norms.double()), "grad.norms")
    unknown = sorted(k for k in expected if k not in seen and not k.startswith("grad."))
    if unknown:
        structure.append(f"unchecked output keys: {', '.join(unknown[:5])}")
    passed = not structure and all(x.ok for x in w.values())
    parts = [f"{k} {x.value:.2e}/{x.tol:.0e}" for k, x in w.items()]
    worst = max(w.values(), key=lambda x: x.value / x.tol if x.tol else 0.0)
    summary = (f"ml4m verify {d.name}: {'PASS' if passed else 'FAIL'} | " + " | ".join(parts)
               + f" | worst rel-to-tol: {worst.where}")
    if structure:
        summary += " | problems: " + "; ".join(structure[:5])
    return passed, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fourm_core.compat.ml4m",
                                     description="Reference 4M (apple/ml-4m) checkpoint tools")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="compare fourm with reference outputs stored in DIR")
    v.add_argument("directory")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    try:
        passed, summary = verify(args.directory)
    except ML4MImportError as exc:
        print(f"ml4m verify {args.directory}: ERROR {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
