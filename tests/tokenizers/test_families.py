"""ViTVQVAE / MLPVQ / quantizers: shapes, dtypes, save/load, bad inputs."""

from __future__ import annotations

import json

import pytest
import torch

from fourm_core.tokenizers import (
    FSQ, MLPVQ, EMAVectorQuantizer, TokenizerError, ViTVQVAE, codebook_stats, load_tokenizer, register_decoder,
)
from fourm_core.tokenizers.vqvae import ViTDecoder

TINY_VIT = dict(image_size=64, patch_size=8, dim=64, depth=1, num_heads=2)  # 8x8 token grid


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.mark.parametrize("loss,channels,extra", [
    ("mse", 3, {}), ("l1", 1, {}), ("cosine", 8, {}), ("ce", 5, {"num_classes": 5}),
])
@pytest.mark.parametrize("quantizer", ["ema_vq", "fsq"])
def test_vitvqvae_shapes_and_dtypes(loss, channels, extra, quantizer):
    q = {"codebook_size": 64, "code_dim": 8} if quantizer == "ema_vq" else {"fsq_levels": [4, 4, 3]}
    m = ViTVQVAE(in_channels=channels, loss=loss, quantizer=quantizer, **TINY_VIT, **q, **extra)
    assert m.num_tokens == 64 and m.vocab_size == (64 if quantizer == "ema_vq" else 48)
    x = torch.rand(3, channels, 64, 64)
    total, metrics = m.loss(x)
    assert total.dim() == 0 and total.requires_grad
    assert {"recon_loss", "quant_loss", "usage", "perplexity"} <= set(metrics)
    total.backward()
    assert m.patch_embed.weight.grad is not None and m.patch_embed.weight.grad.abs().sum() > 0
    m.eval()
    tokens = m.encode(x)
    assert tokens.dtype == torch.long and tokens.shape == (3, 64)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < m.vocab_size
    out = m.decode(tokens)
    assert out.dtype == torch.float32 and out.shape == (3, channels, 64, 64)
    if loss == "ce":
        torch.testing.assert_close(out.sum(dim=1), torch.ones(3, 64, 64))


def test_small_feature_map_patch1_and_default_grid():
    m = ViTVQVAE(in_channels=32, image_size=16, patch_size=1, dim=32, depth=1, num_heads=2, codebook_size=32,
                 code_dim=8, loss="cosine")
    assert m.num_tokens == 256 and m.encode(torch.randn(2, 32, 16, 16)).shape == (2, 256)
    assert ViTVQVAE(dim=32, depth=0, num_heads=2, codebook_size=16).grid == (14, 14)  # 224/16 default


def test_class_ids_input_with_ignore_index():
    m = ViTVQVAE(in_channels=1, loss="ce", num_classes=4, **TINY_VIT, codebook_size=16, code_dim=8)
    ids = torch.randint(0, 4, (2, 1, 64, 64)).float()
    ids[0, 0, :8] = 255  # ignored pixels
    loss, _ = m.loss(ids)
    assert torch.isfinite(loss)
    assert m.encode(ids[:, 0].long()).shape == (2, 64)
    with pytest.raises(TokenizerError, match=r"class ids out of range.*\[7\]"):
        m.encode(torch.full((1, 64, 64), 7))


def test_bad_inputs_name_tokenizer_and_expected_shape():
    m = ViTVQVAE(modality="depth", in_channels=1, **TINY_VIT, codebook_size=16, code_dim=8)
    with pytest.raises(TokenizerError, match=r"modality 'depth'.*3 channels.*expected \(B, 1, 64, 64\)"):
        m.encode(torch.rand(2, 3, 64, 64))
    with pytest.raises(TokenizerError, match=r"modality 'depth'.*spatial size \(32, 32\).*\(B, 1, 64, 64\)"):
        m.encode(torch.rand(2, 1, 32, 32))
    nan = torch.rand(2, 1, 64, 64)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(TokenizerError, match=r"ViTVQVAE tokenizer of modality 'depth'.*1 NaN.*\(B, 1, 64, 64\)"):
        m.loss(nan)
    with pytest.raises(TokenizerError, match=r"\(B, 64\) int64 ids in \[0, 16\)"):
        m.decode(torch.full((1, 64), 16))
    v = MLPVQ(modality="dinov2_global", in_dim=12, num_tokens=4, hidden_dim=16, codebook_size=16, code_dim=4)
    with pytest.raises(TokenizerError, match=r"MLPVQ tokenizer of modality 'dinov2_global'.*\(B, 12\)"):
        v.encode(torch.rand(2, 13))
    with pytest.raises(TokenizerError, match="NaN"):
        v.encode(torch.full((2, 12), float("inf")))
    with pytest.raises(TokenizerError, match="unknown loss"):
        ViTVQVAE(loss="huber", **TINY_VIT)
    with pytest.raises(TokenizerError, match="not a multiple of patch_size"):
        ViTVQVAE(image_size=60, patch_size=8)


@pytest.mark.parametrize("family", ["vit", "mlp"])
def test_save_load_identical_tokens(tmp_path, family):
    if family == "vit":
        m = ViTVQVAE(modality="rgb", in_channels=3, **TINY_VIT, codebook_size=32, code_dim=8)
        x = torch.rand(4, 3, 64, 64)
    else:
        m = MLPVQ(modality="g", in_dim=24, num_tokens=4, hidden_dim=32, codebook_size=32, code_dim=8, loss="cosine")
        x = torch.randn(4, 24)
    m.train()
    m.loss(x)  # initialise / move the EMA codebook so that buffers matter
    m.eval()
    before = m.encode(x)
    m.save_pretrained(tmp_path / "tok")
    cfg = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert cfg["family"] == ("vit_vqvae" if family == "vit" else "mlp_vq")
    again = load_tokenizer(tmp_path / "tok")
    assert type(again) is type(m)
    torch.testing.assert_close(again.encode(x), before, rtol=0, atol=0)
    torch.testing.assert_close(again.decode(before), m.decode(before))
    assert type(m).from_pretrained(tmp_path / "tok").vocab_size == m.vocab_size


def test_load_errors(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"family": "wavelet"}))
    with pytest.raises(TokenizerError, match="unknown tokenizer family 'wavelet'.*vit_vqvae"):
        load_tokenizer(tmp_path / "bad")
    with pytest.raises(TokenizerError, match=r"config: unknown key\(s\) 'bogus'; valid keys: "):
        ViTVQVAE.from_config({"bogus": 1})


def test_decoder_is_swappable():
    @register_decoder("test_linear")
    class LinearDecoder(torch.nn.Module):
        def __init__(self, code_dim, out_channels, grid, patch_size, *, dim, depth, num_heads):
            super().__init__()
            self.inner = ViTDecoder(code_dim, out_channels, grid, patch_size, dim=dim, depth=0, num_heads=num_heads)

        def forward(self, codes):
            return self.inner(codes)

    m = ViTVQVAE(in_channels=3, **TINY_VIT, codebook_size=16, code_dim=8, decoder={"type": "test_linear"})
    assert isinstance(m.decoder, LinearDecoder)
    assert m.decode(m.encode(torch.rand(1, 3, 64, 64))).shape == (1, 3, 64, 64)
    with pytest.raises(TokenizerError, match="unknown decoder type 'nope'"):
        ViTVQVAE(**TINY_VIT, decoder={"type": "nope"})


def test_ema_quantizer_normalised_codes_and_dead_code_restart():
    q = EMAVectorQuantizer(16, 4, decay=0.5, dead_code_threshold=0.5)
    q.train()
    z = torch.randn(256, 4, requires_grad=True)
    out = q(z)  # first batch initialises the codebook from the data
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(16))
    (out.quantized.sum() + out.loss).backward()
    assert z.grad is not None  # straight-through
    # a batch concentrated around one direction starves the other codes: they must be restarted
    target = torch.tensor([1.0, 0, 0, 0])
    for _ in range(6):
        q(target + 0.01 * torch.randn(256, 4))
    cos = q.codebook @ target
    assert (cos > 0.9).sum() >= 8, "dead codes should be restarted from the (concentrated) batch"
    assert q.cluster_size.min() >= 0.5 * 0.5  # restarted codes have a fresh count


def test_fsq_indices_round_trip_and_stats():
    f = FSQ([8, 5, 5, 5])
    assert f.codebook_size == 1000 and f.code_dim == 4
    z = torch.randn(500, 4) * 3
    out = f(z)
    assert out.indices.min() >= 0 and out.indices.max() < 1000
    torch.testing.assert_close(f.indices_to_codes(out.indices), out.quantized)
    all_ids = torch.arange(1000)
    codes = f.indices_to_codes(all_ids)
    assert codes.unique(dim=0).shape[0] == 1000
    counts = torch.tensor([2, 2, 0, 0])
    s = codebook_stats(counts)
    assert float(s["usage"]) == 0.5 and abs(float(s["perplexity"]) - 2.0) < 1e-5
