"""sam_instance components: labeler (SAM automatic mask generation), crop transform, serializer, visualizer,
the mask tokenizer (16 tokens per instance) and a small trainer for it.

How raw data follows a crop: masks are cut to the crop box, flipped and resized with nearest resampling;
boxes and areas are recomputed from the cut masks and instances that leave the crop are dropped (see
:func:`fourm_sam_instance.masks.crop_instances`). Mask tokens are recomputed after the crop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from .masks import box_crops, check_raw, crop_instances, decode_instances, paste_box_crops
from .runner import DEFAULT_WEIGHTS, SamRunner
from .serializer import MASK_CODES, MASK_TOKENS, SamInstanceSerializer

log = logging.getLogger(__name__)
MASK_SIZE = 64


class SamInstanceLabeler:
    """SAM instance masks of rgb images → stored samples (JSON, see :mod:`fourm_sam_instance.masks`).

    :param weights: transformers ``SamModel`` hub id or local directory (default ``facebook/sam-vit-base``).
    :param device: ``cpu``, ``cuda`` or ``auto``.
    :param batch_size: images per image-encoder pass.
    :param kw: automatic-mask-generation settings of :class:`~fourm_sam_instance.runner.SamRunner`
        (``points_per_side``, ``pred_iou_thresh``, ``stability_score_thresh``, ``box_nms_thresh``, ...).
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 4, **kw: Any):
        self.runner = SamRunner(weights or DEFAULT_WEIGHTS, device, batch_size, **kw)
        self.batch_size = self.runner.batch_size

    def __call__(self, inputs: dict[str, list[np.ndarray]]) -> list[dict[str, Any]]:
        from fourm_core.plugin_kit.labelers import require_rgb

        return self.runner(require_rgb(inputs, "sam_instance"))


class SamInstanceTransform:
    """Crops stored samples (masks follow the crop; see the module docstring). Points-form raws (decoded
    model outputs) are already in crop coordinates and are returned unchanged."""

    def crop(self, raw: dict[str, Any], box: tuple[int, int, int, int], flip: bool = False,
             size: tuple[int, int] | None = None) -> dict[str, Any]:
        if isinstance(raw, dict) and "points" in raw:
            return raw
        return crop_instances(raw, box, flip=flip, size=size)


def make_serializer(**kw: Any) -> SamInstanceSerializer:
    """The serializer factory (``spec.serializer``); keyword arguments as :class:`SamInstanceSerializer`."""
    return SamInstanceSerializer(**kw)


def make_mask_tokenizer(**overrides: Any):
    """Untrained mask tokenizer: ViT VQ-VAE over 64 × 64 binary box crops, 16 px patches → 16 tokens,
    1024 codes (what the serializer writes as ``v0=``/``v1=`` tokens), MSE loss."""
    from fourm_core.tokenizers import ViTVQVAE

    config: dict[str, Any] = dict(modality="sam_instance", in_channels=1, image_size=MASK_SIZE, patch_size=16,
                                  dim=256, depth=4, num_heads=4, codebook_size=MASK_CODES, code_dim=32, loss="mse")
    config.update(overrides)
    tok = ViTVQVAE(**config)
    if tok.num_tokens != MASK_TOKENS or tok.vocab_size > MASK_CODES:
        raise ValueError(f"sam_instance mask tokenizer must give {MASK_TOKENS} tokens of <= {MASK_CODES} codes, "
                         f"got {tok.num_tokens} tokens of {tok.vocab_size}")
    return tok


def mask_training_crops(raws: Iterable[dict[str, Any]]) -> np.ndarray:
    """Every instance of the stored samples cut to its box at 64 × 64: float32 (N, 1, 64, 64) in {0, 1}."""
    out = []
    for raw in raws:
        masks = decode_instances(raw)
        if len(masks):
            h, w = raw["size"]
            boxes = np.array([i["box"] for i in raw["instances"]]) * np.array([w, h, w, h])
            out.append(box_crops(masks, boxes, MASK_SIZE))
    return np.concatenate(out) if out else np.zeros((0, 1, MASK_SIZE, MASK_SIZE), np.float32)


def train_mask_tokenizer(raws: Iterable[dict[str, Any]], out_dir: str | None = None, *, steps: int = 2000,
                         batch_size: int = 64, lr: float = 1e-3, seed: int = 0, tokenizer: Any = None,
                         device: str = "cpu") -> tuple[Any, list[float]]:
    """Train the mask tokenizer on the instances of ``raws`` (random horizontal flips) and save it to
    ``out_dir`` (then pass it as ``mask_tokenizer=out_dir`` or ``$FOURM_SAM_MASK_TOKENIZER``).
    Returns (tokenizer, per-step losses)."""
    import torch

    data = torch.from_numpy(mask_training_crops(raws))
    if len(data) == 0:
        raise ValueError("sam_instance: no instances to train the mask tokenizer on; label some images first")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tok = (tokenizer or make_mask_tokenizer()).to(device).train()
    opt = torch.optim.AdamW(tok.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(data), (min(batch_size, len(data)),), generator=gen)
        x = data[idx]
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x).to(device)
        loss, _ = tok.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    tok.eval()
    if out_dir is not None:
        tok.save_pretrained(out_dir)
        log.info("saved the sam_instance mask tokenizer to %s", out_dir)
    return tok, losses


def decode_points_masks(points_raw: dict[str, Any], mask_tokenizer: Any, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """Masks (N, H, W) of the distinct instances of a points-form raw, decoded with the mask tokenizer."""
    import torch

    seen: dict[tuple, dict[str, Any]] = {}
    for group in points_raw["points"]:
        for inst in group["instances"]:
            seen.setdefault((tuple(inst["box"]), tuple(inst["tokens"])), inst)
    if not seen:
        return np.zeros((0, *size), dtype=bool)
    insts = list(seen.values())
    with torch.no_grad():
        crops = mask_tokenizer.decode(torch.tensor([i["tokens"] for i in insts], dtype=torch.long))
    return paste_box_crops(crops[:, 0].clamp(0, 1).cpu().numpy(), np.array([i["box"] for i in insts]), size)


def visualize(raw: dict[str, Any], *, size: int = 256):
    """Stored sample: each instance in its own colour (largest first, smaller on top) with white outlines.
    Points form: instance boxes in colour and the query points as white dots (red when they hit nothing)."""
    import cv2

    from fourm_core.plugin_kit.images import fixed_palette, to_pil

    if isinstance(raw, dict) and "points" in raw:
        canvas = np.zeros((size, size, 3), np.uint8)
        palette = fixed_palette(64)
        boxes: dict[tuple, int] = {}
        for group in raw["points"]:
            for inst in group["instances"]:
                key = tuple(inst["box"])
                k = boxes.setdefault(key, len(boxes))
                x0, y0, x1, y1 = (int(round(v * (size - 1))) for v in inst["box"])
                cv2.rectangle(canvas, (x0, y0), (x1, y1), tuple(int(c) for c in palette[k % 64]), 2)
        for group in raw["points"]:
            x, y = (int(round(v * (size - 1))) for v in group["xy"])
            colour = (255, 255, 255) if group["instances"] else (255, 40, 40)
            cv2.circle(canvas, (x, y), 4, colour, -1)
        return to_pil(canvas)
    check_raw(raw)
    masks = decode_instances(raw)
    h, w = raw["size"]
    canvas = np.zeros((h, w, 3), np.uint8)
    palette = fixed_palette(max(len(masks), 1))
    for k, m in enumerate(masks):  # sorted by decreasing area: small instances end up on top
        canvas[m] = palette[k]
    if len(masks):
        from .masks import boundaries

        canvas[boundaries(masks)] = 255
    return to_pil(canvas, size=size)
