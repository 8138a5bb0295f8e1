"""The DiVAE diffusion API without the release set: timestep grids, scheduler configuration, architecture
table, errors, noise replay forms, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fourm_core.tokenizers.base import TokenizerError
from fourm_core.tokenizers.ml4m import diffusion as D
from fourm_core.tokenizers.ml4m.unet import PatchedUNetCondCat

SMALL = {"patch_size": 2, "model_channels": 32, "num_res_blocks": 1, "attention_resolutions": [2],
         "channel_mult": (1, 1)}
CONFIG = {"dec_type": "unet_api_small", "n_channels": 1, "latent_dim": 4, "image_size": 16,
          "prediction_type": "sample", "beta_schedule": "linear"}


@pytest.fixture(scope="module")
def decoder():
    D.register_diffusion_arch("unet_api_small", SMALL, replace=True)
    m = D.build_diffusion_decoder(CONFIG)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random everywhere (the zero-initialised output convs would make the net constant)
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / max(1, p[0].numel()) ** 0.5))
    yield m.eval()
    D.unregister_diffusion_arch("unet_api_small")


@pytest.mark.parametrize("kind,steps,spacing,expected", [
    ("ddpm", 3, None, [666, 333, 0]),
    ("ddpm", 4, "leading", [750, 500, 250, 0]),
    ("ddim", 4, None, [999, 749, 499, 249]),
    ("ddim", 3, "trailing", [999, 666, 333, 0]),  # the integer stride gives n + 1 steps when n does not divide T
    ("ddim", 4, "leading", [750, 500, 250, 0]),
    ("ddim", 5, "linspace", [999, 749, 499, 250, 0]),  # round(linspace(T, 1, n)) - 1, half to even
])
def test_sampling_timesteps(kind, steps, spacing, expected):
    assert D.sampling_timesteps(kind, steps, 1000, spacing).tolist() == expected


def test_sampling_loop_uses_the_grid_and_the_library_scheduler(decoder):
    seen = []
    D.diffusion_decode(decoder, torch.randn(1, 4, 2, 2), CONFIG, steps=3, scheduler="ddim",
                       generator=torch.Generator().manual_seed(1), trace=lambda i, t, x, mo: seen.append(t))
    assert seen == [999, 666, 333, 0]
    from diffusers import DDIMScheduler, DDPMScheduler

    s = D.build_scheduler(CONFIG, "ddim")
    assert isinstance(s, DDIMScheduler) and s.config.prediction_type == "sample" and s.config.thresholding
    assert s.alphas_cumprod[-1] == 0  # zero terminal SNR by default
    s = D.build_scheduler({**CONFIG, "zero_terminal_snr": False})
    assert isinstance(s, DDPMScheduler) and s.alphas_cumprod[-1] > 0
    betas = torch.linspace(1e-4, 0.02, 1000)
    torch.testing.assert_close(s.alphas_cumprod, torch.cumprod(1 - betas, 0))


def test_shifted_cosine_schedule():
    s = D.build_scheduler({**CONFIG, "beta_schedule": "shifted_cosine:1.0"}, "ddim")
    t = torch.linspace(0, 1, 1000, dtype=torch.float64)
    inner = slice(5, 990)  # away from the ±15 log-SNR clamp
    torch.testing.assert_close(s.alphas_cumprod[inner].double(), torch.cos(math.pi * t / 2)[inner] ** 2,
                               atol=1e-6, rtol=0)
    assert s.alphas_cumprod[-1] == 0
    shifted = D.build_scheduler({**CONFIG, "beta_schedule": "shifted_cosine:2"}).alphas_cumprod
    assert (shifted[inner] < s.alphas_cumprod[inner]).all()  # a larger shift is noisier at every t


def test_decode_is_batched_and_replays_noise_forms(decoder):
    quant = torch.randn(2, 4, 2, 2)
    noises = [torch.randn(2, 1, 16, 16) for _ in range(4)]  # DDPM, 4 steps: start + 3 steps with t > 0
    out = D.diffusion_decode(decoder, quant, CONFIG, steps=4, noise=noises)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    by_call = D.diffusion_decode(decoder, quant, CONFIG, steps=4, noise=lambda i, shape: noises[i])
    torch.testing.assert_close(by_call, out, atol=0, rtol=0)
    single = torch.cat([D.diffusion_decode(decoder, quant[b:b + 1], CONFIG, steps=4,
                                           noise=[n[b:b + 1] for n in noises]) for b in range(2)])
    torch.testing.assert_close(single, out, atol=1e-5, rtol=0)
    other = D.diffusion_decode(decoder, quant, CONFIG, steps=4, noise=noises[:1] + [n + 1 for n in noises[1:]])
    assert (other - out).abs().max() > 1e-3  # the replayed variance noise is used
    # the generator path draws in the same order as the explicit list built from the same generator
    g = torch.Generator().manual_seed(5)
    drawn = [torch.randn(2, 1, 16, 16, generator=g) for _ in range(4)]
    torch.testing.assert_close(
        D.diffusion_decode(decoder, quant, CONFIG, steps=4, generator=torch.Generator().manual_seed(5)),
        D.diffusion_decode(decoder, quant, CONFIG, steps=4, noise=drawn), atol=1e-6, rtol=0)
    # a masked condition is zeroed: fully masked equals an all-zero condition
    mask = torch.ones(2, 2, 2, dtype=torch.bool)
    torch.testing.assert_close(
        D.diffusion_decode(decoder, quant, CONFIG, steps=2, scheduler="ddim", noise=noises[0], cond_mask=mask),
        D.diffusion_decode(decoder, torch.zeros_like(quant), CONFIG, steps=2, scheduler="ddim", noise=noises[0]))
    assert D.diffusion_decode(decoder, quant, CONFIG, steps=1, scheduler="ddim", noise=torch.randn(2, 1, 8, 12),
                              image_size=(8, 12)).shape == (2, 1, 8, 12)


def test_errors_name_the_key_and_the_fix(decoder):
    with pytest.raises(TokenizerError, match=r"dec_type='unet_nope'.*known: .*unet_patched.*uvit_b_p4_f16"):
        D.build_diffusion_decoder({"dec_type": "unet_nope"})
    with pytest.raises(TokenizerError, match=r"conditioning='film'.*concat, xattn"):
        D.build_diffusion_decoder({**CONFIG, "conditioning": "film"})
    with pytest.raises(TokenizerError, match=r"scheduler 'pndm'.*ddpm, ddim"):
        D.build_scheduler({**CONFIG, "scheduler": "pndm"})
    with pytest.raises(TokenizerError, match=r"beta_schedule='cosine'"):
        D.build_scheduler({**CONFIG, "beta_schedule": "cosine"})
    with pytest.raises(TokenizerError, match=r"shift must be a positive number"):
        D.build_scheduler({**CONFIG, "beta_schedule": "shifted_cosine:x"})
    with pytest.raises(TokenizerError, match=r"prediction_type='noise'.*epsilon, sample, v_prediction"):
        D.build_scheduler({**CONFIG, "prediction_type": "noise"})
    with pytest.raises(TokenizerError, match=r"num_train_timesteps"):
        D.build_scheduler({**CONFIG, "num_train_timesteps": 0})
    with pytest.raises(TokenizerError, match=r"steps=0"):
        D.sampling_timesteps("ddim", 0, 1000)
    with pytest.raises(TokenizerError, match=r"DDPM sampling uses the 'leading' grid"):
        D.sampling_timesteps("ddpm", 4, 1000, "trailing")
    with pytest.raises(TokenizerError, match=r"timestep_spacing='even'"):
        D.sampling_timesteps("ddim", 4, 1000, "even")
    q = torch.randn(1, 4, 2, 2)
    with pytest.raises(TokenizerError, match=r"noise holds 2 tensors; this sampling draws 4"):
        D.diffusion_decode(decoder, q, CONFIG, steps=4, noise=[torch.randn(1, 1, 16, 16)] * 2)
    with pytest.raises(TokenizerError, match=r"noise draw 0 has shape \(1, 1, 8, 8\); expected \(1, 1, 16, 16\)"):
        D.diffusion_decode(decoder, q, CONFIG, steps=1, noise=torch.randn(1, 1, 8, 8))
    with pytest.raises(TokenizerError, match=r"quant must be \(B, D, h, w\)"):
        D.diffusion_decode(decoder, q[0], CONFIG, steps=1)
    with pytest.raises(TokenizerError, match=r"already registered"):
        D.register_diffusion_arch("unet_patched", SMALL)
    with pytest.raises(TokenizerError, match=r"cannot tell its family"):
        D.register_diffusion_arch("tiny_decoder", SMALL)
    with pytest.raises(ValueError, match=r"not divisible by the decoder's patch size 2"):
        decoder(torch.randn(1, 1, 15, 16), 10, q)


def test_registered_builders_receive_the_config_arguments():
    seen = {}

    def build(**kw):
        seen.update(kw)
        return PatchedUNetCondCat(**kw, **SMALL)

    D.register_diffusion_arch("unet_api_builder", build)
    try:
        m = D.build_diffusion_decoder({**CONFIG, "dec_type": "unet_api_builder", "image_size_dec": 24})
    finally:
        D.unregister_diffusion_arch("unet_api_builder")
    assert seen == {"in_channels": 1, "out_channels": 1, "cond_channels": 4, "image_size": 24}
    assert m.sample_size == 24 and not D.is_diffusion_arch("unet_api_builder")
    assert np.array_equal(D.sampling_timesteps("ddpm", 1, 1000), [0])
