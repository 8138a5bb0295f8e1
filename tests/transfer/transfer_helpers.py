"""Data for the transfer tests: scikit-image's ``lfw_subset`` (100 faces, 100 non-faces, 25×25 grey) as a
folder of class sub-folders, as the docs' worked example writes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_lfw_folder(root: Path) -> Path:
    """``root/face/*.png`` and ``root/non_face/*.png`` from ``skimage.data.lfw_subset()`` (faces first)."""
    from PIL import Image
    from skimage.data import lfw_subset

    images = lfw_subset()
    for i, img in enumerate(images):
        d = root / ("face" if i < len(images) // 2 else "non_face")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).convert("RGB").save(d / f"{i:03d}.png")
    return root
