"""The store format: round trips, completion records, validation, checksums, versions, URLs."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fourm_core.data import (
    FORMAT_VERSION,
    CorruptDataError,
    FormatVersionError,
    IncompleteDataError,
    Store,
    StoreError,
    roundtrip_raw,
)
from fourm_registry import ModalitySpec, StorageSpec

DEPTHLIKE = ModalitySpec(name="depthlike", kind="image", vocab_size=8, grid=(2, 2),
                         storage=StorageSpec(dtype="float16", shape=(256, 256, 1)))
CAPTION = ModalitySpec(name="cap", kind="sequence", vocab_size=100, max_length=8, serializer="json:dumps",
                       storage=StorageSpec(dtype="json"))
VEC = ModalitySpec(name="vec", kind="vector", vocab_size=8, num_tokens=2, storage=StorageSpec(dtype="float32", shape=(5,)))


def _depth(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((size, size, 1)).astype(np.float16) for _ in range(n)]


def test_fixed_and_json_roundtrip(tmp_path):
    store = Store.create(str(tmp_path / "s.zarr"), 5, samples_per_shard=2, raw_size=16)
    depth = _depth(5)
    caps = ["a cat", {"boxes": [[1, 2, 3, 4]], "labels": ["dog"]}, [1, 2.5], "ünïcode ✓", ""]
    store.write_raw(DEPTHLIKE, 0, depth)
    store.write_raw(CAPTION, 0, caps)
    again = Store.open(str(tmp_path / "s.zarr"))
    assert again.shards() == [range(0, 2), range(2, 4), range(4, 5)]
    assert again.done("depthlike").tolist() == [True, True, True]
    got = again.read_raw("depthlike", [4, 0, 1])
    assert all(np.array_equal(a, b) for a, b in zip(got, [depth[4], depth[0], depth[1]]))
    assert got[0].dtype == np.float16 and got[0].shape == (16, 16, 1)  # (256,256,1) scaled to raw_size 16
    assert again.read_raw("cap", range(5)) == caps
    meta = again.modalities()["depthlike"]
    assert meta["raw"] == {"dtype": "float16", "shape": [16, 16, 1]}


def test_roundtrip_helper(tmp_path):
    vecs = [np.arange(5, dtype=np.float32) * i for i in range(3)]
    back = roundtrip_raw(VEC, vecs, tmp_path)
    assert all(np.array_equal(a, b) and b.dtype == np.float32 for a, b in zip(vecs, back))
    assert roundtrip_raw(CAPTION, ["x", {"a": 1}], tmp_path) == ["x", {"a": 1}]


def test_partial_shard_not_marked_and_incomplete_read_raises(tmp_path):
    store = Store.create(str(tmp_path / "s.zarr"), 4, samples_per_shard=2, raw_size=16)
    store.write_raw(DEPTHLIKE, 0, _depth(3))  # covers shard 0 fully, shard 1 partly
    assert store.done("depthlike").tolist() == [True, False]
    assert store.complete_samples("depthlike") == 2
    with pytest.raises(IncompleteDataError, match=r"depthlike/raw is not complete for shard\(s\) \[1\].*fourm label"):
        store.read_raw("depthlike", [3])
    assert store.read_raw("depthlike", [3], check_complete=False)[0].shape == (16, 16, 1)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((8, 8, 1), np.float16), r"sample 1 has shape \(8, 8, 1\), the store expects \(16, 16, 1\)"),
    (np.zeros((16, 16, 1), np.int32), r"dtype int32, which cannot be stored as float16"),
    (np.full((16, 16, 1), np.nan, np.float32), r"NaN"),
])
def test_write_validates_against_storage_spec(tmp_path, bad, match):
    store = Store.create(str(tmp_path / "s.zarr"), 2, samples_per_shard=2, raw_size=16)
    with pytest.raises(StoreError, match=f"modality 'depthlike'.*{match}"):
        store.write_raw(DEPTHLIKE, 0, [_depth(1)[0], bad])


def test_json_must_be_serialisable(tmp_path):
    store = Store.create(str(tmp_path / "s.zarr"), 1, samples_per_shard=1)
    with pytest.raises(StoreError, match="modality 'cap': raw sample 0 is not JSON-serialisable"):
        store.write_raw(CAPTION, 0, [{"x": object()}])


def test_tokens_and_crops(tmp_path):
    store = Store.create(str(tmp_path / "s.zarr"), 3, samples_per_shard=2, raw_size=16)
    store.ensure_crops(2, seed=3)
    params = np.arange(3 * 2 * 5, dtype=np.int32).reshape(3, 2, 5)
    store.write_crops(0, params)
    assert np.array_equal(store.read_crops([2, 0]), params[[2, 0]])
    store.ensure_tokens(DEPTHLIKE, 2)
    toks = np.random.default_rng(0).integers(0, 8, (3, 2, 4))
    store.write_tokens(DEPTHLIKE, 0, toks)
    assert np.array_equal(store.read_tokens("depthlike", [1, 2]), toks[1:])
    assert np.array_equal(store.read_tokens("depthlike", [2], crop=1), toks[2:, 1])
    with pytest.raises(StoreError, match=r"token ids must be in \[0, 8\)"):
        store.write_tokens(DEPTHLIKE, 0, toks + 8)
    with pytest.raises(StoreError, match="already has 2 crops per sample .*--crops 2"):
        store.ensure_crops(3, seed=3)


def test_create_refuses_existing_store_unless_overwrite(tmp_path):
    url = str(tmp_path / "s.zarr")
    Store.create(url, 2)
    with pytest.raises(StoreError, match="already exists; pass overwrite=True"):
        Store.create(url, 2)
    assert Store.create(url, 3, overwrite=True).num_samples == 3


def test_newer_format_version_raises(tmp_path):
    url = tmp_path / "s.zarr"
    Store.create(str(url), 2)
    meta = json.loads((url / "zarr.json").read_text())
    meta["attributes"]["fourm_format_version"] = FORMAT_VERSION + 1
    (url / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(FormatVersionError, match=rf"fourm_format_version {FORMAT_VERSION + 1}.*reads versions up to "
                                                 rf"{FORMAT_VERSION}; upgrade fourm-core"):
        Store.open(str(url))


def test_not_a_store(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(StoreError, match="is not a fourm dataset store"):
        Store.open(str(tmp_path / "plain.zarr"))
    with pytest.raises(StoreError, match="no fourm dataset store at"):
        Store.open(str(tmp_path / "missing.zarr"))


def test_corrupted_chunk_names_array_and_samples(tmp_path):
    url = tmp_path / "s.zarr"
    store = Store.create(str(url), 4, samples_per_shard=4, raw_size=16)
    store.write_raw(DEPTHLIKE, 0, _depth(4))
    shard = url / "depthlike" / "raw" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    # inner chunks are laid out in order; the first one starts at byte 0: flip a byte inside it
    data[40] ^= 0xFF
    shard.write_bytes(bytes(data))
    again = Store.open(str(url))
    with pytest.raises(CorruptDataError, match=r"array 'depthlike/raw' is corrupt for samples \[0\] \(shard\(s\) \[0\]\)"):
        again.read_raw("depthlike", range(4))
    assert len(again.read_raw("depthlike", [1, 2, 3])) == 3  # the other samples are intact


def test_memory_url_and_zip(tmp_path):
    url = "memory://fourm-test/store.zarr"
    store = Store.create(url, 3, samples_per_shard=2, raw_size=16, overwrite=True)
    store.write_raw(VEC, 0, [np.full(5, i, np.float32) for i in range(3)])
    assert [float(v[0]) for v in Store.open(url).read_raw("vec", [2, 0])] == [2.0, 0.0]

    local = tmp_path / "s.zarr"
    st = Store.create(str(local), 3, samples_per_shard=2, raw_size=16)
    st.write_raw(CAPTION, 0, ["a", "b", {"c": 1}])
    zpath = tmp_path / "s.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(local.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(local).as_posix())
    z = Store.open(str(zpath))
    assert z.read_raw("cap", [2, 1]) == [{"c": 1}, "b"]
    with pytest.raises(StoreError, match="zip stores are read-only"):
        Store.open(str(zpath), "r+")


def test_read_only_store_refuses_writes(tmp_path):
    Store.create(str(tmp_path / "s.zarr"), 2, samples_per_shard=2, raw_size=16)
    with pytest.raises(StoreError, match="read-only; open it with mode='r\\+'"):
        Store.open(str(tmp_path / "s.zarr")).write_raw(VEC, 0, [np.zeros(5, np.float32)] * 2)
