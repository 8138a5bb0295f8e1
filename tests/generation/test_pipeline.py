"""The any-to-any API on a saved checkpoint with tiny tokenizers, over installed plugins and a real photo."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fourm_core.generation import GenerationError, TargetConfig, TokenizerMissingError
from fourm_core.retrieval import Index


def test_rgb_and_caption_in_depth_caption_rgb_out(pipe, photo):
    out = pipe({"rgb": Image.fromarray(photo), "caption": "a photo of an astronaut"},
               targets=["depth", "rgb", "dinov2_global"], seed=0, steps=2)
    assert set(out) == {"depth", "tok_rgb", "dinov2_global"}  # target rgb means its tokenized twin
    depth = out["depth"]
    assert isinstance(depth, np.ndarray) and depth.shape == (224, 224, 1)
    assert out["tok_rgb"].shape == (224, 224, 3) and out["tok_rgb"].dtype == np.uint8
    assert out["dinov2_global"].shape == (768,)
    assert out.tokens["depth"].shape == (1, 196)
    grid = pipe.render(out)
    assert isinstance(grid, Image.Image) and grid.mode == "RGB"
    assert grid.size == (256 * 5, 16 + 256)  # rgb, caption, depth, tok_rgb, dinov2_global


def test_caption_output_is_text_and_batched_inputs(pipe, photo):
    from skimage import data

    imgs = [photo, data.chelsea()]  # numpy arrays, non-square second one
    out = pipe({"rgb": imgs}, targets=["caption"], seed=0, max_new_tokens=6)
    assert out.batched and len(out["caption"]) == 2
    assert all(isinstance(c, str) for c in out["caption"])
    single = pipe({"rgb": imgs[0]}, targets=["caption"], seed=0, max_new_tokens=6, temperature=0.0)
    again = pipe({"rgb": torch.from_numpy(imgs[0])}, targets=["caption"], seed=0, max_new_tokens=6, temperature=0.0)
    assert single["caption"] == again["caption"]  # tensors and arrays are the same input


def test_pixels_input_feeds_the_tokenized_twin_only_when_asked(pipe, photo):
    """An rgb input is the pixels alone (as the released models are used: RGB -> X); its tokenized twin joins
    only with ``pixel_twins=True`` (per call, or for the pipeline), doubling the encoder tokens."""
    mod_dict, raws, batched = pipe.encode_inputs({"rgb": photo})
    assert set(mod_dict) == {"rgb"} and not batched
    assert mod_dict["rgb"]["tensor"].shape == (1, 3, 224, 224)
    twins, _, _ = pipe.encode_inputs({"rgb": photo}, pixel_twins=True)
    assert set(twins) == {"rgb", "tok_rgb"} and twins["tok_rgb"]["tensor"].shape == (1, 196)
    assert torch.equal(twins["tok_rgb"]["tensor"], pipe.codec("tok_rgb").encode([photo_224(pipe, photo)]).long())
    opted = type(pipe)(pipe.model, pipe.codecs, pixel_twins=True)
    assert set(opted.encode_inputs({"rgb": photo})[0]) == {"rgb", "tok_rgb"}
    assert set(opted.encode_inputs({"rgb": photo}, pixel_twins=False)[0]) == {"rgb"}
    # normalised with ImageNet statistics
    assert -2.2 < float(mod_dict["rgb"]["tensor"].min()) and float(mod_dict["rgb"]["tensor"].max()) < 2.7


def photo_224(pipe, photo):
    spec = pipe.modalities["tok_rgb"]
    return pipe.square_resize(spec, photo, pipe.codec_size(spec, pipe.codec("tok_rgb")))


def test_step_iterator_and_overrides(pipe, photo):
    steps = list(pipe.iterate({"rgb": photo}, ["depth"], seed=0, steps=3))
    assert len(steps) == 3 and steps[-1].done and bool(steps[-1].committed.all())
    cfg = TargetConfig(modality="depth", scheme="roar", steps=2)
    assert len(list(pipe.iterate({"rgb": photo}, [cfg], seed=0))) == 2
    with pytest.raises(GenerationError, match="unknown generation option"):
        pipe({"rgb": photo}, ["depth"], stepz=3)


def test_errors(pipe, photo, checkpoint_dir, tmp_path):
    with pytest.raises(GenerationError, match=r"does not know modality 'sky'; it knows: caption, depth"):
        pipe({"rgb": photo}, ["sky"])
    with pytest.raises(GenerationError, match=r"does not know modality 'sky'"):
        pipe({"sky": photo}, ["depth"])
    with pytest.raises(GenerationError, match=r"input 'rgb': expected an image"):
        pipe({"rgb": "not an image"}, ["depth"])
    with pytest.raises(GenerationError, match=r"input 'rgb': expected an image with 3 channels"):
        pipe({"rgb": np.zeros((64, 64, 4), np.uint8)}, ["depth"])
    with pytest.raises(GenerationError, match=r"input 'depth': expected 1 channel"):
        pipe({"depth": photo}, ["caption"])
    with pytest.raises(GenerationError, match="a sequence takes text"):
        pipe({"caption": np.zeros((3, 3))}, ["depth"])
    # a tokenizer missing for a modality: copy the checkpoint without the depth tokenizer
    broken = tmp_path / "ckpt"
    shutil.copytree(checkpoint_dir, broken)
    shutil.rmtree(broken / "tokenizers" / "depth")
    from fourm_core import AnyToAny

    p2 = AnyToAny.from_pretrained(broken)
    with pytest.raises(TokenizerMissingError, match=r"no tokenizer for modality 'depth'.*fourm train-tokenizer --modality depth"):
        p2({"rgb": photo}, ["depth"], steps=1)
    with pytest.raises(TokenizerMissingError, match="'depth'"):
        p2({"depth": np.zeros((64, 64, 1), np.float16)}, ["caption"])
    tokens_only = p2({"rgb": photo}, ["depth"], steps=1, decode=False)  # token ids still work
    assert tokens_only["depth"].shape == (196,)


def test_retrieval_index_and_search(pipe, photo, tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 768)).astype(np.float32)
    index = Index(vectors, np.arange(100, 120), modality="dinov2_global")
    scores, ids = index.search(vectors[[3, 7]] * 5.0, k=3)
    assert ids[:, 0].tolist() == [103, 107] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    path = index.save(tmp_path / "idx.npz")
    loaded = Index.load(path)
    assert loaded.modality == "dinov2_global" and np.array_equal(loaded.ids, index.ids)
    # the predicted embedding of the photo is its own best match once it is in the index
    query = pipe.embed({"rgb": photo}, "dinov2_global", seed=0, temperature=0.0)
    assert query.shape == (1, 768)
    index2 = Index(np.concatenate([vectors, query]), modality="dinov2_global")
    hits = pipe.search({"rgb": photo}, index2, k=2, temperature=0.0)
    assert hits[0][0][0] == 20 and hits[0][0][1] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(GenerationError, match="holds 768-d vectors"):
        index.search(np.zeros((1, 5)), 1)
    with pytest.raises(GenerationError, match="needs a global-embedding"):
        pipe.embed({"rgb": photo}, "depth")
    with pytest.raises(GenerationError, match="fourm index STORE"):
        Index.load(tmp_path / "missing.npz")


def test_call_wide_options_apply_to_the_kinds_they_fit(pipe, photo):
    steps = list(pipe.iterate({"rgb": photo}, ["depth", "caption"], seed=0, scheme="roar", steps=2,
                              max_new_tokens=3, stop_at_eos=False))
    assert [s.modality for s in steps] == ["depth"] * 2 + ["caption"] * 3
    pipe2 = type(pipe)(pipe.model, pipe.codecs, defaults={"depth": {"steps": 3}})
    assert len(list(pipe2.iterate({"rgb": photo}, ["depth"], seed=0))) == 3


def test_undecodable_generated_rows(pipe, photo, monkeypatch):
    codec = pipe.codec("caption")

    def picky(tokens):
        raise ValueError("modality 'caption': bad token 'xyz'")

    monkeypatch.setattr(codec, "decode", picky)
    with pytest.raises(GenerationError, match="could not be decoded.*decode_errors='text'"):
        pipe({"rgb": photo}, ["caption"], max_new_tokens=2)
    out = pipe({"rgb": [photo, photo]}, ["caption"], max_new_tokens=2, decode_errors="text")
    assert out["caption"] == ["unparseable: modality 'caption': bad token 'xyz'"] * 2


def test_a_target_setting_equal_to_its_default_is_not_overridden(pipe, photo):
    """Call-wide settings fill only the fields a TargetConfig leaves unset: ``stop_at_eos=True`` and
    ``top_p=0.0`` set explicitly (the defaults) stay; an unset field takes the call's value."""
    (cfg,) = pipe._targets([TargetConfig(modality="caption", stop_at_eos=True, top_p=0.0)],
                           {"stop_at_eos": False, "top_p": 0.9, "temperature": 0.3})
    assert (cfg.stop_at_eos, cfg.top_p, cfg.temperature) == (True, 0.0, 0.3)
    explicit = TargetConfig(modality="depth", token_schedule="cosine", steps=5)
    steps = list(pipe.iterate({"rgb": photo}, [explicit], seed=0, token_schedule="linear", steps=2))
    counts = [int(s.committed[0].sum()) for s in steps]
    # cosine over 196 in 5 steps: 196 x (0.0955, 0.25, 0.309, 0.25) = 18.7, 49, 60.6, 49 -> 19, 49, 61, 49; rest 18
    assert [b - a for a, b in zip([0, *counts], counts)] == [19, 49, 61, 49, 18]


def test_modes_through_the_pipeline(pipe, photo):
    """Unconditional rows, a caption prefix kept, an image region re-generated (the rest kept), and weighted
    captions (a negative one included) through raw inputs."""
    uncond = pipe({}, ["depth", "caption"], seed=0, batch_size=2, steps=2, max_new_tokens=3)
    assert len(uncond["depth"]) == 2 and all(isinstance(c, str) for c in uncond["caption"])
    done = pipe({"rgb": photo}, ["caption"], seed=0, given={"caption": "a photo of"}, max_new_tokens=4)
    assert done["caption"].startswith("a photo of")
    ids = pipe.codec("tok_rgb").encode([photo_224(pipe, photo)]).long()
    mask = np.zeros((224, 224), bool)
    mask[:, 112:] = True  # the right half of the pixels: the right 7 of 14 token columns
    out = pipe({"rgb": photo}, ["tok_rgb"], seed=0, steps=2, decode=False,
               given={"tok_rgb": {"value": ids[0], "mask": mask}})
    grid_mask = torch.zeros(14, 14, dtype=torch.bool)
    grid_mask[:, 7:] = True
    assert torch.equal(out.tokens["tok_rgb"][0][~grid_mask.flatten()], ids[0][~grid_mask.flatten()])
    weighted = pipe({"rgb": photo}, ["depth"], seed=0, steps=2, decode=False,
                    conditions=[({"caption": "a cat sitting on a sofa"}, 2.0), ({"caption": "the moon"}, -1.0)])
    assert weighted.tokens["depth"].shape == (1, 196)
    with pytest.raises(GenerationError, match=r"given 'tok_rgb': a mask of shape \(10, 10\) does not tile"):
        pipe({"rgb": photo}, ["tok_rgb"], given={"tok_rgb": {"value": ids[0], "mask": np.zeros((10, 10), bool)}})
