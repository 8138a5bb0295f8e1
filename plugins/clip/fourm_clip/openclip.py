"""A batched open_clip vision-tower feature extractor, shared by ``clip`` and ``imagebind``.

``weights`` strings: ``MODEL:PRETRAINED`` where PRETRAINED is an open_clip tag (``openai``,
``laion2b_s32b_b79k``) or a local weights file (``ViT-B-16:/models/clip_b16.pt``); or ``hf-hub:org/name`` /
``local-dir:/path`` (open_clip schemas, config and weights together). Custom model configs (e.g. tiny test
models) are added with ``open_clip.add_model_config(dir_or_json)`` before use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from fourm_core.plugin_kit.features import preprocess_uint8
from fourm_core.plugin_kit.hub import WeightsNotAvailableError, resolve_device
from fourm_core.plugin_kit.labelers import ModelCache

log = logging.getLogger(__name__)
_CACHE: ModelCache[OpenClipExtractor] = ModelCache()


def parse_weights(weights: str, modality: str) -> tuple[str, str | None]:
    """``"MODEL:PRETRAINED"`` → (model, pretrained); schema strings (``hf-hub:``, ``local-dir:``) → (weights, None)."""
    if weights.startswith(("hf-hub:", "local-dir:")):
        return weights, None
    model, sep, pretrained = weights.partition(":")
    if not sep or not model or not pretrained:
        raise ValueError(
            f"weights {weights!r} for modality {modality!r}: expected 'MODEL:PRETRAINED' (an open_clip model name "
            f"and a pretrained tag or weights file, e.g. 'ViT-B-16:openai' or 'ViT-B-16:/path/weights.pt'), "
            f"or 'hf-hub:org/name' / 'local-dir:/path'"
        )
    return model, pretrained


def _looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or os.sep in value or value.endswith((".pt", ".bin", ".pth", ".safetensors"))


def _missing_help(weights: str, model_name: str, pretrained: str | None, modality: str) -> str:
    """What to do when open_clip weights are not available offline."""
    import open_clip

    hub = None
    if model_name.startswith("hf-hub:"):
        hub = model_name[len("hf-hub:"):]
    elif pretrained is not None:
        hub = (open_clip.get_pretrained_cfg(model_name, pretrained) or {}).get("hf_hub", "").strip("/") or None
    fetch = f"`huggingface-cli download {hub}`" if hub else "download them"
    return (
        f"open_clip weights {weights!r} for modality {modality!r} are not available locally. On a machine with "
        f"network access run {fetch} and copy the weights file here, then pass "
        f"`--weights {modality}={model_name if not model_name.startswith(('hf-hub:', 'local-dir:')) else 'MODEL'}:"
        f"/path/to/open_clip_pytorch_model.bin` (or `local-dir:/path/to/dir` for a directory with "
        f"open_clip_config.json), Python: `weights='MODEL:/path/to/file'`"
    )


class OpenClipExtractor:
    """Loads an open_clip model once and returns the vision tower's outputs for uint8 images.

    :meth:`run` returns ``(pooled, tokens)``: ``pooled`` (B, width) is the layer-normed class token *before*
    the projection, ``tokens`` (B, h, w, width) the layer-normed patch tokens; :meth:`project` maps either to
    the joint embedding space (``width → embed_dim``).
    """

    def __init__(self, weights: str, device: str = "cpu", *, modality: str):
        import open_clip
        from open_clip.transformer import VisionTransformer

        self.weights, self.device, self.modality = weights, device, modality
        model_name, pretrained = parse_weights(weights, modality)
        is_schema = pretrained is None
        if not is_schema and model_name not in open_clip.list_models():
            raise ValueError(
                f"weights {weights!r} for modality {modality!r}: unknown open_clip model {model_name!r}; known: "
                f"{', '.join(open_clip.list_models()[:40])}, ... (add custom configs with open_clip.add_model_config)"
            )
        if pretrained is not None and _looks_like_path(pretrained) and not os.path.exists(os.path.expanduser(pretrained)):
            raise WeightsNotAvailableError(
                f"weights file {pretrained!r} for modality {modality!r} does not exist; pass "
                f"'{model_name}:/path/to/open_clip_pytorch_model.bin' (a state dict of that model) or a known tag"
            )
        if pretrained is not None and _looks_like_path(pretrained):
            pretrained = os.path.expanduser(pretrained)
        try:
            model = open_clip.create_model(model_name, pretrained=pretrained, device=device, require_pretrained=True)
        except Exception as exc:  # noqa: BLE001 - open_clip raises RuntimeError/OSError/hub errors for missing weights
            text = f"{type(exc).__name__}: {exc}"
            missing = isinstance(exc, OSError) or any(
                k in text.lower() for k in ("not found", "offline", "connect", "no such file", "hub", "download"))
            if not missing:
                raise
            raise WeightsNotAvailableError(_missing_help(weights, model_name, pretrained, modality) + f" (cause: {text[:300]})") from exc
        visual = model.visual
        if not isinstance(visual, VisionTransformer):
            raise ValueError(
                f"weights {weights!r} for modality {modality!r}: the vision tower is a {type(visual).__name__}; "
                f"patch features need an open_clip VisionTransformer tower (ViT-*)"
            )
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", visual.image_size)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
        self.grid = tuple(int(g) for g in visual.grid_size)
        # Keep the projection ourselves: the tower then returns the un-projected pooled token as well.
        self.proj = None if visual.proj is None else visual.proj.detach().clone()
        visual.proj = None
        visual.output_tokens = True
        self.visual = visual.eval()
        del model  # the text tower is not needed
        self.width = int(visual.transformer.width)
        self.embed_dim = int(self.proj.shape[1]) if self.proj is not None else self.width

    def run(self, images: Sequence[np.ndarray]) -> tuple[Any, Any]:
        """uint8 (H, W, 3) images → (pooled (B, width), tokens (B, h, w, width)), float32 tensors."""
        import torch

        x = preprocess_uint8(images, self.image_size, self.mean, self.std, device=self.device,
                             what=f"labeler for {self.modality!r}")
        with torch.inference_mode():
            pooled, tokens = self.visual(x)  # (B, width), (B, h*w, width)
        return pooled.float(), tokens.float().reshape(len(images), *self.grid, -1)

    def project(self, x: Any) -> Any:
        """Map width-d features to the joint embedding space (identity if the tower has no projection)."""
        if self.proj is None:
            return x
        return x @ self.proj.to(x.device, x.dtype)


def get_extractor(weights: str, device: str, *, modality: str) -> OpenClipExtractor:
    """A cached extractor per (weights, device): ``imagebind`` and ``imagebind_global`` load ViT-H once."""
    device = resolve_device(device)
    return _CACHE.get((weights, device), lambda: OpenClipExtractor(weights, device, modality=modality))
