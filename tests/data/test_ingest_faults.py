"""Ingest under faults and hostile files: a real ``kill -9`` resumed, images refused from their header before any
pixel is decoded, and every PIL mode converted to 8-bit RGB as documented in ``fourm_core.data.crops.to_rgb``."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from data_helpers import PER_SHARD, RAW_SIZE, run_fourm
from PIL import Image

from fourm_core.data import Store, ingest, inspect_store, load_image
from fourm_core.data.crops import ImageRejected
from fourm_core.data.lock import WriterLock

ARGS = ("--samples-per-shard", str(PER_SHARD), "--raw-size", str(RAW_SIZE))


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` grey pixels and which holds no pixel data at all: any
    attempt to decode it fails, so an image refused from it was refused before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------------------------------
def test_ingest_sigkilled_mid_run_resumes_and_matches_uninterrupted(photos, ingested, tmp_path):
    """Catches an ingest that cannot be resumed ("already exists") or that redoes / loses finished shards."""
    url = str(tmp_path / "run.zarr")
    killed = run_fourm("ingest", str(photos), url, *ARGS, env={"FOURM_TEST_KILL_AT": "ingest:rgb:2"})
    assert killed.returncode == -9, killed.stderr
    store = Store.open(url)
    assert store.done("rgb", "raw").tolist()[:3] == [True, True, False]
    assert WriterLock.holder(url) is not None  # the killed job's lock, stale now
    res = run_fourm("ingest", str(photos), url, *ARGS)
    assert res.returncode == 0, res.stderr
    assert "ingested 8 images" in res.stdout
    assert inspect_store(url)["modalities"] == inspect_store(ingested)["modalities"]
    src = Store.open(url)._read(Store.open(url)._array("_samples/source"), np.arange(8))  # noqa: SLF001
    ref = Store.open(ingested)._read(Store.open(ingested)._array("_samples/source"), np.arange(8))  # noqa: SLF001
    assert src.tolist() == ref.tolist()
    assert WriterLock.holder(url) is None


def test_ingest_killed_between_an_array_and_its_record_resumes(photos, ingested, tmp_path):
    url = str(tmp_path / "run.zarr")
    killed = run_fourm("ingest", str(photos), url, *ARGS, env={"FOURM_TEST_KILL_AT": "create:rgb/raw"})
    assert killed.returncode == -9, killed.stderr
    res = run_fourm("ingest", str(photos), url, *ARGS)
    assert res.returncode == 0, res.stderr
    assert inspect_store(url)["modalities"] == inspect_store(ingested)["modalities"]


# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, why", [((1, 6000), "more elongated than 32:1"), ((1, 100_000), "more elongated"),
                                       ((9000, 9000), "exceeds the limit of")])
def test_hostile_sizes_are_refused_from_the_header(tmp_path, size, why):
    """Catches an ingest that decodes and resizes a 1x6000 PNG (about 1 GB for a 256 raw size) or a huge one
    before deciding: these files hold no pixel data, so only a header check can give this message."""
    path = header_only_png(tmp_path / "hostile.png", *size)
    with pytest.raises(ImageRejected, match=why):
        load_image(str(path), 256)


def test_ingest_skips_refused_images_with_a_clear_message(photos, tmp_path, registry):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(photos.glob("*.jpg"))[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    header_only_png(folder / "strip.png", 1, 100_000)
    rep = ingest(folder, str(tmp_path / "s.zarr"), samples_per_shard=2, raw_size=RAW_SIZE, progress=False,
                 registry=registry)
    assert rep.num_samples == 2
    assert [(p, r.split(":")[0]) for p, r in rep.skipped] == [("strip.png", "ImageRejected")]
    assert "1x100000 pixels is more elongated than 32:1" in rep.skipped[0][1]


# --------------------------------------------------------------------------------------------------
def _grad16() -> np.ndarray:
    return (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)


def test_16bit_grey_png_is_scaled_not_saturated(tmp_path):
    """Catches 16-bit grey PNGs read through Pillow's RGB conversion, which saturates them to white."""
    a = _grad16()
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)  # uint16: a 16-bit grey PNG
    got = load_image(str(path), 64)
    want = np.round(a / 257.0).astype(np.uint8)
    assert got.shape == (64, 64, 3)
    assert np.array_equal(got[..., 0], want) and np.array_equal(got[..., 1], want) and np.array_equal(got[..., 2], want)
    assert len(np.unique(got)) == 256  # the whole gradient, not saturated to white


def test_transparent_modes_are_composited_over_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :16] = (200, 10, 20, 255)  # opaque left half
    rgba[:, 16:] = (0, 0, 0, 0)  # transparent right half (black underneath)
    expected = np.zeros((32, 32, 3), np.uint8)
    expected[:, :16], expected[:, 16:] = (200, 10, 20), 255
    cases = {"rgba": Image.fromarray(rgba, "RGBA"),
             "palette": Image.fromarray(rgba, "RGBA").quantize(colors=4, method=Image.Quantize.FASTOCTREE),
             "la": Image.fromarray(rgba[..., [0, 3]], "LA")}
    for name, img in cases.items():
        path = tmp_path / f"{name}.png"
        img.save(path, **({"transparency": img.info.get("transparency")} if name == "palette" and
                          "transparency" in img.info else {}))
        got = load_image(str(path), 32)
        assert (got[:, 16:] == 255).all(), f"{name}: transparent pixels must be white"
        if name == "la":
            assert (got[:, :16] == 200).all(), name
        else:
            assert np.abs(got[:, :16].astype(int) - expected[:, :16]).max() <= 8, name


def test_cmyk_jpeg_is_converted_like_pillow(tmp_path):
    cmyk = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 4), dtype=np.uint8), "CMYK")
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=95)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
        want = np.asarray(img.convert("RGB"))
    assert np.array_equal(load_image(str(path), 40), want)
