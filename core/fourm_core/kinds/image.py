"""``image``: a fixed grid of VQ token ids (``spec.grid``), produced by an image tokenizer from raw arrays."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from fourm_registry import ModalitySpec

from ..errors import CheckpointError
from .base import TokenKind, to_numpy_image


class ImageKind(TokenKind):
    name = "image"
    image_like = True
    generation_defaults = {"scheme": "maskgit", "steps": 8, "temperature": 1.0, "token_schedule": "cosine",
                           "guidance": 1.0}

    def position_layout(self, spec: ModalitySpec, cfg: Any) -> tuple[int, ...]:
        return tuple(spec.grid)

    def checkpoint_layout(self, spec: ModalitySpec, entry: dict[str, Any], name: str) -> dict[str, Any]:
        return check_saved_grid(spec, entry, name)

    def encode_values(self, spec: ModalitySpec, values: list[Any], api: Any) -> Tensor:
        codec = api.codec(spec.name)
        size = api.codec_size(spec, codec)
        prepared = [api.square_resize(spec, to_numpy_image(v, spec.name), size) for v in values]
        return api.codec_encode(codec, spec, prepared)


def check_saved_grid(spec: ModalitySpec, entry: dict[str, Any], name: str) -> dict[str, Any]:
    """A checkpoint's grid must be the installed plugin's (position tables and patch counts depend on it)."""
    if entry.get("grid") and tuple(entry["grid"]) != spec.grid:
        raise CheckpointError(f"checkpoint modality {name!r} has a {tuple(entry['grid'])} grid but the installed "
                              f"{spec.plugin} {spec.version} has {spec.grid}; install the plugin version "
                              f"{entry.get('version')} the checkpoint was trained with")
    return {}
