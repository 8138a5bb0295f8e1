"""Real photos → ingest → label → tokenize → inspect → loader batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from data_helpers import PER_SHARD, RAW_SIZE, copy_store

from fourm_core.data import (
    FourMCollate,
    FourMDataset,
    FourMSampler,
    Store,
    StoreError,
    crop_params,
    find_images,
    ingest,
    inspect_store,
    label,
    load_image,
    tokenize,
)

NUM_PHOTOS = 8  # write_photos: 8 readable images + 1 broken + 1 txt


def test_ingest_reports_and_skips_unreadable(photos, ingested, caplog, tmp_path, registry):
    assert len(find_images(photos)) == NUM_PHOTOS + 1  # the .txt is not an image; broken.png is
    with caplog.at_level("WARNING"):
        report = ingest(photos, str(tmp_path / "again.zarr"), samples_per_shard=3, raw_size=32, registry=registry,
                        progress=False)
    assert report.num_samples == NUM_PHOTOS
    assert [p for p, _ in report.skipped] == ["nested/broken.png"]
    assert "broken.png" in caplog.text
    # decoding in a worker process gives the same store
    pooled = ingest(photos, str(tmp_path / "pooled.zarr"), samples_per_shard=3, raw_size=32, registry=registry,
                    progress=False, workers=1)
    assert pooled.skipped == report.skipped
    assert inspect_store(str(tmp_path / "pooled.zarr"))["modalities"] == \
        inspect_store(str(tmp_path / "again.zarr"))["modalities"]
    store = Store.open(ingested)
    assert store.num_samples == NUM_PHOTOS and store.num_shards == 4
    imgs = store.read_raw("rgb", range(NUM_PHOTOS))
    assert all(i.shape == (RAW_SIZE, RAW_SIZE, 3) and i.dtype == np.uint8 for i in imgs)
    # sorted relative paths; the camera photo is grey → equal channels after RGB conversion
    names = [str(s) for s in store._group["_samples/source"][:].tolist()]
    assert names == sorted(names) and "nested/camera.png" in names
    cam = imgs[names.index("nested/camera.png")]
    assert np.array_equal(cam[..., 0], cam[..., 1])


def test_ingest_applies_exif_rotation_and_centre_crop(tmp_path):
    from PIL import Image

    # a 200x100 image, left half black, right half white, stored with EXIF orientation 6 (rotate 90° CW)
    arr = np.zeros((100, 200, 3), np.uint8)
    arr[:, 100:] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(str(tmp_path / "rot.jpg"), 50)
    assert out.shape == (50, 50, 3)
    # after rotating 90° clockwise the image is 100 wide × 200 tall: top half black, bottom half white;
    # the centre crop keeps the middle 100 rows, so row 10 (source row 60) is black and row 40 white
    assert out[10].mean() < 30 and out[40].mean() > 225


def test_label_writes_every_modality(full_store):
    info = inspect_store(full_store)
    mods = info["modalities"]
    assert info["num_samples"] == NUM_PHOTOS
    assert mods["edges"]["complete"] == NUM_PHOTOS and mods["edges"]["dtype"] == "uint8"
    assert mods["edges"]["shape"] == [RAW_SIZE, RAW_SIZE, 1]
    assert mods["stats"]["dtype"] == "json" and mods["feat"]["shape"] == [8]
    store = Store.open(full_store)
    edges = store.read_raw("edges", range(NUM_PHOTOS))
    assert all(set(np.unique(e)) <= {0, 255} for e in edges) and any(e.max() == 255 for e in edges)
    stats = store.read_raw("stats", [0])[0]
    rgb = store.read_raw("rgb", [0])[0].astype(np.float32).mean(axis=2)
    assert stats == {"brightness": int(round(rgb.mean())), "contrast": int(round(rgb.std()))}
    assert store.modalities()["feat"]["plugin"] == "datatest"


def test_label_requires_missing_modality(ingested, tmp_path, registry, tinynet_weights):
    url = copy_store(ingested, tmp_path / "s.zarr")
    with pytest.raises(StoreError, match=r"modality 'feat' requires 'edges', but store .* has 0 of 8 samples of "
                                         r"'edges'; run `fourm label .* --modalities edges` first"):
        label(url, ["feat"], weights={"feat": tinynet_weights}, registry=registry, progress=False)
    with pytest.raises(StoreError, match="modality 'rgbtok' .* has no pseudo-labeler"):
        label(url, ["rgbtok"], registry=registry, progress=False)


def test_label_resumes_and_overwrite(ingested, tmp_path, registry):
    url = copy_store(ingested, tmp_path / "s.zarr")
    first = label(url, ["edges"], registry=registry, progress=False)["edges"]
    assert (first.shards_done, first.shards_skipped) == (4, 0)
    before = inspect_store(url)["modalities"]["edges"]["sha256"]
    # drop the completion of shard 2 as if it had been interrupted: only that shard is redone
    store = Store.open(url, "r+")
    store.mark_done("edges", "raw", 2, False)
    again = label(url, ["edges"], registry=registry, progress=False)["edges"]
    assert (again.shards_done, again.shards_skipped, again.samples) == (1, 3, PER_SHARD)
    assert inspect_store(url)["modalities"]["edges"]["sha256"] == before
    redo = label(url, ["edges"], overwrite=True, registry=registry, progress=False)["edges"]
    assert redo.shards_done == 4


def test_tokenize_crops_and_tokens(full_store, tokenizer_dir, registry):
    store = Store.open(full_store)
    assert store.num_crops == 2
    params = store.read_crops(range(NUM_PHOTOS))
    assert np.array_equal(params, crop_params(range(NUM_PHOTOS), 2, RAW_SIZE, seed=0))
    assert (params[:, 0] == [0, 0, RAW_SIZE, RAW_SIZE, 0]).all()  # crop 0 = centre (the whole square)
    assert (params[:, 1, 2:4] <= RAW_SIZE).all() and (params[:, 1, 2:4] >= 1).all()
    toks = store.read_tokens("edges", range(NUM_PHOTOS))
    assert toks.shape == (NUM_PHOTOS, 2, 4) and toks.dtype == np.int32 and toks.max() < 16
    seq = store.read_tokens("stats", [0], crop=0)[0]
    assert seq.shape == (12,)
    eos = int(np.flatnonzero(seq == 3)[0])  # ids, [EOS]=3, [PAD]=0
    assert eos > 0 and (seq[eos + 1:] == 0).all()
    # the tokens equal a direct encoding of the cropped raw (crop 1 of sample 3)
    from fourm_core.tokenizers import load_codecs

    codec = load_codecs(tokenizer_dir, registry.subset(["edges"]))["edges"]
    t, l, h, w, f = params[3, 1]
    crop = registry["edges"].transform.build().crop(store.read_raw("edges", [3])[0], box=(t, l, h, w), flip=bool(f),
                                                   size=(32, 32))
    assert np.array_equal(codec.encode([crop])[0].numpy(), toks[3, 1])
    info = inspect_store(full_store)
    assert info["modalities"]["rgbtok"]["tokens"]["complete"] == NUM_PHOTOS
    assert info["modalities"]["rgbtok"]["shape"] == [2, 4]  # no raw array: described by its tokens
    assert info["crops"]["num_crops"] == 2


def test_tokenize_is_deterministic_and_resumable(full_store, tmp_path, tokenizer_dir, registry):
    url = copy_store(full_store, tmp_path / "s.zarr")
    store = Store.open(url, "r+")
    store.mark_done("edges", "tokens", 1, False)
    rep = tokenize(url, ["edges"], crops=2, tokenizers_dir=tokenizer_dir, registry=registry, progress=False)["edges"]
    assert (rep.shards_done, rep.shards_skipped) == (1, 3)
    assert inspect_store(url)["modalities"] == inspect_store(full_store)["modalities"]
    with pytest.raises(StoreError, match="already has 2 crops per sample"):
        tokenize(url, ["edges"], crops=3, tokenizers_dir=tokenizer_dir, registry=registry, progress=False)
    # new crops: every modality's tokens are dropped (they were cut with the old crops); crops 0..1 are kept
    tokenize(url, ["edges"], crops=3, tokenizers_dir=tokenizer_dir, registry=registry, progress=False,
             overwrite_crops=True)
    store = Store.open(url)
    assert store.num_crops == 3 and not store.has("stats", "tokens") and "tokens" not in store.modalities()["stats"]
    assert np.array_equal(store.read_crops(range(NUM_PHOTOS))[:, :2], Store.open(full_store).read_crops(range(NUM_PHOTOS)))
    assert np.array_equal(store.read_tokens("edges", range(NUM_PHOTOS))[:, :2],
                          Store.open(full_store).read_tokens("edges", range(NUM_PHOTOS)))


def test_dataset_samples_and_collate(full_store, registry):
    mods = registry.subset(["rgb", "rgbtok", "edges", "stats", "feat"])
    ds = FourMDataset([full_store], modalities=mods)
    assert len(ds) == NUM_PHOTOS
    sample = ds[(5, 1)]  # sample 5, draw 1 → crop 1
    assert sample["edges"].dtype == torch.int64 and sample["edges"].shape == (4,)
    assert sample["stats"].shape == (12,) and sample["feat"].shape == (2,)
    assert sample["rgb"].dtype == torch.float32 and sample["rgb"].shape == (3, 32, 32)
    store = Store.open(full_store)
    assert torch.equal(sample["edges"], torch.from_numpy(store.read_tokens("edges", [5], 1)[0].astype(np.int64)))
    # pixels: the raw rgb cut with the sample's crop params, normalised with ImageNet statistics
    from fourm_core.plugin_kit.images import crop_resize

    t, l, h, w, f = store.read_crops([5])[0, 1]
    ref = crop_resize(store.read_raw("rgb", [5])[0], (t, l, h, w), (32, 32), flip=bool(f),
                      interpolation="area" if h > 32 and w > 32 else "linear")
    ref = (torch.from_numpy(ref).permute(2, 0, 1).float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(sample["rgb"], ref, atol=1e-5)
    assert torch.equal(ds[(5, 0)]["edges"], torch.from_numpy(store.read_tokens("edges", [5], 0)[0].astype(np.int64)))

    calls = {}

    def masker(batch, present=None, generator=None):
        calls["batch"], calls["present"] = batch, present
        return {"masked": True}

    out = FourMCollate(masker, modalities=mods)([ds[(i, i)] for i in range(4)])
    assert out == {"masked": True}
    b = calls["batch"]
    assert b["rgb"].shape == (4, 3, 32, 32) and b["edges"].shape == (4, 4) and b["stats"].shape == (4, 12)
    assert all(p.all() for p in calls["present"].values())


def test_absent_modalities_and_mixture(full_store, ingested, registry):
    mods = registry.subset(["rgb", "edges", "feat"])
    ds = FourMDataset([full_store, ingested], weights=[0.25, 0.75], modalities=mods)
    assert len(ds) == 2 * NUM_PHOTOS
    only_rgb = ds[NUM_PHOTOS + 1]  # second store: ingested only
    assert set(only_rgb) == {"rgb"} and only_rgb["rgb"].shape == (3, 32, 32)
    batch = FourMCollate(None, modalities=mods)([ds[0], only_rgb])
    assert batch["present"]["edges"].tolist() == [True, False]
    assert batch["tensors"]["edges"][1].eq(0).all() and batch["present"]["rgb"].tolist() == [True, True]
    # batched reads (DataLoader's __getitems__: one zarr call per array) equal one-by-one reads
    keys = [(5, 1), (NUM_PHOTOS + 1, 0), (2, 0), (5, 0), (7, 3), (0, 1), (NUM_PHOTOS + 7, 1)]
    many = ds.__getitems__(keys)
    for key, got in zip(keys, many):
        one = ds[key]
        assert set(got) == set(one) and all(torch.equal(got[n], one[n]) for n in one), key
    sampler = FourMSampler(ds, seed=1)
    order = sampler.epoch_order(0)
    from_second = (order[:, 0] >= NUM_PHOTOS).mean()
    assert 0.55 < from_second < 0.95  # weights 0.25 / 0.75 over 16 draws (seeded)
    big = FourMSampler(ds, seed=1)
    big.sizes = [1000, 1000]
    assert abs((big.epoch_order(0)[:, 0] >= 1000).mean() - 0.75) < 0.04


def test_sampler_resume_and_replicas(full_store, registry):
    ds = FourMDataset([full_store], modalities=registry.subset(["edges"]))
    s = FourMSampler(ds, seed=7)
    it = iter(s)
    first = [next(it) for _ in range(3)]
    state = s.state_dict()
    assert state == {"epoch": 0, "position": 3, "seed": 7}
    rest = list(it)
    s2 = FourMSampler(ds, seed=7)
    s2.load_state_dict(json.loads(json.dumps(state)))
    assert list(s2) == rest
    assert s.epoch == 1 and s2.epoch == 1
    assert sorted(i for i, _ in first + rest) == list(range(NUM_PHOTOS))
    assert s.state_dict(consumed=0) == {"epoch": 1, "position": 0, "seed": 7}
    # two replicas split one epoch between them, without overlap
    a, b = FourMSampler(ds, seed=3, num_replicas=2, rank=0), FourMSampler(ds, seed=3, num_replicas=2, rank=1)
    ia, ib = [i for i, _ in a], [i for i, _ in b]
    assert len(ia) == len(ib) == NUM_PHOTOS // 2 and sorted(ia + ib) == list(range(NUM_PHOTOS))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers(full_store, registry, context):
    mods = registry.subset(["rgb", "edges", "stats"])
    ds = FourMDataset([full_store], modalities=mods)
    sampler = FourMSampler(ds, seed=0)
    # spawn starts a fresh interpreter per worker (slow here): one worker is enough to prove the lazy re-open
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler, num_workers=2 if context == "fork" else 1,
                                         multiprocessing_context=context, collate_fn=FourMCollate(None, modalities=mods))
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0]["tensors"]["rgb"].shape == (4, 3, 32, 32) and batches[1]["tensors"]["stats"].shape == (4, 12)
    ref = FourMCollate(None, modalities=mods)([ds[k] for k in list(FourMSampler(ds, seed=0))[:4]])
    assert all(torch.equal(ref["tensors"][n], batches[0]["tensors"][n]) for n in mods)
