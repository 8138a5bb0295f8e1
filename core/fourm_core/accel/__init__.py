"""CPU fast paths of generation and training, behind one boundary.

The model (:mod:`fourm_core.model`) holds plain ``nn.Linear`` layers and one decoder block implementation; it
and the sampler never import this package. The generation backend (:class:`fourm_core.generation.ModelBackend`)
calls :func:`select` once per device: on CPU it gets a :class:`CpuFastPath`, elsewhere ``None`` and the
model's own methods, so a GPU run never executes anything from here. All of it is exact float32 arithmetic
(equal to the plain path up to summation order) or, for the int8 proposals, exact in distribution:

* :mod:`.onednn`: oneDNN linear products for float32 inference, switched on around generation passes;
* :mod:`.step_plan`: one-token decoder steps from transposed weights (equal to ``DecoderBlock.forward``);
* :mod:`.proposal`: int8 proposal tables and exact rejection sampling from them;
* :mod:`.weights`: the cache of those derived weights, rebuilt when the weights change;
* :mod:`.training`: the training step's fused output projection + cross-entropy and the allocator setting
  (:func:`prepare_training`, called by the trainer for a CPU model; exact up to float32 summation order).
"""

from .fastpath import CpuFastPath, select
from .onednn import linear, onednn_linear_available, routed, set_onednn_linear
from .proposal import ProposalBoundError, ProposalTable, sample_from_table, sample_with_proposal
from .step_plan import BlockStep, decode_step, decoder_step, step_plan
from .training import linear_cross_entropy, prepare_training, tune_allocator

__all__ = [
    "BlockStep", "CpuFastPath", "ProposalBoundError", "ProposalTable", "decode_step", "decoder_step", "linear",
    "linear_cross_entropy", "onednn_linear_available", "prepare_training", "routed", "sample_from_table",
    "sample_with_proposal", "select", "set_onednn_linear", "step_plan", "tune_allocator",
]
