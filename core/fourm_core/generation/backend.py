"""The thin layer between the samplers and a :class:`fourm_core.model.FourM` (its generation interface:
``encode`` → ``decoder_context`` → ``decoder_queries`` / ``decode`` / ``logits``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from fourm_registry import ModalitySet

from .errors import GenerationError
from .proposal import ProposalTable

log = logging.getLogger(__name__)


def _weight_key(weight: torch.Tensor) -> tuple:
    """Identity of a weight's current values: storage, in-place version, dtype, device (a derived table built
    from it is stale once the key changes)."""
    return weight.data_ptr(), weight._version, weight.dtype, weight.device


@attrs.define
class SequenceState:
    """An autoregressive decoding in progress: the decoder cache (cross-attention K/V of the context,
    per-layer self-attention K/V of the tokens fed so far) and the target modality."""

    cache: Any
    modality: str


class ModelBackend:
    """Wraps a FourM model: parallel (mask-token) queries for MaskGIT / ROAR, incremental decoding for
    autoregressive targets. Every method runs without gradients.

    One-token steps of autoregressive decoding (the default, exact float32) compute their logits against a
    cached ``(D, V)`` transposed copy of the output table on CPU (see :meth:`_output_table`: about 3.5x
    faster than the ``(V, D)`` product, at the cost of one extra copy of each decoded table in memory).

    ``step_logits_dtype=torch.float16`` (opt-in) computes the one-token logits of autoregressive steps
    against a half-precision copy of the output table. At batch 1 that product only streams the table from
    memory (30000 × 256 floats = 31 MB per token for a text vocabulary); against the ``(V, D)`` float32
    product it was about 3x faster, but on the 2-core dev CPU (no native fp16) it measures no faster than the
    transposed float32 table above (about 1 ms per 30000-token step each), so it only halves the memory
    traffic and the table's memory; accumulation stays float32 and the logits differ from float32 ones by about
    1e-3 relative, which is immaterial for sampling but can flip exact ties under greedy decoding. The
    copy is refreshed whenever the weights change.

    ``use_proposals`` (default): on CPU, plain temperature sampling and greedy decoding of autoregressive steps
    read an int8 copy of the output table and correct it exactly (:mod:`fourm_core.generation.proposal`): the
    tokens are distributed exactly as with the float32 logits, at a fraction of the memory traffic.
    """

    def __init__(self, model: Any, *, step_logits_dtype: torch.dtype | None = None, use_proposals: bool = True):
        for attr in ("encode", "decoder_context", "decoder_queries", "decode", "logits", "modalities"):
            if not hasattr(model, attr):
                raise GenerationError(f"{type(model).__name__} lacks `{attr}`: generation needs a fourm_core.model.FourM")
        if step_logits_dtype not in (None, torch.float32, torch.float16, torch.bfloat16):
            raise GenerationError(f"step_logits_dtype must be None, float32, float16 or bfloat16, got {step_logits_dtype}")
        self.model = model
        self.step_logits_dtype = None if step_logits_dtype == torch.float32 else step_logits_dtype
        self._tables: dict[str, tuple[tuple, torch.Tensor]] = {}
        self.use_proposals = use_proposals
        self._proposals: dict[str, tuple[tuple, ProposalTable | None]] = {}

    def _output_table(self, name: str) -> torch.Tensor:
        """The output table of ``name`` for one-token steps, cached and rebuilt whenever the weights change.

        float32 (default): the table transposed to a contiguous ``(D, V)`` matrix. ``hidden (B, D) @ table``
        gives exactly the float32 logits (up to summation order) but streams the table row by row: on CPU
        that matrix-vector product runs about 3.5x faster than against the ``(V, D)`` layout of the
        embedding, and it dominates a one-token decoding step. ``step_logits_dtype`` set: a ``(V, D)`` copy
        in that dtype (the layout its CPU kernels stream fastest)."""
        weight = self.model.decoder_embeddings[name].output_weight  # (V, D)
        key = _weight_key(weight)
        cached = self._tables.get(name)
        if cached is None or cached[0] != key:
            w = weight.detach()
            table = w.t().contiguous() if self.step_logits_dtype is None else w.to(self.step_logits_dtype).contiguous()
            cached = (key, table)
            self._tables[name] = cached
        return cached[1]

    def _step_logits(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) of one decoding step against the cached table (see :meth:`_output_table`)."""
        if self.step_logits_dtype is None:
            if hidden.device.type != "cpu":  # the layout trick is a CPU one; no extra copy elsewhere
                return self.model.logits(name, hidden)
            return hidden @ self._output_table(name).to(hidden.dtype)
        table = self._output_table(name)
        return torch.nn.functional.linear(hidden.to(table.dtype), table).float()

    @property
    def modalities(self) -> ModalitySet:
        return self.model.modalities

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def vocab_size(self, name: str) -> int:
        return int(self.model.vocab_sizes[name])

    @staticmethod
    def _encoder_dict(mod_dict: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
        return {n: {"tensor": d["tensor"], "input_mask": d["input_mask"]} for n, d in mod_dict.items()}

    def context(self, mod_dict: Mapping[str, Mapping[str, torch.Tensor]]) -> Any:
        """Encode the visible tokens and compute the decoder's cross-attention K/V once."""
        enc = self.model.encode(self._encoder_dict(mod_dict))
        return self.model.decoder_context(enc)

    @torch.no_grad()
    def parallel_logits(self, mod_dict: Mapping[str, Mapping[str, torch.Tensor]], name: str,
                        positions: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, M, V)`` of mask-token queries of ``name`` at ``positions`` ``(B, M)`` given the visible
        tokens of ``mod_dict`` (the queries attend each other: one modality, bidirectional)."""
        cache = self.context(mod_dict)
        x, e = self.model.decoder_queries(name, positions)
        hidden = self.model.decode(x, e, cache)
        return self.model.logits(name, hidden)

    @torch.no_grad()
    def start_sequence(self, mod_dict: Mapping[str, Mapping[str, torch.Tensor]], name: str) -> SequenceState:
        """Encode once and prepare an empty self-attention cache for decoding ``name`` token by token."""
        return SequenceState(cache=self.context(mod_dict), modality=name)

    @torch.no_grad()
    def next_hidden(self, state: SequenceState, ids: torch.Tensor, position: int) -> torch.Tensor:
        """Feed ``ids`` ``(B,)`` at target position ``position``; the decoder output ``(B, D)`` that predicts the
        next token (:meth:`step_logits` turns it into logits).

        Only the new position runs through the decoder: its self-attention reads the cached keys/values of
        every earlier position (so no causal mask is needed) and appends its own."""
        pos = torch.full((ids.shape[0], 1), position, dtype=torch.long, device=ids.device)
        x, e = self.model.decoder_queries(state.modality, pos, ids[:, None])
        return self.model.decode(x, e, state.cache, use_cache=True)[:, 0]

    @torch.no_grad()
    def step_logits(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        """Exact logits ``(B, V)`` of one-token decoder outputs ``hidden`` ``(B, D)``."""
        return self._step_logits(name, hidden)

    @torch.no_grad()
    def next_logits(self, state: SequenceState, ids: torch.Tensor, position: int) -> torch.Tensor:
        """:meth:`next_hidden` followed by :meth:`step_logits`: the logits ``(B, V)`` of the next token."""
        return self._step_logits(state.modality, self.next_hidden(state, ids, position))

    def proposal_table(self, name: str) -> ProposalTable | None:
        """The int8 proposal table of ``name`` (:mod:`~fourm_core.generation.proposal`), built on first use and
        rebuilt when the weights change; ``None`` off CPU, without the quantized kernels, with
        ``step_logits_dtype`` set, or after :meth:`disable_proposals`."""
        if not self.use_proposals or self.step_logits_dtype is not None:
            return None
        weight = self.model.decoder_embeddings[name].output_weight
        key = _weight_key(weight)
        cached = self._proposals.get(name)
        if cached is None or cached[0] != key:
            cached = (key, ProposalTable.build(weight))
            self._proposals[name] = cached
        return cached[1]

    def disable_proposals(self, reason: str) -> None:
        """Stop using int8 proposal tables (e.g. after a bound violation); sampling stays exact either way."""
        if self.use_proposals:
            log.warning("int8 proposal logits disabled: %s; decoding continues with float32 logits", reason)
        self.use_proposals = False
        self._proposals.clear()

    @torch.no_grad()
    def sequence_logits_uncached(self, mod_dict: Mapping[str, Mapping[str, torch.Tensor]], name: str,
                                 ids: torch.Tensor) -> torch.Tensor:
        """Reference path without the self-attention cache: run the whole prefix ``ids`` ``(B, t)`` with a
        causal mask and return the last position's logits ``(B, V)`` (used to verify the cache)."""
        cache = self.context(mod_dict)
        pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        x, e = self.model.decoder_queries(name, pos, ids)
        hidden = self.model.decode(x, e, cache, causal=True)
        return self.model.logits(name, hidden[:, -1])
