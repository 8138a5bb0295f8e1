"""Small builders for tests: a tiny modality set covering every kind, and random reference-layout mod_dicts.

Used by fourm's own tests (model, checkpoints, generation); they need no plugin installed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fourm_registry import ModalitySet, ModalitySpec

from ..kinds import adapter_for

PLAIN_SERIALIZER = "fourm_core.compat.serializer:PlainTextSerializer"


def tiny_modalities(plugin: str = "fourm-testing") -> ModalitySet:
    """Five modalities, one per kind: ``rgb`` (pixels 4×4 of 8×8), ``depth`` (image 4×4, V=50),
    ``clipg`` (vector, 4 tokens, V=30), ``caption`` (sequence, max_length 10, V=40), ``t5`` (embedding_sequence)."""
    return ModalitySet([
        ModalitySpec(name="rgb", kind="pixels", grid=(4, 4), patch_size=8, channels=3, plugin=plugin, version="0"),
        ModalitySpec(name="depth", kind="image", grid=(4, 4), vocab_size=50, plugin=plugin, version="0"),
        ModalitySpec(name="clipg", kind="vector", num_tokens=4, vocab_size=30, plugin=plugin, version="0"),
        ModalitySpec(name="caption", kind="sequence", max_length=10, vocab_size=40, serializer=PLAIN_SERIALIZER,
                     plugin=plugin, version="0"),
        ModalitySpec(name="t5", kind="embedding_sequence", max_length=6, embed_dim=12, plugin=plugin, version="0"),
    ])


def token_entry(g: torch.Generator, b: int, n: int, vocab: int, decode: bool) -> dict[str, Tensor]:
    """Random disjoint input / target subsets; the first target slot carries the number of
    targets (the targets of a modality attend to each other)."""
    perm = torch.rand(b, n, generator=g).argsort(1)
    n_in = torch.randint(1, max(2, n // 2), (b, 1), generator=g)
    n_tg = torch.randint(1, max(2, n // 2), (b, 1), generator=g) if decode else torch.zeros(b, 1, dtype=torch.long)
    rank = perm.argsort(1)
    input_mask = ~(rank < n_in)
    target_mask = ~((rank >= n_in) & (rank < n_in + n_tg))
    dam = torch.zeros(b, n, dtype=torch.int32)
    first = (~target_mask).int().argmax(1)
    has = (~target_mask).any(1)
    dam[torch.arange(b)[has], first[has]] = (~target_mask).sum(1).int()[has]
    return {"tensor": torch.randint(0, vocab, (b, n), generator=g), "input_mask": input_mask,
            "target_mask": target_mask, "decoder_attention_mask": dam}


def sequence_entry(g: torch.Generator, b: int, max_length: int, vocab: int) -> dict[str, Tensor]:
    """Reference layout: encoder input at the start, decoder target from ``input_budget = max_length + 1``."""
    length = 2 * (max_length + 1)
    budget = max_length + 1
    tensor = torch.zeros(b, length, dtype=torch.long)
    input_mask = torch.ones(b, length, dtype=torch.bool)
    target_mask = torch.ones(b, length, dtype=torch.bool)
    dam = torch.zeros(b, length, dtype=torch.int32)
    for i in range(b):  # test data only: a handful of samples
        n_in = int(torch.randint(1, budget, (1,), generator=g))
        n_tg = int(torch.randint(2, budget, (1,), generator=g))
        tensor[i, :n_in] = torch.randint(1, vocab, (n_in,), generator=g)
        tensor[i, budget:budget + n_tg] = torch.randint(1, vocab, (n_tg,), generator=g)
        input_mask[i, :n_in] = False
        target_mask[i, budget:budget + n_tg] = False
        dam[i, budget:budget + n_tg] = 1
    return {"tensor": tensor, "input_mask": input_mask, "target_mask": target_mask, "decoder_attention_mask": dam}


def random_mod_dict(modalities: ModalitySet, batch: int = 3, seed: int = 0,
                    vocab_sizes: dict[str, int] | None = None) -> dict[str, dict[str, Tensor]]:
    """A random masked batch for every modality of ``modalities`` in the reference layout."""
    g = torch.Generator().manual_seed(seed)
    vocab_sizes = vocab_sizes or {}
    out: dict[str, dict[str, Tensor]] = {}
    for spec in modalities.specs:
        v = vocab_sizes.get(spec.name, spec.vocab_size)
        out[spec.name] = adapter_for(spec).random_entry(spec, g, batch, v)
    return out
