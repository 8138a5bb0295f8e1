"""Components of the ``semseg`` modality.

Raw form: uint8 ``(H, W, 1)`` class ids; with the default weights these are COCO panoptic's 133 contiguous
classes (80 things then 53 stuff classes, :data:`COCO_PANOPTIC_CLASSES`), and 255 marks ignored pixels.
Other weights store their own ``id2label`` ids (which must fit in 0..254); the labeler warns when a
model's labels are not COCO panoptic's.

Augmentation: crops and resizes use **nearest** resampling (ids are never blended); a flip mirrors the map.
Tensors: float32 ``(B, 1, H, W)`` holding the class ids; :meth:`SemsegTransform.from_tensor` also accepts
per-class scores ``(B, K, H, W)`` (argmax).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from fourm_core.plugin_kit.coco import COCO_PANOPTIC_CLASSES
from fourm_core.plugin_kit.hub import load_pretrained, resolve_device
from fourm_core.plugin_kit.images import crop_resize, fixed_palette, stack_hwc, to_pil
from fourm_core.plugin_kit.labelers import (
    check_batch_size,
    compute_dtype,
    label_rgb_batches,
    load_processor_and_model,
)

if TYPE_CHECKING:
    from fourm_registry import ModalitySpec

log = logging.getLogger(__name__)
MODALITY = "semseg"
IGNORE_INDEX = 255

NUM_CLASSES = len(COCO_PANOPTIC_CLASSES)


def _check_semseg(raw: Any, where: str) -> np.ndarray:
    if not isinstance(raw, np.ndarray) or raw.ndim != 3 or raw.shape[2] != 1 or raw.dtype != np.uint8:
        desc = f"{raw.dtype} {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
        raise ValueError(f"modality 'semseg' ({where}): expected a uint8 (H, W, 1) class-id array, got {desc}")
    return raw


def class_name(class_id: int) -> str:
    """Name of a class id (COCO panoptic), ``ignore`` for 255, ``class <id>`` beyond the table."""
    if class_id == IGNORE_INDEX:
        return "ignore"
    return COCO_PANOPTIC_CLASSES[class_id] if 0 <= class_id < NUM_CLASSES else f"class {class_id}"


class SemsegLabeler:
    """Semantic segmentation with a transformers universal-segmentation model (Mask2Former, MaskFormer,
    OneFormer: ``AutoModelForUniversalSegmentation``) and its processor's ``post_process_semantic_segmentation``.

    :param weights: hub id or local directory (default: the spec's ``default_weights``).
    :param device: ``cpu``, ``cuda``, ``cuda:1``, or ``auto``.
    :param batch_size: images per forward pass.
    :param dtype: compute dtype (``float32``; ``float16``/``bfloat16`` on GPUs).
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 4, *,
                 dtype: str = "float32") -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForUniversalSegmentation, AutoProcessor

        from .plugin import DEFAULT_WEIGHTS

        self.batch_size = check_batch_size(batch_size, MODALITY)
        self.dtype = compute_dtype(dtype, MODALITY)
        self.weights = weights or DEFAULT_WEIGHTS
        self.device = resolve_device(device)
        config = load_pretrained(AutoConfig.from_pretrained, self.weights, modality=MODALITY)
        self.is_oneformer = config.model_type == "oneformer"
        # OneFormer conditions on a task prompt, so it needs the full processor (image processor + tokenizer)
        loader = AutoProcessor.from_pretrained if self.is_oneformer else AutoImageProcessor.from_pretrained
        self.processor, self.model = load_processor_and_model(
            loader, AutoModelForUniversalSegmentation.from_pretrained, self.weights, modality=MODALITY,
            device=self.device, dtype=self.dtype)
        self.id2label = {int(k): v for k, v in (self.model.config.id2label or {}).items()}
        if self.id2label and max(self.id2label) >= IGNORE_INDEX:
            raise ValueError(
                f"labeler of modality 'semseg': weights {self.weights!r} have {len(self.id2label)} classes; class ids "
                f"must be below {IGNORE_INDEX} to fit the uint8 storage (255 = ignore). Use a model with fewer classes"
            )
        names = tuple(self.id2label[i] for i in sorted(self.id2label))
        if names != COCO_PANOPTIC_CLASSES:
            log.warning("semseg labeler: %s has %d classes that are not COCO panoptic's 133; the stored ids follow "
                        "its id2label, and the visualizer's legend names COCO classes", self.weights, len(names))
        log.info("semseg labeler: %s on %s", self.weights, self.device)

    def __call__(self, inputs: dict[str, list]) -> list[np.ndarray]:
        """``inputs["rgb"]``: uint8 (H, W, 3) arrays → uint8 (H, W, 1) class-id maps."""
        return label_rgb_batches(self._label_batch, inputs, MODALITY, self.batch_size)

    def _label_batch(self, rgbs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        if self.is_oneformer:
            enc = self.processor(images=rgbs, task_inputs=["semantic"] * len(rgbs), return_tensors="pt")
        else:
            enc = self.processor(images=rgbs, return_tensors="pt")
        feed = {k: (v.to(self.device, dtype=self.dtype) if v.is_floating_point() else v.to(self.device))
                for k, v in enc.items() if isinstance(v, torch.Tensor)}
        with torch.inference_mode():
            outputs = self.model(**feed)
            sizes = [img.shape[:2] for img in rgbs]
            if hasattr(outputs, "class_queries_logits") and hasattr(outputs, "masks_queries_logits"):
                maps = semantic_maps(outputs.class_queries_logits, outputs.masks_queries_logits,
                                     feed.get("pixel_mask"), sizes)
            else:  # an unusual head: rely on the processor's own post-processing
                post = getattr(self.processor, "image_processor", self.processor)
                maps = post.post_process_semantic_segmentation(outputs, target_sizes=sizes)
        return [m.to(torch.uint8).cpu().numpy()[..., None] for m in maps]


def semantic_maps(class_logits, mask_logits, pixel_mask, target_sizes: list[tuple[int, int]]) -> list:
    """Semantic inference of a mask-classification model (Mask2Former / MaskFormer / OneFormer).

    ``class_logits`` (B, Q, K+1) (last = no object), ``mask_logits`` (B, Q, h, w) over the padded input,
    ``pixel_mask`` (B, Hp, Wp) (1 = real pixel) or None. Per image: crop the mask logits to the unpadded area,
    score classes as ``sum_q softmax(class)_qk * sigmoid(mask)_q`` at the mask resolution, resize the K score maps
    bilinearly to the target size and take the argmax. (Bilinear resizing is linear, so resizing the scores
    equals scoring resized mask probabilities; it avoids the processor's K-channel maps at 384 x 384.)
    Returns a list of (H, W) int64 class-id maps.
    """
    import torch
    import torch.nn.functional as F

    probs = class_logits.float().softmax(dim=-1)[..., :-1]  # (B, Q, K)
    masks = mask_logits.float().sigmoid()  # (B, Q, h, w)
    _, _, h, w = masks.shape
    out = []
    for i, size in enumerate(target_sizes):
        m = masks[i]
        if pixel_mask is not None:
            hp, wp = pixel_mask.shape[-2:]
            valid_h = int(pixel_mask[i].any(dim=1).sum())
            valid_w = int(pixel_mask[i].any(dim=0).sum())
            m = m[:, : max(1, round(valid_h * h / hp)), : max(1, round(valid_w * w / wp))]
        scores = torch.einsum("qk,qhw->khw", probs[i], m)  # (K, h', w')
        keep = _candidate_classes(scores)  # (K',) ids that can win somewhere, ascending
        up = F.interpolate(scores[keep][None], size=tuple(size), mode="bilinear", align_corners=False)[0]
        out.append(keep[up.argmax(dim=0)])  # (H, W)
    return out


def _candidate_classes(scores):
    """Classes that can be the argmax somewhere after bilinear upsampling of ``scores`` (K, h, w).

    An upsampled pixel is a convex combination of the scores of one 2 x 2 window of cells, so class j can win
    there only if its window maximum reaches the best window minimum of any class. Upsampling only these
    classes gives exactly the same argmax, for a fraction of the cost (most of the 133 classes score ~0).
    """
    import torch
    import torch.nn.functional as F

    padded = F.pad(scores[None], (0, 1, 0, 1), mode="replicate")  # windows also cover 1-cell-wide maps
    upper = F.max_pool2d(padded, kernel_size=2, stride=1)[0]  # (K, h, w) window maxima
    lower = -F.max_pool2d(-padded, kernel_size=2, stride=1)[0]  # (K, h, w) window minima
    best_lower = lower.max(dim=0).values  # (h, w)
    return torch.nonzero((upper >= best_lower[None]).flatten(1).any(dim=1)).flatten()


class SemsegTransform:
    """Crop / flip with nearest resampling; tensors hold class ids."""

    def crop(self, raw: np.ndarray, box: tuple[int, int, int, int], flip: bool = False,
             size: tuple[int, int] = (224, 224)) -> np.ndarray:
        return crop_resize(_check_semseg(raw, "crop"), box, size, flip=flip, interpolation="nearest")

    def to_tensor(self, raws: list[np.ndarray]):
        """uint8 (H, W, 1) → float32 tensor (B, 1, H, W) of class ids (255 = ignore)."""
        import torch

        batch = stack_hwc([_check_semseg(r, "to_tensor") for r in raws], "modality 'semseg'")
        return torch.from_numpy(batch).permute(0, 3, 1, 2).float()

    def from_tensor(self, x) -> list[np.ndarray]:
        """(B, 1, H, W) class ids, or (B, K, H, W) per-class scores (argmax) → uint8 (H, W, 1) maps."""
        import torch

        if x.ndim != 4:
            raise ValueError(f"modality 'semseg': from_tensor expects (B, 1, H, W) ids or (B, K, H, W) scores, "
                             f"got {tuple(x.shape)}")
        ids = x.detach().argmax(dim=1) if x.shape[1] > 1 else x.detach()[:, 0].float().round()
        ids = ids.clamp(0, IGNORE_INDEX).to(torch.uint8)  # (B, H, W)
        return list(ids[..., None].cpu().numpy())


_PALETTE: np.ndarray | None = None


def palette() -> np.ndarray:
    """(256, 3) uint8 colours: a fixed colour per class id, black for 255 (ignore)."""
    global _PALETTE
    if _PALETTE is None:
        table = np.zeros((256, 3), np.uint8)
        table[:IGNORE_INDEX] = fixed_palette(IGNORE_INDEX, seed=0)
        _PALETTE = table
    return _PALETTE


def visualize(raw: np.ndarray, *, max_legend: int = 14):
    """Class map in a fixed palette, with a legend of the classes present (largest first)."""
    from PIL import Image, ImageDraw

    ids = _check_semseg(np.asarray(raw), "visualize")[..., 0]
    colours = palette()[ids]  # (H, W, 3)
    img = to_pil(colours)
    present, counts = np.unique(ids, return_counts=True)
    order = present[np.argsort(-counts, kind="stable")]
    row_h, legend_w = 16, 170
    canvas = Image.new("RGB", (img.width + legend_w, max(img.height, row_h * 2)), (255, 255, 255))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    rows = max(1, min(max_legend, canvas.height // row_h - 1))
    shown = order[:rows]
    for i, cid in enumerate(shown):
        y = 4 + i * row_h
        x = img.width + 6
        draw.rectangle([x, y, x + 12, y + 12], fill=tuple(int(c) for c in palette()[cid]), outline=(0, 0, 0))
        draw.text((x + 18, y), f"{int(cid)} {class_name(int(cid))}"[:24], fill=(0, 0, 0))
    if len(order) > len(shown):
        draw.text((img.width + 6, 4 + len(shown) * row_h), f"+{len(order) - len(shown)} more", fill=(0, 0, 0))
    return canvas


def make_tokenizer(*, spec: ModalitySpec, **overrides: Any):
    """Untrained semseg tokenizer: ViT VQ-VAE over one-hot class maps (133 classes, 255 ignored) with 16 px
    patches, one token per cell of the spec's grid (224 px for 14 x 14), the spec's vocabulary, cross-entropy
    loss. ``overrides`` replace any constructor argument."""
    from fourm_core.plugin_kit.feature_tokenizers import stored_channels, vit_layout
    from fourm_core.tokenizers import ViTVQVAE

    config: dict[str, Any] = dict(in_channels=stored_channels(spec), **vit_layout(spec, patch_size=16),
                                  vocab_size=spec.vocab_size, loss="ce", num_classes=NUM_CLASSES)
    config.update(overrides)
    return ViTVQVAE(**config)
