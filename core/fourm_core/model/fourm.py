"""The 4M encoder-decoder (:class:`FourM`), assembled from a :class:`fourm_registry.ModalitySet`.

Input: a ``mod_dict`` ``{name: {"tensor", "input_mask", "target_mask", "decoder_attention_mask"}}`` with a leading
batch axis, boolean masks **True = masked / not used** (docs/architecture.md; the reference's layout).
Modalities of the model absent from a mod_dict are skipped.

Training forward::

    out = model(mod_dict, num_encoder_tokens=128, num_decoder_tokens=128, loss_type="mod")
    out.loss.backward(); out.losses["depth"]

Generation interface
--------------------
The generation code (``fourm_core.generation``) drives the model through these stable methods:

``model.encode(mod_dict, num_encoder_tokens=None) -> EncoderOutput``
    Runs the encoder on the visible (``input_mask`` False) tokens. ``EncoderOutput.hidden`` (B, N, D) is
    after ``encoder_norm``; ``padding_mask`` (B, N) True = padding slot; ``pos`` (B, N, D) the additive
    (position + modality) embedding of each kept slot (zero at padding); ``modality_index`` / ``position``
    (B, N) say which modality (index into ``EncoderOutput.modalities``) and which token of it each slot holds
    (−1 at padding). ``num_encoder_tokens=None`` keeps every visible token of the batch.
``model.decoder_context(enc) -> DecoderCache``
    ``decoder_proj_context(hidden) + pos``, and every decoder layer's cross-attention keys/values, computed
    **once**; the cache also holds each layer's self-attention K/V for incremental decoding (empty at first).
    ``cache.repeat_interleave(n)`` / ``cache.index_select(idx)`` reshape its batch (e.g. guidance, beams).
``model.decoder_queries(modality, positions, tokens=None) -> (x, e)``
    Query inputs (B, M, D) and additive embeddings (B, M, D) for one modality at integer ``positions`` (B, M):
    ``image`` / ``vector``: x = ``mask_token``, e = pos_emb[positions] + mod_emb; ``sequence``: x =
    decoder token_emb[tokens] (teacher forcing / already generated tokens), e = pos_emb[positions] + mod_emb
    (positions ≥ ``max_length`` use position 0, as in training).
``model.decode(x, e, cache, *, self_allowed=None, causal=False, use_cache=False) -> hidden (B, M, D)``
    Runs the decoder blocks on ``x + e`` and returns the output after ``decoder_norm``. ``self_allowed``
    (bool, broadcastable to (B, M, past+M), **True = may attend**) restricts self-attention; with
    ``causal=True`` and no mask, query i attends every cached key and queries ≤ i. With ``use_cache=True`` the
    queries' self-attention keys/values are appended to ``cache`` (so later steps attend them): feed a
    sequence prompt once, then one token per step (generation runs such steps on CPU through the fast path of
    ``fourm_core.accel``, the same maths). ``cache.self_length`` is the number of cached positions;
    ``cache.reset_self()`` empties the self-attention part and keeps the cross-attention part.
``model.logits(modality, hidden) -> (..., V)``
    Output logits of ``modality`` for decoder outputs ``hidden`` (..., D).

Decoder attention in training: a query never attends another modality's slots; inside a modality the
reference's ``decoder_attention_mask`` rule applies: a target slot attends the modality's target slots whose
rank (among its targets) is below the running sum of ``decoder_attention_mask`` up to that slot (the target
count at the first slot: bidirectional, the default for image/vector; ones: causal, the default for sequences).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fourm_registry import ModalitySet, ModalitySpec

from .. import checkpoint
from ..kinds import ModDictError, adapter_for
from .blocks import DecoderBlock, EncoderBlock, layer_norm
from .config import ModelConfig
from .embeddings import (
    PatchEncoderEmbedding,
    TokenDecoderEmbedding,
    _trunc_normal,
    build_encoder_embedding,
    xavier_qkv_,
)
from .outputs import DecoderCache, DecoderRows, EncoderOutput, FourMOutput

log = logging.getLogger(__name__)

LOSS_TYPES = ("mod", "mod_reference", "token_reference")


def _key_allowed(padding_mask: Tensor) -> Tensor | None:
    """(B, N) padding mask → SDPA mask (B, 1, 1, N) True = may attend, or None when nothing is padding.

    A sample made only of padding attends everything (its outputs are meaningless but finite)."""
    if not bool(padding_mask.any()):
        return None
    allowed = ~padding_mask
    allowed = allowed | padding_mask.all(dim=1, keepdim=True)
    return allowed[:, None, None, :]


def _select_slots(masks: Tensor, count: int) -> Tensor:
    """Per sample, the indices of the first ``count`` slots after a stable valid-first sort (B, count)."""
    return torch.argsort(masks.to(torch.uint8), dim=1, stable=True)[:, :count]


def plain_target_loss(hidden: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of the logits ``hidden @ weight.T`` ((R, D) @ (D, V)) against ``targets`` (R,)."""
    return F.cross_entropy(F.linear(hidden, weight), targets)


class FourM(nn.Module):
    """4M encoder-decoder over the modalities of a :class:`ModalitySet` (build with :func:`build_model`).

    ``target_loss(hidden, weight, targets)`` is the per-modality training loss of the forward (when no caller
    asks for the logits): :func:`plain_target_loss` by default; ``fourm_core.accel.prepare_training`` swaps in
    a fused CPU kernel of the same maths.
    """

    target_loss = staticmethod(plain_target_loss)

    def __init__(self, modalities: ModalitySet, config: ModelConfig, vocab_sizes: Mapping[str, int] | None = None):
        super().__init__()
        self.config = config
        self.modalities = modalities
        vocab_sizes = dict(vocab_sizes or {})
        unknown = sorted(set(vocab_sizes) - set(modalities.names))
        if unknown:
            raise ValueError(f"vocab_sizes names unknown modalities {unknown}; model modalities: {', '.join(modalities.names)}")
        self.vocab_sizes: dict[str, int] = {}
        for spec in modalities.specs:
            if adapter_for(spec).discrete:
                v = int(vocab_sizes.get(spec.name, spec.vocab_size))
                if v <= 0:
                    raise ValueError(f"modality {spec.name!r}: vocab size must be positive, got {v}")
                self.vocab_sizes[spec.name] = v
        self.encoder_modalities = tuple(s.name for s in modalities.specs if s.encoder)
        self.decoder_modalities = tuple(s.name for s in modalities.specs if s.decoder)
        if not self.encoder_modalities:
            raise ValueError(f"no modality of {modalities!r} is used by the encoder; a 4M model needs at least one")

        d = config.dim
        self.encoder_embeddings = nn.ModuleDict(
            {m: build_encoder_embedding(modalities[m], config, self.vocab_sizes.get(m)) for m in self.encoder_modalities})
        self.decoder_embeddings = nn.ModuleDict({
            m: TokenDecoderEmbedding(modalities[m], config, self.vocab_sizes[m],
                                     own_mod_emb=not (config.share_modality_embeddings and m in self.encoder_embeddings))
            for m in self.decoder_modalities})
        self.encoder = nn.ModuleList([EncoderBlock(config) for _ in range(config.encoder_depth)])
        self.encoder_norm = layer_norm(d, config)
        self.decoder_proj_context = nn.Linear(d, d, bias=True)
        self.decoder = nn.ModuleList([DecoderBlock(config) for _ in range(config.decoder_depth)])
        self.decoder_norm = layer_norm(d, config)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_tokens = (nn.Parameter(torch.zeros(1, config.num_register_tokens, d))
                                if config.num_register_tokens else None)
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """MAE-style init: Xavier-uniform linears (fused qkv / kv as separate matrices), zero biases, unit
        LayerNorms, truncated-normal (std ``init_std``) tables, mod/learned-pos embeddings and special tokens."""
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Linear):
                if name.endswith(".qkv"):
                    xavier_qkv_(mod, 3)
                elif name.endswith(".kv"):
                    xavier_qkv_(mod, 2)
                else:
                    nn.init.xavier_uniform_(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.LayerNorm):
                if mod.weight is not None:
                    nn.init.ones_(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        for emb in [*self.encoder_embeddings.values(), *self.decoder_embeddings.values()]:
            emb.reset_parameters_(self.config)
        _trunc_normal(self.mask_token.data, self.config.init_std)
        if self.register_tokens is not None:
            _trunc_normal(self.register_tokens.data, self.config.init_std)

    # ------------------------------------------------------------------ helpers
    def _mod_emb(self, modality: str, side: str) -> Tensor:
        if side == "decoder":
            own = self.decoder_embeddings[modality].mod_emb
            if own is not None:
                return own
        return self.encoder_embeddings[modality].mod_emb

    def _entry(self, mod_dict: Mapping[str, Any], name: str) -> Mapping[str, Tensor]:
        entry = mod_dict[name]
        if not isinstance(entry, Mapping) or "tensor" not in entry:
            raise ModDictError(f"mod_dict[{name!r}] must be a dict with at least a 'tensor' key, got {type(entry).__name__}")
        return entry

    def _check_mod_dict(self, mod_dict: Mapping[str, Any]) -> int:
        unknown = [m for m in mod_dict if m not in self.modalities.names]
        if unknown:
            raise ModDictError(f"mod_dict has modalities {unknown} that this model does not have; "
                               f"model modalities: {', '.join(self.modalities.names)}")
        batch = None
        for name in mod_dict:
            spec = self.modalities[name]
            entry = self._entry(mod_dict, name)
            t = entry["tensor"]
            n = adapter_for(spec).check_model_tensor(spec, t, self.vocab_sizes.get(name))
            if batch is None:
                batch = t.shape[0]
            elif t.shape[0] != batch:
                raise ModDictError(f"mod_dict[{name!r}] has batch size {t.shape[0]}, others have {batch}")
            for key in ("input_mask", "target_mask", "decoder_attention_mask"):
                if key in entry and entry[key] is not None and tuple(entry[key].shape) != (batch, n):
                    raise ModDictError(f"mod_dict[{name!r}][{key!r}] must have shape ({batch}, {n}), "
                                       f"got {tuple(entry[key].shape)}")
        if batch is None:
            raise ModDictError(f"mod_dict is empty; give at least one of {', '.join(self.modalities.names)}")
        return batch

    # ------------------------------------------------------------------ encoder
    def encode(self, mod_dict: Mapping[str, Any], num_encoder_tokens: int | None = None,
               *, _checked: bool = False) -> EncoderOutput:
        """Encode the visible tokens of ``mod_dict`` (see the module docstring)."""
        if not _checked:
            self._check_mod_dict(mod_dict)
        names = tuple(m for m in self.encoder_modalities
                      if m in mod_dict and mod_dict[m].get("input_mask") is not None)
        if not names:
            raise ModDictError(f"mod_dict has no encoder input (an 'input_mask' for one of "
                               f"{', '.join(self.encoder_modalities)})")
        masks, slot_mod, slot_pos = [], [], []
        for i, m in enumerate(names):
            mask = mod_dict[m]["input_mask"].bool()
            masks.append(mask)
            n = mask.shape[1]
            slot_mod.append(torch.full((n,), i, dtype=torch.long, device=mask.device))
            slot_pos.append(torch.arange(n, device=mask.device))
        mask_all = torch.cat(masks, dim=1)  # (B, S)
        b = mask_all.shape[0]
        if num_encoder_tokens is None:
            num_encoder_tokens = max(int((~mask_all).sum(1).max()), 1)
        num_encoder_tokens = min(num_encoder_tokens, mask_all.shape[1])  # never more slots than exist
        keep = _select_slots(mask_all, num_encoder_tokens)  # (B, N)
        padding = mask_all.gather(1, keep)  # (B, N)
        kmod = torch.cat(slot_mod)[keep]
        kpos = torch.cat(slot_pos)[keep]
        kmod = kmod.masked_fill(padding, -1)
        kpos = kpos.masked_fill(padding, -1)

        d = self.config.dim
        rows_b, rows_s, xs, es = [], [], [], []
        for i, m in enumerate(names):
            sel = kmod == i
            bi, si = sel.nonzero(as_tuple=True)
            if bi.numel() == 0:
                continue
            emb = self.encoder_embeddings[m]
            entry = mod_dict[m]
            pos = kpos[bi, si]
            t = entry["tensor"]
            if isinstance(emb, PatchEncoderEmbedding):
                values = emb.gather_patches(t, bi, pos)
            else:
                values = t[bi, pos]
            if emb.positions_count_visible:
                # position id = number of visible tokens before this slot
                pos_ids = ((~masks[i]).long().cumsum(1) - 1)[bi, pos]
            else:
                pos_ids = pos
            xs.append(emb.embed(values))
            es.append(emb.position(pos_ids) + emb.mod_emb[0])
            rows_b.append(bi)
            rows_s.append(si)
        ref = next(iter(self.parameters()))
        x = ref.new_zeros(b, num_encoder_tokens, d)
        e = ref.new_zeros(b, num_encoder_tokens, d)
        if xs:
            idx = (torch.cat(rows_b), torch.cat(rows_s))
            x = x.index_put(idx, torch.cat(xs).to(x.dtype))
            e = e.index_put(idx, torch.cat(es).to(e.dtype))

        h = x + e  # (B, N, D)
        pad = padding
        if self.register_tokens is not None:
            r = self.register_tokens.shape[1]
            h = torch.cat([self.register_tokens.expand(b, -1, -1), h], dim=1)
            pad = torch.cat([padding.new_zeros(b, r), padding], dim=1)
        allowed = _key_allowed(pad)
        for blk in self.encoder:
            h = blk(h, allowed)
        h = self.encoder_norm(h)
        if self.register_tokens is not None:
            h = h[:, self.register_tokens.shape[1]:]
        return EncoderOutput(hidden=h, padding_mask=padding, pos=e, modality_index=kmod, position=kpos, modalities=names)

    # ------------------------------------------------------------------ decoder (generation API)
    def decoder_context(self, enc: EncoderOutput) -> DecoderCache:
        """Project the encoder output and compute every layer's cross-attention K/V once."""
        context = self.decoder_proj_context(enc.hidden) + enc.pos  # (B, N, D)
        kv = [blk.context_kv(context) for blk in self.decoder]
        return DecoderCache(context=context, context_kv=kv, cross_allowed=_key_allowed(enc.padding_mask),
                            self_kv=[None] * len(self.decoder))

    def decoder_queries(self, modality: str, positions: Tensor, tokens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Decoder inputs ``x`` and additive embeddings ``e`` (each (B, M, D)) for ``modality`` at ``positions``."""
        if modality not in self.decoder_embeddings:
            raise KeyError(f"modality {modality!r} is not decoded by this model; decoder modalities: "
                           f"{', '.join(self.decoder_modalities)}")
        emb = self.decoder_embeddings[modality]
        positions = positions.long()
        if emb.autoregressive:
            if tokens is None:
                raise ValueError(f"decoder_queries({modality!r}): a sequence modality needs `tokens` (B, M)")
            x = emb.token_emb(tokens.long())
            positions = positions.masked_fill(positions >= emb.max_length, 0)
        else:
            x = self.mask_token.expand(*positions.shape, -1)
        e = emb.position(positions) + self._mod_emb(modality, "decoder")[0]
        return x, e

    def decode(self, x: Tensor, e: Tensor, cache: DecoderCache, *, self_allowed: Tensor | None = None,
               causal: bool = False, use_cache: bool = False) -> Tensor:
        """Run the decoder blocks on queries ``x + e`` (B, M, D) → outputs after ``decoder_norm`` (B, M, D)."""
        y = x + e
        m = y.shape[1]
        past = cache.self_length if use_cache else 0
        if self_allowed is None and causal:
            q = torch.arange(m, device=y.device)[:, None] + past
            k = torch.arange(past + m, device=y.device)[None, :]
            self_allowed = (k <= q)[None, None]
        elif self_allowed is not None and self_allowed.ndim == 3:
            self_allowed = self_allowed[:, None]
        for i, blk in enumerate(self.decoder):
            past_kv = cache.self_kv[i] if use_cache else None
            y, kv = blk(y, cache.context_kv[i], self_allowed, cache.cross_allowed, past_kv)
            if use_cache:
                cache.self_kv[i] = kv
        return self.decoder_norm(y)

    def logits(self, modality: str, hidden: Tensor) -> Tensor:
        """Logits (..., V) of ``modality`` for decoder outputs ``hidden`` (..., D)."""
        return F.linear(hidden, self.decoder_embeddings[modality].output_weight)

    # ------------------------------------------------------------------ training forward
    def _decoder_slots(self, mod_dict: Mapping[str, Any]) -> list[dict[str, Tensor]]:
        """Per decoder modality with targets: slot mask, targets, input ids, positions, attention values."""
        out = []
        for m in self.decoder_modalities:
            entry = mod_dict.get(m)
            if entry is None or entry.get("target_mask") is None:
                continue
            emb = self.decoder_embeddings[m]
            tm = entry["target_mask"].bool()
            t = entry["tensor"]
            dam = entry.get("decoder_attention_mask")
            if emb.autoregressive:
                slot_mask = tm[:, :-1] | tm[:, 1:]
                targets, inputs = t[:, 1:], t[:, :-1]
                tpos = (~tm).long().cumsum(1) - 1
                tpos = tpos.masked_fill(tm | (tpos >= emb.max_length), 0)[:, :-1]
                values = None if dam is None else dam[:, :-1]
            else:
                slot_mask, targets, inputs = tm, t, None
                tpos = torch.arange(tm.shape[1], device=tm.device).expand_as(tm)
                values = dam
            valid = (~slot_mask).long()
            rank = valid.cumsum(1) - 1  # rank among this modality's valid slots
            if values is None:  # default: bidirectional for image/vector, causal for sequences
                reach = rank + 1 if emb.autoregressive else valid.sum(1, keepdim=True).expand_as(rank)
            else:
                reach = (values.long() * valid).cumsum(1)
            out.append(dict(name=m, slot_mask=slot_mask, targets=targets, inputs=inputs, tpos=tpos,
                            rank=rank, reach=reach))
        return out

    def forward(self, mod_dict: Mapping[str, Any], num_encoder_tokens: int | None = None,
                num_decoder_tokens: int | None = None, loss_type: str = "mod",
                return_details: bool = False) -> FourMOutput:
        """Encode the inputs, decode the targets, return the loss (see :class:`FourMOutput`).

        ``loss_type``: ``"mod"`` mean of per-modality losses over modalities that have target rows;
        ``"mod_reference"`` mean over every decoder modality in the mod_dict (the reference's ``mod``, counting
        modalities without rows as 0); ``"token_reference"`` the reference's ``token`` average weighted by rows×V.
        ``None`` token counts keep every valid token of the batch.
        """
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {loss_type!r}; one of {', '.join(LOSS_TYPES)}")
        b = self._check_mod_dict(mod_dict)
        enc = self.encode(mod_dict, num_encoder_tokens, _checked=True)
        slots = self._decoder_slots(mod_dict)
        if not slots:
            raise ModDictError(f"mod_dict has no decoder target (a 'target_mask' for one of "
                               f"{', '.join(self.decoder_modalities)})")
        mask_all = torch.cat([s["slot_mask"] for s in slots], dim=1)  # (B, S)
        if num_decoder_tokens is None:
            num_decoder_tokens = max(int((~mask_all).sum(1).max()), 1)
        num_decoder_tokens = min(num_decoder_tokens, mask_all.shape[1])
        keep = _select_slots(mask_all, num_decoder_tokens)  # (B, M)
        padding = mask_all.gather(1, keep)
        dev = mask_all.device
        slot_mod = torch.cat([torch.full((s["slot_mask"].shape[1],), i, device=dev, dtype=torch.long)
                              for i, s in enumerate(slots)])
        slot_pos = torch.cat([torch.arange(s["slot_mask"].shape[1], device=dev) for s in slots])
        kmod = slot_mod[keep].masked_fill(padding, -1)  # (B, M)
        kpos = slot_pos[keep].masked_fill(padding, -1)
        krank = torch.cat([s["rank"] for s in slots], 1).gather(1, keep)
        kreach = torch.cat([s["reach"] for s in slots], 1).gather(1, keep)

        # self-attention: same modality, key rank < query reach; always the diagonal
        allowed = (kmod[:, :, None] == kmod[:, None, :]) & (krank[:, None, :] < kreach[:, :, None])
        allowed = allowed & ~padding[:, None, :]
        allowed = allowed | torch.eye(num_decoder_tokens, dtype=torch.bool, device=dev)[None]

        d = self.config.dim
        ref = enc.hidden
        x = ref.new_zeros(b, num_decoder_tokens, d)
        e = ref.new_zeros(b, num_decoder_tokens, d)
        rows = []
        idx_b, idx_s, xs, es = [], [], [], []
        for i, s in enumerate(slots):
            bi, si = (kmod == i).nonzero(as_tuple=True)
            m = s["name"]
            rows.append((m, bi, si))
            if bi.numel() == 0:
                continue
            pos = kpos[bi, si]
            if s["inputs"] is not None:
                xq, eq = self.decoder_queries(m, s["tpos"][bi, pos][None], s["inputs"][bi, pos][None])
            else:
                xq, eq = self.decoder_queries(m, pos[None])
            idx_b.append(bi)
            idx_s.append(si)
            xs.append(xq[0])
            es.append(eq[0])
        if xs:
            idx = (torch.cat(idx_b), torch.cat(idx_s))
            x = x.index_put(idx, torch.cat(xs))
            e = e.index_put(idx, torch.cat(es))

        cache = self.decoder_context(enc)
        y = self.decode(x, e, cache, self_allowed=allowed)  # (B, M, D)

        losses: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        details: dict[str, DecoderRows] = {}
        for (m, bi, si), s in zip(rows, slots):
            counts[m] = int(bi.numel())
            if bi.numel() == 0:
                losses[m] = y.new_zeros(())
                continue
            pos = kpos[bi, si]
            h = y[bi, si]  # (R, D)
            tgt = s["targets"][bi, pos].long()
            if return_details:
                logits = self.logits(m, h)  # (R, V)
                losses[m] = F.cross_entropy(logits, tgt)
                details[m] = DecoderRows(hidden=h, batch=bi, position=pos, targets=tgt, logits=logits)
            else:
                losses[m] = self.target_loss(h, self.decoder_embeddings[m].output_weight, tgt)

        with_rows = [m for m in losses if counts[m] > 0]
        if loss_type == "mod":
            loss = torch.stack([losses[m] for m in with_rows]).mean() if with_rows else y.sum() * 0.0
        elif loss_type == "mod_reference":
            loss = torch.stack(list(losses.values())).mean()
        else:
            weights = {m: counts[m] * self.vocab_sizes[m] for m in losses}
            total = sum(weights.values())
            loss = (sum(losses[m] * weights[m] for m in losses) / total) if total else y.sum() * 0.0
        return FourMOutput(loss=loss, losses=losses, num_targets=counts,
                           encoder=enc if return_details else None,
                           decoder_rows=details if return_details else None)

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``model.safetensors`` + ``config.json`` into ``directory`` (see :mod:`fourm_core.checkpoint`);
        other files there (e.g. ``tokenizers/``) are left alone."""
        checkpoint.save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, dir_or_hub_id: str | os.PathLike, **kwargs: Any) -> FourM:
        """Load a model from a local directory, a hub id or a single ``.safetensors``: a fourm checkpoint
        (:meth:`save_pretrained`) or a released 4M one (``EPFL-VILAB/4M-21_XL``; the format is detected).

        Keyword arguments go to :func:`fourm_core.checkpoint.from_pretrained` (``modalities=``, ``map_location=``,
        ``revision=``, ``token=``, ``cache_dir=``)."""
        return checkpoint.from_pretrained(dir_or_hub_id, model_class=cls, **kwargs)

    def num_parameters(self) -> int:
        """Number of distinct parameters (tied tensors counted once)."""
        return sum(p.numel() for p in self.parameters())


def build_model(modalities: ModalitySet, config: ModelConfig | str | Mapping[str, Any], *,
                vocab_sizes: Mapping[str, int] | None = None) -> FourM:
    """Build a :class:`FourM` over ``modalities`` from a config, a preset name or a dict (unknown keys raise).

    ``vocab_sizes`` overrides the specs' vocabulary sizes (the trained tokenizers decide the real sizes).
    """
    if not isinstance(modalities, ModalitySet):
        if isinstance(modalities, ModalitySpec):
            modalities = ModalitySet([modalities])
        else:
            modalities = ModalitySet(modalities)
    return FourM(modalities, ModelConfig.coerce(config), vocab_sizes=vocab_sizes)
