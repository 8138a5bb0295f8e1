"""The kind adapters (fourm_core.kinds): one per registry kind, and each one's pieces agree with each other.

What these tests pin down: the placeholder of an absent sample has the shape the model accepts; the model's
tensor check rejects what another kind would accept, naming the modality; the masker, the loader and the
model take the same number of slots; and the pixels of the training loader and of the any-to-any API come
from the same code (the plugin's transform), bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fourm_core.kinds import ADAPTERS, ModDictError, adapter_for
from fourm_core.model.testing import random_mod_dict, tiny_modalities
from fourm_registry import ModalitySet, ModalitySpec, get_modalities
from fourm_registry.specs import DECODABLE_KINDS, KINDS

MODS = tiny_modalities()
VOCAB = {s.name: s.vocab_size for s in MODS.specs if s.vocab_size}


def test_one_adapter_per_registry_kind():
    assert set(ADAPTERS) == set(KINDS)
    assert {k for k, a in ADAPTERS.items() if a.discrete} == set(DECODABLE_KINDS)
    assert [k for k, a in ADAPTERS.items() if a.autoregressive] == ["sequence"]
    for k, a in ADAPTERS.items():
        assert a.name == k and adapter_for(k) is a


def test_unknown_kind_names_the_modality_and_the_kinds():
    odd = ModalitySpec(name="depth", kind="image", grid=(4, 4), vocab_size=32)
    object.__setattr__(odd, "kind", "hologram")  # bypass the registry's kind check
    with pytest.raises(ValueError, match=r"modality 'depth': no adapter for kind 'hologram'; known kinds: image, "
                                         r"vector, sequence, pixels, embedding_sequence"):
        adapter_for(odd)


@pytest.mark.parametrize("name", MODS.names)
def test_placeholder_random_entry_and_model_check_agree(name):
    """A batch of placeholders is a valid model tensor with ``num_slots`` slots (what the loader's collate
    builds for absent samples); the random entry has the same per-sample shape."""
    spec = MODS[name]
    kind = adapter_for(spec)
    fill = kind.placeholder(spec)
    entry = random_mod_dict(MODS, batch=2, seed=0, vocab_sizes=VOCAB)[name]
    assert tuple(entry["tensor"].shape[1:]) == tuple(fill.shape) or kind.autoregressive
    batch = torch.stack([fill, fill])
    n = kind.check_model_tensor(spec, batch, VOCAB.get(name))
    assert n == kind.num_slots(spec)
    assert kind.check_model_tensor(spec, entry["tensor"], VOCAB.get(name)) == entry["input_mask"].shape[1]


@pytest.mark.parametrize("name", MODS.names)
def test_model_check_rejects_another_kinds_tensor(name):
    spec = MODS[name]
    kind = adapter_for(spec)
    wrong = torch.zeros(2, 3, 5, 7) if kind.discrete else torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ModDictError, match=rf"mod_dict\[{name!r}\]\['tensor'\] must be"):
        kind.check_model_tensor(spec, wrong, VOCAB.get(name))


@pytest.mark.parametrize("name", ["depth", "clipg", "caption"])
def test_model_check_rejects_ids_outside_the_vocabulary(name):
    spec = MODS[name]
    kind = adapter_for(spec)
    ids = torch.stack([kind.placeholder(spec)] * 2)
    ids[1, 1] = VOCAB[name]
    with pytest.raises(ModDictError, match=rf"token ids in \[0, {VOCAB[name]}\] but the vocabulary of {name!r} "
                                           rf"has {VOCAB[name]} entries"):
        kind.check_model_tensor(spec, ids, VOCAB[name])


def test_fixed_length_kinds_reject_another_token_count():
    spec = MODS["depth"]
    with pytest.raises(ModDictError, match=r"has 15 tokens per sample; modality 'depth' has 16"):
        adapter_for(spec).check_model_tensor(spec, torch.zeros(2, 15, dtype=torch.long), 50)


def test_masking_loader_and_model_count_the_same_slots():
    """The masker's mod_dict of every kind passes the model's check with the adapter's slot count."""
    from fourm_core.masking import Masker, MaskingConfig, TextVocabInfo

    batch = {s.name: torch.stack([adapter_for(s).placeholder(s)] * 2) for s in MODS.specs}
    batch["caption"][:, :3] = torch.tensor([300, 301, 3])  # two words then [EOS]
    batch["t5"][:, :2] = 1.0
    out = Masker(MODS, MaskingConfig(), text=TextVocabInfo(vocab_size=400))(batch, generator=torch.Generator().manual_seed(0))
    for spec in MODS.specs:
        kind = adapter_for(spec)
        n = kind.check_model_tensor(spec, out[spec.name]["tensor"], 400 if kind.autoregressive else VOCAB.get(spec.name))
        assert out[spec.name]["input_mask"].shape == (2, n)


def _rgb_specs() -> ModalitySet:
    mods = get_modalities()
    if "rgb" not in mods or "tok_rgb" not in mods:
        pytest.skip("the rgb plugin (fourm-rgb) is not installed")
    return mods.subset(["rgb", "tok_rgb"])


def test_loader_and_any_to_any_make_the_same_pixels():
    """Train/serve: the loader's pixels of a full-image crop and the any-to-any API's pixels of the same photo
    are identical, and both are the rgb plugin's own ``to_tensor`` of the resized photo."""
    from fourm_core.model import build_model
    from fourm_core.pipeline import AnyToAny
    from fourm_core.plugin_kit.images import crop_resize

    mods = _rgb_specs()
    rgb = mods["rgb"]
    transform = rgb.transform.build()
    photo = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    loader = adapter_for(rgb).loader_tensor(rgb, photo, np.array([0, 0, 256, 256, 0]), transform)

    model = build_model(mods, {"preset": "debug"}, vocab_sizes={"tok_rgb": 16})
    served = AnyToAny(model, {}, modalities=mods).encode_inputs({"rgb": photo})[0]["rgb"]["tensor"][0]
    assert served.dtype == loader.dtype == torch.float32
    assert torch.equal(served, loader)
    own = transform.to_tensor([crop_resize(photo, (0, 0, 256, 256), rgb.image_size)])[0]
    assert torch.equal(loader, own)
    # ImageNet-normalised: the mean of a uniform photo is near (0.5 - mean) / std, far from [0, 1] pixels
    assert float(loader[0].mean()) == pytest.approx((0.5 - 0.485) / 0.229, abs=0.05)


def test_loader_pixels_follow_the_crop_and_the_flip():
    mods = _rgb_specs()
    rgb = mods["rgb"]
    transform = rgb.transform.build()
    photo = np.zeros((256, 256, 3), dtype=np.uint8)
    photo[:, 128:] = 255  # right half white
    kind = adapter_for(rgb)
    left = kind.loader_tensor(rgb, photo, np.array([0, 0, 256, 128, 0]), transform)
    flipped = kind.loader_tensor(rgb, photo, np.array([0, 0, 256, 256, 1]), transform)
    plain = kind.loader_tensor(rgb, photo, np.array([0, 0, 256, 256, 0]), transform)
    assert float(left.max()) < 0  # the black half only
    assert torch.equal(flipped, plain.flip(-1))
