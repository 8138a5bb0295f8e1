"""Store API details the jobs and the plugin kit rely on (pinned against mutation-testing survivors)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fourm_core.data import Store, StoreError, roundtrip_raw
from fourm_registry import ModalitySpec, StorageSpec

DEPTHLIKE = ModalitySpec(name="depthlike", kind="image", vocab_size=8, grid=(2, 2),
                         storage=StorageSpec(dtype="float16", shape=(256, 256, 1)))
VEC = ModalitySpec(name="vec", kind="vector", vocab_size=8, num_tokens=2, storage=StorageSpec(dtype="float32", shape=(5,)))


def test_shard_of_repr_and_complete_samples_per_array_kind(tmp_path):
    """Catches shard_of returning a float, a repr without the modalities, and complete_samples counting the
    raw shards when asked about tokens."""
    store = Store.create(str(tmp_path / "s.zarr"), 5, samples_per_shard=2, raw_size=16)
    assert [store.shard_of(i) for i in range(5)] == [0, 0, 1, 1, 2]
    assert all(type(store.shard_of(i)) is int for i in range(5))
    store.write_raw(VEC, 0, [np.full(5, i, np.float32) for i in range(5)])
    assert repr(store) == f"Store({str(tmp_path / 's.zarr')!r}, num_samples=5, modalities=['vec'])"
    store.ensure_tokens(VEC, 1)
    store.write_tokens(VEC, 0, np.zeros((2, 1, 2), np.int32))  # shard 0 only
    assert store.complete_samples("vec", "raw") == 5
    assert store.complete_samples("vec", "tokens") == 2
    assert not store.is_complete("vec", "tokens") and store.is_complete("vec", "raw")


def test_roundtrip_raw_writes_a_fresh_store_inside_tmp_dir(tmp_path, monkeypatch):
    """Catches roundtrip_raw writing outside ``tmp_dir`` (or over it), ignoring ``raw_size``, or failing when
    called twice for the same modality (the plugin kit does that)."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    keep = tmp_path / "keep.txt"
    keep.write_text("x")
    depth = [np.random.default_rng(i).random((16, 16, 1)).astype(np.float16) for i in range(3)]
    for _ in range(2):
        back = roundtrip_raw(DEPTHLIKE, depth, tmp_path, raw_size=16)
        assert all(np.array_equal(a, b) and b.dtype == np.float16 for a, b in zip(depth, back))
    assert keep.read_text() == "x" and (tmp_path / "roundtrip_depthlike.zarr").is_dir()
    assert list(work.iterdir()) == []
    with pytest.raises(StoreError, match=r"expects \(256, 256, 1\)"):
        roundtrip_raw(DEPTHLIKE, depth, tmp_path)  # default raw size 256


def _full(tmp_path) -> str:
    url = str(tmp_path / "s.zarr")
    store = Store.create(url, 3, samples_per_shard=2, raw_size=16)
    store.write_raw(VEC, 0, [np.full(5, i, np.float32) for i in range(3)])
    store.ensure_crops(1, seed=0)
    store.ensure_tokens(VEC, 1)
    return url


@pytest.mark.parametrize("call, what", [
    (lambda s: s.write_crops(0, np.zeros((1, 1, 5), np.int32)), "write crop parameters"),
    (lambda s: s.ensure_crops(1, seed=0), "write crop parameters"),
    (lambda s: s.reset_crops(), "delete crops and tokens"),
    (lambda s: s.write_tokens(VEC, 0, np.zeros((1, 1, 2), np.int32)), "write tokens of 'vec'"),
    (lambda s: s.ensure_tokens(VEC, 1), "write tokens of 'vec'"),
    (lambda s: s.mark_done("vec", "raw", 0), "record completion"),
    (lambda s: s.ensure_raw(VEC), "write modality 'vec'"),
    (lambda s: s.set_num_samples(2), "resize it"),
])
def test_read_only_store_names_the_refused_write(tmp_path, call, what):
    """Catches a writer of a read-only store that writes anyway, or that names the wrong operation."""
    url = _full(tmp_path)
    with pytest.raises(StoreError, match=rf"store .*s\.zarr is open read-only; open it with mode='r\+' to {what}$"):
        call(Store.open(url, "r"))


@pytest.mark.parametrize("params", [np.zeros((2, 5), np.int32), np.zeros((2, 2, 5), np.int32),
                                    np.zeros((2, 1, 4), np.int32)])
def test_write_crops_refuses_a_wrong_shape(tmp_path, params):
    """Catches write_crops accepting parameters that are not (n, num_crops, 5)."""
    store = Store.open(_full(tmp_path), "r+")
    with pytest.raises(StoreError, match=r"crop params must have shape \(n, 1, 5\), got " + re.escape(str(params.shape))):
        store.write_crops(0, params)
    assert not store.crops_done().any()


def test_completion_records_of_arrays_not_yet_created_read_all_false(tmp_path):
    """Catches crops_done / done raising, or returning non-bool flags, before the job created the arrays."""
    store = Store.create(str(tmp_path / "s.zarr"), 5, samples_per_shard=2, raw_size=16)
    for flags in (store.crops_done(), store.done("vec", "raw"), store.done("vec", "tokens")):
        assert flags.dtype == np.bool_ and flags.tolist() == [False, False, False]
    assert store.complete_samples("vec") == 0 and not store.is_complete("vec")
