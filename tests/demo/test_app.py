"""The demo back end's conversions, with literal expected values: raw outputs as JSON, uploads as raw inputs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fourm_registry import ModalitySpec

from fourm_demo.app import DemoError, json_value, read_upload

RGB = ModalitySpec(name="rgb", kind="pixels", grid=(4, 4), patch_size=4, channels=3)


def test_json_value():
    value = {"colors": [np.array([1, 2, 3]).tolist(), [np.uint8(4), np.int64(5), np.float32(0.5)]],
             "score": float("nan"), "inf": np.float64(np.inf), 7: None, "ok": True, "t": (1, "a")}
    assert json_value(value) == {"colors": [[1, 2, 3], [4, 5, 0.5]], "score": "nan", "inf": "inf", "7": None,
                                 "ok": True, "t": [1, "a"]}
    depth = np.array([[[0.0], [0.5]], [[1.0], [0.25]]], dtype=np.float16)
    assert json_value(depth) == {"shape": [2, 2, 1], "dtype": "float16", "min": 0.0, "max": 1.0, "mean": 0.4375}
    assert json_value(torch.tensor([1, 3])) == {"shape": [2], "dtype": "int64", "min": 1.0, "max": 3.0, "mean": 2.0}
    assert json_value(np.zeros((0, 3))) == {"shape": [0, 3], "dtype": "float64"}
    assert json_value(Image.new("L", (3, 2), 9)) == {"shape": [2, 3], "dtype": "uint8", "min": 9.0, "max": 9.0,
                                                     "mean": 9.0}
    json.dumps(json_value(value), allow_nan=False)  # valid JSON for the page


def _jpeg(size, orientation=None, mode="RGB") -> bytes:
    img = Image.new(mode, size, 128)
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    img.save(buf, format="JPEG" if mode in ("RGB", "L") else "PNG", exif=exif.tobytes())
    return buf.getvalue()


def test_read_upload():
    turned = read_upload(_jpeg((40, 20), orientation=6), "phone.jpg", RGB, rgb=True)
    assert turned.size == (20, 40) and turned.mode == "RGB"  # the EXIF orientation is applied
    assert read_upload(_jpeg((8, 6), mode="L"), "grey.jpg", RGB, rgb=True).mode == "RGB"
    assert read_upload(_jpeg((8, 6), mode="L"), "grey.jpg", RGB, rgb=False).mode == "L"
    assert read_upload(_jpeg((8, 6), mode="RGBA"), "alpha.png", RGB, rgb=False).mode == "RGB"
    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.float32).reshape(2, 3, 1))
    assert read_upload(buf.getvalue(), "depth.NPY", RGB, rgb=False).tolist() == [[[0.0], [1.0], [2.0]],
                                                                                  [[3.0], [4.0], [5.0]]]
    with pytest.raises(DemoError, match=r"input 'rgb': cannot read 'x.jpg' as an image \(not an image format"):
        read_upload(b"GIF89a but truncated", "x.jpg", RGB, rgb=True)
    with pytest.raises(DemoError, match="'x.npy' is not a readable .npy array"):
        read_upload(b"\x93NUMPY garbage", "x.npy", RGB, rgb=False)
