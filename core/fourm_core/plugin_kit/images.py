"""Array helpers for image-like raw data (channels-last numpy arrays ``(H, W, C)``).

A sample's crop is given in *raw rgb pixel* coordinates ``box = (top, left, height, width)`` of a square
``raw_size`` image; arrays on another grid (feature maps) scale the box to their own size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[int, int, int, int]

#: ImageNet statistics: the normalisation of RGB inputs of 4M's patch embedding, its RGB tokenizer and the
#: feature extractors (DINOv2, SAM) that pseudo-label from RGB
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_hwc(array: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.ndim != 3:
        shape = getattr(array, "shape", type(array).__name__)
        raise ValueError(f"{what}: expected a channels-last array (H, W, C), got {shape}")
    return array


def scale_box(box: Box, from_size: tuple[int, int], to_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Scale a ``(top, left, height, width)`` box from one grid size ``(H, W)`` to another."""
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    top, left, h, w = box
    return top * sy, left * sx, h * sy, w * sx


def crop_resize(array: np.ndarray, box: Box, size: tuple[int, int], *, flip: bool = False,
                interpolation: str = "linear", box_grid: tuple[int, int] | None = None) -> np.ndarray:
    """Crop ``box`` out of ``array`` (H, W, C), resize to ``size`` (H', W'), optionally flip horizontally.

    ``interpolation``: ``"linear"`` (continuous data: rgb, depth, features), ``"nearest"`` (class maps,
    binary edges), ``"area"`` (downscaling photos). ``box_grid`` is the (H, W) the box refers to (default: the
    array's own size); feature maps pass the rgb raw size so the box is rescaled onto their grid.
    Works for any dtype and channel count; the output keeps the dtype.
    """
    import cv2

    array = _check_hwc(array, "crop_resize")
    h, w = array.shape[:2]
    top, left, bh, bw = scale_box(box, box_grid, (h, w)) if box_grid else box
    if bh <= 0 or bw <= 0:
        raise ValueError(f"crop box {box} is empty")
    # Sub-pixel exact crop+resize in one affine warp, so feature maps on coarse grids follow the crop exactly.
    out_h, out_w = size
    sx, sy = bw / out_w, bh / out_h
    matrix = np.array([[sx, 0, left + 0.5 * sx - 0.5], [0, sy, top + 0.5 * sy - 0.5]], dtype=np.float64)
    flags = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST, "area": cv2.INTER_AREA}[interpolation]
    src = array
    work_dtype = array.dtype
    if array.dtype in (np.float16, np.bool_, np.int64, np.int32) or array.shape[2] > 4:
        src = array.astype(np.float32)
    chans = [src[..., i : i + 4] for i in range(0, src.shape[2], 4)]
    outs = []
    for ch in chans:
        o = cv2.warpAffine(np.ascontiguousarray(ch), matrix, (out_w, out_h),
                           flags=flags | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        outs.append(o.reshape(out_h, out_w, ch.shape[2]))
    out = np.concatenate(outs, axis=2)
    if flip:
        out = out[:, ::-1]
    if out.dtype != work_dtype:
        out = np.rint(out) if np.issubdtype(work_dtype, np.integer) or work_dtype == np.bool_ else out
        out = out.astype(work_dtype)
    return np.ascontiguousarray(out)


def resize_short_side_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the short side is ``size`` (area interpolation), then centre-crop to ``size`` × ``size``."""
    import cv2

    image = _check_hwc(image, "resize_short_side_center_crop")
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    if resized.ndim == 2:
        resized = resized[..., None]
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


def colormap(values: np.ndarray, *, cmap: str = "turbo", vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Map a 2-D float array to uint8 RGB (H, W, 3) with a matplotlib colour map (robust 2–98 % range)."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float32)
    if v.ndim == 3:
        v = v[..., 0]
    finite = v[np.isfinite(v)]
    lo = vmin if vmin is not None else (float(np.percentile(finite, 2)) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(np.percentile(finite, 98)) if finite.size else 1.0)
    norm = np.clip((v - lo) / max(hi - lo, 1e-8), 0, 1)
    norm = np.nan_to_num(norm)
    return (colormaps[cmap](norm)[..., :3] * 255).astype(np.uint8)


def pca_rgb(features: np.ndarray, *, basis: np.ndarray | None = None) -> np.ndarray:
    """Project a feature map (H, W, D) on its first three principal components → uint8 RGB (H, W, 3)."""
    f = np.asarray(features, dtype=np.float32)
    h, w, d = f.shape
    flat = f.reshape(-1, d)
    flat = flat - flat.mean(0, keepdims=True)
    if basis is None:
        # SVD of the (HW, D) matrix: cheap for the feature-map sizes here (<= 64×64 positions).
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        basis = vt[:3].T
    proj = flat @ basis[:, :3]
    if proj.shape[1] < 3:
        proj = np.pad(proj, ((0, 0), (0, 3 - proj.shape[1])))
    lo, hi = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
    rgb = np.clip((proj - lo) / np.maximum(hi - lo, 1e-8), 0, 1)
    return (rgb.reshape(h, w, 3) * 255).astype(np.uint8)


def fixed_palette(num_classes: int, *, seed: int = 0) -> np.ndarray:
    """A deterministic, well-spread palette of ``num_classes`` RGB colours (uint8, (num_classes, 3))."""
    rng = np.random.default_rng(seed)
    hues = (np.arange(num_classes) * 0.618033988749895) % 1.0
    sat = 0.55 + 0.4 * rng.random(num_classes)
    val = 0.65 + 0.35 * rng.random(num_classes)
    i = np.floor(hues * 6).astype(int) % 6
    f = hues * 6 - np.floor(hues * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    table = np.stack([
        np.choose(i, [val, q, p, p, t, val]),
        np.choose(i, [t, val, val, q, p, p]),
        np.choose(i, [p, p, t, val, val, q]),
    ], axis=1)
    return (table * 255).astype(np.uint8)


def to_pil(array: np.ndarray, *, size: int | None = None):
    """uint8 (H, W, 3|1) → PIL RGB image, optionally resized (nearest) so the longer side is ``size``."""
    from PIL import Image

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    img = Image.fromarray(a.astype(np.uint8)).convert("RGB")
    if size is not None and max(img.size) != size:
        scale = size / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.NEAREST)
    return img


def stack_hwc(raws: Sequence[np.ndarray], what: str) -> np.ndarray:
    """Stack a list of same-shaped (H, W, C) arrays into (B, H, W, C), with an error naming ``what``."""
    if not raws:
        raise ValueError(f"{what}: empty batch")
    shapes = {np.shape(r) for r in raws}
    if len(shapes) != 1:
        raise ValueError(f"{what}: all samples of a batch must have the same shape, got {sorted(shapes)}")
    return np.stack([_check_hwc(np.asarray(r), what) for r in raws])


def rgb_inputs(inputs: dict, modality: str) -> list[np.ndarray]:
    """The ``rgb`` list of a labeler's ``inputs``, checked: each a uint8 (H, W, 3) array. Raises ``ValueError``
    naming ``modality`` (the labeler's) and the bad sample otherwise."""
    if not isinstance(inputs, dict) or "rgb" not in inputs:
        keys = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise ValueError(f"labeler of modality {modality!r}: inputs must be a dict with an 'rgb' list, got {keys}")
    rgbs = list(inputs["rgb"])
    for i, img in enumerate(rgbs):
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f"labeler of modality {modality!r}: rgb sample {i} must be a uint8 (H, W, 3) array, "
                             f"got {desc}")
    return rgbs


def pixels_to_tensor(images: Sequence[np.ndarray] | np.ndarray):
    """uint8 ``(H, W, C)`` arrays (or one ``(B, H, W, C)`` array) → float32 ``(B, C, H, W)`` in [0, 1],
    ImageNet-normalised when ``C == 3``.

    The default tensor of a ``pixels`` modality whose plugin declares no transform (with one, the plugin's
    ``to_tensor`` decides)."""
    import torch

    batch = images if isinstance(images, np.ndarray) else np.stack(images)
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[1] == 3:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x
