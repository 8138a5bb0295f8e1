"""Fixtures of the trainer tests (helpers live in trainer_helpers.py)."""

from __future__ import annotations

import pytest
from trainer_helpers import _views, build_store, real_photos


@pytest.fixture(scope="session")
def stores(tmp_path_factory) -> dict[str, str]:
    """Train / validation stores (real photos, 4 views each; validation = other photos)."""
    photos = real_photos()
    root = tmp_path_factory.mktemp("stores")
    train_imgs = [v for img in photos[:8] for v in _views(img, 112)]
    val_imgs = [v for img in photos[8:] for v in _views(img, 112)]
    return {"train": build_store(root / "train.zarr", train_imgs), "val": build_store(root / "val.zarr", val_imgs),
            "train_no_palette": build_store(root / "train2.zarr", train_imgs, ("canny_edge", "tok_rgb"))}
