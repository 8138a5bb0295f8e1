"""The backbone of a fourm checkpoint and of a released 4M model gives the numbers the encoder gives inside
the full model; optional inputs may be missing (from the batch or per sample); heads, losses and layer-wise LR
decay behave as documented.

The released model is the shared release-format set's ``fm/`` (written by the reference's own save code), with
its stored batch and the reference's encoder output (``fm_io.*``).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fourm_core.backbone import (Backbone, BackboneError, DenseHead, LinearHead, TransferModel, align_scale_shift,
                                 get_loss, layer_decay_groups)
from fourm_core.model import FourM, build_model
from fourm_registry import get_modalities

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
FM = RELEASE / "fm"
needs_release = pytest.mark.requires(
    "conformance", available=(FM / "config.json").is_file() and (RELEASE / "fm_io.safetensors").is_file(),
    reason=f"the shared release-format set {RELEASE} (fm/, fm_io.*) is not present; put shared/ beside the "
           f"checkout or set FOURM_RELEASE_DIR")


@pytest.fixture(scope="module")
def fourm_dir(tmp_path_factory):
    """A debug-size fourm checkpoint over rgb pixels, depth tokens and captions, saved and reloaded."""
    torch.manual_seed(0)
    model = build_model(get_modalities().subset(["rgb", "depth", "caption"]), "debug", vocab_sizes={"caption": 100})
    d = tmp_path_factory.mktemp("ckpt") / "model"
    model.save_pretrained(d)
    return d


def _batch(b: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    spec = get_modalities()["depth"]
    return {"rgb": torch.randn(b, 3, 224, 224, generator=g),
            "depth": torch.randint(0, spec.vocab_size, (b, spec.num_tokens), generator=g)}


def _visible(t: dict[str, torch.Tensor], model) -> dict[str, dict[str, torch.Tensor]]:
    return {m: {"tensor": v, "input_mask": torch.zeros(v.shape[0], model.modalities[m].num_tokens, dtype=torch.bool)}
            for m, v in t.items()}


def test_fourm_backbone_gives_the_full_models_encoder_features(fourm_dir):
    full = FourM.from_pretrained(fourm_dir).eval()
    bb = Backbone.from_pretrained(fourm_dir, ["rgb", "depth"], tokenizers=False).eval()
    x = _batch()
    with torch.no_grad():
        enc = full.encode(_visible(x, full))
        out = bb.forward_features(x)
    assert out.modalities == enc.modalities and set(out.modalities) == {"rgb", "depth"}
    assert torch.equal(out.tokens, enc.hidden)
    assert torch.equal(out.padding_mask, enc.padding_mask) and not out.padding_mask.any()
    assert torch.allclose(out.pooled, enc.hidden.mean(1), atol=1e-6)
    # the decoder, its tables and the caption embedding are gone; the encoder weights are the model's
    names = {n for n, _ in bb.named_parameters()}
    assert not any(n.startswith(("encoder.decoder", "encoder.decoder_embeddings")) for n in names)
    assert not any("caption" in n for n in names)
    full_state = full.state_dict()
    for n, p in bb.encoder.state_dict().items():
        assert torch.equal(p, full_state[n]), n
    assert bb.num_features == full.config.dim and bb(x["rgb"]).shape == (3, full.config.dim)


def test_feature_map_is_the_token_grid(fourm_dir):
    bb = Backbone.from_pretrained(fourm_dir, ["rgb", "depth"], tokenizers=False).eval()
    with torch.no_grad():
        out = bb.forward_features(_batch(2))
    rows, cols = bb.feature_grid()
    fm = out.feature_map
    assert fm.shape == (2, bb.num_features, rows, cols) and list(out.feature_maps) == ["rgb", "depth"]
    for name, grid in out.feature_maps.items():  # every slot of the modality lands at its grid position
        i = out.modalities.index(name)
        slots = out.modality_index[0] == i
        assert torch.equal(grid.flatten(2).transpose(1, 2)[:, out.position[0, slots]], out.tokens[:, slots])


def test_missing_optional_input_batchwise_and_per_sample(fourm_dir):
    rgb_only = Backbone.from_pretrained(fourm_dir, ["rgb"], tokenizers=False).eval()
    both = Backbone.from_pretrained(fourm_dir, ["rgb", "depth"], tokenizers=False).eval()
    x = _batch(3)
    with torch.no_grad():
        ref_rgb = rgb_only.forward_features({"rgb": x["rgb"]})
        # depth left out of the batch: the same numbers as a backbone without depth
        no_depth = both.forward_features({"rgb": x["rgb"]})
        assert torch.equal(no_depth.tokens, ref_rgb.tokens)
        # depth missing for sample 1 only
        present = {"depth": torch.tensor([True, False, True])}
        mixed = both.forward_features(x, present=present)
        full = both.forward_features(x)
    assert mixed.padding_mask[1].sum() == both.modalities["depth"].num_tokens and not mixed.padding_mask[[0, 2]].any()
    assert torch.allclose(mixed.tokens[1][~mixed.padding_mask[1]], ref_rgb.tokens[1], atol=1e-5)
    assert torch.allclose(mixed.pooled[1], ref_rgb.pooled[1], atol=1e-5)
    assert torch.allclose(mixed.tokens[[0, 2]], full.tokens[[0, 2]], atol=1e-5)
    assert not mixed.feature_maps["depth"][1].any()
    assert not torch.allclose(full.pooled[1], ref_rgb.pooled[1], atol=1e-3)  # depth does change the features


def test_prepare_raw_inputs_is_the_any_to_any_path(fourm_dir):
    from fourm_core.pipeline import AnyToAny

    bb = Backbone.from_pretrained(fourm_dir, ["rgb"], tokenizers=False)
    img = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    t = bb.prepare({"rgb": [img, img[:, ::-1]]})["rgb"]
    pipe = AnyToAny(FourM.from_pretrained(fourm_dir))
    ref = pipe.encode_inputs({"rgb": [img, img[:, ::-1]]})[0]["rgb"]["tensor"]
    assert t.shape == (2, 3, 224, 224) and torch.equal(t, ref)


def test_clear_errors(fourm_dir):
    with pytest.raises(BackboneError, match="no such modality.*it encodes"):
        Backbone.from_pretrained(fourm_dir, ["normal"], tokenizers=False)
    bb = Backbone.from_pretrained(fourm_dir, ["rgb"], tokenizers=False)
    with pytest.raises(BackboneError, match="'depth' is not an input of this backbone"):
        bb.forward_features(_batch(1))
    with pytest.raises(BackboneError, match=r"present\['rgb'\] must have shape"):
        bb.forward_features({"rgb": torch.zeros(2, 3, 224, 224)}, present={"rgb": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(BackboneError, match="every input of rgb is marked absent"):
        bb.forward_features({"rgb": torch.zeros(2, 3, 224, 224)}, present={"rgb": torch.zeros(2, dtype=torch.bool)})


def test_freeze_and_layer_decay(fourm_dir):
    bb = Backbone.from_pretrained(fourm_dir, ["rgb"], tokenizers=False)
    model = TransferModel(bb, LinearHead(bb.num_features, 5))
    groups = layer_decay_groups(model, weight_decay=0.05, layer_decay=0.5)
    top = bb.num_layers + 1
    by_layer = {g["layer"]: g["lr_scale"] for g in groups}
    assert by_layer[-1] == 1.0 and by_layer[0] == 0.5 ** top and by_layer[1] == 0.5 ** (top - 1)
    emb = next(g for g in groups if any(p is bb.encoder.encoder_embeddings["rgb"].proj.weight for p in g["params"]))
    assert emb["layer"] == 0 and emb["weight_decay"] == 0.05
    norms = [g for g in groups if any(p is bb.encoder.encoder_norm.weight for p in g["params"])]
    assert norms[0]["weight_decay"] == 0.0 and norms[0]["layer"] == top
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    bb.freeze()
    assert not any(p.requires_grad for p in bb.parameters())
    assert all(g["layer"] == -1 for g in layer_decay_groups(model, weight_decay=0.0))
    bb.freeze(False).freeze(embeddings_only=True)
    assert not bb.encoder.encoder_embeddings["rgb"].proj.weight.requires_grad
    assert bb.encoder.encoder[0].attn.qkv.weight.requires_grad


def test_dense_head_and_losses(fourm_dir):
    bb = Backbone.from_pretrained(fourm_dir, ["rgb"], tokenizers=False)
    model = TransferModel(bb, DenseHead(bb.num_features, 3, width=16, stages=2, out_size=(64, 64)))
    y = model(_batch(2)["rgb"])
    assert y.shape == (2, 3, 64, 64)
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 1, 8, 8, generator=g)
    pred = 3.0 * target - 0.7
    assert torch.allclose(align_scale_shift(pred, target), target, atol=1e-5)
    assert get_loss("ssi_l1")(pred, target) < 1e-5 < get_loss("l1")(pred, target)
    normals = torch.nn.functional.normalize(torch.randn(2, 3, 4, 4, generator=g), dim=1)
    assert get_loss("cosine")(5 * normals, normals) < 1e-6
    assert abs(float(get_loss("cosine")(-normals, normals)) - 2.0) < 1e-5
    logits = torch.randn(2, 4, 4, 4, generator=g)
    labels = torch.randint(0, 4, (2, 1, 4, 4), generator=g)
    labels[0, 0, 0, 0] = 255
    ce = get_loss("cross_entropy")(logits, labels, ignore_index=255)
    keep = labels[:, 0] != 255
    ref = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep], labels[:, 0][keep])
    assert torch.allclose(ce, ref, atol=1e-6)
    from fourm_core.backbone.losses import class_balance_weights

    t = torch.tensor([0, 0, 0, 1, 255])
    w = class_balance_weights(t, 3, ignore_index=255)
    assert torch.allclose(w, torch.tensor([4 / 6, 2.0, 0.0]))  # each present class weighs n/2 in total
    bal = get_loss("cross_entropy")(logits, labels, ignore_index=255, balanced=True)
    cw = class_balance_weights(labels[:, 0], 4, ignore_index=255)
    ref = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep], labels[:, 0][keep], weight=cw)
    assert torch.allclose(bal, ref, atol=1e-6)


@needs_release
def test_released_backbone_matches_the_reference_encoder_and_the_full_model():
    from safetensors.torch import load_file

    from fourm_core.compat import ml4m

    full = FourM.from_pretrained(FM).eval()
    tensors = load_file(str(RELEASE / "fm_io.safetensors"))
    meta = json.loads((RELEASE / "fm_io.json").read_text())
    md = ml4m.mod_dict_from_reference(tensors, full.ml4m_names, prefix="input.")
    inputs = [m for m in md if m in full.encoder_modalities]
    bb = Backbone(copy.deepcopy(full), inputs).eval()
    with torch.no_grad():
        out = bb.forward_features({m: {"tensor": md[m]["tensor"], "input_mask": md[m]["input_mask"]} for m in inputs})
        enc = full.encode({m: {"tensor": md[m]["tensor"], "input_mask": md[m]["input_mask"]} for m in inputs})
    assert torch.equal(out.tokens, enc.hidden)
    # against the reference's encoder output, slot by slot (its slots follow its own modality order)
    ref, pad = tensors["encoder.output"], tensors["encoder.padding_mask"]
    order = [full.ml4m_names[n] for n in meta["encoder_modality_order"]]
    ref_mod, ref_pos = tensors["encoder.slot_modality_index"], tensors["encoder.slot_position"]
    checked = 0
    for b in range(ref.shape[0]):
        ours = {(out.modalities[int(i)], int(p)): s for s, (i, p) in
                enumerate(zip(out.modality_index[b], out.position[b])) if i >= 0}
        assert len(ours) == int((~pad[b]).sum())
        for s in torch.nonzero(~pad[b]).flatten().tolist():
            mine = ours[(order[int(ref_mod[b, s])], int(ref_pos[b, s]))]
            torch.testing.assert_close(out.tokens[b, mine], ref[b, s], atol=2e-5, rtol=1e-4)
            checked += 1
    assert checked == int((~pad).sum())


@needs_release
def test_released_backbone_rgb_with_optional_depth_tokens():
    bb = Backbone.from_pretrained(FM, ["rgb", "tok_depth@224"], tokenizers=False).eval()
    assert bb.inputs == ("rgb", "depth")  # the release name resolves to the installed modality
    full = FourM.from_pretrained(FM).eval()
    x = {"rgb": torch.randn(2, 3, 224, 224), "depth": torch.randint(0, full.vocab_sizes["depth"], (2, 196))}
    with torch.no_grad():
        out = bb.forward_features(x, present={"depth": torch.tensor([True, False])})
        alone = full.encode(_visible({"rgb": x["rgb"][1:]}, full))
        both = full.encode(_visible({"rgb": x["rgb"][:1], "depth": x["depth"][:1]}, full))
    torch.testing.assert_close(out.tokens[1][~out.padding_mask[1]], alone.hidden[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.tokens[0], both.hidden[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(BackboneError, match="does not encode 'semseg'"):
        Backbone.from_pretrained(FM, ["semseg"], tokenizers=False)


@needs_release
def test_released_backbone_prepares_raw_depth_through_its_tokenizer():
    """A raw depth map becomes token ids through the released depth tokenizer, as in the any-to-any API."""
    from fourm_core.pipeline import AnyToAny
    from fourm_core.tokenizers.ml4m.archs import register_archs_file

    # the set's tiny tokenizer presets (the product ships the released architectures only)
    register_archs_file(Path(__file__).resolve().parents[1] / "fixtures" / "ml4m_release_tiny_archs.json")
    tok = {"depth": str(RELEASE / "tokenizers" / "divae_depth")}
    bb = Backbone.from_pretrained(FM, ["rgb", "depth"], tokenizers=tok).eval()
    rng = np.random.default_rng(0)
    raw = {"rgb": (rng.random((240, 260, 3)) * 255).astype(np.uint8),
           "depth": rng.random((240, 260, 1)).astype(np.float16)}
    x = bb.prepare(raw)
    assert x["rgb"].shape == (1, 3, 224, 224) and x["depth"].shape == (1, 196) and not x["depth"].is_floating_point()
    ref = AnyToAny.from_pretrained(FM, tokenizers=tok).encode_inputs(raw)[0]
    assert torch.equal(x["depth"], ref["depth"]["tensor"]) and torch.equal(x["rgb"], ref["rgb"]["tensor"])
    with torch.no_grad():
        assert bb(x).shape == (1, bb.num_features)
