"""Chaining a base model at 224 with a super-resolution model at 448 (the released 4M-7-SR layout).

Both models are tiny random ones in the reference's release layout (``new_release_model``), saved and loaded
back through ``FourM.from_pretrained`` like a downloaded checkpoint; no tokenizers (token-id outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fourm_core.compat.ml4m import new_release_model, save_release
from fourm_core.generation import GenerationError
from fourm_core.model import FourM
from fourm_core.pipeline import AnyToAny
from fourm_core.superres import generate_super_resolved, high_resolution_twin

_ARCH = dict(dim=32, encoder_depth=1, decoder_depth=1, num_heads=2, mlp_ratio=2.0, act_layer="SiLU", gated_mlp=True,
             norm_bias=False, qkv_bias=False, proj_bias=False, mlp_bias=False, qk_norm=False, image_size=224,
             patch_size=16, decoder_causal_mask=False, decoder_sep_mask=True, num_register_tokens=0,
             share_modality_embeddings=True)


def _saved(tmp_path, name, domains_in, domains_out, seed):
    torch.manual_seed(seed)
    model = new_release_model({**_ARCH, "domains_in": domains_in, "domains_out": domains_out})
    return AnyToAny(FourM.from_pretrained(save_release(model, tmp_path / name)))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("sr")
    base = _saved(d, "base", ["rgb@224", "tok_rgb@224", "tok_depth@224"], ["tok_rgb@224", "tok_depth@224"], 0)
    sr = _saved(d, "sr", ["rgb@224", "tok_rgb@224", "tok_depth@224", "rgb@448", "tok_rgb@448", "tok_depth@448"],
                ["tok_rgb@448", "tok_depth@448"], 1)
    return base, sr


def test_sr_modalities_are_the_plugins_at_a_28x28_grid(pair):
    _, sr = pair
    hi = sr.modalities["tok_rgb_448"]
    assert hi.grid == (28, 28) and hi.num_tokens == 784 and hi.plugin == sr.modalities["tok_rgb"].plugin
    assert hi.release_tokenizer == sr.modalities["tok_rgb"].release_tokenizer
    assert sr.modalities["rgb_448"].grid == (28, 28) and sr.modalities["rgb_448"].patch_size == 16


def test_chain_generates_448_tokens_conditioned_on_the_224_ones(pair):
    base, sr = pair
    rgb = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    low, high = generate_super_resolved(base, sr, {"rgb": rgb}, ["tok_rgb", "depth"], seed=0, decode=False,
                                        base_options={"steps": 2}, sr_options={"steps": 2})
    assert low.tokens["tok_rgb"].shape == (1, 196) and low.tokens["depth"].shape == (1, 196)
    assert high.tokens["tok_rgb_448"].shape == (1, 784) and high.tokens["depth_448"].shape == (1, 784)
    # the SR stage reads the base tokens: other 224 tokens, other 448 result (same seed)
    other = {"rgb": rgb, "tok_rgb": (low.tokens["tok_rgb"] + 1) % 16384, "depth": low.tokens["depth"]}
    again = sr(other, ["tok_rgb_448"], seed=0, steps=2, decode=False)
    same = sr({"rgb": rgb, "tok_rgb": low.tokens["tok_rgb"], "depth": low.tokens["depth"]}, ["tok_rgb_448"],
              seed=0, steps=2, decode=False)
    assert torch.equal(same.tokens["tok_rgb_448"], high.tokens["tok_rgb_448"])
    assert not torch.equal(again.tokens["tok_rgb_448"], high.tokens["tok_rgb_448"])


def test_a_modality_the_sr_model_cannot_refine_is_named(pair):
    base, sr = pair
    assert high_resolution_twin(base, sr, "tok_rgb") == "tok_rgb_448"
    sr_rgb_only = AnyToAny(sr.model, modalities=sr.modalities.subset([n for n in sr.modalities.names
                                                                      if n != "depth_448"]))
    with pytest.raises(GenerationError, match=r"no higher-resolution variant of 'depth'"):
        high_resolution_twin(base, sr_rgb_only, "depth")
