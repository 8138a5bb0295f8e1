"""Partial targets: generating only part of a target.

* Image / vector targets (in- and out-painting): the given tokens stay, the masked positions are generated
  (:func:`given_tokens`).
* Sequences (completion, in-filling): the given text is a *template* whose sentinels ``[S_1]``, ``[S_2]``, ...
  mark the spans to write, as span masking lays out a training input; text without a sentinel is a prefix
  to continue (``[S_1]`` is appended). The decoder writes ``[S_1] span_1 [S_2] span_2 ... [S_{k+1}]`` and
  :func:`merge_spans` puts each span in place of its sentinel (:func:`sequence_template` prepares the input).
"""

from __future__ import annotations

import torch

from .errors import GenerationError


def given_tokens(name: str, tokens: torch.Tensor, generate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(tokens, committed, n_to_generate)`` of a partial image / vector target: ``tokens`` ``(B, N)`` ids,
    ``generate`` bool ``(B, N)`` True where a token is to be generated. Every row must generate as many
    tokens (MaskGIT / ROAR commit the same number per row at each step)."""
    generate = generate.bool()
    counts = generate.sum(dim=1)
    if counts.numel() and bool((counts != counts[0]).any()):
        raise GenerationError(f"partial target {name!r}: every row must leave the same number of positions to "
                              f"generate, got {counts.tolist()}; generate the rows in separate calls")
    return tokens.masked_fill(generate, 0), ~generate, int(counts[0]) if counts.numel() else 0


def sequence_template(name: str, ids: torch.Tensor, hidden: torch.Tensor, *, eos_id: int, pad_id: int,
                      first_sentinel_id: int, num_sentinels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The encoder input of a partial sequence target and the sentinel that closes its generation.

    ``ids`` ``(B, L)`` as the text tokenizer lays them out, ``hidden`` bool ``(B, L)`` (True = not part of the
    given text; ``[EOS]`` and ``[PAD]`` are never part of it). A row without a sentinel is a prefix: ``[S_1]``
    is appended after its text. Returns ``(ids, input_mask, closing)``: ``closing`` ``(B,)`` is the sentinel
    after the row's last one (the decoder's final sentinel)."""
    L = ids.shape[1]
    sentinel = (ids >= first_sentinel_id) & (ids < first_sentinel_id + num_sentinels - 1)
    text = ~hidden & (ids != eos_id) & (ids != pad_id)
    length = text.long().sum(dim=1)
    if bool((text.long().cumsum(1) != torch.arange(1, L + 1, device=ids.device).clamp(max=length[:, None])).any()):
        raise GenerationError(f"partial target {name!r}: the given text must be one run of tokens from position 0 "
                              f"(ids, then [EOS] / [PAD]); got gaps")
    has = (sentinel & text).any(dim=1)
    if bool((~has & (length >= L)).any()):
        raise GenerationError(f"partial target {name!r}: a prefix fills all {L} positions; leave room for the "
                              f"continuation")
    pos = torch.arange(L, device=ids.device).expand_as(ids)
    out = torch.where(text, ids, torch.full_like(ids, pad_id))
    out = torch.where(~has[:, None] & (pos == length[:, None]), torch.full_like(ids, first_sentinel_id), out)
    visible = text | (~has[:, None] & (pos == length[:, None]))
    last = torch.where(sentinel & text, ids, torch.full_like(ids, first_sentinel_id)).amax(dim=1)
    if bool((last >= first_sentinel_id + num_sentinels - 1).any()):
        raise GenerationError(f"partial target {name!r}: the template uses the last sentinel; no sentinel is left "
                              f"to close the generation")
    return out, ~visible, last + 1


def merge_spans(template: torch.Tensor, template_hidden: torch.Tensor, generated: torch.Tensor,
                lengths: torch.Tensor, *, length: int, eos_id: int, pad_id: int, first_sentinel_id: int,
                num_sentinels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Put each generated span in place of its sentinel in the template.

    ``generated`` ``(B, T)``: the decoder's tokens after the opening ``[S_1]``, valid up to ``lengths`` ``(B,)``
    (the stop token excluded); a sentinel ``[S_j]`` there opens span ``j``. Sentinels of the template without a
    span become empty, spans without a sentinel in the template are dropped. Returns ``(ids, hidden)`` in the
    text tokenizer's layout ``(B, length)``: the merged ids, ``[EOS]``, ``[PAD]`` (cut to ``length - 1`` ids)."""
    B, T = generated.shape
    dev = generated.device
    K = num_sentinels - 1  # [S_1] .. the last sentinel
    t_sent = (template >= first_sentinel_id) & (template < first_sentinel_id + K) & ~template_hidden
    t_text = ~template_hidden & ~t_sent & (template != eos_id) & (template != pad_id)
    g_valid = torch.arange(T, device=dev)[None, :] < lengths[:, None]
    g_sent = (generated >= first_sentinel_id) & (generated < first_sentinel_id + K) & g_valid
    g_text = g_valid & ~g_sent
    # the span of each generated token: the number of the latest sentinel (the implicit [S_1] first)
    number = torch.where(g_sent, generated - first_sentinel_id + 1, torch.ones_like(generated)).long()
    at = torch.where(g_sent, torch.arange(T, device=dev).expand(B, T), -1).cummax(dim=1).values
    seg = torch.where(at >= 0, number.gather(1, at.clamp(min=0)), 1)  # (B, T)
    onehot = torch.nn.functional.one_hot(seg, K + 1) * g_text[..., None]  # (B, T, K+1)
    span_len = onehot.sum(dim=1)  # (B, K+1)
    rank = (onehot.cumsum(dim=1) * onehot).sum(-1) - 1  # position of a token within its span
    # the template position of each sentinel number (-1: absent); the first occurrence wins
    t_num = torch.where(t_sent, template - first_sentinel_id + 1, torch.zeros_like(template))
    tpos = torch.arange(template.shape[1], device=dev).expand_as(template)
    first = torch.full((B, K + 1), template.shape[1], dtype=torch.long, device=dev)
    first = first.scatter_reduce(1, t_num, torch.where(t_sent, tpos, torch.full_like(tpos, template.shape[1])),
                                 reduce="amin")
    first[:, 0] = template.shape[1]
    own = t_sent & (tpos == first.gather(1, t_num))
    out_len = torch.where(t_text, 1, 0) + torch.where(own, span_len.gather(1, t_num), 0)  # (B, Lt)
    start = out_len.cumsum(dim=1) - out_len  # where each template entry's output begins
    width = int(out_len.sum(dim=1).max()) + 1 if B else 1
    merged = torch.full((B, width + 1), pad_id, dtype=torch.long, device=dev)
    trash = width  # a column for entries with no place (dropped)
    merged.scatter_(1, torch.where(t_text, start, trash), template.long())
    placed = (first.gather(1, seg) < template.shape[1]) & g_text
    span_start = torch.full((B, K + 1), trash, dtype=torch.long, device=dev)
    span_start = span_start.scatter(1, torch.where(own, t_num, 0), torch.where(own, start, trash))
    span_start[:, 0] = trash
    dest = torch.where(placed, span_start.gather(1, seg) + rank, torch.full_like(rank, trash))
    merged.scatter_(1, dest, generated.long())
    total = out_len.sum(dim=1).clamp(max=length - 1)  # (B,)
    out = torch.full((B, length), pad_id, dtype=torch.long, device=dev)
    n = min(length, width)
    out[:, :n] = merged[:, :n]
    pos = torch.arange(length, device=dev)[None, :]
    out = torch.where(pos < total[:, None], out, torch.full_like(out, pad_id))
    out.scatter_(1, total[:, None], eos_id)
    return out, pos > total[:, None]
