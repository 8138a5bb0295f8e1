"""The installed weight-free plugins (canny_edge, color_palette, metadata) through the whole data path,
with real (tiny, untrained) tokenizers and the core Masker in the collate."""

from __future__ import annotations

import shutil

import pytest
import torch

from fourm_core.data import FourMCollate, FourMDataset, FourMSampler, Store, inspect_store, label, tokenize
from fourm_registry import get_modalities

WEIGHT_FREE = ["canny_edge", "color_palette", "metadata"]


@pytest.fixture(scope="module")
def real_store(tmp_path_factory, ingested):
    import torch

    from fourm_core.tokenizers import ModalityCodec, TextTokenizer, ViTVQVAE, save_codecs
    from fourm_core.tokenizers.sequence import SequenceTokenizer

    mods = get_modalities().subset(["rgb", *WEIGHT_FREE])
    url = str(tmp_path_factory.mktemp("real") / "real.zarr")
    shutil.copytree(ingested, url)
    reports = label(url, WEIGHT_FREE, progress=False)
    assert all(r.samples == 8 for r in reports.values())
    store = Store.open(url)
    corpus = [mods[n].serializer.build().to_text(r) for n in ("color_palette", "metadata")
              for r in store.read_raw(n, range(store.num_samples))]
    text = TextTokenizer.build_for(mods, corpus * 4, vocab_size=6000)
    torch.manual_seed(0)
    edge = mods["canny_edge"]
    codecs = {
        "canny_edge": ModalityCodec(edge, ViTVQVAE(modality="canny_edge", in_channels=1, image_size=224, patch_size=16,
                                                   dim=16, depth=1, num_heads=2, codebook_size=64, code_dim=4)),
    }
    for n in ("color_palette", "metadata"):
        codecs[n] = ModalityCodec(mods[n], SequenceTokenizer(max_length=mods[n].max_length, text_tokenizer=text),
                                  serializer=mods[n].serializer.build())
    tokdir = tmp_path_factory.mktemp("realtok")
    save_codecs(tokdir, codecs)
    tokenize(url, WEIGHT_FREE, crops=2, tokenizers_dir=str(tokdir), progress=False)
    return url, mods


def test_weight_free_plugins_label_and_tokenize(real_store):
    url, mods = real_store
    info = inspect_store(url)["modalities"]
    for n in WEIGHT_FREE:
        assert info[n]["complete"] == 8 and info[n]["tokens"]["complete"] == 8, n
        assert info[n]["plugin"] == mods[n].plugin
    assert info["canny_edge"]["tokens"]["shape"] == [2, 196]
    assert info["metadata"]["tokens"]["shape"] == [2, mods["metadata"].max_length]


def test_loader_batches_through_the_masker(real_store):
    from fourm_core.masking import Masker, MaskingConfig

    url, mods = real_store
    masker = Masker(mods, MaskingConfig.from_dict({"input_tokens": 64, "target_tokens": 64}))
    ds = FourMDataset([url], modalities=mods)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=FourMSampler(ds, seed=0),
                                         collate_fn=FourMCollate(masker, generator=torch.Generator().manual_seed(0)))
    mod_dict = next(iter(loader))
    assert set(mod_dict) == set(mods.names)
    assert mod_dict["rgb"]["tensor"].shape == (4, 3, 224, 224)
    assert mod_dict["canny_edge"]["tensor"].shape == (4, 196) and mod_dict["canny_edge"]["tensor"].dtype == torch.int64
    L = mods["metadata"].max_length
    assert mod_dict["metadata"]["tensor"].shape == (4, 2 * (L + 1))
    inputs = sum(int((~d["input_mask"]).sum()) for d in mod_dict.values())
    assert 0 < inputs <= 4 * 64
