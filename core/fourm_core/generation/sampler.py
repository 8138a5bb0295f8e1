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
from .backend import ModelBackend
from .errors import GenerationError
from .sampling import combine_guidance, guidance_bound, sample_tokens
from .schedules import temperature_schedule, token_schedule
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


def _batch_size(mod_dict: Mapping[str, Mapping[str, torch.Tensor]]) -> int:
    sizes = {name: d["tensor"].shape[0] for name, d in mod_dict.items()}
    if len(set(sizes.values())) > 1:
        raise GenerationError(f"inputs disagree on the batch size: {sizes}; give every modality the same batch size")
    return next(iter(sizes.values()))


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

    def generate(self, inputs: Mapping[str, Any], targets: Sequence[TargetConfig | str], *,
                 seed: int | None = None, generator: torch.Generator | None = None,
                 grow_conditioning: bool = False) -> GenerationResult:
        """Run the whole chain; see :meth:`iterate` for the arguments."""
        result: GenerationResult | None = None
        it = self.iterate(inputs, targets, seed=seed, generator=generator, grow_conditioning=grow_conditioning)
        while True:
            try:
                next(it)
            except StopIteration as stop:
                result = stop.value
                break
        return result

    @torch.no_grad()
    def iterate(self, inputs: Mapping[str, Any], targets: Sequence[TargetConfig | str], *,
                seed: int | None = None, generator: torch.Generator | None = None,
                grow_conditioning: bool = False) -> Iterator[GenerationStep]:
        """Generate ``targets`` in order, yielding a :class:`GenerationStep` after every step; the
        generator's return value (``StopIteration.value``) is the :class:`GenerationResult`.

        ``inputs``: ``{modality: tensor | {"tensor": ..., "input_mask": ...}}`` with a leading batch axis:
        image/vector token ids ``(B, N)``, pixels ``(B, C, H, W)`` normalised, sequences ``(B, L)`` ids as
        the text tokenizer encodes them (ids, ``[EOS]``, ``[PAD]``), embedding sequences ``(B, L, D)``.
        ``seed`` (or ``generator``) makes sampling reproducible. ``grow_conditioning``: finished targets
        join the guided (removed in the unconditional pass) conditions of later targets.
        """
        if generator is None:
            generator = torch.Generator(device=self.backend.device)
            generator.manual_seed(seed if seed is not None else int(torch.seed() % (2**63)))
        mod_dict = self.prepare_inputs(inputs)
        if not mod_dict:
            raise GenerationError("no inputs: give at least one condition modality (e.g. rgb=photo.jpg)")
        B = _batch_size(mod_dict)
        configs = [t if isinstance(t, TargetConfig) else TargetConfig(modality=t) for t in targets]
        if not configs:
            raise GenerationError("no targets: name at least one modality to generate")
        resolved: list[TargetConfig] = []
        for cfg in configs:
            resolved.append(resolve_target(cfg, self.spec(cfg.modality)))
        names = [c.modality for c in resolved]
        if len(set(names)) != len(names):
            raise GenerationError(f"a target is listed twice: {names}")
        guided = [n for n in mod_dict]
        out_tokens: dict[str, torch.Tensor] = {}
        for cfg in resolved:
            name = cfg.modality
            given = cfg.guidance_conditions if cfg.guidance_conditions is not None else guided
            conditions = tuple(c for c in given if c != name)  # never "remove" the target being generated
            for c in conditions:
                if c not in mod_dict:
                    raise GenerationError(
                        f"target {name!r}: guidance condition {c!r} is not among the inputs ({', '.join(mod_dict)})")
            if cfg.condition_weights:
                for c in cfg.condition_weights:
                    if c not in mod_dict:
                        raise GenerationError(
                            f"target {name!r}: condition weight for {c!r}, which is not among the inputs "
                            f"({', '.join(mod_dict)})")
            mod_dict.pop(name, None)  # a target given as input is regenerated from scratch
            spec = self.spec(name)
            if adapter_for(spec).autoregressive:
                tokens = yield from self._autoregressive(mod_dict, spec, cfg, conditions, generator, B)
            else:
                tokens = yield from self._iterative(mod_dict, spec, cfg, conditions, generator, B)
            out_tokens[name] = tokens
            if grow_conditioning and name in mod_dict:
                guided.append(name)
        return GenerationResult(tokens=out_tokens, mod_dict=mod_dict)

    # -- inputs ----------------------------------------------------------------------------------
    def prepare_inputs(self, inputs: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
        """Normalise ``inputs`` to ``{name: {"tensor", "input_mask"}}`` on the model's device, checking
        shapes against the specs (errors name the modality and the expected shape)."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        dev = self.backend.device
        for key, value in inputs.items():
            spec = self.spec(key)
            if not spec.encoder:
                raise GenerationError(f"modality {spec.name!r} cannot be an input: the model has no encoder embedding for it")
            d = dict(value) if isinstance(value, Mapping) else {"tensor": value}
            t = d.get("tensor")
            if not isinstance(t, torch.Tensor):
                raise GenerationError(f"input {spec.name!r}: expected a torch.Tensor, got {type(t).__name__}")
            t = t.to(dev)
            mask = d.get("input_mask")
            kind = adapter_for(spec)
            vocab = self.backend.vocab_size(spec.name) if kind.discrete else None
            t, default = kind.prepare_input(spec, t, vocab_size=vocab, sequence_mask=self._sequence_input_mask)
            mask = default if mask is None else mask.to(dev).bool()
            if mask.shape != default.shape:
                raise GenerationError(f"input {spec.name!r}: input_mask has shape {tuple(mask.shape)}, expected {tuple(default.shape)}")
            out[spec.name] = {"tensor": t, "input_mask": mask}
        return out

    def _sequence_input_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """Visible = every id up to and including the first [EOS]; padding after it is masked."""
        is_eos = ids == self.eos_id
        after_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
        return after_eos | ((ids == self.pad_id) & ~is_eos)

    # -- guidance batches ------------------------------------------------------------------------
    def _empty_condition(self, spec: ModalitySpec, d: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The "no information" version of a condition (the unconditional pass of guidance)."""
        t, mask = adapter_for(spec).empty_condition(d["tensor"], d["input_mask"], pad_id=self.pad_id,
                                                    first_sentinel_id=self.first_sentinel_id)
        return {"tensor": t, "input_mask": mask}

    def _variants(self, mod_dict: dict[str, dict[str, torch.Tensor]], cfg: TargetConfig,
                  conditions: tuple[str, ...]) -> tuple[list[dict], list[float] | float | None]:
        """The mod_dicts to run together: ``[cond]`` (no guidance), ``[cond, uncond]`` or
        ``[cond_1..cond_n, uncond]`` (weighted multi-condition), and the weights to combine them."""
        if cfg.condition_weights:
            listed = list(cfg.condition_weights)
            uncond = {n: (self._empty_condition(self.spec(n), d) if n in listed else d) for n, d in mod_dict.items()}
            variants = []
            for c in listed:
                variants.append({n: (d if n == c else uncond[n]) for n, d in mod_dict.items()})
            return [*variants, uncond], [cfg.condition_weights[c] for c in listed]
        if cfg.guidance == 1.0 or not conditions:
            return [mod_dict], None
        uncond = {n: (self._empty_condition(self.spec(n), d) if n in conditions else d) for n, d in mod_dict.items()}
        return [mod_dict, uncond], float(cfg.guidance)

    @staticmethod
    def _cat_variants(variants: list[dict]) -> dict[str, dict[str, torch.Tensor]]:
        if len(variants) == 1:
            return variants[0]
        return {n: {k: torch.cat([v[n][k] for v in variants], dim=0) for k in variants[0][n]} for n in variants[0]}

    @staticmethod
    def _combine(values: torch.Tensor, n_variants: int, weights: list[float] | float | None,
                 rule=combine_guidance) -> torch.Tensor:
        """Guidance over the ``n_variants`` stacked along the batch (conditional ones first, unconditional
        last): ``rule`` is :func:`combine_guidance` for logits, :func:`guidance_bound` for error bounds."""
        if n_variants == 1:
            return values
        parts = values.chunk(n_variants, dim=0)
        if isinstance(weights, list):
            return rule(list(parts[:-1]), parts[-1], weights)
        return rule(parts[0], parts[1], weights)

    # -- MaskGIT / ROAR --------------------------------------------------------------------------
    def _iterative(self, mod_dict, spec: ModalitySpec, cfg: TargetConfig, conditions, generator, B):
        name, N = spec.name, spec.num_tokens
        dev = self.backend.device
        tokens = torch.zeros((B, N), dtype=torch.long, device=dev)
        committed = torch.zeros((B, N), dtype=torch.bool, device=dev)
        counts = token_schedule(N, cfg.steps, cfg.token_schedule)
        if not spec.encoder and len(counts) > 1:
            log.warning("target %r has no encoder embedding, so committed tokens cannot condition later steps: "
                        "decoding all %d tokens in one step", name, N)
            counts = [N]
        temps = temperature_schedule(cfg.temperature, counts, cfg.temperature_schedule)
        for step, (n_commit, temp) in enumerate(zip(counts, temps)):
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
            variants, weights = self._variants(mod_dict, cfg, conditions)
            k = len(variants)
            batch = self._cat_variants(variants)
            logits = self.backend.parallel_logits(batch, name, query_pos.repeat(k, 1))  # (kB, M, V)
            logits = self._combine(logits, k, weights)
            ids, probs = sample_tokens(logits, temp, cfg.top_k, cfg.top_p, generator)  # (B, M)
            if cfg.scheme == "roar":
                chosen_pos, chosen_ids = query_pos, ids
            else:
                top = probs.topk(n_commit, dim=1).indices  # most confident predictions, (B, n)
                chosen_pos, chosen_ids = query_pos.gather(1, top), ids.gather(1, top)
            tokens = tokens.scatter(1, chosen_pos, chosen_ids)
            committed = committed.scatter(1, chosen_pos, True)
            done = step == len(counts) - 1
            yield GenerationStep(modality=name, step=step, num_steps=len(counts), tokens=tokens,
                                 committed=committed, done=done)
        mod_dict[name] = {"tensor": tokens, "input_mask": torch.zeros_like(committed)}
        if not spec.encoder:
            mod_dict.pop(name)
        return tokens

    # -- autoregressive ----------------------------------------------------------------------------
    def _autoregressive(self, mod_dict, spec: ModalitySpec, cfg: TargetConfig, conditions, generator, B):
        name, L = spec.name, spec.max_length
        dev = self.backend.device
        if spec.encoder:  # the whole sequence is masked: one visible sentinel, as in training
            empty = torch.full((B, L), self.pad_id, dtype=torch.long, device=dev)
            empty[:, 0] = self.first_sentinel_id
            mask = torch.ones((B, L), dtype=torch.bool, device=dev)
            mask[:, 0] = False
            mod_dict[name] = {"tensor": empty, "input_mask": mask}
        variants, weights = self._variants(mod_dict, cfg, conditions)
        k = len(variants)
        state = self.backend.start_sequence(self._cat_variants(variants), name)
        n_new = cfg.max_new_tokens
        stop_ids = torch.tensor([self.eos_id, self.first_sentinel_id + 1], device=dev)
        current = torch.full((B,), self.first_sentinel_id, dtype=torch.long, device=dev)
        generated = torch.full((B, n_new), self.pad_id, dtype=torch.long, device=dev)
        finished = torch.zeros(B, dtype=torch.bool, device=dev)
        lengths = torch.full((B,), n_new, dtype=torch.long, device=dev)
        # top-k / top-p need every exact logit. One table serves the whole sequence: the weights are fixed for
        # one generation (the context keys/values in the cache were computed from them)
        use_table = not cfg.top_k and (not cfg.top_p or cfg.top_p >= 1)
        table = self.backend.proposal_table(name) if use_table else None

        def combine(values: torch.Tensor) -> torch.Tensor:
            return self._combine(values, k, weights)

        def combine_bound(eps: torch.Tensor) -> torch.Tensor:
            return self._combine(eps, k, weights, guidance_bound)

        for t in range(n_new):
            hidden = self.backend.next_hidden(state, current if k == 1 else current.repeat(k), t)  # (kB, D)
            ids = None
            if table is not None:
                ids = self.backend.sample_with_table(table, name, hidden, combine, combine_bound, cfg.temperature,
                                                     generator)
                if ids is None and not self.backend.use_proposals:  # the bound broke: float32 from now on
                    table = None
            if ids is None:
                logits = self._combine(self.backend.step_logits(name, hidden), k, weights)  # (B, V)
                ids, _ = sample_tokens(logits, cfg.temperature, cfg.top_k, cfg.top_p, generator)  # (B,)
            if cfg.stop_at_eos:
                stop = torch.isin(ids, stop_ids) & ~finished
                lengths = torch.where(stop, torch.full_like(lengths, t), lengths)
                finished = finished | stop
            generated[:, t] = ids
            current = ids
            last = t == n_new - 1 or (cfg.stop_at_eos and bool(finished.all()))
            yield GenerationStep(modality=name, step=t, num_steps=n_new, tokens=generated[:, : t + 1],
                                 committed=torch.ones((B, t + 1), dtype=torch.bool, device=dev), done=last)
            if last:
                break
        # Layout of the text tokenizer: ids, [EOS], [PAD]...; positions at/after a row's stop are dropped.
        out = torch.full((B, L), self.pad_id, dtype=torch.long, device=dev)
        pos = torch.arange(n_new, device=dev).expand(B, n_new)
        keep = pos < lengths[:, None]
        out[:, :n_new] = torch.where(keep, generated, torch.full_like(generated, self.pad_id))
        out.scatter_(1, lengths[:, None], self.eos_id)
        visible = torch.arange(L, device=dev).expand(B, L) <= lengths[:, None]
        mod_dict[name] = {"tensor": out, "input_mask": ~visible}
        if not spec.encoder:
            mod_dict.pop(name)
        return out
