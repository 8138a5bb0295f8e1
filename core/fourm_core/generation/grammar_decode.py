"""Grammar-constrained decoding at run time: one automaton state per sample, the mask of the allowed next tokens
per step (one gather), and the length budget that keeps every generated text complete.

:func:`target_grammar` is what the autoregressive sampler calls once per target; the automaton comes from
:mod:`fourm_core.generation.grammar`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from .errors import GenerationError
from .grammar import _FAR, TokenAutomaton

log = logging.getLogger(__name__)


class GrammarDecoder:
    """The automaton states of ``B`` samples during one autoregressive decoding.

    ``budget`` ``(B,)``: content tokens each row may still write (the text must be complete within it);
    ``stop_ids`` ``(B, 2)``: the tokens that end a row (``[EOS]`` and its closing sentinel), allowed in
    accepting states. :meth:`allowed` → bool ``(B, V)`` mask of step ``t``; :meth:`advance` feeds the drawn ids.
    """

    def __init__(self, automaton: TokenAutomaton, budget: torch.Tensor, stop_ids: torch.Tensor, eos_id: int):
        dev = budget.device
        self.a = automaton
        self.atom_of_id = automaton.atom_of_id.to(dev)
        self.trans, self.dist = automaton.trans.to(dev), automaton.dist.to(dev)
        self.accept = automaton.accept.to(dev)
        self.moves = automaton.move_masks().to(dev)  # (S, V): the allowed tokens while the budget is not binding
        finite = automaton.dist[automaton.dist < _FAR]
        self.far_enough = int(finite.max()) + 1  # positions left from which no state's moves are cut
        B = budget.shape[0]
        self.state = torch.zeros(B, dtype=torch.long, device=dev)
        self.ended = torch.zeros(B, dtype=torch.bool, device=dev)
        self.any_ended = False
        self.budget, self.stop_ids, self.eos_id = budget.to(dev), stop_ids.to(dev), eos_id
        self.min_budget = int(budget.min()) if B else 0
        self.used = None if automaton.once is None else torch.zeros((B, automaton.vocab_size), dtype=torch.bool,
                                                                       device=dev)
        self.once = None if automaton.once is None else automaton.once.to(dev)
        self.written = torch.zeros(B, dtype=torch.long, device=dev)
        self.step = 0
        self._warned = False

    def allowed(self) -> torch.Tensor:
        """Bool ``(B, V)``: the tokens each row may write next."""
        if self.min_budget - self.step - 1 >= self.far_enough:  # the budget cuts nothing yet: one row per state
            mask = self.moves.index_select(0, self.state)
        else:
            nxt = self.trans[self.state]  # (B, A + 1)
            left = (self.budget - self.written - 1)[:, None]  # positions left after this token
            ok = (nxt >= 0) & (self.dist[nxt.clamp(min=0)] <= left)
            mask = ok.gather(1, self.atom_of_id.expand(ok.shape[0], -1))  # (B, V)
        if self.used is not None:
            mask &= ~self.used
        mask.scatter_(1, self.stop_ids, self.accept[self.state][:, None].expand_as(self.stop_ids))
        if self.any_ended:  # rows past their end write [EOS] (stop_at_eos=False, or waiting for the others)
            eos_only = torch.zeros_like(mask[:1])
            eos_only[0, self.eos_id] = True
            mask = torch.where(self.ended[:, None], eos_only, mask)
        if self.used is not None or self.min_budget - self.step - 1 < self.far_enough:
            empty = ~mask.any(dim=1)
            if bool(empty.any()):  # e.g. a grammar whose once= tokens ran out: end the text rather than break it
                if not self._warned:
                    log.warning("grammar of %r: no allowed token left for %d row(s); ending them", self.a.modality,
                                int(empty.sum()))
                    self._warned = True
                mask[empty, self.eos_id] = True
        return mask

    def advance(self, ids: torch.Tensor) -> None:
        """Feed the tokens ``ids`` ``(B,)`` drawn at this step."""
        stop = (ids[:, None] == self.stop_ids).any(dim=1)
        nxt = self.trans[self.state, self.atom_of_id[ids.clamp(0, self.a.vocab_size - 1)]]
        live = ~self.ended & ~stop
        self.state = torch.where(live, nxt.clamp(min=0), self.state)
        ended = stop | (live & (nxt < 0))
        self.ended |= ended
        self.any_ended = self.any_ended or bool(ended.any())
        self.written += live.long()
        self.step += 1
        if self.used is not None:
            self.used[torch.arange(ids.shape[0], device=ids.device), ids] |= self.once[ids] & live

    def feed_prefix(self, ids: torch.Tensor, lengths: torch.Tensor, name: str) -> None:
        """Advance over given text ``ids`` ``(B, P)`` (the first ``lengths`` of each row); given text the grammar
        rejects raises, naming the row and position."""
        for p in range(int(lengths.max()) if lengths.numel() else 0):  # one batched step per given position
            on = p < lengths
            tok = ids[:, p].clamp(0, self.a.vocab_size - 1)
            rows = torch.arange(len(tok), device=tok.device)
            nxt = self.trans[self.state, self.atom_of_id[tok]]
            repeated = self.used[rows, tok] & self.once[tok] if self.used is not None else None
            bad = on & ((nxt < 0) | (repeated if repeated is not None else False))
            if bool(bad.any()):
                row = int(bad.nonzero()[0])
                raise GenerationError(f"target {name!r}: the given text breaks the modality's grammar at token {p} "
                                      f"(row {row}, id {int(ids[row, p])}); fix the text or pass grammar=False")
            self.state = torch.where(on, nxt, self.state)
            if self.used is not None:
                self.used[rows, tok] |= self.once[tok] & on


def grammar_decoder(automaton: Any, name: str, *, vocab: int, budget: torch.Tensor, closing: torch.Tensor,
                    eos_id: int, prefix: tuple[torch.Tensor, torch.Tensor] | None = None) -> GrammarDecoder | None:
    """The decoder of one target's generation, or None when ``automaton`` is off (None / False)."""
    if automaton is None or automaton is False:
        return None
    if automaton is True:
        raise GenerationError(f"target {name!r}: grammar=True needs the compiled grammar here; pass "
                              f"grammar=automaton_for(serializer, text_tokenizer) (AnyToAny fills it from the codec)")
    if not isinstance(automaton, TokenAutomaton):
        raise GenerationError(f"target {name!r}: grammar must be None, True, False or a TokenAutomaton, got "
                              f"{type(automaton).__name__}")
    automaton = automaton.for_vocab(vocab)
    need = int(automaton.dist[0])
    if bool((budget < need).any()):
        raise GenerationError(f"target {name!r}: {int(budget.min())} tokens are too few for any text of its "
                              f"grammar (it needs at least {need}); raise max_new_tokens or pass grammar=False")
    stop = torch.stack([torch.full_like(closing, eos_id), closing], dim=1)
    dec = GrammarDecoder(automaton, budget, stop, eos_id)
    if prefix is not None:
        dec.feed_prefix(prefix[0], prefix[1], name)
    return dec


def given_prefix(template: torch.Tensor, hidden: torch.Tensor, *, eos_id: int, pad_id: int, first_sentinel_id: int,
                 num_sentinels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(ids, lengths)`` of the given text when every row is a prefix to continue (its only sentinel is the
    ``[S_1]`` after the text); None when a row is a template with spans elsewhere (the grammar then cannot
    follow the generated spans)."""
    visible = ~hidden & (template != eos_id) & (template != pad_id)
    sentinel = visible & (template >= first_sentinel_id) & (template < first_sentinel_id + num_sentinels - 1)
    lengths = (visible & ~sentinel).long().sum(dim=1)
    one = sentinel.long().sum(dim=1) == 1
    at_end = template.gather(1, lengths[:, None].clamp(max=template.shape[1] - 1)).squeeze(1) == first_sentinel_id
    if not bool((one & at_end).all()):
        return None
    return template, lengths


def target_grammar(setting: Any, name: str, *, vocab: int, n_new: int, length: int, closing: torch.Tensor,
                   eos_id: int, pad_id: int, first_sentinel_id: int, num_sentinels: int,
                   given: tuple[torch.Tensor, torch.Tensor] | None = None) -> GrammarDecoder | None:
    """The :class:`GrammarDecoder` of one autoregressive target (``setting``: its ``TargetConfig.grammar``), or
    None when off. ``given``: the (template, hidden) of a partial target: a prefix is fed to the automaton and
    the budget is what the sequence has left; a template with spans turns the grammar off (logged)."""
    if setting is None or setting is False:
        return None
    B = closing.shape[0]
    prefix = None
    if given is not None:
        prefix = given_prefix(*given, eos_id=eos_id, pad_id=pad_id, first_sentinel_id=first_sentinel_id,
                              num_sentinels=num_sentinels)
        if prefix is None:
            log.warning("target %r: the given template has spans to fill; its grammar applies to whole texts and "
                        "prefixes only, so it is not used for this generation", name)
            return None
    budget = torch.full((B,), n_new, dtype=torch.long, device=closing.device)
    if prefix is not None:
        budget = torch.minimum(budget, length - 1 - prefix[1])
    return grammar_decoder(setting, name, vocab=vocab, budget=budget, closing=closing, eos_id=eos_id, prefix=prefix)
