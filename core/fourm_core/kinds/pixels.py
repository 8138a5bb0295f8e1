"""``pixels``: raw images the encoder reads through a linear patch projection (input only, ``spec.grid`` patches).

The tensor of a pixels modality is made in one place, :func:`pixel_tensor`, for the training loader and the
any-to-any API alike: the plugin's transform crops and resizes the raw array and converts it to a tensor
(the rgb plugin normalises with ImageNet statistics); a spec without a transform gets
:func:`fourm_core.plugin_kit.images.pixels_to_tensor`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from fourm_registry import ModalitySpec

from ..errors import GenerationError, ModDictError
from .base import KindAdapter, to_numpy_image
from .image import check_saved_grid


def pixel_tensor(spec: ModalitySpec, transform: Any, images: list[np.ndarray]) -> Tensor:
    """Cropped ``(H, W, C)`` arrays of ``spec`` → float ``(B, C, H, W)`` through the plugin's transform."""
    if transform is not None and hasattr(transform, "to_tensor"):
        return transform.to_tensor(images)
    from ..plugin_kit.images import pixels_to_tensor

    return pixels_to_tensor(images)


class PixelsKind(KindAdapter):
    name = "pixels"
    image_like = True
    loader_uses_crop = True
    rgb_input = True
    mask_layout = "patches"

    def num_slots(self, spec: ModalitySpec) -> int:
        return spec.num_tokens

    def placeholder(self, spec: ModalitySpec) -> Tensor:
        h, w = spec.image_size
        return torch.zeros(spec.channels, h, w, dtype=torch.float32)

    def crop_size(self, spec: ModalitySpec) -> tuple[int, int] | None:
        return tuple(spec.image_size)

    def loader_tensor(self, spec: ModalitySpec, raw: Any, crop: Any, transform: Any) -> Tensor:
        top, left, h, w, flip = (int(v) for v in crop)
        box, size = (top, left, h, w), spec.image_size
        if transform is not None:
            img = transform.crop(raw, box=box, flip=bool(flip), size=size)
        else:
            from ..plugin_kit.images import crop_resize

            img = crop_resize(raw, box, size, flip=bool(flip))
        return pixel_tensor(spec, transform, [img])[0]

    def position_layout(self, spec: ModalitySpec, cfg: Any) -> tuple[int, ...]:
        return tuple(spec.grid)

    def encoder_embedding(self, spec: ModalitySpec, cfg: Any, vocab_size: int | None) -> torch.nn.Module:
        from ..model.embeddings import PatchEncoderEmbedding

        return PatchEncoderEmbedding(spec, cfg)

    def check_model_tensor(self, spec: ModalitySpec, t: Tensor, vocab_size: int | None) -> int:
        exp = (spec.channels, *spec.image_size)
        if t.ndim != 4 or tuple(t.shape[1:]) != exp or not t.is_floating_point():
            raise ModDictError(f"mod_dict[{spec.name!r}]['tensor'] must be float (B, {exp[0]}, {exp[1]}, {exp[2]}) "
                               f"pixels, got {t.dtype} {tuple(t.shape)}")
        return spec.num_tokens

    def random_entry(self, spec: ModalitySpec, g: torch.Generator, batch: int, vocab_size: int | None) -> dict:
        from ..model.testing import token_entry

        h, w = spec.image_size
        entry = token_entry(g, batch, spec.num_tokens, 2, False)
        return {"tensor": torch.randn(batch, spec.channels, h, w, generator=g), "input_mask": entry["input_mask"]}

    def checkpoint_layout(self, spec: ModalitySpec, entry: dict[str, Any], name: str) -> dict[str, Any]:
        return check_saved_grid(spec, entry, name)

    def prepare_input(self, spec: ModalitySpec, t: Tensor, *, vocab_size: int | None,
                      sequence_mask: Any) -> tuple[Tensor, Tensor]:
        c, (h, w) = spec.channels, spec.image_size
        if t.ndim != 4 or tuple(t.shape[1:]) != (c, h, w):
            raise GenerationError(f"input {spec.name!r}: expected normalised pixels of shape (B, {c}, {h}, {w}), "
                                    f"got {tuple(t.shape)}")
        t = t.float()
        return t, torch.zeros((t.shape[0], spec.num_tokens), dtype=torch.bool, device=t.device)

    def encode_raw(self, spec: ModalitySpec, values: list[Any], api: Any) -> Tensor:
        images = [self._image(spec, v, api) for v in values]
        return pixel_tensor(spec, api.transform(spec), images)

    @staticmethod
    def _image(spec: ModalitySpec, value: Any, api: Any) -> np.ndarray:
        """A raw input (PIL / array / tensor) → centre square crop at ``spec.image_size``, uint8."""
        raw = to_numpy_image(value, spec.name)
        if raw.shape[2] != spec.channels:
            raise GenerationError(f"input {spec.name!r}: expected an image with {spec.channels} channels, "
                                    f"got shape {raw.shape}")
        if raw.dtype != np.uint8:
            if np.issubdtype(raw.dtype, np.floating) and raw.max() <= 1.0 + 1e-6 and raw.min() >= 0:
                raw = np.rint(raw * 255).astype(np.uint8)
            else:
                raise GenerationError(f"input {spec.name!r}: expected uint8 pixels (or floats in [0, 1]), "
                                        f"got {raw.dtype}")
        return np.ascontiguousarray(api.square_resize(spec, raw, spec.image_size))
