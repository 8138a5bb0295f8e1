"""The architecture table of the released tokenizers against the full-size key lists the reference's own code
produced (``archs.json`` of the shared release set): every ViT / MLP preset in ``tokenizer_modules`` and every
released tokenizer configuration in ``tokenizers`` (VQ-VAEs whole, DiVAEs without their diffusion decoder, whose
keys the diffusion module's tests check) is built on the meta device and must have the same state-dict keys and
shapes, and the same parameter count. Plus: the table's registration API, MLP ids, config validation and the
2-D sin-cos position table.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pytest
import torch

from fourm_core.tokenizers import TokenizerError
from fourm_core.tokenizers.ml4m import (
    ARCHS, VQ, VQVAE, BottleneckMLP, StandardMLP, ViTDecoder, ViTEncoder, lookup_arch, parse_mlp_id, register_arch,
    resolve_config)
from fourm_core.tokenizers.ml4m.archs import build_mlp
from fourm_core.tokenizers.ml4m.vit import sincos_pos_emb_2d

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
ARCHS_JSON = RELEASE / "archs.json"
needs_release = pytest.mark.requires(
    "conformance", available=ARCHS_JSON.is_file(),
    reason=f"reference release set {RELEASE} (archs.json) not present; put shared/ beside the checkout or set "
           f"FOURM_RELEASE_DIR")


def _archs() -> dict:
    return json.loads(ARCHS_JSON.read_text())


def _keys(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _ref_keys(entry: dict, drop_prefixes: tuple[str, ...] = ()) -> dict[str, tuple[int, ...]]:
    return {name: tuple(shape) for name, shape, _, _ in entry["keys"] if not name.startswith(drop_prefixes)}


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _call(text: str) -> tuple[str, dict]:
    """``"vit_b_enc(in_channels=3, ...)"`` / ``"BottleneckMLP/B_6-Wi_1024 (dim_in=768, dim_out=None)"``."""
    m = re.fullmatch(r"(\S+?)\s*\((.*)\)", text)
    call = ast.parse(f"f({m.group(2)})", mode="eval").body
    return m.group(1), {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def _role(name: str) -> str:
    return "decoder" if name.endswith("_dec") or name.startswith(("unet_", "uvit_")) else "encoder"


def _module_entries(kinds: tuple[str, ...]) -> list[str]:
    if not ARCHS_JSON.is_file():
        return ["<archs.json missing>"]
    names = {k: _call(k)[0] for k in _archs()["tokenizer_modules"]}
    return [k for k, n in names.items() if lookup_arch(n, role=_role(n)).kind in kinds]


def _build_module(name: str, kwargs: dict) -> torch.nn.Module:
    arch = lookup_arch(name, role=_role(name))
    if arch.kind == "mlp":
        return build_mlp(arch, dim_in=kwargs.get("dim_in"), dim_out=kwargs.get("dim_out"))
    p = arch.params
    cls = ViTEncoder if arch.kind == "vit_encoder" else ViTDecoder
    return cls(dim_tokens=p["dim_tokens"], depth=p["depth"], num_heads=p["num_heads"], mlp_ratio=p["mlp_ratio"],
               qkv_bias=p["qkv_bias"], **kwargs)


@needs_release
@pytest.mark.parametrize("entry", _module_entries(("vit_encoder", "vit_decoder", "mlp")))
def test_preset_modules_match_the_reference_key_lists(entry):
    ref = _archs()["tokenizer_modules"][entry]
    name, kwargs = _call(entry)
    with torch.device("meta"):
        module = _build_module(name, kwargs)
    assert _keys(module) == _ref_keys(ref)
    assert _num_params(module) == ref["num_parameters"]


def _tokenizer_entries() -> list[str]:
    if not ARCHS_JSON.is_file():
        return ["<archs.json missing>"]
    return list(_archs()["tokenizers"])


@needs_release
@pytest.mark.parametrize("entry", _tokenizer_entries())
def test_released_tokenizer_configs_match_the_reference_key_lists(entry):
    ref = _archs()["tokenizers"][entry]
    cons = ref["constructor"]
    cls = VQVAE if cons["cls"] == "VQVAE" else VQ  # a DiVAE's decoder is the diffusion module's
    with torch.device("meta"):
        model = cls(cons["kwargs"], where=entry)
    drop = ("decoder.",) if cls is VQ else ()
    assert _keys(model) == _ref_keys(ref, drop_prefixes=drop)
    params = sum(torch.Size(shape).numel() for name, shape, kind, _ in ref["keys"]
                 if kind == "param" and not name.startswith(drop))
    assert _num_params(model) == params
    if cls is VQVAE:
        assert params == ref["num_parameters"]


@needs_release
def test_sincos_table_is_the_released_one():
    from safetensors.torch import load_file

    state = load_file(str(RELEASE / "tokenizers" / "vqvae_rgb" / "model.safetensors"))
    for key in ("encoder.pos_emb", "decoder.pos_emb"):
        _, d, h, w = state[key].shape
        torch.testing.assert_close(sincos_pos_emb_2d(h, w, d), state[key], atol=1e-6, rtol=0)


def test_non_square_sincos_layout():
    t = sincos_pos_emb_2d(2, 3, 8)  # (1, 8, 2, 3); channels 0..1 are sin/cos of the column, 4..5 of the row...
    assert t.shape == (1, 8, 2, 3)
    # ...in the released layout the flat index runs over (column, row) and is then read as (row, column)
    flat = torch.arange(6)
    col, row = flat // 2, flat % 2
    torch.testing.assert_close(t[0, 0].flatten(), col.float().sin())
    torch.testing.assert_close(t[0, 4].flatten(), row.float().sin())


def test_register_arch_and_unknown_names():
    register_arch("vit_unit_enc", "vit_encoder", dim_tokens=16, depth=1, num_heads=2)
    register_arch("vit_unit_enc", "vit_encoder", dim_tokens=16, depth=1, num_heads=2)  # same again: fine
    assert ARCHS["vit_unit_enc"].params["mlp_ratio"] == 4.0
    with pytest.raises(TokenizerError, match="already registered"):
        register_arch("vit_unit_enc", "vit_encoder", dim_tokens=32, depth=1, num_heads=2)
    with pytest.raises(TokenizerError, match="unknown parameter"):
        register_arch("vit_unit2_enc", "vit_encoder", dim_tokens=16, depth=1, num_heads=2, heads=3)
    with pytest.raises(TokenizerError, match="cannot be registered here"):
        register_arch("unet_unit", "diffusion")
    with pytest.raises(TokenizerError, match=r"unknown encoder architecture 'vit_x_enc'; known: .*vit_b_enc.*vit_l"):
        lookup_arch("vit_x_enc", role="encoder")
    with pytest.raises(TokenizerError, match="cannot be the encoder"):
        lookup_arch("vit_b_dec", role="encoder")
    with pytest.raises(TokenizerError, match="cannot be the encoder"):
        lookup_arch("unet_patched", role="encoder")
    assert lookup_arch("uvit_b_p4_f16", role="decoder").kind == "diffusion"


def test_mlp_ids():
    assert parse_mlp_id("BottleneckMLP/B_6-Wi_1024") == ("BottleneckMLP", 6, 1024, 4)
    assert parse_mlp_id("BottleneckMLP/B_2-Wi_64-E_2") == ("BottleneckMLP", 2, 64, 2)
    assert parse_mlp_id("MLP/B_3-Wi_32") == ("MLP", 3, 32, 4)
    assert parse_mlp_id("BottleneckMLP/B6") is None
    with pytest.raises(TokenizerError, match=r"MLP ids look like"):
        lookup_arch("BottleneckMLP/B6-W64", role="encoder")
    bott = build_mlp(lookup_arch("BottleneckMLP/B_2-Wi_8-E_2", role="encoder"), dim_in=5, dim_out=None)
    assert isinstance(bott, BottleneckMLP)
    assert _keys(bott)["blocks.1.block.0.weight"] == (16, 8) and _keys(bott)["linear_in.weight"] == (8, 5)
    plain = build_mlp(lookup_arch("MLP/B_3-Wi_8", role="decoder"), dim_in=None, dim_out=5)
    assert isinstance(plain, StandardMLP)
    assert sorted(k for k in _keys(plain) if k.startswith("layers")) == [
        "layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.weight"]
    x = torch.randn(2, 8, 3, 1)  # point-wise over a (B, C, H, W) map == over its (B, N, C) rows
    torch.testing.assert_close(plain(x), plain(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 5, 3, 1))


def test_config_validation():
    with pytest.raises(TokenizerError, match=r"my\.json \(VQVAE\): unknown key\(s\) 'colour'"):
        resolve_config({"colour": 1}, where="my.json")
    with pytest.raises(TokenizerError, match="diffusion"):
        resolve_config({"dec_type": "vit_b_dec", "beta_schedule": "linear"})
    with pytest.raises(TokenizerError, match="num_codebooks 2 with quant_type 'lucid'"):
        resolve_config({"num_codebooks": 2})
    with pytest.raises(TokenizerError, match="quant_type 'fsq' is not supported"):
        resolve_config({"quant_type": "fsq"})
    with pytest.raises(TokenizerError, match="latent_dim 30 is not divisible by num_codebooks 4"):
        resolve_config({"quant_type": "memcodes", "num_codebooks": 4, "latent_dim": 30})
    with pytest.raises(TokenizerError, match="image_size must be a positive integer"):
        resolve_config({"image_size": "224"})
    divae = resolve_config({"dec_type": "unet_patched", "out_conv": False, "domain": "rgb"})
    assert divae["prediction_type"] == "v_prediction" and divae["beta_schedule"] == "squaredcos_cap_v2"
    vq = resolve_config({"image_size": 32})
    assert vq["dec_type"] == "vit_b_dec" and vq["codebook_size"] == 16384 and vq["enc_type"] == "vit_b_enc"


def test_fresh_model_encodes_and_decodes_other_grids():
    register_arch("vit_unit_enc", "vit_encoder", dim_tokens=16, depth=1, num_heads=2)
    register_arch("vit_unit_dec", "vit_decoder", dim_tokens=16, depth=1, num_heads=2)
    torch.manual_seed(0)
    model = VQVAE({"enc_type": "vit_unit_enc", "dec_type": "vit_unit_dec", "image_size": 32, "patch_size": 8,
                   "codebook_size": 16, "latent_dim": 4, "post_mlp": True, "out_conv": True, "undo_std": True}).eval()
    assert model.token_shape == (4, 4) and model.num_tokens == 16
    ids = model.encode(torch.randn(2, 3, 48, 40))  # another grid: the position table is resized
    assert ids.shape == (2, 6, 5) and ids.dtype == torch.long
    out = model.decode_tokens(ids)
    assert out.shape == (2, 3, 48, 40) and torch.isfinite(out).all()
    # lucid: the quantised vector of a token is its stored codebook row
    q = model.quantize_latent(model.encode_latent(torch.randn(1, 3, 32, 32)))
    torch.testing.assert_close(q.quant[0, :, 0, 0], model.quantize.codebook[q.tokens[0, 0, 0]])
