"""The CPU fast path of generation for one model, and :func:`select`, the one entry point to it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor

from ..model import FourM
from .onednn import linear, routed
from .proposal import ProposalTable
from .step_plan import BlockStep, decode_step, step_plan
from .weights import DerivedCache


class CpuFastPath:
    """How the generation backend runs a FourM model on CPU. Every result equals the plain path's (the
    model's own ``decode`` / ``logits``) up to float32 summation order:

    * :meth:`inference` wraps encoder and decoder passes: the model's linear layers run through oneDNN
      (:func:`~fourm_core.accel.onednn.routed`), and so do the parallel passes' logits (:meth:`logits`);
    * one-token autoregressive steps run from step plans of transposed decoder weights
      (:mod:`~fourm_core.accel.step_plan`), and their logits against a transposed ``(D, V)`` copy of the output
      table (:meth:`step_logits`);
    * :meth:`proposal_table` gives the int8 table that plain temperature sampling and greedy decoding draw
      from, exactly (:mod:`~fourm_core.accel.proposal`).

    Derived weights (step plans, transposed and int8 tables) are built on first use and rebuilt when the
    weights change; each is one extra copy of those weights in memory.
    """

    kind = "cpu-fast"

    def __init__(self, model: Any):
        self.model = model
        self._derived = DerivedCache()

    def inference(self) -> AbstractContextManager:
        return routed(self.model)

    def logits(self, name: str, hidden: Tensor) -> Tensor:
        """``model.logits(name, hidden)`` through :func:`~fourm_core.accel.onednn.linear`."""
        return linear(hidden, self.model.decoder_embeddings[name].output_weight)

    def step_plans(self) -> list[BlockStep]:
        """Per decoder block, its :func:`~fourm_core.accel.step_plan.step_plan` (looked up once per sequence:
        checking the weights' versions walks every decoder parameter)."""
        decoder = self.model.decoder
        return self._derived.get("step_plans", decoder.parameters(), lambda: [step_plan(b) for b in decoder])

    def decode_step(self, x: Tensor, e: Tensor, cache: Any, plans: list[BlockStep] | None) -> Tensor:
        """``model.decode(x, e, cache, use_cache=True)[:, 0]`` for one new position per sample (``x``, ``e``
        ``(B, 1, D)``) → ``(B, D)``, through ``plans`` (:meth:`step_plans`)."""
        return decode_step(self.model, self.step_plans() if plans is None else plans, (x + e)[:, 0], cache)

    def step_logits(self, name: str, hidden: Tensor) -> Tensor:
        """Logits ``(B, V)`` of one-token decoder outputs ``hidden`` ``(B, D)``: ``hidden @ table`` against the
        output table transposed to a contiguous ``(D, V)`` matrix. The same float32 logits up to summation
        order, but a matrix-vector product that streams the table row by row runs several times faster on CPU
        than against the ``(V, D)`` layout of the embedding, and it dominates a one-token step."""
        return hidden @ self._output_table(name).to(hidden.dtype)

    def _output_table(self, name: str) -> Tensor:
        """The output table of ``name`` transposed to a contiguous ``(D, V)`` matrix (cached)."""
        weight = self.model.decoder_embeddings[name].output_weight  # (V, D)
        return self._derived.get(("transposed", name), (weight,), lambda: weight.detach().t().contiguous())

    def proposal_table(self, name: str) -> ProposalTable | None:
        """The int8 proposal table of ``name`` (``None`` without the quantized kernels)."""
        weight = self.model.decoder_embeddings[name].output_weight
        return self._derived.get(("proposal", name), (weight,), lambda: ProposalTable.build(weight))

    def drop_proposals(self) -> None:
        """Forget the int8 tables built so far."""
        self._derived.drop(lambda name: isinstance(name, tuple) and name[0] == "proposal")


def select(model: Any, device: torch.device | str) -> CpuFastPath | None:
    """The fast path for generating with ``model`` on ``device``: a :class:`CpuFastPath` for a
    :class:`~fourm_core.model.FourM` on CPU, ``None`` elsewhere and for other models (the backend then calls
    the model's own methods, and nothing of this package runs)."""
    if torch.device(device).type != "cpu" or not isinstance(model, FourM):
        return None
    return CpuFastPath(model)
