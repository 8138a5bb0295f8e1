"""The crop probes of the plugin contract kit: where a transform must put what it crops.

Image-like probes either encode their position in their values (the *ramp*: continuous data, class ids) or
hold rectangles of two values (the *marker*: binary edges, normals); both must land where the crop box and
the flip put them. numpy is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

from .samples import RAW_SIZE

#: the crop box of the transform test, (top, left, height, width) in raw rgb pixels of a RAW_SIZE image: off
#: centre, not square and scaled differently in x and y, so a transform that ignores it cannot match
CROP_BOX = (16, 8, RAW_SIZE - 32, RAW_SIZE - 40)
#: marker rectangles (row0, row1, col0, col1) in [0, 1] of the raw image: left-right asymmetric
MARKERS = ((0.25, 0.70, 0.20, 0.45), (0.55, 0.90, 0.62, 0.80), (0.05, 0.15, 0.05, 0.95))


def source_coords(box, grid: tuple[int, int], size: tuple[int, int], flip: bool):
    """Where output pixel ``(i, j)`` of ``crop(box, flip, size)`` samples an array on ``grid`` (H, W), in that
    array's pixel-index coordinates (pixel centres at integers; the box is given in RAW_SIZE pixels):
    ``(rows (size[0],), cols (size[1],))``."""
    import numpy as np

    h, w = grid
    sy, sx = h / RAW_SIZE, w / RAW_SIZE
    top, left, bh, bw = box[0] * sy, box[1] * sx, box[2] * sy, box[3] * sx
    rows = top + (np.arange(size[0]) + 0.5) * bh / size[0] - 0.5
    cols = left + (np.arange(size[1]) + 0.5) * bw / size[1] - 0.5
    if flip:
        cols = cols[::-1]
    return rows, cols


def check_ramp_crop(modality: str, transform: Any, storage: Any, grid: tuple[int, int], size: tuple[int, int]) -> None:
    """Each probe pixel holds its own column (then row) index; the crop must return, at every output pixel,
    the index the box maps it to. Tolerance 0.75 pixel of the source grid: half a pixel for nearest
    resampling or integer rounding, plus fixed-point interpolation weights and float16 steps (<= 0.16);
    a box off by one pixel or more, a missing flip or swapped axes all exceed it."""
    import numpy as np

    dtype = np.dtype(storage.dtype)
    h, w, c = storage.shape
    integer = np.issubdtype(dtype, np.integer)
    scale = 1.0 if integer else 1.0 / (max(h, w) - 1)  # floats: positions in [0, 1]
    if integer:
        assert max(h, w) - 1 <= np.iinfo(dtype).max, "grid too large for a ramp of this dtype"
    rows_i, cols_i = np.mgrid[:h, :w]
    for axis, index in (("column", cols_i), ("row", rows_i)):
        probe = np.repeat((index * scale).astype(dtype)[..., None], c, axis=2)
        for flip in (False, True):
            out = transform.crop(probe, box=CROP_BOX, flip=flip, size=size)
            assert out.shape == (*size, c), f"{modality}: crop to {size} gave shape {out.shape}"
            rows, cols = source_coords(CROP_BOX, grid, size, flip)
            src = cols[None, :] if axis == "column" else rows[:, None]
            expected = np.clip(np.broadcast_to(src, size), 0, (w if axis == "column" else h) - 1)
            got = out.astype(np.float64) / scale
            err = np.abs(got - expected[..., None])
            assert err.max() <= 0.75, (
                f"{modality}: crop(box={CROP_BOX}, flip={flip}) put the wrong {axis}s of the raw at its "
                f"output: worst error {err.max():.2f} pixels at output pixel "
                f"{np.unravel_index(err.argmax(), err.shape)[:2]}")


def check_marker_crop(modality: str, transform: Any, storage: Any, grid: tuple[int, int], size: tuple[int, int],
                  marker_values: tuple[Any, Any]) -> None:
    """Rectangles of the foreground value on the background: every output pixel whose source point lies
    more than one source pixel from a rectangle's border must be foreground exactly when the point lies
    inside a rectangle (the band of one pixel around each border is left to the resampling)."""
    import numpy as np

    h, w, c = storage.shape
    bg, fg = (np.asarray(v, dtype=storage.dtype).reshape(c) for v in marker_values)
    yc, xc = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    mask = np.zeros((h, w), bool)
    for r0, r1, c0, c1 in MARKERS:
        mask |= ((yc >= r0) & (yc < r1))[:, None] & ((xc >= c0) & (xc < c1))[None, :]
    probe = np.where(mask[..., None], fg, bg).astype(storage.dtype)
    for flip in (False, True):
        out = transform.crop(probe, box=CROP_BOX, flip=flip, size=size)
        assert out.shape == (*size, c), f"{modality}: crop to {size} gave shape {out.shape}"
        o = out.astype(np.float64)
        is_fg = np.linalg.norm(o - fg, axis=-1) < np.linalg.norm(o - bg, axis=-1)
        rows, cols = source_coords(CROP_BOX, grid, size, flip)
        inside = np.zeros(size, bool)
        outside = np.ones(size, bool)
        for r0, r1, c0, c1 in MARKERS:
            # borders in pixel-index coordinates lie at r0 * h - 0.5 etc.; 1 pixel of margin each side
            ry0, ry1, cx0, cx1 = r0 * h - 0.5, r1 * h - 0.5, c0 * w - 0.5, c1 * w - 0.5
            in_r, in_c = (rows > ry0 + 1) & (rows < ry1 - 1), (cols > cx0 + 1) & (cols < cx1 - 1)
            out_r, out_c = (rows < ry0 - 1) | (rows > ry1 + 1), (cols < cx0 - 1) | (cols > cx1 + 1)
            inside |= in_r[:, None] & in_c[None, :]
            outside &= out_r[:, None] | out_c[None, :]
        decided = inside | outside
        assert decided.mean() > 0.8 and inside.any() and outside.any()
        wrong = decided & (is_fg != inside)
        assert not wrong.any(), (
            f"{modality}: crop(box={CROP_BOX}, flip={flip}) misplaced the marker rectangles at "
            f"{int(wrong.sum())} output pixels (first {tuple(int(v) for v in np.argwhere(wrong)[0])})")
