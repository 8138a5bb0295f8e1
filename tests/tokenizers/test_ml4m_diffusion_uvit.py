"""The UViT decoder's parts against the ``diffusers`` blocks the released UViT checkpoints were trained with
(same parameter names, so each diffusers block's weights load strictly into ours), and the UViT's own
behaviour: conditioning modes, masks, long skips, odd sizes, batching. No stored UViT outputs exist; the
full-size key sets are checked in test_ml4m_diffusion.py."""

from __future__ import annotations

import pytest
import torch

from fourm_core.tokenizers.ml4m.unet import timestep_embedding
from fourm_core.tokenizers.ml4m.uvit import (
    ConvDownsample, ConvUpsample, DownBlock, TimestepEmbedding, UpBlock, UViT, sincos_posemb_2d,
)


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (the zero-initialised output convs and gates would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / max(1, p[0].numel()) ** 0.5))
    return module.eval()


def _tiny_uvit(**kw) -> UViT:
    args = dict(sample_size=32, in_channels=3, out_channels=3, patch_size=2, block_out_channels=(32, 64),
                layers_per_block=1, downsample_before_mid=True, mid_layers=2, mid_num_heads=2, mid_dim=32,
                mid_hw_posemb=8, cond_dim=8, norm_num_groups=8)
    args.update(kw)
    return _randomize(UViT(**args))


def test_down_and_up_blocks_match_diffusers():
    from diffusers.models.unets.unet_2d_blocks import DownBlock2D, UpBlock2D

    torch.manual_seed(0)
    ref_down = DownBlock2D(in_channels=16, out_channels=32, temb_channels=24, num_layers=2, resnet_eps=1e-5,
                           resnet_groups=8, add_downsample=True).eval()
    ours_down = DownBlock(2, 16, 32, 24, add_downsample=True, groups=8, eps=1e-5).eval()
    ours_down.load_state_dict(ref_down.state_dict(), strict=True)
    x, temb = torch.randn(2, 16, 10, 10), torch.randn(2, 24)
    with torch.no_grad():
        ref_h, ref_states = ref_down(x, temb)
        h, states = ours_down(x, temb)
    torch.testing.assert_close(h, ref_h, atol=1e-5, rtol=0)
    assert len(states) == len(ref_states) == 3
    for a, b in zip(states, ref_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)

    ref_up = UpBlock2D(in_channels=16, prev_output_channel=32, out_channels=32, temb_channels=24, num_layers=3,
                       resnet_eps=1e-5, resnet_groups=8, add_upsample=True).eval()
    ours_up = UpBlock(3, 16, 32, 32, 24, add_upsample=True, groups=8, eps=1e-5).eval()
    ours_up.load_state_dict(ref_up.state_dict(), strict=True)
    skips = [torch.randn(2, 16, 5, 5), torch.randn(2, 32, 5, 5), torch.randn(2, 32, 5, 5)]
    h = torch.randn(2, 32, 5, 5)
    with torch.no_grad():
        ref_out = ref_up(h, tuple(skips), temb, upsample_size=(9, 9))
        out = ours_up(h, temb, list(skips), (9, 9))
    assert out.shape == (2, 32, 9, 9)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)


def test_resampling_convs_and_time_embedding_match_diffusers():
    from diffusers.models.downsampling import Downsample2D
    from diffusers.models.embeddings import TimestepEmbedding as RefTimestepEmbedding, Timesteps
    from diffusers.models.upsampling import Upsample2D

    x = torch.randn(2, 8, 7, 7)
    ref = Downsample2D(8, use_conv=True, out_channels=8).eval()
    ours = ConvDownsample(8, conv_name="Conv2d_0")
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if k.startswith("Conv2d_0.")}, strict=True)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=0)
    ref_up = Upsample2D(8, use_conv=True, out_channels=8).eval()
    ours_up = ConvUpsample(8)
    ours_up.load_state_dict(ref_up.state_dict(), strict=True)
    torch.testing.assert_close(ours_up(x), ref_up(x), atol=1e-6, rtol=0)

    t = torch.tensor([0, 1, 249, 999])
    torch.testing.assert_close(timestep_embedding(t, 32), Timesteps(32, True, 0)(t), atol=1e-6, rtol=0)
    ref_emb, ours_emb = RefTimestepEmbedding(32, 128).eval(), TimestepEmbedding(32, 128)
    ours_emb.load_state_dict(ref_emb.state_dict(), strict=True)
    e = timestep_embedding(t, 32)
    torch.testing.assert_close(ours_emb(e), ref_emb(e), atol=1e-6, rtol=0)


def test_sincos_position_embedding_layout():
    pe = sincos_posemb_2d(5, 16)  # (1, 16, 5, 5); four groups of 4 frequencies
    omega = 1.0 / 10000 ** (torch.arange(4) / 4)
    r, c = 3, 1
    expect = torch.cat([torch.sin(r * omega), torch.cos(r * omega), torch.sin(c * omega), torch.cos(c * omega)])
    torch.testing.assert_close(pe[0, :, r, c], expect)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_posemb_2d(4, 18)


def test_downsample_mid_loads_under_both_names():
    """Full state dicts hold the bottleneck downsampling conv under ``Conv2d_0`` and its alias ``conv``;
    safetensors files keep only ``Conv2d_0``. Both load strictly."""
    m = _tiny_uvit()
    sd = m.state_dict()
    assert "downsample_mid.Conv2d_0.weight" in sd and "downsample_mid.conv.weight" not in sd
    with_alias = dict(sd)
    with_alias["downsample_mid.conv.weight"] = sd["downsample_mid.Conv2d_0.weight"]
    with_alias["downsample_mid.conv.bias"] = sd["downsample_mid.Conv2d_0.bias"]
    _tiny_uvit().load_state_dict(with_alias, strict=True)
    _tiny_uvit().load_state_dict(sd, strict=True)


@pytest.mark.parametrize("cond_type", ["concat", "xattn"])
def test_uvit_masked_condition_is_ignored_and_batches_are_independent(cond_type):
    m = _tiny_uvit(cond_type=cond_type)
    x, cond = torch.randn(2, 3, 32, 32), torch.randn(2, 8, 4, 4)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2] = True  # the first two condition rows masked
    other = cond.clone()
    other[:, :, :2] = torch.randn(2, 8, 2, 4)
    with torch.no_grad():
        out = m(x, 500, cond, cond_mask=mask)
        assert out.shape == (2, 3, 32, 32)
        torch.testing.assert_close(m(x, 500, other, cond_mask=mask), out, atol=1e-6, rtol=0)
        assert (m(x, 500, other) - m(x, 500, cond)).abs().max() > 1e-5  # unmasked: the condition matters
        single = torch.cat([m(x[i:i + 1], 500, cond[i:i + 1], cond_mask=mask[i:i + 1]) for i in range(2)])
        torch.testing.assert_close(single, out, atol=1e-5, rtol=0)
        per_sample_t = m(x, torch.tensor([500, 20]), cond, cond_mask=mask)
        torch.testing.assert_close(per_sample_t[:1], out[:1], atol=1e-5, rtol=0)
        assert (per_sample_t[1:] - out[1:]).abs().max() > 1e-4


def test_uvit_long_skip_and_odd_sizes():
    m = _tiny_uvit(mid_layers=3, mid_use_long_skip=True, downsample_before_mid=False)
    names = {n for n, _ in m.named_parameters()}
    assert "mid_block.mid_block.2.skip_linear.weight" in names
    assert not any(n.startswith(("mid_block.mid_block.0.skip", "mid_block.mid_block.1.skip")) for n in names)
    with torch.no_grad():
        out = m(torch.randn(1, 3, 18, 18), 10, torch.randn(1, 8, 3, 3))  # 9x9 grid, 5x5 after downsampling
    assert out.shape == (1, 3, 18, 18) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="odd number of mid layers"):
        UViT(mid_layers=2, mid_use_long_skip=True, block_out_channels=(32, 64), mid_dim=32, mid_num_heads=2)
    with pytest.raises(ValueError, match="conditioning"):
        UViT(cond_type="film", block_out_channels=(32, 64), mid_dim=32, mid_num_heads=2, mid_layers=1)
