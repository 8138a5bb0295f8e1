"""The generation sampler: MaskGIT, ROAR and autoregressive decoding over a FourM model, chained over
several targets, with classifier-free and weighted multi-condition guidance run as ONE enlarged batch.

Conventions (the ``mod_dict`` of docs/architecture.md): boolean masks use **True = masked / not used**.
A *condition* is a modality present in the encoder input; a *target* is generated, then becomes a condition
for the next target of the chain (its tokens go into the encoder input, fully visible).

Per step of MaskGIT / ROAR the encoder re-reads every visible token (the conditions and the target tokens
committed so far) and the decoder queries only the target positions still masked, so a step costs one
encoder pass and one decoder pass over the remaining positions. Autoregressive decoding encodes once,
computes the cross-attention keys/values of the context once, then decodes one token per step with a
per-layer self-attention KV cache and logits for the newest position only.

Guidance: the conditional rows and the unconditional rows (conditions removed) are concatenated along the
batch axis and go through the model together, then ``uncond + w (cond - uncond)`` is sampled. A guidance
scale of exactly 1 without condition weights skips the unconditional rows (the result is identical).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import torch

from fourm_registry import ModalitySet, ModalitySpec

from ..kinds import adapter_for
from . import grammar_decode
from . import partial as partial_mod
from .backend import ModelBackend
from .chain import ScheduleStep, plan_target
from .errors import GenerationError
from .guidance import build_variants, cat_variants, combine, empty_condition
from .sampling import guidance_bound, sample_tokens
from .targets import TargetConfig, resolve_target

log = logging.getLogger(__name__)

# Fixed layout of the shared text vocabulary (fourm_core.tokenizers.TextTokenizer): [PAD] 0, [EOS] 3,
# [S_0]..[S_199] = 4..203. Span masking (fourm_core.masking, as the reference) numbers spans from [S_1]: a fully
# masked sequence is the encoder input "[S_1]" and the decoder target "[S_1] tokens... [S_2]".
PAD_ID = 0
EOS_ID = 3
FIRST_SENTINEL_ID = 5  # [S_1], the sentinel that opens the first masked span
NUM_SENTINELS = 200


@attrs.frozen(kw_only=True)
class GenerationStep:
    """What :meth:`Sampler.iterate` yields after every step.

    ``tokens``: the target's current tokens (image/vector ``(B, N)``; sequence: the ids generated so far
    ``(B, t)``); ``committed``: bool ``(B, N)`` True where a token is decided (sequences: all True);
    ``step`` counts from 0 within the target; ``done`` is True on the target's last step.
    """

    modality: str
    step: int
    num_steps: int
    tokens: torch.Tensor
    committed: torch.Tensor
    done: bool


@attrs.frozen(kw_only=True)
class GenerationResult:
    """Final tokens per target and the full ``mod_dict`` (conditions + generated targets as inputs).

    ``tokens[name]``: image/vector ``(B, N)`` int64; sequence ``(B, max_length)`` int64 laid out as the
    text tokenizer encodes (ids, ``[EOS]``, ``[PAD]``...), ready for ``ModalityCodec.decode``.
    """

    tokens: dict[str, torch.Tensor]
    mod_dict: dict[str, dict[str, torch.Tensor]]


def _batch_size(dicts: Sequence[Mapping[str, Mapping[str, torch.Tensor]]], requested: int | None) -> int:
    sizes = {name: d["tensor"].shape[0] for md in dicts for name, d in md.items()}
    if len(set(sizes.values())) > 1:
        raise GenerationError(f"inputs disagree on the batch size: {sizes}; give every modality the same batch size")
    if requested is not None and (not isinstance(requested, int) or requested < 1):
        raise GenerationError(f"batch_size must be a positive int, got {requested!r}")
    found = next(iter(sizes.values()), None)
    if found is not None and requested is not None and requested != found:
        raise GenerationError(f"batch_size={requested} but the inputs hold {found} rows")
    return found if found is not None else (requested or 1)


@attrs.frozen
class _Guide:
    """Guidance of one target: the conditions plain guidance removes, the modalities of per-modality
    weights, the weighted conditions of the call, and the scale (one number, or one weight each)."""

    conditions: tuple[str, ...]
    by_modality: tuple[str, ...]
    weighted: list
    scale: Any


class Sampler:
    """Generates target modalities from a :class:`fourm_core.model.FourM` (or any model the
    :class:`ModelBackend` wraps).

    ``pad_id`` / ``eos_id`` / ``first_sentinel_id``: ids of ``[PAD]`` (0), ``[EOS]`` (3) and of the sentinel
    that opens the first masked span (``[S_1]`` = 5, as the masking writes it); decoding a sequence starts
    from that sentinel and stops at ``[EOS]`` or at the next sentinel. ``int8_proposals`` (default True): on
    CPU, autoregressive steps without top-k / top-p filtering draw from an int8 copy of the output table and
    correct the draw by rejection, so the tokens follow the exact float32 distribution
    (:mod:`fourm_core.accel.proposal`); False always computes the float32 logits.
    """

    def __init__(self, model: Any, *, modalities: ModalitySet | None = None, pad_id: int = PAD_ID,
                 eos_id: int = EOS_ID, first_sentinel_id: int = FIRST_SENTINEL_ID,
                 num_sentinels: int = NUM_SENTINELS, int8_proposals: bool = True):
        self.backend = model if isinstance(model, ModelBackend) else ModelBackend(
            model, use_proposals=int8_proposals)
        self.modalities = modalities if modalities is not None else self.backend.modalities
        self.pad_id, self.eos_id = pad_id, eos_id
        self.first_sentinel_id, self.num_sentinels = first_sentinel_id, num_sentinels

    # -- public API ------------------------------------------------------------------------------
    def spec(self, name: str) -> ModalitySpec:
        """The model's spec of ``name`` (name or alias); unknown → error listing what the model knows."""
        try:
            return self.modalities[name]
        except KeyError:
            known = ", ".join(self.modalities.names)
            raise GenerationError(f"the model does not know modality {name!r}; it knows: {known}") from None

    def generate(self, inputs: Mapping[str, Any] | None, targets: Sequence[TargetConfig | str], *,
                 seed: int | None = None, generator: torch.Generator | None = None,
                 grow_conditioning: bool = False, given: Mapping[str, Any] | None = None,
                 conditions: Sequence[tuple[Mapping[str, Any], float]] | None = None,
                 batch_size: int | None = None) -> GenerationResult:
        """Run the whole chain; see :meth:`iterate` for the arguments."""
        it = self.iterate(inputs, targets, seed=seed, generator=generator, grow_conditioning=grow_conditioning,
                          given=given, conditions=conditions, batch_size=batch_size)
        while True:
            try:
                next(it)
            except StopIteration as stop:
                return stop.value

    @torch.no_grad()
    def iterate(self, inputs: Mapping[str, Any] | None, targets: Sequence[TargetConfig | str], *,
                seed: int | None = None, generator: torch.Generator | None = None,
                grow_conditioning: bool = False, given: Mapping[str, Any] | None = None,
                conditions: Sequence[tuple[Mapping[str, Any], float]] | None = None,
                batch_size: int | None = None) -> Iterator[GenerationStep]:
        """Generate ``targets`` in order, yielding a :class:`GenerationStep` after every step; the
        generator's return value (``StopIteration.value``) is the :class:`GenerationResult`.

        ``inputs``: ``{modality: tensor | {"tensor": ..., "input_mask": ...}}`` with a leading batch axis:
        image/vector token ids ``(B, N)``, pixels ``(B, C, H, W)`` normalised, sequences ``(B, L)`` ids as
        the text tokenizer encodes them (ids, ``[EOS]``, ``[PAD]``), embedding sequences ``(B, L, D)``. Empty
        or None: unconditional generation of ``batch_size`` rows (default 1).
        ``seed`` (or ``generator``) makes sampling reproducible. ``grow_conditioning``: finished targets
        join the guided (removed in the unconditional pass) conditions of later targets.

        ``given``: partial targets, ``{target: {"tensor": ids, "input_mask": mask}}`` (or the ids alone for a
        sequence). Image / vector targets: ``input_mask`` True where tokens are generated, the other tokens
        stay (in- / out-painting). Sequences: the given text is a prefix to continue, or a template whose
        sentinels ``[S_1]``, ``[S_2]``... are filled in (see :mod:`fourm_core.generation.partial`).

        ``conditions``: weighted conditions ``[(inputs_i, weight_i), ...]`` (each like ``inputs``; several may
        hold the same modality, e.g. two captions); every target then samples
        ``uncond + sum_i w_i (cond_i - uncond)``, where ``cond_i`` sees ``inputs`` and ``inputs_i`` and
        ``uncond`` only ``inputs``. A negative weight steers away from what its condition describes.
        """
        if generator is None:
            generator = torch.Generator(device=self.backend.device)
            generator.manual_seed(seed if seed is not None else int(torch.seed() % (2**63)))
        mod_dict = self.prepare_inputs(inputs or {})
        weighted = [self.prepare_inputs(c) for c, _ in conditions or ()]
        weights = tuple(float(w) for _, w in conditions or ())
        if conditions is not None and not weighted:
            raise GenerationError("conditions= is empty: give at least one (inputs, weight) pair, or leave it out")
        partial = self._prepare_given(given or {})
        B = _batch_size([mod_dict, *weighted, partial], batch_size)
        configs = [t if isinstance(t, TargetConfig) else TargetConfig(modality=t) for t in targets]
        if not configs:
            raise GenerationError("no targets: name at least one modality to generate")
        resolved = [resolve_target(cfg, self.spec(cfg.modality)) for cfg in configs]
        names = [c.modality for c in resolved]
        if len(set(names)) != len(names):
            raise GenerationError(f"a target is listed twice: {names}")
        stray = sorted(set(partial) - set(names))
        if stray:
            raise GenerationError(f"given= names {stray}, which are not targets ({', '.join(names)})")
        clash = sorted({n for w in weighted for n in w} & set(mod_dict))
        if clash:
            raise GenerationError(f"{', '.join(map(repr, clash))}: both an input and a weighted condition; give it "
                                  f"in one place (an input is seen by every pass, a condition only by its own)")
        guided = [n for n in mod_dict]
        out_tokens: dict[str, torch.Tensor] = {}
        for cfg in resolved:
            name = cfg.modality
            given_conds = cfg.guidance_conditions if cfg.guidance_conditions is not None else guided
            conds = tuple(c for c in given_conds if c != name)  # never "remove" the target being generated
            have = ", ".join(mod_dict) or "none"
            for c in conds:
                if c not in mod_dict:
                    raise GenerationError(f"target {name!r}: guidance condition {c!r} is not among the inputs ({have})")
            for c in cfg.condition_weights or {}:
                if c not in mod_dict:
                    raise GenerationError(
                        f"target {name!r}: condition weight for {c!r}, which is not among the inputs ({have})")
            mod_dict.pop(name, None)  # a target given as input is regenerated from scratch
            spec = self.spec(name)
            if not mod_dict and not spec.encoder and not weighted:
                raise GenerationError(f"target {name!r} has no encoder embedding, so without any input the model "
                                      f"reads nothing at all; give an input or generate a modality it reads first")
            guide = _Guide(conditions=conds, by_modality=tuple(cfg.condition_weights or ()),
                           # a condition's modality once generated in the chain is an input of every pass
                           weighted=[{n: d for n, d in w.items() if n != name and n not in mod_dict}
                                     for w in weighted],
                           scale=weights if weighted else (tuple(cfg.condition_weights.values())
                                                           if cfg.condition_weights else cfg.guidance))
            if adapter_for(spec).autoregressive:
                tokens = yield from self._autoregressive(mod_dict, spec, cfg, guide, generator, B, partial.get(name))
            else:
                tokens = yield from self._iterative(mod_dict, spec, cfg, guide, generator, B, partial.get(name))
            out_tokens[name] = tokens
            if grow_conditioning and name in mod_dict:
                guided.append(name)
        return GenerationResult(tokens=out_tokens, mod_dict=mod_dict)

    # -- inputs ----------------------------------------------------------------------------------
    def prepare_inputs(self, inputs: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
        """Normalise ``inputs`` to ``{name: {"tensor", "input_mask"}}`` on the model's device, checking
        shapes against the specs (errors name the modality and the expected shape)."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in inputs.items():
            spec = self.spec(key)
            if not spec.encoder:
                raise GenerationError(f"modality {spec.name!r} cannot be an input: the model has no encoder embedding for it")
            out[spec.name] = self._prepare_one(spec, dict(value) if isinstance(value, Mapping) else {"tensor": value})
        return out

    def _prepare_one(self, spec: ModalitySpec, d: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        t = d.get("tensor")
        if not isinstance(t, torch.Tensor):
            raise GenerationError(f"input {spec.name!r}: expected a torch.Tensor, got {type(t).__name__}")
        dev = self.backend.device
        t = t.to(dev)
        mask = d.get("input_mask")
        kind = adapter_for(spec)
        vocab = self.backend.vocab_size(spec.name) if kind.discrete else None
        t, default = kind.prepare_input(spec, t, vocab_size=vocab, sequence_mask=self._sequence_input_mask)
        mask = default if mask is None else torch.as_tensor(mask).to(dev).bool()
        if mask.shape != default.shape:
            raise GenerationError(f"input {spec.name!r}: input_mask has shape {tuple(mask.shape)}, expected {tuple(default.shape)}")
        return {"tensor": t, "input_mask": mask}

    def _sequence_input_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """Visible = every id up to and including the first [EOS]; padding after it is masked."""
        is_eos = ids == self.eos_id
        after_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
        return after_eos | ((ids == self.pad_id) & ~is_eos)

    def _prepare_given(self, given: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
        """Partial targets: ``{name: {"tensor", "input_mask"}}`` (True = to generate / not given text)."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in given.items():
            spec = self.spec(key)
            if not spec.decoder:
                raise GenerationError(f"given= {spec.name!r}: the model cannot generate it (no decoder)")
            d = dict(value) if isinstance(value, Mapping) else {"tensor": value}
            kind = adapter_for(spec)
            if not kind.autoregressive and d.get("input_mask") is None:
                raise GenerationError(f"given= {spec.name!r}: give an 'input_mask' (True where tokens are generated) "
                                      f"with the tokens of a partial {spec.kind!r} target")
            prepared = self._prepare_one(spec, d)
            if kind.autoregressive:
                t, mask = prepared["tensor"], prepared["input_mask"]
                t, mask, closing = partial_mod.sequence_template(
                    spec.name, t, mask, eos_id=self.eos_id, pad_id=self.pad_id,
                    first_sentinel_id=self.first_sentinel_id, num_sentinels=self.num_sentinels)
                prepared = {"tensor": t, "input_mask": mask, "closing": closing}
            out[spec.name] = prepared
        return out

    def _guided_batch(self, mod_dict, guide: _Guide, scale) -> tuple[dict, int, list[float] | float | None]:
        """The variants of one step as one batch, their number, and the weights to combine them."""
        variants, weights = build_variants(
            mod_dict, empty=lambda n, d: empty_condition(self.spec(n), d, pad_id=self.pad_id,
                                                         first_sentinel_id=self.first_sentinel_id),
            scale=scale, conditions=guide.conditions, by_modality=guide.by_modality, weighted=guide.weighted)
        return cat_variants(variants), len(variants), weights

    def _plan(self, spec: ModalitySpec, cfg: TargetConfig, guide: _Guide, n_tokens: int) -> list[ScheduleStep]:
        return plan_target(spec.name, cfg.scheme, n_tokens, steps=cfg.steps, token_schedule_name=cfg.token_schedule,
                           temperature=cfg.temperature, temperature_schedule_name=cfg.temperature_schedule,
                           guidance=guide.scale, guidance_schedule_name=cfg.guidance_schedule,
                           cond_domains=guide.conditions)

    # -- MaskGIT / ROAR --------------------------------------------------------------------------
    def _iterative(self, mod_dict, spec: ModalitySpec, cfg: TargetConfig, guide: _Guide, generator, B, given):
        name, N = spec.name, spec.num_tokens
        dev = self.backend.device
        if given is None:
            tokens = torch.zeros((B, N), dtype=torch.long, device=dev)
            committed = torch.zeros((B, N), dtype=torch.bool, device=dev)
            todo = N
        else:
            tokens, committed, todo = partial_mod.given_tokens(name, given["tensor"], given["input_mask"])
        plan = [p for p in self._plan(spec, cfg, guide, todo) if p.num_tokens]  # steps of 0 tokens: nothing to do
        if not spec.encoder and len(plan) > 1:
            log.warning("target %r has no encoder embedding, so committed tokens cannot condition later steps: "
                        "decoding all %d tokens in one step", name, todo)
            plan = [attrs.evolve(plan[0], num_tokens=todo)]
        for step, p in enumerate(plan):
            n_commit = p.num_tokens
            if cfg.scheme == "roar":
                # a random subset of the still-masked positions: random keys, committed ones pushed last
                keys = torch.rand((B, N), generator=generator, device=dev) + committed.float() * 2.0
                query_pos = keys.argsort(dim=1)[:, :n_commit]  # (B, n)
            else:
                # every still-masked position (same count in every row); a stable sort puts them first
                remaining = N - int(committed[0].sum())
                order = torch.sort(committed.to(torch.uint8), dim=1, stable=True).indices  # (B, N)
                query_pos = order[:, :remaining]  # (B, M)
            if spec.encoder:
                mod_dict[name] = {"tensor": tokens, "input_mask": ~committed}
            batch, k, weights = self._guided_batch(mod_dict, guide, p.cfg_scale)
            logits = self.backend.parallel_logits(batch, name, query_pos.repeat(k, 1))  # (kB, M, V)
            logits = combine(logits, k, weights)[..., : cfg.vocab_limit]
            ids, probs = sample_tokens(logits, p.temperature, cfg.top_k, cfg.top_p, generator)  # (B, M)
            if cfg.scheme == "roar":
                chosen_pos, chosen_ids = query_pos, ids
            else:
                top = probs.topk(n_commit, dim=1).indices  # most confident predictions, (B, n)
                chosen_pos, chosen_ids = query_pos.gather(1, top), ids.gather(1, top)
            tokens = tokens.scatter(1, chosen_pos, chosen_ids)
            committed = committed.scatter(1, chosen_pos, True)
            yield GenerationStep(modality=name, step=step, num_steps=len(plan), tokens=tokens,
                                 committed=committed, done=step == len(plan) - 1)
        mod_dict[name] = {"tensor": tokens, "input_mask": torch.zeros_like(committed)}
        if not spec.encoder:
            mod_dict.pop(name)
        return tokens

    # -- autoregressive ----------------------------------------------------------------------------
    def _autoregressive(self, mod_dict, spec: ModalitySpec, cfg: TargetConfig, guide: _Guide, generator, B, given):
        name, L = spec.name, spec.max_length
        dev = self.backend.device
        if given is not None:  # a prefix or a template: its text is visible, the spans are generated
            template, template_hidden, closing = given["tensor"], given["input_mask"], given["closing"]
        else:  # the whole sequence is masked: one visible sentinel, as in training
            template = torch.full((B, L), self.pad_id, dtype=torch.long, device=dev)
            template[:, 0] = self.first_sentinel_id
            template_hidden = torch.ones((B, L), dtype=torch.bool, device=dev)
            template_hidden[:, 0] = False
            closing = torch.full((B,), self.first_sentinel_id + 1, dtype=torch.long, device=dev)
        if given is not None and not spec.encoder:
            raise GenerationError(f"partial target {name!r}: the model has no encoder embedding for it, so given "
                                  f"text cannot condition it")
        if spec.encoder:
            mod_dict[name] = {"tensor": template, "input_mask": template_hidden}
        (step_plan,) = self._plan(spec, cfg, guide, L)
        batch, k, weights = self._guided_batch(mod_dict, guide, step_plan.cfg_scale)
        state = self.backend.start_sequence(batch, name)
        n_new = cfg.max_new_tokens
        current = torch.full((B,), self.first_sentinel_id, dtype=torch.long, device=dev)
        generated = torch.full((B, n_new), self.pad_id, dtype=torch.long, device=dev)
        finished = torch.zeros(B, dtype=torch.bool, device=dev)
        lengths = torch.full((B,), n_new, dtype=torch.long, device=dev)
        temperature = step_plan.temperature
        # top-k / top-p need every exact logit. One table serves the whole sequence: the weights are fixed for
        # one generation (the context keys/values in the cache were computed from them)
        use_table = not cfg.top_k and (not cfg.top_p or cfg.top_p >= 1) and cfg.vocab_limit is None
        table = self.backend.proposal_table(name) if use_table else None
        # grammar-constrained decoding: one automaton state per row, a mask of the allowed tokens per step
        grammar = grammar_decode.target_grammar(
            cfg.grammar, name, vocab=cfg.vocab_limit or self.backend.vocab_size(name), n_new=n_new, length=L,
            closing=closing, eos_id=self.eos_id, pad_id=self.pad_id, first_sentinel_id=self.first_sentinel_id,
            num_sentinels=self.num_sentinels, given=None if given is None else (template, template_hidden))
        allowed = None

        def combine_logits(values: torch.Tensor) -> torch.Tensor:
            out = combine(values, k, weights)  # the int8 proposals, their exact rows and the exact logits
            return out if allowed is None or out.shape != allowed.shape else out.masked_fill(~allowed, -torch.inf)

        def combine_bound(eps: torch.Tensor) -> torch.Tensor:
            return combine(eps, k, weights, guidance_bound)

        for t in range(n_new):
            hidden = self.backend.next_hidden(state, current if k == 1 else current.repeat(k), t)  # (kB, D)
            allowed = grammar.allowed() if grammar is not None else None  # (B, V) or None
            ids = None
            if table is not None:
                ids = self.backend.sample_with_table(table, name, hidden, combine_logits, combine_bound, temperature,
                                                     generator)
                if ids is None and not self.backend.use_proposals:  # the bound broke: float32 from now on
                    table = None
                if ids is not None and allowed is not None and not bool(allowed.gather(1, ids[:, None]).all()):
                    ids = None  # a draw at the very end of the proposal CDF fell outside the mask: draw exactly
            if ids is None:
                logits = combine(self.backend.step_logits(name, hidden), k, weights)[..., : cfg.vocab_limit]  # (B, V)
                if allowed is not None:
                    logits = logits.masked_fill(~allowed, -torch.inf)
                ids, _ = sample_tokens(logits, temperature, cfg.top_k, cfg.top_p, generator)  # (B,)
            if grammar is not None:
                grammar.advance(ids)
            if cfg.stop_at_eos:
                stop = ((ids == self.eos_id) | (ids == closing)) & ~finished
                lengths = torch.where(stop, torch.full_like(lengths, t), lengths)
                finished = finished | stop
            generated[:, t] = ids
            current = ids
            last = t == n_new - 1 or (cfg.stop_at_eos and bool(finished.all()))
            yield GenerationStep(modality=name, step=t, num_steps=n_new, tokens=generated[:, : t + 1],
                                 committed=torch.ones((B, t + 1), dtype=torch.bool, device=dev), done=last)
            if last:
                break
        if given is None:
            # Layout of the text tokenizer: ids, [EOS], [PAD]...; positions at/after a row's stop are dropped.
            out = torch.full((B, L), self.pad_id, dtype=torch.long, device=dev)
            pos = torch.arange(n_new, device=dev).expand(B, n_new)
            keep = pos < lengths[:, None]
            out[:, :n_new] = torch.where(keep, generated, torch.full_like(generated, self.pad_id))
            out.scatter_(1, lengths[:, None], self.eos_id)
            hidden_out = torch.arange(L, device=dev).expand(B, L) > lengths[:, None]
        else:
            out, hidden_out = partial_mod.merge_spans(
                template, template_hidden, generated, lengths, length=L, eos_id=self.eos_id, pad_id=self.pad_id,
                first_sentinel_id=self.first_sentinel_id, num_sentinels=self.num_sentinels)
        mod_dict[name] = {"tensor": out, "input_mask": hidden_out}
        if not spec.encoder:
            mod_dict.pop(name)
        return out
