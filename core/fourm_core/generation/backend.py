"""The thin layer between the samplers and a :class:`fourm_core.model.FourM` (its generation interface:
``encode`` → ``decoder_context`` → ``decoder_queries`` / ``decode`` / ``logits``).

How the model's passes run is a :class:`GenerationPath`: on CPU the fast path of :mod:`fourm_core.accel`
(chosen by its ``select``), elsewhere, or with ``fast_path=False``, the model's own methods
(:class:`PlainPath`). Both give the same results up to float32 summation order."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import attrs
import torch

from fourm_registry import ModalitySet

from ..accel import ProposalBoundError, sample_from_table, select
from .errors import GenerationError

log = logging.getLogger(__name__)


@runtime_checkable
class GenerationPath(Protocol):
    """How the backend runs a model's passes (:class:`PlainPath`, or :class:`fourm_core.accel.CpuFastPath`)."""

    kind: str

    def inference(self) -> AbstractContextManager:
        """Entered around encoder and decoder passes."""

    def logits(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        """``model.logits(name, hidden)``."""

    def step_plans(self) -> Any:
        """Per-sequence data for :meth:`decode_step` (looked up once per sequence), or ``None``."""

    def decode_step(self, x: torch.Tensor, e: torch.Tensor, cache: Any, plans: Any) -> torch.Tensor:
        """``model.decode(x, e, cache, use_cache=True)[:, 0]`` for one new position per sample."""

    def step_logits(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, V)`` of one-token decoder outputs ``hidden`` ``(B, D)``."""

    def proposal_table(self, name: str) -> Any:
        """The int8 proposal table of ``name``, or ``None``."""

    def drop_proposals(self) -> None:
        """Forget the proposal tables built so far."""


class PlainPath:
    """The model's own methods, unchanged (any device)."""

    kind = "plain"

    def __init__(self, model: Any):
        self.model = model

    def inference(self) -> AbstractContextManager:
        return contextlib.nullcontext()

    def logits(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.logits(name, hidden)

    def step_plans(self) -> None:
        return None

    def decode_step(self, x: torch.Tensor, e: torch.Tensor, cache: Any, plans: Any) -> torch.Tensor:
        return self.model.decode(x, e, cache, use_cache=True)[:, 0]

    def step_logits(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.logits(name, hidden)

    def proposal_table(self, name: str) -> None:
        return None

    def drop_proposals(self) -> None:
        pass


@attrs.define
class SequenceState:
    """An autoregressive decoding in progress: the decoder cache (cross-attention K/V of the context,
    per-layer self-attention K/V of the tokens fed so far), the target modality, and the path's per-sequence
    data (the CPU fast path's step plans; the weights are fixed while a cache is in use, since its context
    keys/values were computed from them)."""

    cache: Any
    modality: str
    plans: Any = None


class ModelBackend:
    """Wraps a FourM model: parallel (mask-token) queries for MaskGIT / ROAR, incremental decoding for
    autoregressive targets. Every method runs without gradients.

    ``fast_path`` (default True): on CPU the passes run through :class:`fourm_core.accel.CpuFastPath`
    (oneDNN linear layers, one-token steps from transposed weights, a transposed output table for their logits);
    False always uses the model's own methods. Results are the same either way up to float32 summation order.

    ``use_proposals`` (default True): on CPU, plain temperature sampling and greedy decoding of
    autoregressive steps read an int8 copy of the output table and correct it exactly
    (:mod:`fourm_core.accel.proposal`): the tokens are distributed exactly as with the float32 logits, at a
    fraction of the memory traffic.
    """

    def __init__(self, model: Any, *, use_proposals: bool = True, fast_path: bool = True):
        for attr in ("encode", "decoder_context", "decoder_queries", "decode", "logits", "modalities"):
            if not hasattr(model, attr):
                raise GenerationError(f"{type(model).__name__} lacks `{attr}`: generation needs a fourm_core.model.FourM")
        self.model = model
        self.use_proposals = use_proposals
        self.fast_path = fast_path
        self._plain = PlainPath(model)
        self._paths: dict[torch.device, GenerationPath] = {}

    @property
    def path(self) -> GenerationPath:
        """The path for the model's current device (selected once per device)."""
        if not self.fast_path:
            return self._plain
        device = self.device
        path = self._paths.get(device)
        if path is None:
            path = self._paths[device] = select(self.model, device) or self._plain
        return path

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
        with self.path.inference():
            return self._context(mod_dict)

    def _context(self, mod_dict: Mapping[str, Mapping[str, torch.Tensor]]) -> Any:
        enc = self.model.encode(self._encoder_dict(mod_dict))
        return self.model.decoder_context(enc)

    @torch.no_grad()
    def parallel_logits(self, mod_dict: Mapping[str, Mapping[str, torch.Tensor]], name: str,
                        positions: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, M, V)`` of mask-token queries of ``name`` at ``positions`` ``(B, M)`` given the visible
        tokens of ``mod_dict`` (the queries attend each other: one modality, bidirectional)."""
        path = self.path
        with path.inference():
            cache = self._context(mod_dict)
            x, e = self.model.decoder_queries(name, positions)
            hidden = self.model.decode(x, e, cache)
            return path.logits(name, hidden)

    @torch.no_grad()
    def start_sequence(self, mod_dict: Mapping[str, Mapping[str, torch.Tensor]], name: str) -> SequenceState:
        """Encode once and prepare an empty self-attention cache for decoding ``name`` token by token."""
        return SequenceState(cache=self.context(mod_dict), modality=name, plans=self.path.step_plans())

    @torch.no_grad()
    def next_hidden(self, state: SequenceState, ids: torch.Tensor, position: int) -> torch.Tensor:
        """Feed ``ids`` ``(B,)`` at target position ``position``; the decoder output ``(B, D)`` that predicts the
        next token (:meth:`step_logits` turns it into logits).

        Only the new position runs through the decoder: its self-attention reads the cached keys/values of
        every earlier position (so no causal mask is needed) and appends its own."""
        pos = torch.full((ids.shape[0], 1), position, dtype=torch.long, device=ids.device)
        x, e = self.model.decoder_queries(state.modality, pos, ids[:, None])
        return self.path.decode_step(x, e, state.cache, state.plans)

    @torch.no_grad()
    def step_logits(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        """Exact logits ``(B, V)`` of one-token decoder outputs ``hidden`` ``(B, D)``."""
        return self.path.step_logits(name, hidden)

    @torch.no_grad()
    def next_logits(self, state: SequenceState, ids: torch.Tensor, position: int) -> torch.Tensor:
        """:meth:`next_hidden` followed by :meth:`step_logits`: the logits ``(B, V)`` of the next token."""
        return self.step_logits(state.modality, self.next_hidden(state, ids, position))

    def proposal_table(self, name: str) -> Any:
        """The int8 proposal table of ``name`` (:mod:`fourm_core.accel.proposal`), built on first use and
        rebuilt when the weights change; ``None`` off CPU, without the quantized kernels, with
        ``fast_path=False``, or after :meth:`disable_proposals`."""
        if not self.use_proposals:
            return None
        return self.path.proposal_table(name)

    @torch.no_grad()
    def sample_with_table(self, table: Any, name: str, hidden: torch.Tensor,
                          combine: Callable[[torch.Tensor], torch.Tensor],
                          combine_bound: Callable[[torch.Tensor], torch.Tensor], temperature: float,
                          generator: torch.Generator | None) -> torch.Tensor | None:
        """One token per sample drawn through ``table`` (:meth:`proposal_table`) from one-token decoder outputs
        ``hidden`` ``(kB, D)`` of ``k`` guidance variants, distributed exactly as sampling ``combine`` of their
        float32 logits (see :func:`fourm_core.accel.sample_from_table`). ``None`` where the table cannot
        serve: rows that are not float32, or a broken error bound (which disables the proposals for good,
        with a warning); the caller then samples the exact logits."""
        if hidden.dtype != torch.float32:
            return None
        try:
            return sample_from_table(table, hidden, combine, combine_bound,
                                     lambda: combine(self.step_logits(name, hidden)), temperature, generator)
        except ProposalBoundError as exc:
            self.disable_proposals(str(exc))
            return None

    def disable_proposals(self, reason: str) -> None:
        """Stop using int8 proposal tables (e.g. after a bound violation); sampling stays exact either way."""
        if self.use_proposals:
            log.warning("int8 proposal logits disabled: %s; decoding continues with float32 logits", reason)
        self.use_proposals = False
        for path in self._paths.values():
            path.drop_proposals()

    @torch.no_grad()
    def sequence_logits_uncached(self, mod_dict: Mapping[str, Mapping[str, torch.Tensor]], name: str,
                                 ids: torch.Tensor) -> torch.Tensor:
        """Reference path without the self-attention cache: run the whole prefix ``ids`` ``(B, t)`` with a
        causal mask and return the last position's logits ``(B, V)`` (used to verify the cache)."""
        path = self.path
        with path.inference():
            cache = self._context(mod_dict)
            pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
            x, e = self.model.decoder_queries(name, pos, ids)
            hidden = self.model.decode(x, e, cache, causal=True)
            return path.logits(name, hidden[:, -1])
