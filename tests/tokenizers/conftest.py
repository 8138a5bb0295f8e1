"""Real photos (scikit-image) as 64x64 crops, their Canny edges, and tiny tokenizer configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "colorwheel")


@pytest.fixture(scope="session")
def photos128() -> torch.Tensor:
    """(6, 3, 128, 128) float32 in [0, 1]: real photos shipped with scikit-image."""
    from skimage import data, transform

    imgs = [transform.resize(getattr(data, n)()[..., :3], (128, 128), anti_aliasing=True).astype(np.float32)
            for n in PHOTOS]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="session")
def edges128(photos128) -> torch.Tensor:
    """(6, 128, 128) int64 Canny edge maps (0/1) of the photos."""
    from skimage.feature import canny

    grey = photos128.mean(dim=1).numpy()
    return torch.from_numpy(np.stack([canny(g, sigma=1.5) for g in grey]).astype(np.int64))


def random_crops(x: torch.Tensor, size: int, batch: int, g: torch.Generator) -> torch.Tensor:
    """``batch`` random ``size``-crops of ``x (N, ..., H, W)`` (one gather, no per-pixel loops)."""
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    idx = torch.randint(0, n, (batch,), generator=g)
    top = torch.randint(0, h - size + 1, (batch,), generator=g)
    left = torch.randint(0, w - size + 1, (batch,), generator=g)
    rows = (top[:, None] + torch.arange(size))  # (B, S)
    cols = (left[:, None] + torch.arange(size))  # (B, S)
    sel = x[idx]  # (B, ..., H, W)
    sel = torch.gather(sel, -2, rows.view(batch, *([1] * (sel.dim() - 3)), size, 1).expand(*sel.shape[:-2], size, w))
    return torch.gather(sel, -1, cols.view(batch, *([1] * (sel.dim() - 3)), 1, size).expand(*sel.shape[:-2], size, size))


TINY_VIT = dict(image_size=64, patch_size=8, dim=64, depth=1, num_heads=2)


@pytest.fixture
def tiny_vit() -> dict:
    """Tiny ViT VQ-VAE geometry: 64x64 images, patch 8 → 8x8 token grid."""
    return dict(TINY_VIT)


@pytest.fixture
def crops():
    return random_crops
