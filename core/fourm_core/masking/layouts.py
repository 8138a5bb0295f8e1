"""Per-kind masking layouts: how a modality's batch is checked, counted, span-masked and written into the
``mod_dict`` entry ``{"tensor", "input_mask", "target_mask", "decoder_attention_mask"}`` (True = masked).

One :class:`Layout` object per layout, in the single table :data:`LAYOUTS`; each kind adapter names its
layout (``mask_layout``), the masker looks each modality's layout up once, at construction
(:func:`layout_for`), and never branches on the kind afterwards.

=======================  =================================================================================
kind                     layout
=======================  =================================================================================
``image`` / ``vector``   disjoint random input / target token sets; the first target slot of
                         ``decoder_attention_mask`` holds the number of targets (they attend to each other)
``pixels``               as ``image``, over the ``grid`` patches; never a target
``sequence``             span masking: the encoder input (masked spans replaced by sentinels ``[S_1]``,
                         ``[S_2]``, ...) at the start of a ``2*(max_length+1)`` row, the decoder target
                         (``[S_1]``, span tokens, ``[S_2]``, ..., final sentinel) from an offset; causal
``embedding_sequence``   span masking of rows: kept rows first, a zero row per masked span; never a target
=======================  =================================================================================

All functions are vectorised over the batch and draw only from the generator they are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import torch

from fourm_registry import ModalitySpec

from .config import MaskingError, TextVocabInfo
from .draws import _rand

if TYPE_CHECKING:
    from .masker import _Mod

__all__ = ["LAYOUTS", "Layout", "layout_for"]

#: decay of the keep probability while a span-masked sequence is over its input budget (as the reference)
KEEP_PROB_DECAY = 0.9

State = dict[str, torch.Tensor]


class Layout:
    """Masking behaviour of one modality kind (image-like token grid by default). What the kind itself is
    (token ids or not, text vocabulary or not) the masker asks the kind adapter (``_Mod.kind_adapter``)."""

    #: the input is chosen by span masking (the drawn budget is an upper bound), not as a token count
    span_masked: ClassVar[bool] = False

    def target_slots(self, n: int) -> int:
        """Decoder slots of a modality with ``n`` token slots when all of it is a target."""
        return n

    def expected(self, t: torch.Tensor, m: _Mod) -> str | None:
        """``None`` when ``t`` has the batch layout of ``m``, else a description of that layout."""
        if t.ndim == 2 and t.shape[1] == m.n and not t.is_floating_point():
            return None
        return f"int64 (B, {m.n})"

    def vocab_size(self, spec: ModalitySpec, text: TextVocabInfo) -> int | None:
        """Exclusive upper bound of the token ids (``None``: only non-negative is checked)."""
        return spec.vocab_size

    def lengths(self, t: torch.Tensor, m: _Mod, text: TextVocabInfo) -> torch.Tensor:
        """Tokens present per sample (B,)."""
        return torch.full((t.shape[0],), m.n, dtype=torch.long, device=t.device)

    def span_tokens(self, t: torch.Tensor, m: _Mod, chunks: Mapping[str, torch.Tensor] | None,
                    text: TextVocabInfo) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(ids (B, L), chunk indices (B, L) or None)`` that span masking works on (span-masked kinds only)."""
        raise NotImplementedError(f"modality {m.name!r} ({m.kind}) is not span-masked")

    def apply(self, t: torch.Tensor, m: _Mod, n_in: torch.Tensor, n_tg: torch.Tensor, state: State | None,
              gen: torch.Generator | None, text: TextVocabInfo, *, transfer: bool) -> dict[str, torch.Tensor]:
        """The ``mod_dict`` entry of ``t`` given the input / target budgets (B,) and the span state."""
        return _image_mask(t, m.n, n_in, n_tg, gen)


class PixelsLayout(Layout):
    """Raw images: masks over the ``grid`` patches, encoder input only."""

    def expected(self, t: torch.Tensor, m: _Mod) -> str | None:
        s = m.spec
        h, w = s.image_size
        if t.ndim == 4 and tuple(t.shape[1:]) == (s.channels, h, w) and t.is_floating_point():
            return None
        return f"float (B, {s.channels}, {h}, {w})"


class SequenceLayout(Layout):
    """Text-vocabulary sequences (tokens, ``[EOS]``, ``[PAD]`` padding), span-masked, decodable."""

    span_masked = True

    def target_slots(self, n: int) -> int:
        return n + 1

    def expected(self, t: torch.Tensor, m: _Mod) -> str | None:
        want = super().expected(t, m)
        return None if want is None else f"{want} (tokens, [EOS], then [PAD]=0)"

    def vocab_size(self, spec: ModalitySpec, text: TextVocabInfo) -> int | None:
        return text.vocab_size

    def lengths(self, t: torch.Tensor, m: _Mod, text: TextVocabInfo) -> torch.Tensor:
        nonpad = t != text.pad_id
        bad = (nonpad[:, 1:] & ~nonpad[:, :-1]).any(1)
        if bool(bad.any()):
            b = int(bad.nonzero()[0])
            raise MaskingError(f"masker: sequence modality {m.name!r}, sample {b}: [PAD] ({text.pad_id}) "
                               f"before a token; sequences must be tokens, [EOS], then [PAD] padding")
        return nonpad.sum(1)

    def span_tokens(self, t: torch.Tensor, m: _Mod, chunks: Mapping[str, torch.Tensor] | None,
                    text: TextVocabInfo) -> tuple[torch.Tensor, torch.Tensor | None]:
        ids = t.long()
        if chunks is not None and m.name in chunks:
            chunk = torch.as_tensor(chunks[m.name], device=t.device).long()
            if chunk.shape != ids.shape:
                raise MaskingError(f"masker: chunks[{m.name!r}] must have shape {tuple(ids.shape)}, got "
                                   f"{tuple(chunk.shape)}")
            return ids, chunk
        if m.span == "chunked":
            starts = torch.isin(ids, torch.tensor(list(m.chunk_ids) + [text.eos_id], device=t.device))
            return ids, torch.cumsum(starts.long(), 1)
        return ids, None

    def apply(self, t: torch.Tensor, m: _Mod, n_in: torch.Tensor, n_tg: torch.Tensor, state: State | None,
              gen: torch.Generator | None, text: TextVocabInfo, *, transfer: bool) -> dict[str, torch.Tensor]:
        # the target starts after the input budget; in transfer masking after the whole max_length
        offset = torch.full((t.shape[0],), m.n, device=t.device) if transfer else n_in
        return _sequence_layout(state, m.n, offset, n_tg, gen, text.pad_id, text.sentinel_start_id)


class EmbeddingLayout(Layout):
    """Rows of continuous vectors (zero rows at the end are absent), span-masked, encoder input only."""

    span_masked = True

    def expected(self, t: torch.Tensor, m: _Mod) -> str | None:
        d = m.spec.embed_dim
        if t.ndim == 3 and t.shape[1] == m.n and t.shape[2] == d and t.is_floating_point():
            return None
        return f"float (B, {m.n}, {d})"

    def lengths(self, t: torch.Tensor, m: _Mod, text: TextVocabInfo) -> torch.Tensor:
        nonzero = (t != 0).any(-1)
        return (torch.cumsum(nonzero.flip(1).long(), 1) > 0).sum(1)  # rows up to the last non-zero one

    def span_tokens(self, t: torch.Tensor, m: _Mod, chunks: Mapping[str, torch.Tensor] | None,
                    text: TextVocabInfo) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.arange(1, m.n + 1, device=t.device).expand(t.shape[0], m.n), None

    def apply(self, t: torch.Tensor, m: _Mod, n_in: torch.Tensor, n_tg: torch.Tensor, state: State | None,
              gen: torch.Generator | None, text: TextVocabInfo, *, transfer: bool) -> dict[str, torch.Tensor]:
        return _embedding_layout(t, state)


#: the masking layouts, by the name a kind adapter gives in ``mask_layout`` (:mod:`fourm_core.kinds`)
LAYOUTS: dict[str, Layout] = {
    "tokens": Layout(),
    "patches": PixelsLayout(),
    "span": SequenceLayout(),
    "rows": EmbeddingLayout(),
}


def layout_for(spec: ModalitySpec) -> Layout:
    """The layout ``spec``'s kind adapter names; raises naming the modality when there is none."""
    from ..kinds import ADAPTERS

    kind = ADAPTERS.get(spec.kind)
    layout = LAYOUTS.get(kind.mask_layout) if kind is not None else None
    if layout is None:
        raise MaskingError(f"modality {spec.name!r}: kind {spec.kind!r} has no masking layout; the masker knows "
                           f"{', '.join(ADAPTERS)}")
    return layout


# ----------------------------------------------------------------------------------------------------------
# the layouts' tensor work
# ----------------------------------------------------------------------------------------------------------


def _image_mask(tensor: torch.Tensor, n: int, n_in: torch.Tensor, n_tg: torch.Tensor, gen: torch.Generator | None
                ) -> dict[str, torch.Tensor]:
    """Random disjoint input/target sets of ``n`` tokens (patches for pixels) of the given sizes. n_in, n_tg: (B,)"""
    bsz = n_in.shape[0]
    dev = n_in.device
    order = torch.argsort(_rand((bsz, n), gen, dev), dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=dev).expand(bsz, n))  # (B, N)
    is_in = rank < n_in[:, None]
    is_tg = (rank >= n_in[:, None]) & (rank < (n_in + n_tg)[:, None])
    dam = torch.zeros(bsz, n, dtype=torch.int32, device=dev)
    first = torch.argmax(is_tg.int(), dim=1, keepdim=True)  # first target slot (0 when none)
    dam.scatter_(1, first, is_tg.sum(1, keepdim=True).int())
    return {"tensor": tensor, "input_mask": ~is_in, "target_mask": ~is_tg, "decoder_attention_mask": dam}


def _span_mask(ids: torch.Tensor, length: torch.Tensor, budget: torch.Tensor, keep_prob: torch.Tensor,
               chunk: torch.Tensor | None, gen: torch.Generator | None, sentinel0: int) -> dict[str, torch.Tensor]:
    """Span masking of a batch of sequences (B, L): decide which tokens stay input, lowering the keep probability
    (x0.9 per step, as the reference) until the input (kept tokens + one sentinel per span) fits the budget."""
    bsz, seq_len = ids.shape
    dev = ids.device
    pos = torch.arange(seq_len, device=dev)
    valid = pos[None] < length[:, None]
    u = _rand((bsz, seq_len), gen, dev)
    if chunk is not None:  # one draw per chunk, shared by its tokens
        u = torch.gather(u, 1, chunk.clamp(0, seq_len - 1))
    no_input = budget <= 0
    thr = torch.where(no_input, torch.full_like(keep_prob, -1.0), keep_prob.float())

    def spans(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        masked = valid & (u > th[:, None])
        prev = torch.cat([torch.zeros(bsz, 1, dtype=torch.bool, device=dev), masked[:, :-1]], 1)
        start = masked & ~prev
        in_len = (valid & ~masked).sum(1) + start.sum(1)
        return masked, start, in_len

    masked, start, in_len = spans(thr)
    for step in range(200):
        over = (in_len > budget) & ~no_input
        if not bool(over.any()):
            break
        thr = torch.where(over, thr * KEEP_PROB_DECAY if step < 150 else torch.full_like(thr, -1.0), thr)
        masked, start, in_len = spans(thr)
    in_len = torch.where(no_input, torch.zeros_like(in_len), in_len)
    span_idx = torch.cumsum(start.long(), 1)  # 1-based span number inside a span
    nspans = start.sum(1)
    # encoder input: kept tokens, a sentinel per span
    in_emit = valid & (~masked | start) & ~no_input[:, None]
    in_val = torch.where(masked, sentinel0 + span_idx, ids)
    in_pos = torch.cumsum(in_emit.long(), 1) - 1
    # decoder target: per span a sentinel then its tokens, then a final sentinel
    cnt = (valid & masked).long() * (1 + start.long())
    tok_pos = torch.cumsum(cnt, 1) - 1
    tgt_len = cnt.sum(1) + 1
    return {"ids": ids, "valid": valid, "masked": masked, "start": start, "in_emit": in_emit, "in_val": in_val,
            "in_pos": in_pos, "tok_pos": tok_pos, "span_idx": span_idx, "nspans": nspans, "in_len": in_len,
            "tgt_len": tgt_len}


def _sequence_layout(st: dict[str, torch.Tensor], max_length: int, offset: torch.Tensor, tgt_budget: torch.Tensor,
                     gen: torch.Generator | None, pad_id: int, sentinel0: int) -> dict[str, torch.Tensor]:
    """Write input and (possibly truncated) target of a span-masked sequence into the reference layout."""
    ids, valid, masked, start = st["ids"], st["valid"], st["masked"], st["start"]
    bsz, seq_len = ids.shape
    dev = ids.device
    width = 2 * (max_length + 1)
    tmax = 2 * seq_len + 2  # entries of the full target (+1 dummy column for scatters)
    # full target entries (B, tmax): values and sentinel flags
    tgt_val = torch.full((bsz, tmax + 1), pad_id, dtype=torch.long, device=dev)
    tgt_sent = torch.zeros(bsz, tmax + 1, dtype=torch.bool, device=dev)
    tok_emit = valid & masked
    tok_col = torch.where(tok_emit, st["tok_pos"], tmax)
    tgt_val.scatter_(1, tok_col, ids)
    sen_col = torch.where(start, st["tok_pos"] - 1, tmax)
    tgt_val.scatter_(1, sen_col, sentinel0 + st["span_idx"])
    tgt_sent.scatter_(1, sen_col, torch.ones_like(start))
    total = st["tgt_len"]
    fin_col = (total - 1)[:, None]
    tgt_val.scatter_(1, fin_col, (sentinel0 + st["nspans"] + 1)[:, None])
    tgt_sent.scatter_(1, fin_col, torch.ones(bsz, 1, dtype=torch.bool, device=dev))
    tgt_val, tgt_sent = tgt_val[:, :tmax], tgt_sent[:, :tmax]
    # truncation to the target budget, at a sentinel (the reference's rule)
    col = torch.arange(tmax, device=dev)[None]
    nsent = st["nspans"] + 1
    j = torch.floor(_rand((bsz,), gen, dev) * (nsent - 1).clamp_min(1)).long()
    cum = torch.cumsum(tgt_sent.long(), 1)
    start_j = torch.argmax(((cum == (j + 1)[:, None]) & tgt_sent).int(), 1)
    long_enough = total - start_j >= tgt_budget
    late = tgt_sent & (col >= (total - tgt_budget)[:, None])
    start_late = torch.argmax(late.int(), 1)
    need = total > tgt_budget
    t_start = torch.where(need, torch.where(long_enough, start_j, start_late), torch.zeros_like(total))
    t_len = torch.where(need, torch.where(long_enough, tgt_budget, total - start_late), total)
    keep = (col >= t_start[:, None]) & (col < (t_start + t_len)[:, None])
    # assemble (B, width)
    tensor = torch.full((bsz, width + 1), pad_id, dtype=torch.long, device=dev)
    in_mask = torch.ones(bsz, width + 1, dtype=torch.bool, device=dev)
    tg_mask = torch.ones(bsz, width + 1, dtype=torch.bool, device=dev)
    in_col = torch.where(st["in_emit"], st["in_pos"], width)
    tensor.scatter_(1, in_col, st["in_val"])
    in_mask.scatter_(1, in_col, torch.zeros_like(st["in_emit"]))
    out_col = torch.where(keep, offset[:, None] + col - t_start[:, None], width).clamp_max(width)
    tensor.scatter_(1, out_col, tgt_val)
    tg_mask.scatter_(1, out_col, torch.zeros_like(keep))
    tensor, in_mask, tg_mask = tensor[:, :width], in_mask[:, :width], tg_mask[:, :width]
    return {"tensor": tensor, "input_mask": in_mask, "target_mask": tg_mask,
            "decoder_attention_mask": (~tg_mask).int()}


def _embedding_layout(t: torch.Tensor, st: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Kept rows first, a zero row per masked span; input only."""
    bsz, n, d = t.shape
    dev = t.device
    out = torch.zeros(bsz, n + 1, d, dtype=t.dtype, device=dev)
    in_col = torch.where(st["in_emit"], st["in_pos"], n)
    rows = torch.where(st["masked"][..., None], torch.zeros_like(t), t)  # sentinel slots carry zeros
    out.scatter_(1, in_col[..., None].expand(bsz, n, d), rows)
    in_mask = torch.ones(bsz, n + 1, dtype=torch.bool, device=dev)
    in_mask.scatter_(1, in_col, torch.zeros_like(st["in_emit"]))
    return {"tensor": out[:, :n], "input_mask": in_mask[:, :n],
            "target_mask": torch.ones(bsz, n, dtype=torch.bool, device=dev),
            "decoder_attention_mask": torch.zeros(bsz, n, dtype=torch.int32, device=dev)}
