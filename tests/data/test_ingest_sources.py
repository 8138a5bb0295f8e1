"""``fourm ingest`` from webdataset tar shards (local files, brace patterns, an fsspec ``memory://`` URL) and
from a Hugging Face ``datasets`` dataset written by the test (``save_to_disk`` and parquet data files,
streamed), with the labels the sources carry landing in their modalities; resumable; two processes."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from fourm_core.data import Store
from fourm_core.data.errors import StoreError
from fourm_core.data.jobs import ingest
from fourm_core.data.sources import open_source
from fourm_core.data.sources.webdataset import expand_braces, shard_urls
from fourm_registry import get_modalities

RAW = 32
N = 5


@pytest.fixture(scope="module")
def mods():
    return get_modalities().subset(["rgb", "depth", "semseg", "det", "caption"])


@pytest.fixture(scope="module")
def photos():
    """Five real photos of different shapes, and per photo a class map and a caption."""
    import skimage.data as sd

    imgs = [sd.chelsea(), sd.coffee(), sd.astronaut(), sd.rocket(), sd.coffee().transpose(1, 0, 2)]
    return [np.ascontiguousarray(i) for i in imgs]


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpg(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _seg(img, k):
    return np.full(img.shape[:2], k, np.uint8)


def _write_tar(path_or_file, members):
    with tarfile.open(fileobj=path_or_file, mode="w") if hasattr(path_or_file, "write") else \
            tarfile.open(path_or_file, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _members(photos, idx):
    out = []
    for i in idx:
        img = photos[i]
        h, w = img.shape[:2]
        meta = {"caption": f"photo number {i}", "det": {"boxes": [[0.25, 0.25, 0.75, 0.75]], "classes": ["cat"]},
                "url": f"http://example.invalid/{i}.jpg"}
        out += [(f"s/{i:06d}.jpg", _jpg(img)), (f"s/{i:06d}.json", json.dumps(meta).encode()),
                (f"s/{i:06d}.semseg.png", _png(_seg(img, i + 1))), (f"s/{i:06d}.cls", b"3")]
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("wds")
    _write_tar(str(root / "shard-000.tar"), _members(photos, [0, 1, 2]))
    _write_tar(str(root / "shard-001.tar"), _members(photos, [3, 4]))
    return root


def test_brace_patterns():
    assert expand_braces("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert expand_braces("{x,y}/{8..10}.tar") == ["x/8.tar", "x/9.tar", "x/10.tar", "y/8.tar", "y/9.tar", "y/10.tar"]
    assert shard_urls("a-{0..1}.tar,b.tar") == ["a-0.tar", "a-1.tar", "b.tar"]
    with pytest.raises(StoreError, match="neither a range"):
        expand_braces("a-{x}.tar")


def _check(url, photos, order=range(N)):
    store = Store.open(url)
    assert store.num_samples == N
    assert store.read_raw("caption", range(N)) == [f"photo number {i}" for i in order]
    seg = store.read_raw_array("semseg", range(N))
    assert [int(np.unique(s)[0]) for s in seg] == [i + 1 for i in order]
    det = store.read_raw("det", range(N))
    assert all(d["classes"] == ["cat"] and d["image_size"] == [RAW, RAW] for d in det)
    meta = store.modalities()
    assert {n for n, m in meta.items() if m.get("source") == "labels"} == {"caption", "semseg", "det"}
    assert "url" not in meta
    return store


def test_local_shards_with_a_brace_pattern(shards, photos, tmp_path, mods):
    url = str(tmp_path / "w.zarr")
    rep = ingest(str(shards / "shard-{000..001}.tar"), url, samples_per_shard=2, raw_size=RAW, registry=mods,
                 progress=False)
    assert rep.num_samples == N and set(rep.labels) == {"caption", "det", "semseg"}
    store = _check(url, photos)
    from fourm_core.data.crops import load_image

    assert np.array_equal(store.read_raw("rgb", [3])[0], load_image(io.BytesIO(_jpg(photos[3])), RAW))
    keys = store._read(store._array("_samples/source"), np.arange(N)).tolist()  # noqa: SLF001
    assert keys[0] == "shard-000.tar/s/000000" and keys[3] == "shard-001.tar/s/000003"
    # resumable: an interrupted run (shard 1 not done) continues after the finished shards
    st = Store.open(url, "r+")
    st.mark_done("rgb", "raw", 1, False)
    st._update_root(ingest={**st.attrs["ingest"], "complete": False})  # noqa: SLF001
    before = st.read_raw_array("semseg", range(N), check_complete=False)
    again = ingest(str(shards / "shard-{000..001}.tar"), url, samples_per_shard=2, raw_size=RAW, registry=mods,
                   progress=False)
    assert again.num_samples == N and Store.open(url).is_complete("rgb")
    assert np.array_equal(Store.open(url).read_raw_array("semseg", range(N)), before)


def test_fsspec_memory_url(shards, photos, tmp_path, mods):
    import fsspec

    fs = fsspec.filesystem("memory")
    for name in ("shard-000.tar", "shard-001.tar"):
        fs.pipe(f"/wds-test/{name}", (shards / name).read_bytes())
    url = str(tmp_path / "m.zarr")
    ingest("memory://wds-test/shard-{000..001}.tar", url, samples_per_shard=3, raw_size=RAW, registry=mods,
           progress=False)
    _check(url, photos)


def test_bad_member_is_named(shards, photos, tmp_path, mods):
    bad = tmp_path / "bad.tar"
    members = _members(photos, [0, 1])
    members[6] = ("s/000001.semseg.png", _png(np.zeros((5, 5), np.uint8)))
    _write_tar(str(bad), members)
    with pytest.raises(StoreError, match=r"sample s/000001 of shard .*bad.tar: semseg label: .* 5x5 pixels"):
        ingest(str(bad), str(tmp_path / "b.zarr"), samples_per_shard=2, raw_size=RAW, registry=mods, progress=False)


@pytest.fixture(scope="module")
def hf_saved(tmp_path_factory, photos):
    datasets = pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("hf")
    folder = root / "files"
    folder.mkdir()
    paths = []
    for i, img in enumerate(photos):
        paths.append(str(folder / f"{i}.jpg"))
        Image.fromarray(img).save(paths[-1], quality=92)
    ds = datasets.Dataset.from_dict({
        "picture": paths, "text": [f"photo number {i}" for i in range(N)],
        "seg": [_png(_seg(img, i + 1)) for i, img in enumerate(photos)]})
    ds = ds.cast_column("picture", datasets.Image()).cast_column("seg", datasets.Image())
    saved = root / "saved"
    ds.save_to_disk(str(saved))
    parquet = root / "parquet"
    (parquet / "data").mkdir(parents=True)
    ds.to_parquet(str(parquet / "data" / "train-00000-of-00001.parquet"))
    return saved, parquet


@pytest.mark.parametrize("kind", ["saved", "parquet"])
def test_hf_dataset(hf_saved, photos, tmp_path, mods, kind):
    path = hf_saved[0] if kind == "saved" else hf_saved[1]
    source = open_source(hf=str(path), split="train", image_column="picture",
                         columns={"caption": "text", "semseg": "seg"})
    assert source.streaming == (kind == "parquet") and source.num_rows == N
    url = str(tmp_path / f"{kind}.zarr")
    rep = ingest(None, url, source=source, samples_per_shard=2, raw_size=RAW, registry=mods, progress=False)
    assert rep.num_samples == N
    store = Store.open(url)
    assert store.read_raw("caption", range(N)) == [f"photo number {i}" for i in range(N)]
    assert [int(np.unique(s)[0]) for s in store.read_raw_array("semseg", range(N))] == [1, 2, 3, 4, 5]
    assert store.modalities()["semseg"]["source"] == "labels"


def test_hf_errors_are_clear(hf_saved, tmp_path):
    with pytest.raises(StoreError, match=r"has no column 'nope'.*--image-column"):
        open_source(hf=str(hf_saved[0]), image_column="nope")
    with pytest.raises(StoreError, match=r"cannot open datasets .*(HF_DATASETS_OFFLINE|check the name)"):
        open_source(hf=str(tmp_path / "does-not-exist"))


@pytest.mark.slow  # subprocesses: each imports torch and the plugins
def test_two_processes_write_the_same_store_as_one(shards, tmp_path, mods):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun is installed with torch"
    src = str(shards / "shard-{000..001}.tar")
    one = str(tmp_path / "one.zarr")
    ingest(src, one, samples_per_shard=2, raw_size=RAW, registry=mods, progress=False)
    two = str(tmp_path / "two.zarr")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "FOURM_PLUGINS": "rgb,depth,semseg,det,caption"}
    res = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "fourm_registry.cli", "ingest", src, two,
                          "--samples-per-shard", "2", "--raw-size", str(RAW)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = Store.open(one), Store.open(two)
    assert b.attrs["ingest"]["layout"] == "by-position" and b.attrs["ingest"]["complete"]
    for name in ("rgb", "semseg"):
        assert np.array_equal(a.read_raw_array(name, range(N)), b.read_raw_array(name, range(N)))
    assert a.read_raw("det", range(N)) == b.read_raw("det", range(N))
