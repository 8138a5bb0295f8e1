"""The prefetching reader of remote (fsspec) stores: the same samples in the same order as a plain read, whole
shards fetched once and ahead, caches in memory and on disk, damage still detected, off for local paths."""

from __future__ import annotations

import fsspec
import numpy as np
import pytest

from fourm_core.data import CorruptDataError, Store, StoreError
from fourm_core.data.prefetch import PrefetchConfig, PrefetchStore, next_keys
from fourm_registry import ModalitySpec, StorageSpec

IMG = ModalitySpec(name="img", kind="image", vocab_size=8, grid=(2, 2),
                   storage=StorageSpec(dtype="uint8", shape=(16, 16, 3)))
VEC = ModalitySpec(name="vec", kind="vector", vocab_size=8, num_tokens=2, storage=StorageSpec(dtype="float32", shape=(5,)))
N, PER_SHARD = 40, 8


def _values(n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return ([rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(n)],
            [rng.standard_normal(5).astype(np.float32) for _ in range(n)])


@pytest.fixture
def remote(request: pytest.FixtureRequest) -> str:
    url = f"memory://fourm-prefetch-{request.node.name}/store.zarr"
    store = Store.create(url, N, samples_per_shard=PER_SHARD, raw_size=16, overwrite=True)
    imgs, vecs = _values(N)
    store.write_raw(IMG, 0, imgs)
    store.write_raw(VEC, 0, vecs)
    yield url
    fsspec.filesystem("memory").rm(url.split("://")[1].split("/")[0], recursive=True)


def _zarr_store(store: Store):
    return store._group.store


def test_same_samples_same_order(remote: str) -> None:
    order = np.random.default_rng(1).permutation(N).tolist()
    plain = Store.open(remote, storage_options={"fourm_prefetch": False})
    fast = Store.open(remote)
    assert not isinstance(_zarr_store(plain), PrefetchStore)
    assert isinstance(_zarr_store(fast), PrefetchStore)
    for chunk in (order[:7], order[7:20], order[20:], list(range(N))):
        for a, b in zip(plain.read_raw("img", chunk), fast.read_raw("img", chunk), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.stack(plain.read_raw("vec", chunk)), np.stack(fast.read_raw("vec", chunk)))
    imgs, _ = _values(N)
    np.testing.assert_array_equal(fast.read_raw("img", [5])[0], imgs[5])


def test_whole_shards_fetched_once_and_ahead(remote: str) -> None:
    store = Store.open(remote, storage_options={"fourm_prefetch": {"ahead": 2}})
    zs = _zarr_store(store)
    store.read_raw("img", [0])  # shard 0 (fetched whole) and, in the background, shards 1 and 2
    first = zs.fetches["img/raw"]
    for i in range(3 * PER_SHARD):  # every sample of shards 0..2, one read each
        store.read_raw("img", [i])
    # shards 0-2 were there already; reading shards 1 and 2 started 3 and 4 ahead: at most those two more
    assert 1 <= first and zs.fetches["img/raw"] - first <= 2
    before = sum(zs.fetches.values())
    store.read_raw("img", range(3 * PER_SHARD))  # everything again: from memory
    assert sum(zs.fetches.values()) == before


def test_disk_cache_serves_a_second_reader(remote: str, tmp_path) -> None:
    opts = {"fourm_prefetch": {"ahead": 0, "cache_dir": str(tmp_path / "cache")}}
    first = Store.open(remote, storage_options=opts)
    want = first.read_raw("img", range(N))
    assert _zarr_store(first).fetches["img/raw"] == N // PER_SHARD
    second = Store.open(remote, storage_options=opts)
    got = second.read_raw("img", range(N))
    assert not _zarr_store(second).fetches  # every object came from the cache directory
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_memory_cap_evicts_least_recently_used(remote: str) -> None:
    shard_bytes = fsspec.filesystem("memory").size(remote.split("://")[1] + "/img/raw/c/0/0/0/0")
    cap_mb = 2.5 * shard_bytes / 2**20  # room for two shards of img
    store = Store.open(remote, storage_options={"fourm_prefetch": {"ahead": 0, "memory_mb": cap_mb}})
    zs = _zarr_store(store)
    for shard in range(4):
        store.read_raw("img", [shard * PER_SHARD])
    assert zs.fetches["img/raw"] == 4 and zs._memory_bytes <= cap_mb * 2**20
    store.read_raw("img", [3 * PER_SHARD + 1])  # most recent: still cached
    assert zs.fetches["img/raw"] == 4
    store.read_raw("img", [1])  # shard 0 was evicted
    assert zs.fetches["img/raw"] == 5


def test_damaged_chunk_still_detected(remote: str) -> None:
    fs = fsspec.filesystem("memory")
    path = remote.split("://")[1] + "/img/raw/c/1/0/0/0"  # shard 1: samples 8..15
    data = bytearray(fs.cat_file(path))
    data[40] ^= 0xFF
    fs.pipe_file(path, bytes(data))
    store = Store.open(remote)
    assert isinstance(_zarr_store(store), PrefetchStore)
    with pytest.raises(CorruptDataError, match=r"array 'img/raw' is corrupt for samples \[8\] \(shard\(s\) \[1\]\)"):
        store.read_raw("img", range(16))
    assert len(store.read_raw("img", range(9, 16))) == 7  # the other samples of the shard are intact


def test_off_for_local_paths_writes_and_env(remote: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = Store.create(str(tmp_path / "s.zarr"), 2, samples_per_shard=2, raw_size=16)
    assert not isinstance(_zarr_store(Store.open(str(tmp_path / "s.zarr"))), PrefetchStore)
    assert not isinstance(_zarr_store(local), PrefetchStore)
    assert not isinstance(_zarr_store(Store.open(remote, "r+")), PrefetchStore)
    monkeypatch.setenv("FOURM_PREFETCH", "0")
    assert not isinstance(_zarr_store(Store.open(remote)), PrefetchStore)
    monkeypatch.setenv("FOURM_PREFETCH", "1")
    monkeypatch.setenv("FOURM_PREFETCH_AHEAD", "5")
    assert _zarr_store(Store.open(remote)).config.ahead == 5


def test_config_errors_name_the_option() -> None:
    with pytest.raises(StoreError, match="unknown keys \\['ahaed'\\]"):
        PrefetchConfig.resolve({"ahaed": 3}, env={})
    with pytest.raises(StoreError, match="must be true, false or a dict"):
        PrefetchConfig.resolve("yes", env={})
    with pytest.raises(StoreError, match="ahead and memory_mb must be >= 0"):
        PrefetchConfig.resolve({"ahead": -1}, env={})
    assert PrefetchConfig.resolve(None, env={}) == PrefetchConfig()


def test_next_keys() -> None:
    assert next_keys("img/raw/c/3/0/0/0", 2) == ["img/raw/c/4/0/0/0", "img/raw/c/5/0/0/0"]
    assert next_keys("c/0", 1) == ["c/1"]
    assert next_keys("img/raw/zarr.json", 2) == [] and next_keys("img/raw/c/3/0", 0) == []
