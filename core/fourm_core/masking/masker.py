"""The :class:`Masker`: resolves a :class:`MaskingConfig` against a ``ModalitySet`` once, then masks batches.

Construction: per-modality settings and layout (:meth:`Masker._resolve_modalities`), the mixture tables
(:meth:`Masker._mixture_tables`), then the transfer sets or the min-token checks. A call runs named stages:
check the batch, count the tokens present, input budgets, span masking of the sequence-like modalities, target
budgets, and each modality's layout.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import torch

from fourm_registry import ModalitySet, ModalitySpec

from ..kinds import KindAdapter, adapter_for
from .budgets import (
    BudgetTables,
    InputBudgets,
    draw_inputs,
    draw_targets,
    fill_inputs,
    transfer_inputs,
    transfer_targets,
)
from .config import KEEP_SCHEMES, MaskingConfig, MaskingError, ModalityMasking, TextVocabInfo
from .layouts import Layout, State, _span_mask, layout_for

_VOCAB_HINT = "pass text=TextVocabInfo.from_tokenizer(tokenizer)"


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


@attrs.frozen
class _Mod:
    """Resolved per-modality settings (internal)."""

    name: str
    spec: ModalitySpec
    kind: str
    n: int  # token slots (image grid, vector K, sequence max_length, embedding rows)
    min_tokens: int
    max_tokens: int
    keep: str
    span: str
    chunk_ids: tuple[int, ...] = ()
    chunk_prefixes: tuple[str, ...] = ()
    layout: Layout = attrs.field(factory=Layout, eq=False, repr=False)

    @property
    def can_input(self) -> bool:
        return bool(self.spec.encoder)

    @property
    def kind_adapter(self) -> KindAdapter:
        return adapter_for(self.spec)

    @property
    def can_target(self) -> bool:
        return bool(self.spec.decoder) and self.kind_adapter.discrete


def count_tokens(modalities: ModalitySet, config: MaskingConfig) -> tuple[int, int]:
    """``(num_encoder_tokens, num_decoder_tokens)`` a model must be called with for batches of this config."""
    m = Masker(modalities, config)
    return m.num_encoder_tokens, m.num_decoder_tokens


class Masker:
    """Turns a batch of token tensors into a masked ``mod_dict`` (the layout is documented in
    :mod:`fourm_core.masking`)."""

    def __init__(self, modalities: ModalitySet, config: MaskingConfig | None = None, *,
                 text: TextVocabInfo | None = None) -> None:
        if not isinstance(modalities, ModalitySet):
            raise MaskingError(f"Masker needs a fourm_registry.ModalitySet, got {type(modalities).__name__}")
        self.modalities = modalities
        self.config = config if config is not None else MaskingConfig()
        self.text = text if text is not None else TextVocabInfo()
        self.mods: list[_Mod] = self._resolve_modalities()
        self.index = {m.name: i for i, m in enumerate(self.mods)}
        self.allowed_in = self._allowed(self.config.inputs, "inputs")
        self.allowed_tg = self._allowed(self.config.targets, "targets")
        self.weights, self.alpha_in, self.alpha_tg, self.keep_code, self.full_input = self._mixture_tables()
        self.transfer_in: set[str] = set()
        self.transfer_tg: set[str] = set()
        if self.config.transfer is not None:
            self.transfer_in, self.transfer_tg = self._transfer_sets()
        else:
            self._check_min_tokens()
        self.tables = self._budget_tables()

    # -- construction stages -----------------------------------------------------------------------------
    def _resolve_modalities(self) -> list[_Mod]:
        mod_cfg = {self._resolve(k, "modalities"): v for k, v in self.config.modalities.items()}
        mod_cfg = {k: v for k, v in mod_cfg.items() if k is not None}
        return [self._resolve_modality(spec, mod_cfg.get(spec.name, ModalityMasking()))
                for spec in self.modalities.specs]

    def _resolve_modality(self, spec: ModalitySpec, mc: ModalityMasking) -> _Mod:
        layout = layout_for(spec)
        n = int(spec.num_tokens or 0)
        mn = mc.min_tokens if mc.min_tokens is not None else spec.masking.min_tokens
        mx = mc.max_tokens if mc.max_tokens is not None else spec.masking.max_tokens
        mx = n + 2 if mx is None else mx  # sequences: a full target is max_length + 2 entries
        chunk_ids: list[int] = []
        prefixes: list[str] = []
        text_tokens = adapter_for(spec).autoregressive  # the shared text vocabulary: sentinels, chunk starts
        if text_tokens:
            self._check_sentinels(spec, n)
            if mc.span == "chunked":
                chunk_ids, prefixes = self._chunk_starts(spec, mc.chunk_start_tokens)
        return _Mod(name=spec.name, spec=spec, kind=spec.kind, n=n, min_tokens=int(mn), max_tokens=int(mx),
                    keep=mc.keep, span=mc.span if text_tokens else "simple",
                    chunk_ids=tuple(sorted(set(chunk_ids))), chunk_prefixes=tuple(prefixes), layout=layout)

    def _allowed(self, names: tuple[str, ...] | None, where: str) -> set[str]:
        """The resolved modalities of a ``masking.inputs`` / ``masking.targets`` list (``None``: all)."""
        if names is None:
            return set(self.index)
        return {self._resolve(n, where) for n in names} - {None}

    def _check_sentinels(self, spec: ModalitySpec, n: int) -> None:
        """A span-masked sequence of ``n`` tokens may need ``(n + 1) // 2 + 1`` sentinels."""
        if (n + 1) // 2 + 1 >= self.text.num_sentinels:
            raise MaskingError(
                f"modality {spec.name!r}: max_length {n} may need {(n + 1) // 2 + 1} sentinels but the vocabulary "
                f"has [S_0]..[S_{self.text.num_sentinels - 1}]; use max_length <= "
                f"{2 * (self.text.num_sentinels - 2) - 1}")

    def _chunk_starts(self, spec: ModalitySpec, tokens: tuple[str, ...]) -> tuple[list[int], list[str]]:
        """Ids of the chunk start tokens (exact strings, or prefixes ending with ``*``) and the prefixes."""
        vocab = self.text.token_to_id
        chunk_ids: list[int] = []
        prefixes: list[str] = []
        for tok in tokens:
            if tok.endswith("*"):
                prefixes.append(tok[:-1])
                continue
            if vocab is None or tok not in vocab:
                raise MaskingError(f"modality {spec.name!r}: chunk start token {tok!r} is not in the text vocabulary "
                                   f"({_VOCAB_HINT})")
            chunk_ids.append(int(vocab[tok]))
        if prefixes:
            if vocab is None:
                raise MaskingError(f"modality {spec.name!r}: chunk start prefixes need the text vocabulary "
                                   f"({_VOCAB_HINT})")
            chunk_ids.extend(i for t, i in vocab.items() if any(t.startswith(p) for p in prefixes))
        return chunk_ids, prefixes

    def _mixture_tables(self) -> tuple[torch.Tensor, ...]:
        """``(weights (K,), alpha_in, alpha_tg, keep_code, full_input)``, the last four ``(K, M)``."""
        mixture = self.config.mixture
        k, nm = len(mixture), len(self.mods)
        weights = torch.tensor([c.weight for c in mixture], dtype=torch.float64)
        alpha_in = torch.zeros(k, nm, dtype=torch.float64)
        alpha_tg = torch.zeros(k, nm, dtype=torch.float64)
        keep_code = torch.zeros(k, nm, dtype=torch.long)
        full_input = torch.zeros(k, nm, dtype=torch.bool)
        for ci, comp in enumerate(mixture):
            a_in = self._per_mod(comp.input_alphas, f"mixture[{ci}].input_alphas")
            a_tg = self._per_mod(comp.target_alphas, f"mixture[{ci}].target_alphas")
            keep = {self._resolve(n, f"mixture[{ci}].keep"): s for n, s in comp.keep.items()}
            full = {self._resolve(n, f"mixture[{ci}].full_input") for n in comp.full_input} - {None}
            for mi, m in enumerate(self.mods):
                inp, tgt = m.can_input and m.name in self.allowed_in, m.can_target and m.name in self.allowed_tg
                alpha_in[ci, mi] = a_in[mi] if inp and m.name not in full else 0.0
                alpha_tg[ci, mi] = a_tg[mi] if tgt and m.name not in full else 0.0
                keep_code[ci, mi] = KEEP_SCHEMES.index(keep.get(m.name, m.keep))
                if m.name in full:
                    if not m.can_input:
                        raise MaskingError(f"mixture[{ci}].full_input: modality {m.name!r} is not an encoder modality")
                    full_input[ci, mi] = m.name in self.allowed_in
        return weights, alpha_in, alpha_tg, keep_code, full_input

    def _transfer_sets(self) -> tuple[set[str], set[str]]:
        """The resolved transfer inputs and targets, checked against what each modality can be."""
        transfer = self.config.transfer
        inputs = {self._resolve(n, "transfer.inputs") for n in transfer.inputs} - {None}
        targets = {self._resolve(n, "transfer.targets") for n in transfer.targets} - {None}
        for n in inputs:
            if not self.mods[self.index[n]].can_input:
                raise MaskingError(f"transfer masking: modality {n!r} ({self.mods[self.index[n]].kind}) cannot be an "
                                   f"encoder input")
        for n in targets:
            if not self.mods[self.index[n]].can_target:
                raise MaskingError(f"transfer masking: modality {n!r} ({self.mods[self.index[n]].kind}) cannot be "
                                   f"a decoder target; decodable kinds are image, vector and sequence")
        return inputs, targets

    def _check_min_tokens(self) -> None:
        cfg = self.config
        mins = sum(m.min_tokens for m in self.mods if m.can_input and m.name in self.allowed_in)
        if mins > cfg.input_tokens[0]:
            raise MaskingError(f"masking: the per-modality min_tokens sum to {mins}, more than the smallest input "
                               f"budget {cfg.input_tokens[0]}; lower min_tokens or raise input_tokens")
        mins_t = sum(m.min_tokens for m in self.mods if m.can_target and m.name in self.allowed_tg)
        if cfg.target_tokens is not None and mins_t > cfg.target_tokens[0]:
            raise MaskingError(f"masking: the per-modality min_tokens sum to {mins_t}, more than the smallest target "
                               f"budget {cfg.target_tokens[0]}; lower min_tokens or raise target_tokens")

    def _budget_tables(self) -> BudgetTables:
        mods = self.mods
        return BudgetTables(
            weights=self.weights, alpha_in=self.alpha_in, alpha_tg=self.alpha_tg, keep_code=self.keep_code,
            full_input=self.full_input,
            can_input=torch.tensor([m.can_input and m.name in self.allowed_in for m in mods]),
            can_target=torch.tensor([m.can_target and m.name in self.allowed_tg for m in mods]),
            min_tokens=torch.tensor([m.min_tokens for m in mods]),
            max_tokens=torch.tensor([m.max_tokens for m in mods]),
            span_masked=torch.tensor([m.layout.span_masked for m in mods]),
            transfer_in=torch.tensor([m.name in self.transfer_in for m in mods]),
            transfer_tg=torch.tensor([m.name in self.transfer_tg for m in mods]))

    # -- config resolution -----------------------------------------------------------------------------
    def _resolve(self, name: str, where: str) -> str | None:
        if name in self.modalities:
            return self.modalities.resolve(name)
        if self.config.allow_unknown_modalities:
            return None
        raise MaskingError(f"masking config {where}: unknown modality {name!r}; the masker's modalities are "
                           f"{', '.join(self.modalities.names) or '(none)'} (set allow_unknown_modalities: true to "
                           f"ignore names of modalities not being trained)")

    def _per_mod(self, alphas: Mapping[str, float], where: str) -> list[float]:
        out = [alphas.get("*", 0.0)] * len(self.mods)
        for name, a in alphas.items():
            if name == "*":
                continue
            r = self._resolve(name, where)
            if r is not None:
                out[self.index[r]] = a
        return out

    # -- token counts ----------------------------------------------------------------------------------
    @property
    def num_encoder_tokens(self) -> int:
        """Encoder length the model must be called with (upper bound of visible input tokens per sample)."""
        if self.config.transfer is not None:
            return sum(m.n for m in self.mods if m.name in self.transfer_in)
        full = max((sum(m.n for mi, m in enumerate(self.mods) if self.full_input[ci, mi])
                    for ci in range(self.full_input.shape[0])), default=0)
        return self.config.input_tokens[1] + full

    @property
    def num_decoder_tokens(self) -> int:
        """Decoder length the model must be called with (upper bound of target slots per sample)."""
        if self.config.transfer is not None:
            return sum(m.layout.target_slots(m.n) for m in self.mods if m.name in self.transfer_tg)
        if self.config.target_tokens is None:
            return sum(m.layout.target_slots(m.n) for m in self.mods if m.can_target and m.name in self.allowed_tg)
        return self.config.target_tokens[1]

    # -- validation ------------------------------------------------------------------------------------
    def _check_batch(self, batch: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int, torch.device]:
        if not isinstance(batch, Mapping) or not batch:
            raise MaskingError("masker: the batch must be a non-empty mapping modality -> tensor")
        data: dict[str, torch.Tensor] = {}
        bsz: int | None = None
        device = None
        for key, t in batch.items():
            if key not in self.modalities:
                raise MaskingError(f"masker: batch has unknown modality {key!r}; known: "
                                   f"{', '.join(self.modalities.names)}")
            name = self.modalities.resolve(key)
            m = self.mods[self.index[name]]
            if not isinstance(t, torch.Tensor):
                raise MaskingError(f"masker: modality {name!r} must be a torch.Tensor, got {type(t).__name__}")
            want = m.layout.expected(t, m)
            if want is not None:
                raise MaskingError(f"masker: modality {name!r} ({m.kind}) must be {want}, got "
                                   f"{_dtype_name(t)} {tuple(t.shape)}")
            if bsz is None:
                bsz, device = t.shape[0], t.device
            elif t.shape[0] != bsz:
                raise MaskingError(f"masker: modality {name!r} has batch size {t.shape[0]}, others have {bsz}")
            if m.kind_adapter.discrete and t.numel():
                lo, hi = int(t.min()), int(t.max())
                vocab = m.layout.vocab_size(m.spec, self.text)
                if lo < 0 or (vocab is not None and hi >= vocab):
                    raise MaskingError(f"masker: modality {name!r} has token ids in [{lo}, {hi}] outside the "
                                       f"vocabulary [0, {vocab}); were the tokens made with another tokenizer?")
            data[name] = t
        pres: dict[str, torch.Tensor] = {}
        for key, t in (present or {}).items():
            if key not in self.modalities:
                raise MaskingError(f"masker: present has unknown modality {key!r}; known: "
                                   f"{', '.join(self.modalities.names)}")
            name = self.modalities.resolve(key)
            t = torch.as_tensor(t, device=device)
            if t.dtype != torch.bool or t.shape != (bsz,):
                raise MaskingError(f"masker: present[{name!r}] must be a BoolTensor of shape ({bsz},), got "
                                   f"{_dtype_name(t)} {tuple(t.shape)}")
            pres[name] = t
        return data, pres, int(bsz), device

    # -- masking stages --------------------------------------------------------------------------------
    def __call__(self, batch: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None,
                 generator: torch.Generator | None = None, *,
                 chunks: Mapping[str, torch.Tensor] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """Mask ``batch`` (the batch and result layouts are documented in :mod:`fourm_core.masking`).
        ``chunks`` optionally gives, per sequence modality, a LongTensor (B, max_length) of non-decreasing chunk
        indices for chunked span masking."""
        data, pres, bsz, dev = self._check_batch(batch, present)
        cfg, gen = self.config, generator
        tab = self.tables.to(dev)
        avail, length = self._token_counts(data, pres, bsz, dev)
        transfer = cfg.transfer is not None
        if transfer:
            inp = transfer_inputs(tab, avail, length)
        else:
            inp = draw_inputs(tab, avail, length, cfg.input_tokens, gen)
        states, in_used, tgt_len = self._span_masks(tab, data, length, inp, chunks, gen)
        in_budget = inp.budget
        if transfer:
            tgt_budget = transfer_targets(tab, avail, length, tgt_len)
        else:
            if cfg.fill_budget:
                in_budget = fill_inputs(tab, inp, in_used, gen)
            tgt_budget = draw_targets(tab, inp, in_budget, avail, length, tgt_len, cfg.target_tokens, gen)
        return self._layouts(data, in_budget, tgt_budget, states, gen)

    def _token_counts(self, data: dict[str, torch.Tensor], pres: dict[str, torch.Tensor], bsz: int,
                      dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(avail, length)`` (B, M): whether each modality is usable per sample, and its tokens present."""
        nm = len(self.mods)
        avail = torch.zeros(bsz, nm, dtype=torch.bool, device=dev)
        length = torch.zeros(bsz, nm, dtype=torch.long, device=dev)
        for name, t in data.items():
            i = self.index[name]
            m = self.mods[i]
            p = pres.get(name, torch.ones(bsz, dtype=torch.bool, device=dev))
            n_tok = m.layout.lengths(t, m, self.text)
            length[:, i] = torch.where(p, n_tok, torch.zeros_like(n_tok))
            avail[:, i] = p & (n_tok > 0)
        return avail, length

    def _span_masks(self, tab: BudgetTables, data: dict[str, torch.Tensor], length: torch.Tensor,
                    inp: InputBudgets, chunks: Mapping[str, torch.Tensor] | None, gen: torch.Generator | None
                    ) -> tuple[dict[str, State], torch.Tensor, torch.Tensor]:
        """Span-mask the sequence-like modalities' inputs (they decide the target lengths); returns their states,
        the input tokens each modality uses (image-like: its budget) and the target lengths (B, M)."""
        in_used = torch.where(tab.span_masked, torch.zeros_like(inp.budget), inp.budget)
        tgt_len = torch.zeros_like(length)
        states: dict[str, State] = {}
        for name, t in data.items():
            i = self.index[name]
            m = self.mods[i]
            if not m.layout.span_masked:
                continue
            ids, chunk = m.layout.span_tokens(t, m, chunks, self.text)
            st = _span_mask(ids, length[:, i], inp.budget[:, i], inp.keep_prob[:, i], chunk, gen,
                            self.text.sentinel_start_id)
            states[name] = st
            in_used[:, i] = st["in_len"]
            tgt_len[:, i] = st["tgt_len"] if m.kind_adapter.discrete else 0
        return states, in_used, tgt_len

    def _layouts(self, data: dict[str, torch.Tensor], in_budget: torch.Tensor, tgt_budget: torch.Tensor,
                 states: dict[str, State], gen: torch.Generator | None) -> dict[str, dict[str, torch.Tensor]]:
        """Each modality's ``mod_dict`` entry, in batch order (image-like layouts draw their token order here)."""
        transfer = self.config.transfer is not None
        out: dict[str, dict[str, torch.Tensor]] = {}
        for name, t in data.items():
            i = self.index[name]
            m = self.mods[i]
            out[name] = m.layout.apply(t, m, in_budget[:, i], tgt_budget[:, i], states.get(name), gen, self.text,
                                       transfer=transfer)
        return out
