"""A seeded regression pin of the whole masker output (for the split of masking.py, issue 15).

The behaviour tests (test_masking_statistics.py, test_masking_config.py) say what the masks must look like;
this one says that they have not changed at all: one config that uses every modality kind, both mixture
components, chunked and binary keep, full_input and max_tokens, masked with a fixed torch.Generator, is pinned
per modality (token counts per sample, and a digest of the four output tensors). A refactor that changes
nothing keeps it green. It fails on any change to what is drawn or in which order, which is also what a torch
release that changes its CPU random streams would do: if every behaviour test still passes, re-pin it (run
this file's ``_digests()`` and paste), saying why in the commit.
"""

from __future__ import annotations

import hashlib

import torch

from fourm_core.masking import Masker, MaskingConfig, TextVocabInfo
from fourm_registry import ModalitySet, ModalitySpec

SER = "fourm_core.masking:Masker"
EOS = 3

#: name -> (digest of tensor / input_mask / target_mask / decoder_attention_mask, inputs per sample, targets)
PINNED = {
    "rgb": ("f61fb8f541a2e7e1", [3, 16, 9, 14, 9, 5, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]),
    "tok": ("857dc88a3336cdbe", [0, 0, 1, 0, 1, 2, 0, 4], [3, 10, 0, 6, 1, 3, 3, 7]),
    "glob": ("f8355514fb191a80", [0, 4, 4, 4, 4, 4, 2, 4], [0, 0, 0, 0, 0, 0, 1, 0]),
    "caption": ("95f49602deb724b4", [4, 0, 1, 0, 0, 5, 3, 5], [0, 0, 0, 5, 0, 0, 2, 0]),
    "det": ("7d4aa173fce1dfa9", [0, 0, 0, 1, 0, 1, 0, 1], [2, 3, 8, 2, 9, 7, 6, 8]),
    "t5": ("a1387cbe480fbae4", [0, 1, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 0, 0]),
}


def _masker() -> Masker:
    ms = ModalitySet([
        ModalitySpec(name="rgb", kind="pixels", grid=(4, 4), patch_size=4, channels=3),
        ModalitySpec(name="tok", kind="image", grid=(4, 4), vocab_size=64),
        ModalitySpec(name="glob", kind="vector", num_tokens=4, vocab_size=16),
        ModalitySpec(name="caption", kind="sequence", max_length=12, vocab_size=1000, serializer=SER),
        ModalitySpec(name="det", kind="sequence", max_length=12, vocab_size=1000, serializer=SER),
        ModalitySpec(name="t5", kind="embedding_sequence", max_length=6, embed_dim=3)])
    cfg = MaskingConfig.from_dict({"input_tokens": [6, 20], "target_tokens": [4, 16], "mixture": [
        {"name": "a", "weight": 2, "input_alphas": 0.5, "target_alphas": {"*": 0.5, "det": 2.0},
         "keep": {"det": "binary"}},
        {"name": "b", "input_alphas": {"*": 0.2, "rgb": 5.0}, "target_alphas": 1.0, "full_input": ["glob"]}],
        "modalities": {"det": {"span": "chunked", "chunk_start_tokens": ["box"]}, "tok": {"max_tokens": 10}}})
    return Masker(ms, cfg, text=TextVocabInfo(token_to_id={"box": 500}))


def _batch(bsz: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    cap = torch.zeros(bsz, 12, dtype=torch.long)
    det = torch.zeros(bsz, 12, dtype=torch.long)
    for b in range(bsz):
        n = 3 + b % 8
        cap[b, :n] = torch.arange(300, 300 + n)
        cap[b, n] = EOS
        k = 1 + b % 3
        det[b, :3 * k] = torch.tensor([[500, 400 + i, 450 + i] for i in range(k)]).flatten()
        det[b, 3 * k] = EOS
    emb = torch.randn(bsz, 6, 3, generator=g) + 3
    emb[1, 4:] = 0
    return {"rgb": torch.randn(bsz, 3, 16, 16, generator=g), "tok": torch.randint(0, 64, (bsz, 16), generator=g),
            "glob": torch.randint(0, 16, (bsz, 4), generator=g), "caption": cap, "det": det, "t5": emb}


def _digests() -> dict[str, tuple[str, list[int], list[int]]]:
    out = _masker()(_batch(8), generator=torch.Generator().manual_seed(2024))
    got = {}
    for name, v in out.items():
        h = hashlib.sha256()
        for f in ("tensor", "input_mask", "target_mask", "decoder_attention_mask"):
            h.update(v[f].contiguous().numpy().tobytes())
        got[name] = (h.hexdigest()[:16], (~v["input_mask"]).sum(1).tolist(), (~v["target_mask"]).sum(1).tolist())
    return got


def test_seeded_masks_are_pinned():
    """Catches any change in what the masker draws for a given generator (see the module docstring)."""
    got = _digests()
    assert set(got) == set(PINNED)
    for name in PINNED:
        assert got[name][1:] == PINNED[name][1:], (name, got[name])  # the readable part first
        assert got[name][0] == PINNED[name][0], (name, got[name])
