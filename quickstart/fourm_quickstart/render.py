"""Drawing the quickstart's PNG grids: titled panels side by side, columns of grey edge-strength maps next to
the modalities' own renderings (``fourm_core.pipeline.render_grid``). Pillow only; tensors come in decoded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fourm_registry import ModalitySet


def _panel(title: str, image: Any) -> Any:
    from PIL import Image, ImageDraw

    bar = 18
    out = Image.new("RGB", (image.width, image.height + bar), (235, 235, 235))
    out.paste(image, (0, bar))
    ImageDraw.Draw(out).text((4, 3), title, fill=(0, 0, 0))
    return out


def side_by_side(panels: Sequence[tuple[str, Any]], gap: int = 12) -> Any:
    """Titled panels next to each other (top-aligned)."""
    from PIL import Image

    imgs = [_panel(t, im) for t, im in panels]
    w = sum(i.width for i in imgs) + gap * (len(imgs) - 1)
    h = max(i.height for i in imgs)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    x = 0
    for i in imgs:
        canvas.paste(i, (x, 0))
        x += i.width + gap
    return canvas


def render_columns(cols: list[tuple[str, list[Any]]], mods: ModalitySet, tile: int) -> Any:
    """``render_grid`` for columns some of which (named by no modality: edge strength maps) are drawn as grey
    images."""
    from PIL import Image

    from fourm_core.pipeline import render_grid

    if all(n in mods for n, _ in cols):
        return render_grid(cols, mods, tile=tile)
    # render each column on its own and paste them side by side (bottom-aligned: same row positions)
    parts = []
    for n, v in cols:
        if n in mods:
            parts.append(render_grid([(n, v)], mods, tile=tile))
        else:
            parts.append(side_by_side([(n, _stack([Image.fromarray(a[..., 0]).convert("RGB").resize((tile, tile))
                                                     for a in v]))], gap=0))
    h = max(p.height for p in parts)
    canvas = Image.new("RGB", (sum(p.width for p in parts), h), (255, 255, 255))
    x = 0
    for p in parts:
        canvas.paste(p, (x, h - p.height))
        x += p.width
    return canvas


def _stack(images: list[Any]) -> Any:
    from PIL import Image

    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), (255, 255, 255))
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height
    return out


def grey_images(strength: Any) -> list[np.ndarray]:
    """A ``(B, 1, H, W)`` tensor of values in [0, 1] → B uint8 ``(H, W, 1)`` grey images (0 black, 1 white)."""
    return [np.clip(a.permute(1, 2, 0).numpy() * 255.0, 0, 255).astype(np.uint8) for a in strength]
