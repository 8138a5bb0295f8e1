"""Feature-map and global-vector modalities (DINOv2, CLIP, ImageBind features): transforms, visualizers and
the batched image preprocessing their extractors share.

A feature map is stored channels-last ``(h, w, D)`` (float16) and covers the *whole* raw rgb image: the
extractor resizes the square raw image to its input size (no centre crop), so feature cell ``(i, j)`` covers
raw pixels ``[i*s, (i+1)*s) × [j*s, (j+1)*s)`` with ``s = raw_size / h``. A crop box given in raw rgb pixels
is therefore rescaled onto the feature grid (sub-cell exact, bilinear). As for every image-like transform,
``size`` is the (H, W) of the array returned — the tokenizer's ``input_size``, which the tokenize job passes;
for a feature map that is a grid (e.g. 16 × 16 for DINOv2-B/14 at 224 px), not a pixel size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .images import Box, crop_resize, pca_rgb, stack_hwc, to_pil


def preprocess_uint8(images: Sequence[np.ndarray], size: int | tuple[int, int], mean: Sequence[float],
                     std: Sequence[float], *, device: str = "cpu", what: str = "labeler") -> Any:
    """Batch of uint8 ``(H, W, 3)`` arrays → normalised float32 tensor ``(B, 3, size, size)`` on ``device``.

    The whole image is resized (bicubic, antialiased; no centre crop) so that outputs stay aligned with the
    raw image. Raises ``ValueError`` naming ``what`` for non-uint8 or non-RGB input.
    """
    import torch
    import torch.nn.functional as F

    arrays = [np.asarray(a) for a in images]
    for a in arrays:
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"{what}: expects rgb images as uint8 arrays (H, W, 3), got {a.dtype} {a.shape}")
    batch = torch.from_numpy(stack_hwc(arrays, what)).to(device)  # (B, H, W, 3) uint8
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


class FeatureMapTransform:
    """Crop/flip and tensor conversion of a feature map ``(h, w, D)`` that covers the raw rgb image.

    :param grid: the stored grid ``(h, w)`` (the extractor's grid at its input size); the default ``size``.
    :param patch_size: input pixels per feature cell (14 for DINOv2-B/14 and ViT-H/14, 16 for ViT-B/16):
        :meth:`grid_for` gives the grid of a crop of a given pixel size.
    :param raw_size: side of the square raw rgb image the crop boxes refer to (the store's ``raw_size``).
    :param channels: expected feature dimension (checked, so a store written by another model fails loudly).
    :param modality: name used in error messages.
    """

    def __init__(self, *, grid: tuple[int, int], channels: int, patch_size: int, raw_size: int = 256,
                 modality: str = "features"):
        self.grid = (int(grid[0]), int(grid[1]))
        self.patch_size = int(patch_size)
        self.channels = int(channels)
        self.raw_size = int(raw_size)
        self.modality = modality

    def _check(self, raw: np.ndarray) -> np.ndarray:
        a = np.asarray(raw)
        if a.ndim != 3 or a.shape[2] != self.channels:
            raise ValueError(f"modality {self.modality!r}: expected a feature map (h, w, {self.channels}), got "
                             f"{a.shape}; was it labeled with another model? Re-label with `fourm label`")
        return a

    def crop(self, raw: np.ndarray, box: Box, flip: bool = False, size: tuple[int, int] | None = None,
             raw_size: int | None = None) -> np.ndarray:
        """The features of crop ``box`` (raw rgb pixels) resampled (bilinear) to a ``size`` = (h, w) grid
        (default: the stored grid; ``grid_for(pixels)`` converts a pixel size).

        A horizontal flip mirrors the grid (features themselves are not flip-equivariant; this is the usual
        approximation, as for every pre-extracted feature target)."""
        a = self._check(raw)
        rs = int(raw_size or self.raw_size)
        grid = self.grid if size is None else (int(size[0]), int(size[1]))
        return crop_resize(a, box, grid, flip=flip, interpolation="linear", box_grid=(rs, rs))

    def grid_for(self, size: tuple[int, int]) -> tuple[int, int]:
        """Feature grid the extractor gives on a crop of ``size`` pixels (e.g. 224 px → 16 cells of 14 px)."""
        return (max(1, round(size[0] / self.patch_size)), max(1, round(size[1] / self.patch_size)))

    def to_tensor(self, raws: Sequence[np.ndarray]) -> Any:
        """list of ``(h, w, D)`` → float32 tensor ``(B, D, h, w)``."""
        import torch

        batch = stack_hwc([self._check(r) for r in raws], f"modality {self.modality!r}")
        return torch.from_numpy(batch.astype(np.float32)).permute(0, 3, 1, 2).contiguous()

    def from_tensor(self, tensor: Any) -> list[np.ndarray]:
        """float tensor ``(B, D, h, w)`` → list of float16 ``(h, w, D)``."""
        if tensor.ndim != 4 or tensor.shape[1] != self.channels:
            raise ValueError(f"modality {self.modality!r}: expected a tensor (B, {self.channels}, h, w), "
                             f"got {tuple(tensor.shape)}")
        arr = tensor.detach().float().permute(0, 2, 3, 1).cpu().numpy().astype(np.float16)
        return list(arr)


class VectorTransform:
    """A global embedding ``(D,)``: it describes the whole image, so a crop or flip leaves it unchanged (the
    reference stores one global vector per image as well)."""

    def __init__(self, *, channels: int, modality: str = "vector"):
        self.channels = int(channels)
        self.modality = modality

    def _check(self, raw: np.ndarray) -> np.ndarray:
        a = np.asarray(raw)
        if a.shape != (self.channels,):
            raise ValueError(f"modality {self.modality!r}: expected a vector ({self.channels},), got {a.shape}")
        return a

    def crop(self, raw: np.ndarray, box: Box, flip: bool = False, size: tuple[int, int] | None = None,
             raw_size: int | None = None) -> np.ndarray:
        """The vector unchanged (a copy): a global embedding does not follow the crop."""
        return self._check(raw).copy()

    def to_tensor(self, raws: Sequence[np.ndarray]) -> Any:
        """list of ``(D,)`` → float32 tensor ``(B, D)``."""
        import torch

        if not raws:
            raise ValueError(f"modality {self.modality!r}: empty batch")
        return torch.from_numpy(np.stack([self._check(r) for r in raws]).astype(np.float32))

    def from_tensor(self, tensor: Any) -> list[np.ndarray]:
        """float tensor ``(B, D)`` → list of float16 ``(D,)``."""
        if tensor.ndim != 2 or tensor.shape[1] != self.channels:
            raise ValueError(f"modality {self.modality!r}: expected a tensor (B, {self.channels}), got {tuple(tensor.shape)}")
        return list(tensor.detach().float().cpu().numpy().astype(np.float16))


def visualize_feature_map(raw: np.ndarray, *, size: int = 224):
    """PCA of a feature map ``(h, w, D)`` to RGB, upscaled (nearest) to ``size`` pixels: a PIL RGB image."""
    a = np.asarray(raw, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"feature map visualizer: expected (h, w, D), got {a.shape}")
    return to_pil(pca_rgb(np.nan_to_num(a)), size=size)


def visualize_vector(raw: np.ndarray, *, size: int = 224):
    """A global embedding ``(D,)`` drawn as a colour-mapped near-square grid of its values (PIL RGB)."""
    from .images import colormap

    v = np.nan_to_num(np.asarray(raw, dtype=np.float32).reshape(-1))
    if v.size == 0:
        raise ValueError("vector visualizer: empty vector")
    rows = int(np.floor(np.sqrt(v.size)))
    while v.size % rows:
        rows -= 1
    grid = v.reshape(rows, v.size // rows)
    lim = float(np.abs(grid).max()) or 1.0
    return to_pil(colormap(grid, cmap="coolwarm", vmin=-lim, vmax=lim), size=size)


class FeatureModalityComponents:
    """The transform, visualizer and tokenizer factories of a feature-map modality (``dinov2``, ``clip``,
    ``imagebind``) and of its optional global-vector sibling (``dinov2_global``), for a plugin's
    ``components`` module to expose as its entry points::

        _FEATURES = FeatureModalityComponents(modality="dinov2", global_modality="dinov2_global",
                                              channels=768, grid=(16, 16), patch_size=14)
        make_feature_transform = _FEATURES.make_feature_transform

    :param modality: the feature-map modality (named in error messages and given to its tokenizer).
    :param channels: feature dimension ``D`` of both the map ``(h, w, D)`` and the global vector ``(D,)``.
    :param grid: the stored grid ``(h, w)``; :param patch_size: input pixels per feature cell.
    :param global_modality: the global-vector modality, or None when the plugin has none.

    The tokenizer factories take vocabulary size, grid and token count from the spec they are given.
    """

    def __init__(self, *, modality: str, channels: int, grid: tuple[int, int], patch_size: int,
                 global_modality: str | None = None):
        self.modality, self.global_modality = modality, global_modality
        self.channels, self.grid, self.patch_size = int(channels), (int(grid[0]), int(grid[1])), int(patch_size)

    def _global(self) -> str:
        if self.global_modality is None:
            raise ValueError(f"modality {self.modality!r} has no global-vector sibling modality")
        return self.global_modality

    def make_feature_transform(self, raw_size: int = 256) -> FeatureMapTransform:
        """:class:`FeatureMapTransform` of the ``(h, w, D)`` map over a ``raw_size`` raw rgb image."""
        return FeatureMapTransform(grid=self.grid, channels=self.channels, patch_size=self.patch_size,
                                   raw_size=raw_size, modality=self.modality)

    def make_global_transform(self) -> VectorTransform:
        """:class:`VectorTransform` of the ``(D,)`` global vector."""
        return VectorTransform(channels=self.channels, modality=self._global())

    def visualize_features(self, raw: np.ndarray):
        """PCA of the patch features to RGB (PIL image)."""
        return visualize_feature_map(raw)

    def visualize_global(self, raw: np.ndarray):
        """The global embedding as a colour-mapped near-square grid of its values (PIL image)."""
        return visualize_vector(raw)

    def make_feature_tokenizer(self, *, spec: Any, **overrides: Any):
        """Untrained cosine-loss ViT VQ-VAE over ``spec``'s ``(D, h, w)`` map: patch 1 → ``h × w`` tokens of
        ``spec.vocab_size`` codes (``D``: the storage's last axis)."""
        from .feature_tokenizers import feature_map_tokenizer, stored_channels

        return feature_map_tokenizer(channels=stored_channels(spec), grid=spec.grid, vocab_size=spec.vocab_size,
                                     modality=spec.name, **overrides)

    def make_global_tokenizer(self, *, spec: Any, **overrides: Any):
        """Untrained cosine-loss MLP VQ: ``spec``'s ``D`` vector → ``spec.num_tokens`` tokens."""
        from .feature_tokenizers import stored_channels, vector_tokenizer

        return vector_tokenizer(dim=stored_channels(spec), num_tokens=spec.num_tokens, vocab_size=spec.vocab_size,
                                modality=spec.name, **overrides)
