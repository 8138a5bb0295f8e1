"""Input/target masking for 4M training: Dirichlet token budgets, span masking, transfer masking.

API (stable; the data loader, model, trainers and generation use it)
====================================================================

.. code-block:: python

    from fourm_core.masking import MaskingConfig, Masker, TextVocabInfo

    cfg = MaskingConfig.from_yaml("masking.yaml")            # or MaskingConfig.from_dict({...}) / MaskingConfig()
    cfg = MaskingConfig.for_transfer(inputs=["rgb"], targets=["depth"])   # fixed in/out masking (fine-tuning)
    masker = Masker(modalities, cfg, text=TextVocabInfo())    # modalities: fourm_registry.ModalitySet
    mod_dict = masker(batch, present=None, generator=None)
    out = model(mod_dict, num_encoder_tokens=masker.num_encoder_tokens,
                num_decoder_tokens=masker.num_decoder_tokens)

``batch`` maps modality names (or aliases) to batched tensors with a leading batch axis B:

=======================  ===================================================================================
``image`` / ``vector``   int64 ``(B, N)`` token ids
``pixels``               float ``(B, C, H, W)``; masks are over the ``grid`` patches
``sequence``             int64 ``(B, max_length)``: tokens, then ``[EOS]``, then ``[PAD]`` = 0 padding
``embedding_sequence``   float ``(B, L, D)``: rows, zero rows at the end (absent rows)
=======================  ===================================================================================

``present`` (optional) maps names to ``BoolTensor (B,)``: False marks samples that lack the modality; such a
sample's modality is fully masked (never input, never target). Modalities of ``modalities`` missing from the
batch are simply not used (and not returned).

The result is the reference 4M ``mod_dict`` layout, one entry per modality:
``{name: {"tensor", "input_mask", "target_mask", "decoder_attention_mask"}}``, boolean masks with
**True = masked / not used**, ``decoder_attention_mask`` int32:

* image / vector / pixels: ``tensor`` is the input unchanged; ``input_mask`` / ``target_mask`` ``(B, N)``
  never both False on the same token; ``decoder_attention_mask`` holds, at the first target slot, the
  number of targets (0 elsewhere), so the targets of a modality attend to each other.
* sequence: ``tensor`` int64 ``(B, 2*(max_length+1))``: the encoder input (masked spans replaced by sentinels
  ``[S_1], [S_2], ...``) at the start, the decoder target (``[S_1]``, span tokens, ``[S_2]``, ..., final
  sentinel) from index ``input_budget`` of that modality (``max_length`` in transfer masking); ``[PAD]``
  elsewhere. ``decoder_attention_mask`` is 1 over the target (causal inside the modality).
* embedding_sequence: ``tensor`` ``(B, L, D)`` with the kept rows first (a zero row per masked span),
  ``input_mask`` over them; never a target.

Vocabulary layout (fixed, shared text vocabulary): ``[PAD]`` = 0, ``[UNK]`` = 1, ``[SOS]`` = 2, ``[EOS]`` = 3,
sentinels ``[S_0]..[S_199]`` = 4..203. As in the reference, span numbering starts at ``[S_1]``.

Configuration (YAML or dict; unknown keys raise listing the valid ones)::

    input_tokens: 128            # or [min, max]: per-sample total input budget
    target_tokens: 128           # or [min, max], or null: every non-input token is a target
    fill_budget: true            # give input budget a sequence could not use to image-like modalities
    mixture:                     # Dirichlet mixture components, one drawn per sample (by weight)
      - name: rgb2all
        weight: 1.0
        input_alphas: {"*": 0.0, rgb: 1000.0}     # a number, or per modality with "*" as default
        target_alphas: {"*": 0.5, rgb: 0.0}
      - name: all2all
        input_alphas: 0.5
        target_alphas: 0.5
        keep: {caption: random}                 # sequence keep scheme per modality: random | all | binary
        full_input: []                          # modalities always fully visible (outside the budget)
    modalities:                  # per-modality settings (defaults from spec.masking)
      caption: {min_tokens: 0, max_tokens: null, keep: random, span: simple}
      det: {span: chunked, chunk_start_tokens: ["v0=*"]}   # chunks start at these tokens (prefix with *)
    transfer: null               # or {inputs: [rgb], targets: [depth]}: fixed in/out masking
    allow_unknown_modalities: false   # true: names not in the ModalitySet are ignored instead of raising
    inputs: null                 # or [names]: only these may be inputs (random masking; the others get alpha 0)
    targets: null                # or [names]: only these may be targets

Training mixtures: :class:`DatasetMasker` masks each sample of a batch with the config of its dataset (one
config per dataset: its modalities, alphas and budgets), see :mod:`~fourm_core.masking.per_dataset`.

:meth:`MaskingConfig.from_reference` reads the reference's ``alphas_mixture`` YAML files.

Token counts: ``masker.num_encoder_tokens`` / ``masker.num_decoder_tokens`` (also
:func:`count_tokens`) are the encoder/decoder lengths to call the model with.

Budgets: per sample, a total ``n`` is drawn from the range, then split over the modalities by a Dirichlet
draw (modalities with alpha 0, absent, or unusable get exactly 0), with per-modality minimum and maximum, and
any budget a modality cannot hold (capacity) is redistributed to the others by their Dirichlet share. For
image-like modalities the input and target never overlap and the totals equal the budgets whenever the
eligible modalities have enough tokens; sequences use at most their budget (span masking decides).

Package layout: :mod:`~fourm_core.masking.config` (the schema above), :mod:`~fourm_core.masking.draws` (seeded
uniform / Gamma / Dirichlet draws, and why torch's Dirichlet is not used), :mod:`~fourm_core.masking.budgets`
(the budget split), :mod:`~fourm_core.masking.layouts` (one layout per modality kind) and
:mod:`~fourm_core.masking.masker` (the :class:`Masker`) and :mod:`~fourm_core.masking.per_dataset` (the
:class:`DatasetMasker`).
"""

from __future__ import annotations

from .config import (
    KEEP_SCHEMES,
    SPAN_SCHEMES,
    MaskingConfig,
    MaskingError,
    MixtureComponent,
    ModalityMasking,
    TextVocabInfo,
    TransferConfig,
)
from .draws import _log_gamma
from .layouts import KEEP_PROB_DECAY
from .masker import Masker, count_tokens
from .per_dataset import DatasetMasker

__all__ = [
    "DatasetMasker",
    "KEEP_PROB_DECAY",
    "KEEP_SCHEMES",
    "SPAN_SCHEMES",
    "Masker",
    "MaskingConfig",
    "MaskingError",
    "MixtureComponent",
    "ModalityMasking",
    "TextVocabInfo",
    "TransferConfig",
    "count_tokens",
    # private, re-exported because the seeded statistical tests check its moments (the Dirichlet budgets' contract)
    "_log_gamma",
]
