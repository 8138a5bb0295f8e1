"""The reference 4M release's tokenizers (``../shared/conformance/ml4m_release/tokenizers``) load in fourm by
directory and by hub id (from a local Hugging Face cache laid out as huggingface_hub writes it, offline), and
reproduce the reference's stored outputs (``io.safetensors``): latents, quantised latents, top-2 margins, token
ids, VQ-VAE decodes, and the encoder half of the DiVAEs. Also: fourm's protocol adapter, save / reload, errors.

The set's architectures use tiny preset names (FORMAT.md of the set, §6.3) that the product does not ship: the
module fixture registers them. Tests reading the set carry ``requires("conformance")``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from fourm_core.tokenizers import Tokenizer, TokenizerError, load_tokenizer
from fourm_core.tokenizers.ml4m import (
    VQ, VQVAE, DiVAE, ReleasedTokenizer, check_tokenizer, from_pretrained, register_arch, save_pretrained,
    verify_tokenizer)

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
TOKENIZERS = RELEASE / "tokenizers"
VQVAES = ("vqvae_rgb", "vqvae_semseg", "mlp_global")
DIVAES = ("divae_rgb", "divae_depth")
_PRESENT = all((TOKENIZERS / n / "io.safetensors").is_file() for n in VQVAES + DIVAES)
needs_release = pytest.mark.requires(
    "conformance", available=_PRESENT,
    reason=f"reference release set {TOKENIZERS} not present; put shared/ beside the checkout or set FOURM_RELEASE_DIR")
pytestmark = needs_release

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def register_tiny_archs() -> None:
    """The set's tiny ViT presets (dims / depth / heads of its generator)."""
    for size, (dim, depth, heads) in {"tiny": (32, 2, 2), "tiny2": (48, 1, 4)}.items():
        register_arch(f"vit_{size}_enc", "vit_encoder", dim_tokens=dim, depth=depth, num_heads=heads)
        register_arch(f"vit_{size}_dec", "vit_decoder", dim_tokens=dim, depth=depth, num_heads=heads)


@pytest.fixture(scope="module", autouse=True)
def tiny_archs():
    register_tiny_archs()


def _io(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(TOKENIZERS / name / "io.safetensors"))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache holding every shared tokenizer as ``fourm-test/<name>`` (refs/main → COMMIT)."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hub"
    for d in TOKENIZERS.iterdir():
        repo = cache / f"models--fourm-test--{d.name}"
        snap = repo / "snapshots" / COMMIT
        snap.mkdir(parents=True)
        for f in ("config.json", "model.safetensors"):
            shutil.copy(d / f, snap / f)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return cache


def _assert_encoder_matches(model: VQ, io: dict[str, torch.Tensor]) -> None:
    prefixes = sorted(k[:-6] for k in io if k.endswith(".input"))
    assert prefixes
    for p in prefixes:
        latent = model.encode_latent(io[f"{p}.input"])
        torch.testing.assert_close(latent, io[f"{p}.latent"], atol=1e-5, rtol=0)
        q = model.quantize_latent(latent)
        exempt = io[f"{p}.top2_margin"] < 1e-4
        assert bool(((q.tokens != io[f"{p}.tokens"]) & ~exempt).sum() == 0), p
        torch.testing.assert_close(q.margin, io[f"{p}.top2_margin"], atol=1e-5, rtol=0)
        torch.testing.assert_close(model.tokens_to_embedding(io[f"{p}.tokens"]), io[f"{p}.quant_from_tokens"],
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode(io[f"{p}.input"]), io[f"{p}.tokens"], atol=0, rtol=0)


@pytest.mark.parametrize("name", VQVAES)
def test_vqvae_reproduces_reference_outputs(name):
    model = from_pretrained(TOKENIZERS / name)
    assert isinstance(model, VQVAE) and not model.training
    assert not any(m.training for m in model.modules())
    io = _io(name)
    _assert_encoder_matches(model, io)
    for p in sorted(k[:-8] for k in io if k.endswith(".decoded")):
        torch.testing.assert_close(model.decode_tokens(io[f"{p}.tokens"]), io[f"{p}.decoded"], atol=1e-5, rtol=0)
    ok, summary = verify_tokenizer(TOKENIZERS / name)
    assert ok, summary
    assert "unchecked" not in summary  # every stored tensor of a VQ-VAE is compared


@pytest.mark.parametrize("name", DIVAES)
def test_divae_encoder_half_reproduces_reference_outputs(name):
    model = from_pretrained(TOKENIZERS / name, encoder_only=True)
    assert type(model) is VQ and not model.training
    _assert_encoder_matches(model, _io(name))


def test_class_from_pretrained_checks_the_class():
    io = _io("vqvae_rgb")
    model = VQVAE.from_pretrained(TOKENIZERS / "vqvae_rgb")
    assert not model.training
    enc = VQ.from_pretrained(TOKENIZERS / "vqvae_rgb")  # the encoder half of any tokenizer
    assert type(enc) is VQ and not hasattr(enc, "decoder")
    torch.testing.assert_close(enc.encode(io["res0.input"]), io["res0.tokens"], atol=0, rtol=0)
    with pytest.raises(TokenizerError, match="holds a VQVAE, not a DiVAE"):
        DiVAE.from_pretrained(TOKENIZERS / "vqvae_rgb")


def test_divae_without_diffusion_module_reports_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "fourm_core.tokenizers.ml4m.diffusion", None)  # import raises ImportError
    import fourm_core.tokenizers.ml4m as pkg

    monkeypatch.delattr(pkg, "diffusion", raising=False)
    with pytest.raises(TokenizerError, match="diffusion decoder not available"):
        from_pretrained(TOKENIZERS / "divae_rgb")
    rep = check_tokenizer(TOKENIZERS / "divae_rgb")
    assert not rep.passed
    assert any("diffusion decoder not available" in p for p in rep.problems)
    assert rep.errors["res0.latent"] <= 1e-5 and rep.errors["res0.tokens"] == 0  # the encoder half still ran
    assert any(k.endswith(".decoded") for k in rep.unchecked)


@pytest.mark.parametrize("name", DIVAES)
def test_divae_verify_end_to_end_or_reports_the_missing_decoder(name):
    """With the diffusion module present, verify_tokenizer checks a DiVAE completely (sampler runs, per-step
    traces, schedule); without it, it says so (and still checks the encoder half)."""
    import importlib

    try:
        diffusion = importlib.import_module("fourm_core.tokenizers.ml4m.diffusion")
    except ImportError:
        ok, summary = verify_tokenizer(TOKENIZERS / name)
        assert not ok and "diffusion decoder not available" in summary and "res0.latent: max |diff|" in summary
        return
    for arch, kw in {"unet_tiny": dict(patch_size=4, attention_resolutions=[2], channel_mult=(1, 1)),
                     "unet_tiny2": dict(patch_size=2, attention_resolutions=[4], channel_mult=(1, 1, 2))}.items():
        diffusion.register_diffusion_arch(arch, dict(model_channels=32, num_res_blocks=1, **kw), replace=True)
    rep = check_tokenizer(TOKENIZERS / name)
    assert rep.passed, rep.summary()
    assert rep.errors["res0.ddim.decoded"] <= 1e-4 and rep.errors["res0.default.decoded"] <= 1e-4


@pytest.mark.parametrize("name", VQVAES + DIVAES)
def test_load_by_hub_id_from_offline_cache(hub_cache, name):
    encoder_only = name in DIVAES
    io = _io(name)
    for revision in (None, COMMIT):
        model = from_pretrained(f"fourm-test/{name}", revision=revision, encoder_only=encoder_only)
        assert not model.training
        torch.testing.assert_close(model.encode(io["res0.input"]), io["res0.tokens"], atol=0, rtol=0)


@pytest.mark.parametrize("name", VQVAES + DIVAES)
def test_encode_and_decode_through_a_hub_id(hub_cache, name):
    """Loaded by hub id from the offline cache, each tokenizer encodes the stored input to the reference's ids
    and decodes them to the reference's output (DiVAE: 4 trailing DDIM steps from the stored start noise)."""
    if name in DIVAES:
        from fourm_core.tokenizers.ml4m import diffusion

        for arch, kw in {"unet_tiny": dict(patch_size=4, attention_resolutions=[2], channel_mult=(1, 1)),
                         "unet_tiny2": dict(patch_size=2, attention_resolutions=[4], channel_mult=(1, 1, 2))}.items():
            diffusion.register_diffusion_arch(arch, dict(model_channels=32, num_res_blocks=1, **kw), replace=True)
    io = _io(name)
    model = from_pretrained(f"fourm-test/{name}")
    tokens = model.encode(io["res0.input"])
    torch.testing.assert_close(tokens, io["res0.tokens"], atol=0, rtol=0)
    if name in DIVAES:
        out = model.decode_tokens(tokens, steps=4, scheduler="ddim", noise=io["res0.ddim.initial_noise"],
                                  image_size=io["res0.input"].shape[-1], timestep_spacing="trailing")
        assert (out - io["res0.ddim.decoded"]).abs().max() <= 1e-4
    else:
        assert (model.decode_tokens(tokens) - io["res0.decoded"]).abs().max() <= 1e-5


def test_hub_id_errors_are_actionable(hub_cache):
    with pytest.raises(TokenizerError, match="huggingface-cli download fourm-test/absent"):
        from_pretrained("fourm-test/absent")
    with pytest.raises(TokenizerError, match="does not exist"):
        from_pretrained("./not/a/dir")


def test_load_tokenizer_dispatches_released_dirs_and_hub_ids(hub_cache):
    io = _io("vqvae_rgb")
    for source in (TOKENIZERS / "vqvae_rgb", "fourm-test/vqvae_rgb"):
        tok = load_tokenizer(source)
        assert isinstance(tok, ReleasedTokenizer) and isinstance(tok, Tokenizer)
        assert tok.vocab_size == 256 and tok.num_tokens == 36
        flat = tok.encode(io["res0.input"])
        assert flat.shape == (2, 36)
        torch.testing.assert_close(flat, io["res0.tokens"].reshape(2, -1), atol=0, rtol=0)
        torch.testing.assert_close(tok.decode(flat), io["res0.decoded"], atol=1e-5, rtol=0)


def test_protocol_adapter_semseg_and_global_vectors():
    sem = load_tokenizer(TOKENIZERS / "vqvae_semseg")
    io = _io("vqvae_semseg")
    assert sem.config["num_classes"] == 134
    probs = sem.decode(sem.encode(io["res0.input"]))
    torch.testing.assert_close(probs, io["res0.decoded"].softmax(dim=1), atol=1e-5, rtol=0)
    glob = load_tokenizer(TOKENIZERS / "mlp_global")
    io = _io("mlp_global")
    vec = io["res0.input"].flatten(1)  # (B, 768): how fourm stores a global vector
    flat = glob.encode(vec)
    assert glob.num_tokens == 16 and flat.shape == (2, 16)
    torch.testing.assert_close(flat, io["res0.tokens"].reshape(2, 16), atol=0, rtol=0)
    torch.testing.assert_close(glob.decode(flat), io["res0.decoded"].flatten(1), atol=1e-5, rtol=0)
    with pytest.raises(TokenizerError, match=r"expected \(B, 16\)"):
        glob.decode(flat[:, :8])
    with pytest.raises(TokenizerError, match="inference only"):
        glob.loss(vec)


@pytest.mark.parametrize("name", VQVAES)
def test_save_pretrained_writes_the_release_format_back(tmp_path, name):
    from safetensors.torch import load_file

    model = from_pretrained(TOKENIZERS / name)
    out = save_pretrained(model, tmp_path / name)
    assert (out / "config.json").read_bytes() == (TOKENIZERS / name / "config.json").read_bytes()
    a, b = load_file(str(out / "model.safetensors")), load_file(str(TOKENIZERS / name / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = from_pretrained(out)
    io = _io(name)
    torch.testing.assert_close(again.encode(io["res0.input"]), io["res0.tokens"], atol=0, rtol=0)


def _copy(tmp_path: Path, name: str, **config_changes) -> Path:
    d = Path(tempfile.mkdtemp(dir=tmp_path)) / name
    shutil.copytree(TOKENIZERS / name, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(config_changes)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_unknown_config_key_is_an_error_naming_key_and_file(tmp_path):
    d = _copy(tmp_path, "vqvae_rgb", codebook_sise=512)
    with pytest.raises(TokenizerError, match=r"config\.json.*unknown key\(s\) 'codebook_sise'"):
        from_pretrained(d)
    # keys the reference absorbs (domain) and training-only keys are accepted
    from_pretrained(_copy(tmp_path, "mlp_global", domain="x", ema_decay=0.5, freeze_enc=True))


def test_weights_that_do_not_fit_the_config(tmp_path):
    with pytest.raises(TokenizerError, match=r"quantize\._codebook\.embed: file \(256, 32\) vs config \(512, 32\)"):
        from_pretrained(_copy(tmp_path, "vqvae_rgb", codebook_size=512))
    with pytest.raises(TokenizerError, match=r"missing.*decoder\.out_conv"):
        from_pretrained(_copy(tmp_path, "vqvae_rgb", out_conv=True))
    with pytest.raises(TokenizerError, match=r"unexpected.*decoder\.post_mlp"):
        from_pretrained(_copy(tmp_path, "vqvae_semseg", post_mlp=False))
    d = _copy(tmp_path, "vqvae_rgb")
    (d / "model.safetensors").unlink()
    with pytest.raises(TokenizerError, match="model.safetensors is missing"):
        from_pretrained(d)


def test_unknown_architecture_in_a_config(tmp_path):
    with pytest.raises(TokenizerError, match=r"unknown encoder architecture 'vit_huge_enc'.*vit_b_enc"):
        from_pretrained(_copy(tmp_path, "vqvae_rgb", enc_type="vit_huge_enc"))


def test_bad_inputs_name_the_expected_shape():
    model = from_pretrained(TOKENIZERS / "vqvae_semseg")
    with pytest.raises(TokenizerError, match=r"class ids out of range"):
        model.encode(torch.full((1, 24, 24), 134))
    with pytest.raises(TokenizerError, match=r"\(B, H, W\) int64 class ids"):
        model.encode(torch.zeros(1, 3, 24, 24))
    rgb = from_pretrained(TOKENIZERS / "vqvae_rgb")
    with pytest.raises(TokenizerError, match=r"\(B, 3, H, W\) float"):
        rgb.encode(torch.zeros(1, 1, 96, 96))
    with pytest.raises(TokenizerError, match=r"token ids out of range"):
        rgb.decode_tokens(torch.full((1, 6, 6), 256))
    assert isinstance(rgb, VQVAE) and not isinstance(rgb, DiVAE)
