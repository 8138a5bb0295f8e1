"""FourM model: configs and presets, every embedding kind, attention masks, losses, generation interface."""

from __future__ import annotations

import copy

import pytest
import torch

from fourm_core.model import PRESETS, ConfigError, FourM, ModDictError, ModelConfig, build_model
from fourm_core.model.embeddings import sincos_1d, sincos_2d
from fourm_core.model.testing import random_mod_dict, tiny_modalities

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mods():
    return tiny_modalities()


def _model(mods, **overrides) -> FourM:
    torch.manual_seed(0)
    cfg = dict(dim=32, encoder_depth=2, decoder_depth=2, num_heads=2)
    cfg.update(overrides)
    return build_model(mods, cfg).eval()


# ---------------------------------------------------------------------------------------------- config
def test_presets_sizes_and_variants():
    assert {"tiny", "small", "base", "large", "xlarge", "debug"} <= set(PRESETS)
    for size, (e, d, w) in {"tiny": (6, 6, 384), "small": (8, 8, 512), "base": (12, 12, 768),
                            "large": (24, 24, 1024), "xlarge": (24, 24, 2048)}.items():
        for suffix in ("", "-swiglu", "-swiglu-qknorm"):
            c = PRESETS[size + suffix]
            assert (c.encoder_depth, c.decoder_depth, c.dim, c.num_heads) == (e, d, w, w // 64)
    assert PRESETS["base-swiglu"].act == "swiglu" and not PRESETS["base-swiglu"].mlp_bias
    assert PRESETS["base-swiglu-qknorm"].qk_norm and not PRESETS["base-swiglu-qknorm"].norm_bias
    assert PRESETS["base"].act == "gelu" and PRESETS["base"].qkv_bias


def test_config_strict_errors():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'dimm'.*valid keys: .*dim"):
        ModelConfig.from_dict({"dimm": 3, "preset": "debug"})
    with pytest.raises(ConfigError, match="unknown model preset 'huge'.*base-swiglu"):
        ModelConfig.coerce("huge")
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        ModelConfig(dim=30, encoder_depth=1, decoder_depth=1, num_heads=4)
    c = ModelConfig.from_dict({"preset": "debug", "act": "swiglu"})
    assert c.act == "swiglu" and c.dim == PRESETS["debug"].dim
    assert ModelConfig.from_dict(c.to_dict()) == c


def test_swiglu_hidden_and_parameter_names(mods):
    m = _model(mods, act="swiglu", qk_norm=True, qkv_bias=False, proj_bias=False, mlp_bias=False, norm_bias=False)
    sd = m.state_dict()
    assert sd["encoder.0.mlp.fc3.weight"].shape == (int(2 * 128 / 3), 32)
    assert sd["decoder.1.cross_attn.q_norm.weight"].shape == (16,)
    assert not any(k.endswith(".bias") and "decoder_proj_context" not in k for k in sd)


# ---------------------------------------------------------------------------------------------- embeddings
def test_sincos_tables_formula():
    t = sincos_1d(5, 8)[0]
    omega = 1.0 / 10000 ** (torch.arange(4) / 4)
    assert torch.allclose(t[3], torch.cat([(3 * omega).sin(), (3 * omega).cos()]))
    t2 = sincos_2d(3, 4, 8)[0]
    om = 1.0 / 10000 ** (torch.arange(2) / 2)
    a, b = 7 // 4, 7 % 4
    assert torch.allclose(t2[7], torch.cat([(a * om).sin(), (a * om).cos(), (b * om).sin(), (b * om).cos()]))


def _encode_one(model: FourM, mod_dict, name):
    enc = model.encode({name: mod_dict[name]})
    return enc


@pytest.mark.parametrize("name", ["rgb", "depth", "clipg", "caption", "t5"])
def test_every_embedding_kind(mods, name):
    """With no encoder blocks the encoder output is LayerNorm(x + pos + mod) of each visible token."""
    model = _model(mods, encoder_depth=0)
    md = random_mod_dict(mods, batch=2, seed=1)
    enc = model.encode({name: md[name]})
    emb = model.encoder_embeddings[name]
    t = md[name]["tensor"]
    visible = ~md[name]["input_mask"]
    for b in range(2):
        slots = (enc.modality_index[b] >= 0).nonzero().flatten()
        assert len(slots) == int(visible[b].sum())
        for s in slots.tolist():
            p = int(enc.position[b, s])
            assert visible[b, p]
            if name == "rgb":  # patch flatten order (row-in-patch, col-in-patch, channel)
                r, c = divmod(p, 4)
                patch = t[b, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].permute(1, 2, 0).reshape(-1)
                x = patch @ emb.proj.weight.t()
            elif name == "t5":
                x = t[b, p] @ emb.proj.weight.t()
            else:
                x = emb.token_emb.weight[t[b, p]]
            if name in ("caption", "t5"):  # 1-D position = number of visible tokens before the slot
                pos_id = int(visible[b, :p].sum())
            else:
                pos_id = p
            want = model.encoder_norm(x + emb.pos_emb[0, pos_id] + emb.mod_emb[0, 0])
            torch.testing.assert_close(enc.hidden[b, s], want, atol=1e-5, rtol=1e-5)
    if name == "clipg":  # vector: learned positions
        assert isinstance(emb.pos_emb, torch.nn.Parameter)
    if name in ("rgb", "depth"):  # 2-D sin-cos
        torch.testing.assert_close(emb.pos_emb, sincos_2d(4, 4, 32))


def test_forward_backward_all_kinds_and_variants(mods):
    md = random_mod_dict(mods, batch=3, seed=2)
    for over in ({}, {"act": "swiglu", "qk_norm": True, "qkv_bias": False, "proj_bias": False, "mlp_bias": False,
                      "norm_bias": False}, {"num_register_tokens": 3, "tie_output_embeddings": False,
                                            "share_modality_embeddings": False}):
        model = _model(mods, **over).train()
        out = model(md, num_encoder_tokens=24, num_decoder_tokens=24)
        assert torch.isfinite(out.loss)
        assert set(out.losses) == {"caption", "clipg", "depth"}
        out.loss.backward()
        assert model.encoder[0].attn.qkv.weight.grad.abs().sum() > 0
        assert model.decoder_embeddings["depth"].output_weight.grad.abs().sum() > 0


def test_loss_types(mods):
    model = _model(mods)
    md = random_mod_dict(mods, batch=2, seed=3)
    md["clipg"]["target_mask"] = torch.ones_like(md["clipg"]["target_mask"])  # no clipg targets
    md["clipg"]["decoder_attention_mask"].zero_()
    mod = model(md, loss_type="mod")
    ref = model(mod_dict=md, loss_type="mod_reference")
    tok = model(md, loss_type="token_reference", return_details=True)
    assert mod.num_targets["clipg"] == 0 and float(mod.losses["clipg"]) == 0.0
    torch.testing.assert_close(mod.loss, (mod.losses["caption"] + mod.losses["depth"]) / 2)
    torch.testing.assert_close(ref.loss, (mod.losses["caption"] + mod.losses["depth"]) / 3)
    w = {m: tok.num_targets[m] * model.vocab_sizes[m] for m in ("caption", "depth")}
    want = sum(tok.losses[m] * w[m] for m in w) / sum(w.values())
    torch.testing.assert_close(tok.loss, want)
    # logits only for target rows
    assert tok.decoder_rows["depth"].logits.shape == (tok.num_targets["depth"], 50)
    with pytest.raises(ValueError, match="unknown loss_type"):
        model(md, loss_type="token")


# ---------------------------------------------------------------------------------------------- masks
def _rows(out, name):
    r = out.decoder_rows[name]
    return {(int(b), int(p)): r.hidden[i] for i, (b, p) in enumerate(zip(r.batch, r.position))}


def test_decoder_never_sees_other_modalities(mods):
    model = _model(mods)
    md = random_mod_dict(mods, batch=3, seed=4)
    base = model(md, return_details=True)
    md2 = copy.deepcopy(md)
    cap = md2["caption"]
    tgt = ~cap["target_mask"]
    cap["tensor"][tgt] = (cap["tensor"][tgt] + 7) % 40  # change every caption decoder token
    pert = model(md2, return_details=True)
    for name in ("depth", "clipg"):
        a, b = _rows(base, name), _rows(pert, name)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)
    assert not torch.allclose(base.decoder_rows["caption"].hidden, pert.decoder_rows["caption"].hidden)


def test_sequence_targets_never_see_the_future(mods):
    model = _model(mods)
    md = random_mod_dict(mods, batch=3, seed=5)
    base = _rows(model(md, return_details=True), "caption")
    budget = 11
    for b in range(3):
        n_tg = int((~md["caption"]["target_mask"][b]).sum())
        k = budget + n_tg // 2  # perturb target token k and everything after it
        md2 = copy.deepcopy(md)
        seg = md2["caption"]["tensor"][b, k:budget + n_tg]
        md2["caption"]["tensor"][b, k:budget + n_tg] = (seg + 5) % 39 + 1
        pert = _rows(model(md2, return_details=True), "caption")
        for (bb, p), h in base.items():
            if bb == b and p < k:  # input position p < k predicts token p+1 <= k from tokens <= p
                torch.testing.assert_close(h, pert[(bb, p)], atol=0, rtol=0)
            elif bb == b and p >= k:
                assert not torch.allclose(h, pert[(bb, p)])


def test_image_targets_attend_each_other(mods):
    """Bidirectional inside an image modality: with dam all-zero except the count, every row depends on all."""
    model = _model(mods)
    md = random_mod_dict(mods, batch=2, seed=6)
    full = model(md, return_details=True)
    md2 = copy.deepcopy(md)
    dam = md2["depth"]["decoder_attention_mask"]
    tm = md2["depth"]["target_mask"]
    # causal-style attention values (1 per target) must change the outputs of all but the last target row
    dam.zero_()
    dam[~tm] = 1
    causal = model(md2, return_details=True)
    a, b = _rows(full, "depth"), _rows(causal, "depth")
    changed = [not torch.allclose(a[k], b[k]) for k in sorted(a)]
    assert any(changed)


# ---------------------------------------------------------------------------------------------- errors
def test_bad_mod_dict_errors_name_the_modality(mods):
    model = _model(mods)
    md = random_mod_dict(mods, batch=2, seed=7)
    bad = copy.deepcopy(md)
    bad["depth"]["tensor"] = bad["depth"]["tensor"][:, :5]
    with pytest.raises(ModDictError, match="'depth'.*5 tokens"):
        model(bad)
    bad = copy.deepcopy(md)
    bad["rgb"]["tensor"] = torch.randn(2, 3, 16, 16)
    with pytest.raises(ModDictError, match="'rgb'"):
        model(bad)
    bad = copy.deepcopy(md)
    bad["caption"]["tensor"][0, 0] = 99
    with pytest.raises(ModDictError, match="'caption'.*vocabulary"):
        model(bad)
    bad = copy.deepcopy(md)
    bad["caption"]["input_mask"] = bad["caption"]["input_mask"][:, :3]
    with pytest.raises(ModDictError, match=r"'caption'\]\['input_mask'\]"):
        model(bad)
    with pytest.raises(ModDictError, match="'normal'.*model modalities"):
        model({**md, "normal": md["depth"]})


def test_vocab_sizes_override(mods):
    model = build_model(mods, "debug", vocab_sizes={"caption": 64})
    assert model.decoder_embeddings["caption"].token_emb.weight.shape[0] == 64
    with pytest.raises(ValueError, match="unknown modalities"):
        build_model(mods, "debug", vocab_sizes={"nope": 3})


def test_modality_order_invariance(mods):
    model = _model(mods)
    md = random_mod_dict(mods, batch=2, seed=8)
    a = model(md)
    b = model(dict(reversed(list(md.items()))))
    torch.testing.assert_close(a.loss, b.loss, atol=0, rtol=0)


def test_absent_modalities_are_skipped(mods):
    model = _model(mods)
    md = random_mod_dict(mods, batch=2, seed=9)
    out = model({k: md[k] for k in ("rgb", "depth")})
    assert set(out.losses) == {"depth"}


# ---------------------------------------------------------------------------------------------- generation API
def test_generation_interface_matches_training_forward(mods):
    model = _model(mods)
    md = random_mod_dict(mods, batch=2, seed=10)
    out = model(md, return_details=True)
    enc = model.encode(md)
    torch.testing.assert_close(enc.hidden, out.encoder.hidden)
    cache = model.decoder_context(enc)
    # image: all depth targets of sample 0 as mask-token queries, bidirectional among themselves
    rows = out.decoder_rows["depth"]
    pos0 = rows.position[rows.batch == 0]
    x, e = model.decoder_queries("depth", pos0[None])
    one = cache.index_select(torch.tensor([0]))
    h = model.decode(x, e, one)
    torch.testing.assert_close(h[0], rows.hidden[rows.batch == 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.logits("depth", h[0]), rows.logits[rows.batch == 0], atol=1e-4, rtol=1e-4)


def test_incremental_decoding_with_kv_cache(mods):
    model = _model(mods)
    md = random_mod_dict(mods, batch=2, seed=11)
    enc = model.encode(md)
    toks = torch.randint(1, 40, (2, 6))
    pos = torch.arange(6).expand(2, 6)
    x, e = model.decoder_queries("caption", pos, toks)
    full = model.decode(x, e, model.decoder_context(enc), causal=True)
    cache = model.decoder_context(enc)
    prompt = model.decode(x[:, :2], e[:, :2], cache, causal=True, use_cache=True)
    steps = [prompt]
    for i in range(2, 6):
        steps.append(model.decode(x[:, i:i + 1], e[:, i:i + 1], cache, causal=True, use_cache=True))
    assert cache.self_length == 6
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    doubled = model.decoder_context(enc).repeat_interleave(2)
    assert doubled.context.shape[0] == 4


def test_gather_patches_matches_full_patchify(mods):
    model = _model(mods)
    emb = model.encoder_embeddings["rgb"]
    img = torch.randn(2, 3, 32, 32)
    bi, pi = torch.tensor([0, 1, 1, 0]), torch.tensor([5, 0, 15, 7])
    torch.testing.assert_close(emb.gather_patches(img, bi, pi), emb.patches(img)[bi, pi], atol=0, rtol=0)


def test_token_counts_larger_than_the_batch_holds(mods):
    model = _model(mods)
    md = random_mod_dict(mods, batch=2, seed=12)
    a = model(md)
    b = model(md, num_encoder_tokens=10_000, num_decoder_tokens=10_000)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=1e-5)
