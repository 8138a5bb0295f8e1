"""Greedy decoding of the shared release set's tiny model (written by the reference's own save code) gives the
reference sampler's token ids: the autoregressive caption (every greedy step's top-2 gap is >= 2e-4 there) and
the ROAR image-token target, step by step at the positions the reference chose."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fourm_core.generation import Sampler, TargetConfig
from fourm_core.model import FourM

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
pytestmark = pytest.mark.requires(
    "conformance", available=(RELEASE / "fm_generate.safetensors").is_file() and (RELEASE / "fm").is_dir(),
    reason=f"the shared release-format set {RELEASE} (fm/, fm_generate.*) is not present; put shared/ beside the "
           f"checkout or set FOURM_RELEASE_DIR")


@pytest.fixture(scope="module")
def setup():
    model = FourM.from_pretrained(RELEASE / "fm")
    io = load_file(str(RELEASE / "fm_io.safetensors"))
    gen = load_file(str(RELEASE / "fm_generate.safetensors"))
    return model, io, gen, json.loads((RELEASE / "fm_generate.json").read_text())


def test_greedy_autoregressive_caption_matches_the_reference(setup):
    model, io, gen, _ = setup
    names = model.ml4m_names
    inputs = {names["rgb@224"]: io["input.rgb@224.tensor"][1:2], names["tok_depth@224"]: io["input.tok_depth@224.tensor"][1:2]}
    want = gen["ar.generated_ids"].tolist()
    res = Sampler(model).generate(inputs, [TargetConfig(modality=names["caption"], scheme="autoregressive",
                                                        temperature=0.0, max_new_tokens=len(want))], seed=11)
    got = res.tokens[names["caption"]][0].tolist()
    assert got[: len(want)] == want


def test_greedy_roar_target_matches_the_reference_at_every_step(setup):
    model, io, gen, _ = setup
    names = model.ml4m_names
    target = names["tok_semseg@224"]
    res = Sampler(model).generate({names["rgb@224"]: io["input.rgb@224.tensor"][0:1]},
                                  [TargetConfig(modality=target, scheme="roar", steps=4, token_schedule="linear",
                                                temperature=0.0)], seed=23)
    got = res.tokens[target][0]
    assert torch.equal(got, gen["roar.result_tensor"][0])
    for i in range(4):
        pos, tok = gen[f"roar.step{i}.positions"], gen[f"roar.step{i}.tokens"]
        assert torch.equal(got[pos], tok), f"step {i}"


def test_vocab_limit_keeps_generated_ids_below_it(setup):
    """Catches a limit that is not applied on one of the two decoding paths (iterative, autoregressive)."""
    model, io, _, _ = setup
    names = model.ml4m_names
    inputs = {names["rgb@224"]: io["input.rgb@224.tensor"][0:1]}
    res = Sampler(model).generate(inputs, [TargetConfig(modality=names["tok_depth@224"], steps=2, vocab_limit=7),
                                           TargetConfig(modality=names["caption"], max_new_tokens=6, vocab_limit=300,
                                                        stop_at_eos=False)], seed=0)
    assert int(res.tokens[names["tok_depth@224"]].max()) < 7
    assert int(res.tokens[names["caption"]][0, :6].max()) < 300
