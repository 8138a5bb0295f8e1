"""Drawing the quickstart's PNG grids (Pillow only; values come in as the modalities' raw forms).

A task grid reads top to bottom: a title naming the task and its figures, column headers (input / 4M
prediction / truth / tokenizer oracle), one row per held-out crop drawn by each modality's own visualizer, and
a caption line saying what a good result looks like. :func:`overview` stacks a few rows of every task into
one small picture.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from fourm_registry import ModalitySet

#: text sizes, pixels
TITLE_SIZE, TEXT_SIZE = 15, 13
PAD = 6


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a task grid: its header, the modality whose visualizer draws it, one raw value per row."""

    header: str
    modality: str
    values: Sequence[Any]
    #: draw each value as this text (e.g. statistics, one per line) instead of by its modality's visualizer
    text: Callable[[Any], str] | None = None


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _text_block(text: str, width: int, size: int, *, bold: bool = False, fill: Any = (0, 0, 0),
                background: Any = (255, 255, 255)) -> Any:
    """``text`` wrapped to ``width`` pixels, as an image."""
    from PIL import Image, ImageDraw

    font = _font(size)
    chars = max(10, int(width / (0.55 * size)))
    lines = textwrap.wrap(text, width=chars) or [""]
    h = len(lines) * (size + 4) + PAD
    img = Image.new("RGB", (width, h), background)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((PAD, PAD // 2 + i * (size + 4)), line, fill=fill, font=font,
                  stroke_width=1 if bold else 0, stroke_fill=fill)
    return img


def cell(spec: Any, raw: Any, tile: int) -> Any:
    """One raw value drawn by :func:`fourm_core.pipeline.draw_raw` (the modality's visualizer, else the image,
    else its text; an unparseable sequence, a string, as red text), centred in a ``tile`` × ``tile`` white
    square."""
    from PIL import Image

    from fourm_core.pipeline import draw_raw

    if isinstance(raw, str):
        img = _text_block(raw, tile, TEXT_SIZE - 2, fill=(170, 0, 0))
        scale = tile / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    else:
        img = draw_raw(spec, raw, tile)
    out = Image.new("RGB", (tile, tile), (255, 255, 255))
    out.paste(img, ((tile - img.width) // 2, (tile - img.height) // 2))
    return out


def text_cell(text: str, tile: int) -> Any:
    """``text`` (its own line breaks kept) in a ``tile`` × ``tile`` white square, as large as fits."""
    from PIL import Image, ImageDraw

    lines = text.splitlines() or [""]
    size = max(7, min(TEXT_SIZE, int((tile - PAD) / (1.2 * len(lines))),
                      int((tile - PAD) / (0.6 * max(len(x) for x in lines) + 1e-9))))
    img = Image.new("RGB", (tile, tile), (255, 255, 255))
    ImageDraw.Draw(img).multiline_text((PAD // 2, PAD // 2), "\n".join(lines), fill=(0, 0, 0), font=_font(size),
                                       spacing=max(1, size // 5))
    return img


def task_grid(title: str, columns: Sequence[Column], mods: ModalitySet, *, caption: str, tile: int = 128,
              rows: int | None = None) -> Any:
    """The grid of one task (see the module docstring); ``rows`` limits the rows drawn."""
    from PIL import Image

    n = min(len(c.values) for c in columns)
    n = n if rows is None else min(n, rows)
    gap = 4
    width = len(columns) * (tile + gap) + gap
    head = _text_block(title, width, TITLE_SIZE, bold=True, background=(235, 240, 250))
    headers = [_text_block(c.header, tile, TEXT_SIZE, bold=True) for c in columns]
    hh = max(h.height for h in headers)
    foot = _text_block(caption, width, TEXT_SIZE, fill=(40, 90, 40))
    img = Image.new("RGB", (width, head.height + hh + n * (tile + gap) + foot.height), (255, 255, 255))
    img.paste(head, (0, 0))
    y0 = head.height
    for j, (c, h) in enumerate(zip(columns, headers)):
        x = gap + j * (tile + gap)
        img.paste(h, (x, y0))
        spec = mods[c.modality] if c.modality in mods else None
        for i in range(n):
            v = c.values[i]
            drawn = (text_cell(c.text(v), tile) if c.text is not None and not isinstance(v, str)
                     else cell(spec, v, tile))
            img.paste(drawn, (x, y0 + hh + i * (tile + gap)))
    img.paste(foot, (0, y0 + hh + n * (tile + gap)))
    return img


def stack(images: Sequence[Any], gap: int = 10) -> Any:
    """Images one under the other, left-aligned, on white."""
    from PIL import Image

    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images) + gap * (len(images) - 1)),
                    (255, 255, 255))
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height + gap
    return out
