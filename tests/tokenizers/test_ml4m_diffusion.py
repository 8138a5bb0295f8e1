"""DiVAE diffusion decoders against the reference 4M release conformance set (``FOURM_RELEASE_DIR``, by default
``shared/conformance/ml4m_release`` beside the checkout).

Every DiVAE tokenizer of the set (a directory under ``tokenizers/`` whose ``config.json`` has a diffusion
``scheduler``) is loaded strictly from its ``decoder.*`` weights and checked per stored input resolution: the
UNet output at every stored DDIM step, the full DDIM decode from the stored start noise, the default DDPM
pipeline replayed from its stored noise draws and re-drawn from its recorded seed, and the training
scheduler's ``alphas_cumprod``. The full-size architectures of ``archs.json`` are built on the meta device and
their key sets and shapes compared. The set's tiny architecture names are registered here (the product does not
ship them). Tests that read the set carry ``requires("conformance")`` (``FOURM_RELEASE_DIR`` points elsewhere).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fourm_core.tokenizers.ml4m import diffusion as D

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
TOKENIZERS = RELEASE / "tokenizers"
_PRESENT = (RELEASE / "archs.json").exists() and TOKENIZERS.is_dir()
_MISSING = (f"reference release set {RELEASE} (archs.json, tokenizers/) not present; put shared/ beside the "
            f"checkout or set FOURM_RELEASE_DIR")
needs_release = pytest.mark.requires("conformance", available=_PRESENT, reason=_MISSING)

TOL = 1e-4  # iterated sampling; the clip of the predicted x0 amplifies tiny differences near its boundary

#: the set's tiny decoder presets (same class as ``unet_patched``, other hyper-parameters)
TINY_ARCHS = {
    "unet_tiny": {"patch_size": 4, "model_channels": 32, "num_res_blocks": 1, "attention_resolutions": [2],
                  "channel_mult": (1, 1)},
    "unet_tiny2": {"patch_size": 2, "model_channels": 32, "num_res_blocks": 1, "attention_resolutions": [4],
                   "channel_mult": (1, 1, 2)},
}


def _divae_dirs() -> list[str]:
    if not _PRESENT:
        return ["divae_rgb", "divae_depth"]  # reported as skipped under these names
    return sorted(p.name for p in TOKENIZERS.iterdir()
                  if (p / "config.json").exists() and "scheduler" in json.loads((p / "config.json").read_text()))


@pytest.fixture(scope="module", autouse=True)
def tiny_archs():
    added = [n for n in TINY_ARCHS if not D.is_diffusion_arch(n)]
    for n in added:
        D.register_diffusion_arch(n, TINY_ARCHS[n])
    yield
    for n in added:
        D.unregister_diffusion_arch(n)


@pytest.fixture(scope="module", params=_divae_dirs())
def divae(request):
    """(config, io.json, io tensors, decoder with the stored weights (strict load) in eval mode, weights)."""
    d = TOKENIZERS / request.param
    config = json.loads((d / "config.json").read_text())
    weights = {k[len("decoder."):]: v for k, v in load_file(d / "model.safetensors").items()
               if k.startswith("decoder.")}
    decoder = D.build_diffusion_decoder(config).eval()
    decoder.load_state_dict(weights, strict=True)
    return config, json.loads((d / "io.json").read_text()), load_file(d / "io.safetensors"), decoder, weights


def _inputs(io_json):
    return [(inp["prefix"], inp) for inp in io_json["inputs"]]


def _seed(call: str) -> int:
    m = re.search(r"manual_seed\((\d+)\)", call)
    assert m, f"no generator seed in the recorded call {call!r}"
    return int(m.group(1))


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@needs_release
def test_stored_weights_cover_the_decoder_exactly(divae):
    """Catches a missing / renamed / extra decoder parameter (the strict load in the fixture) and a shape
    mismatch against the released file."""
    *_, decoder, weights = divae
    assert {k: tuple(v.shape) for k, v in decoder.state_dict().items()} == {k: tuple(v.shape)
                                                                           for k, v in weights.items()}


@needs_release
def test_model_output_at_every_stored_step(divae):
    """The network alone: stored x_t and quantised latent in, the reference's UNet output out (batched)."""
    config, io_json, io, decoder, _ = divae
    for res, _ in _inputs(io_json):
        quant = io[f"{res}.quant_from_tokens"]
        for i, t in enumerate(io[f"{res}.ddim.timesteps"]):
            with torch.no_grad():
                out = decoder(io[f"{res}.ddim.step{i}.sample"], t, quant)
            assert _maxdiff(out, io[f"{res}.ddim.step{i}.model_output"]) < TOL, (res, i)


@needs_release
def test_ddim_decode_from_the_stored_start_noise(divae):
    config, io_json, io, decoder, _ = divae
    for res, inp in _inputs(io_json):
        steps: list = []
        out = D.diffusion_decode(decoder, io[f"{res}.quant_from_tokens"], config, steps=len(inp["ddim"]["timesteps"]),
                                 scheduler="ddim", noise=io[f"{res}.ddim.initial_noise"],
                                 image_size=inp["input_shape"][-1],
                                 trace=lambda i, t, x, mo: steps.append((t, x.clone(), mo.clone())))
        assert [t for t, _, _ in steps] == io[f"{res}.ddim.timesteps"].tolist() == inp["ddim"]["timesteps"]
        for i, (_, x, mo) in enumerate(steps):
            assert _maxdiff(x, io[f"{res}.ddim.step{i}.sample"]) < TOL, (res, i)
            assert _maxdiff(mo, io[f"{res}.ddim.step{i}.model_output"]) < TOL, (res, i)
        assert _maxdiff(out, io[f"{res}.ddim.decoded"]) < TOL, res


@needs_release
def test_default_pipeline_replayed_from_the_stored_noise(divae):
    """The config's own scheduler (DDPM) with every stored noise draw: start noise, then one per step t > 0."""
    config, io_json, io, decoder, _ = divae
    for res, inp in _inputs(io_json):
        pipe = inp["default_pipeline"]
        noises = [io[f"{res}.default.noise{i}"] for i in range(pipe["num_noise_draws"])]
        seen: list[int] = []
        out = D.diffusion_decode(decoder, io[f"{res}.quant_from_tokens"], config, steps=len(pipe["timesteps"]),
                                 noise=noises, image_size=inp["input_shape"][-1],
                                 trace=lambda i, t, x, mo: seen.append(t))
        assert seen == io[f"{res}.default.timesteps"].tolist() == pipe["timesteps"]
        assert _maxdiff(out, io[f"{res}.default.decoded"]) < TOL, res


@needs_release
def test_default_pipeline_from_the_recorded_seed(divae):
    """Same sampling driven by a generator with the recorded seed: the draws must come in the reference's
    order (start noise first, then the DDPM variance noise of each step)."""
    config, io_json, io, decoder, _ = divae
    for res, inp in _inputs(io_json):
        pipe = inp["default_pipeline"]
        seed = _seed(pipe["call"])
        shape = tuple(io[f"{res}.default.noise0"].shape)
        assert torch.equal(torch.randn(shape, generator=torch.Generator().manual_seed(seed)),
                           io[f"{res}.default.noise0"])
        out = D.diffusion_decode(decoder, io[f"{res}.quant_from_tokens"], config, steps=len(pipe["timesteps"]),
                                 generator=torch.Generator().manual_seed(seed), image_size=inp["input_shape"][-1])
        assert _maxdiff(out, io[f"{res}.default.decoded"]) < TOL, res


@needs_release
def test_training_scheduler_alphas_cumprod(divae):
    config, _, io, *_ = divae
    for kind in D.SCHEDULERS:  # the DDIM call used the same schedule (asserted when the set was written)
        assert _maxdiff(D.build_scheduler(config, kind).alphas_cumprod, io["scheduler.train.alphas_cumprod"]) < 1e-6


def _module_config(key: str) -> dict:
    """A DiVAE config from an archs.json ``tokenizer_modules`` key such as ``unet_patched(in_channels=3, ...)``."""
    name, args = re.fullmatch(r"(\w+)\((.*)\)", key).groups()
    kw = dict(re.findall(r"(\w+)=('?[\w.]+'?)", args))

    def get(*names: str) -> str:
        return next(kw[n] for n in names if n in kw)

    return {"dec_type": name, "n_channels": int(get("in_channels")),
            "latent_dim": int(get("cond_channels", "cond_dim")), "image_size": int(get("image_size", "sample_size")),
            "conditioning": kw.get("cond_type", "'concat'").strip("'")}


def _archs_cases():
    if not _PRESENT:
        return [pytest.param({}, {}, "", id="archs.json")]
    archs = json.loads((RELEASE / "archs.json").read_text())
    cases = [pytest.param(_module_config(k), e, "", id=k.split("(")[0])
             for k, e in archs["tokenizer_modules"].items() if k.startswith(("unet_", "uvit_"))]
    cases += [pytest.param(e["constructor"]["kwargs"], e, "decoder.", id=k)
              for k, e in archs["tokenizers"].items() if e["constructor"]["cls"] == "DiVAE"]
    return cases


@needs_release
@pytest.mark.parametrize("config,entry,prefix", _archs_cases())
def test_full_size_architecture_keys(config, entry, prefix):
    """Key names, shapes and parameter/buffer kinds of the released decoders (what save_model writes)."""
    with torch.device("meta"):
        decoder = D.build_diffusion_decoder(config)
    params = {n for n, _ in decoder.named_parameters()}
    ours = {n: (list(v.shape), "param" if n in params else "buffer") for n, v in decoder.state_dict().items()}
    ref = {n[len(prefix):]: (shape, kind) for n, shape, kind, _ in entry["keys"]
           if n.startswith(prefix) and n not in entry["dropped_by_save_model"]}
    assert ours == ref
    if not prefix:
        assert sum(p.numel() for p in decoder.parameters()) == entry["num_parameters"]
