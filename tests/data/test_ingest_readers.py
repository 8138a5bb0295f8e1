"""The shared label-reading helpers (16-bit PNG, .npy, EXR, COCO index) and the plugins' readers against the
``Reader`` contract."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fourm_core.plugin_kit import readers as R
from fourm_registry import get_modalities
from fourm_registry.contracts import Reader, missing_members

READERS = ["depth", "semseg", "normal", "det", "caption", "human_pose"]


def test_every_reader_meets_the_contract():
    mods = get_modalities()
    for name in READERS:
        spec = mods[name]
        assert spec.reader is not None, name
        reader = spec.reader.build(context={"raw_size": 32})
        assert not missing_members(reader, Reader) and isinstance(reader, Reader), name


def test_png16_npy_and_colour_order(tmp_path):
    depth = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    Image.fromarray(depth).save(tmp_path / "d.png")
    got = R.read_array(Path(tmp_path / "d.png"))
    assert got.dtype == np.uint16 and got.shape == (3, 4, 1) and np.array_equal(got[..., 0], depth)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert (R.read_array(Path(tmp_path / "c.png"))[..., 0] == 200).all()
    np.save(tmp_path / "f.npy", np.ones((4, 5), np.float32))
    from fourm_core.data.sources import named_bytes

    blob = named_bytes((tmp_path / "f.npy").read_bytes(), "member.depth.npy")
    assert R.read_array(blob).shape == (4, 5, 1)
    with pytest.raises(R.LabelReadError, match="does not exist"):
        R.read_array(Path(tmp_path / "missing.png"))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(R.LabelReadError, match="not a readable image"):
        R.read_array(Path(tmp_path / "junk.png"))
    with pytest.raises(R.LabelReadError, match="suffix '.bmp2'"):
        R.read_array(Path(tmp_path / "x.bmp2"))


def test_exr_reads_or_says_how(tmp_path):
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    values = np.linspace(0.5, 9.5, 12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "d.exr"
    try:
        ok = cv2.imwrite(str(path), values)
    except cv2.error:
        ok = False
    if ok:
        assert np.allclose(R.read_array(Path(path))[..., 0], values)
    else:
        path.write_bytes(b"v/1\x01 not really exr")
        with pytest.raises(R.LabelReadError, match="EXR|not a readable image"):
            R.read_array(Path(path))


def test_fill_invalid_nearest_keeps_valid_pixels():
    rng = np.random.default_rng(0)
    values = rng.random((40, 60))
    valid = rng.random((40, 60)) > 0.5
    valid[:15, :20] = False
    out = R.fill_invalid_nearest(np.where(valid, values, -1.0), valid)
    assert np.array_equal(out[valid], values[valid]) and set(np.unique(out[~valid])) <= set(values[valid])
    assert out[0, 0] in values[:16, :21][valid[:16, :21]] or out[0, 0] in values[15:, :][valid[15:, :]]


def test_coco_index_is_cached_and_reread_when_the_file_changes(tmp_path):
    path = tmp_path / "c.json"
    doc = {"images": [{"id": 1, "file_name": "a/x.jpg", "width": 4, "height": 3}],
           "annotations": [{"id": 5, "image_id": 1, "category_id": 2, "bbox": [0, 0, 2, 3]}],
           "categories": [{"id": 2, "name": "dog"}]}
    path.write_text(json.dumps(doc))
    idx = R.coco_index(path)
    assert R.coco_index(str(path)) is idx
    img = idx.image({"file_name": "x.jpg"})
    assert img.size == (3, 4) and img.categories == {2: "dog"} and len(img.annotations) == 1
    assert R.xywh_to_unit_xyxy([0, 0, 2, 3], (3, 4), "t") == [0.0, 0.0, 0.5, 1.0]
    with pytest.raises(R.LabelReadError, match="recorded as 4x3"):
        img.check_size((30, 40))
    doc["images"].append({"id": 2, "file_name": "y.jpg"})
    path.write_text(json.dumps(doc))
    assert R.coco_index(path) is not idx and R.coco_index(path).image({"image_id": "2"}).size is None
    with pytest.raises(R.LabelReadError, match="exactly one of"):
        R.coco_reference({"file": "c.json"})
