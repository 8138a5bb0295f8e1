"""SAM automatic mask generation with transformers' ``SamModel``, batched (reusable: ``sam_edge`` and any
plugin that wants SAM masks import :class:`SamRunner`).

Algorithm (the one of the SAM paper's automatic mask generator, single crop level):

1. the whole square image is resized to the model's input size (1024 px for the released checkpoints) and
   normalised with ImageNet statistics; the image embedding is computed once per image (batched);
2. a regular ``points_per_side`` × ``points_per_side`` grid of single-point prompts is decoded in batches of
   ``points_per_batch`` prompts, three candidate masks each (``multimask_output``);
3. candidates are kept when the predicted IoU ≥ ``pred_iou_thresh`` and the stability score (IoU of the mask
   logits thresholded at ``+offset`` and ``-offset``) ≥ ``stability_score_thresh``, both computed on the
   decoder's low-resolution logits (256 × 256 for the released models: the raw size of a default store);
4. duplicates are removed by box non-maximum suppression (``box_nms_thresh``, boxes scaled to raw pixels)
   ranked by predicted IoU;
5. only the survivors' logits are upsampled (bilinear) to the raw image size and thresholded at 0, and masks
   of at most ``min_mask_area`` pixels are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from fourm_core.plugin_kit.features import preprocess_uint8
from fourm_core.plugin_kit.images import IMAGENET_MEAN, IMAGENET_STD
from fourm_core.plugin_kit.hub import resolve_device
from fourm_core.plugin_kit.labelers import ModelCache, load_model

from .masks import encode_instances
from .plugin import DEFAULT_WEIGHTS

log = logging.getLogger(__name__)
_CACHE: ModelCache[Any] = ModelCache()


def load_sam(weights: str, device: str, modality: str = "sam_instance") -> Any:
    """A ``SamModel`` in eval mode, cached per (weights, device)."""
    from transformers import SamModel

    return _CACHE.get((weights, device),
                      lambda: load_model(SamModel.from_pretrained, weights, modality=modality, device=device))


class SamRunner:
    """Automatic mask generation: ``runner(images) -> list[stored sample]`` (see :mod:`.masks`).

    :param weights: hub id or local ``save_pretrained`` directory of a transformers ``SamModel``.
    :param device: ``cpu``, ``cuda`` or ``auto``.
    :param batch_size: images per image-encoder pass.
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 4, *,
                 points_per_side: int = 16, points_per_batch: int = 64, pred_iou_thresh: float = 0.88,
                 stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0,
                 box_nms_thresh: float = 0.7, min_mask_area: int = 0, modality: str = "sam_instance"):
        if points_per_side < 1 or points_per_batch < 1:
            raise ValueError(f"{modality}: points_per_side and points_per_batch must be >= 1")
        self.weights = weights or DEFAULT_WEIGHTS
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.points_per_side = int(points_per_side)
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.min_mask_area = int(min_mask_area)
        self.modality = modality
        self.model = load_sam(self.weights, self.device, modality)
        self.input_size = int(self.model.config.vision_config.image_size)

    def grid_points(self) -> np.ndarray:
        """(P, 2) xy prompt points in model-input pixels: cell centres of a regular grid."""
        n = self.points_per_side
        c = (np.arange(n) + 0.5) / n * self.input_size
        xx, yy = np.meshgrid(c, c)
        return np.stack([xx.reshape(-1), yy.reshape(-1)], axis=1).astype(np.float32)

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        import torch

        out: list[dict[str, Any]] = []
        for start in range(0, len(images), self.batch_size):
            chunk = list(images[start : start + self.batch_size])
            x = preprocess_uint8(chunk, self.input_size, IMAGENET_MEAN, IMAGENET_STD, device=self.device,
                                 what=f"labeler for {self.modality!r}")
            with torch.inference_mode():
                embeddings = self.model.get_image_embeddings(x)  # (B, C, h, w)
                for k, image in enumerate(chunk):
                    out.append(self._generate(embeddings[k : k + 1], tuple(image.shape[:2])))
        return out

    def _generate(self, embedding: Any, size: tuple[int, int]) -> dict[str, Any]:
        import torch
        import torch.nn.functional as F
        from torchvision.ops import batched_nms

        points = torch.from_numpy(self.grid_points()).to(embedding.device)
        logits_all, scores_all = [], []
        for start in range(0, len(points), self.points_per_batch):
            pts = points[start : start + self.points_per_batch]  # (P, 2)
            p = pts.shape[0]
            res = self.model(image_embeddings=embedding, input_points=pts.view(1, p, 1, 2),
                             input_labels=torch.ones(1, p, 1, dtype=torch.long, device=pts.device),
                             multimask_output=True)
            logits = res.pred_masks[0].flatten(0, 1).float()  # (P*3, h', w') low-resolution logits
            iou = res.iou_scores[0].flatten().float()  # (P*3,)
            # Filter on the low-resolution logits (256 x 256 for the released models, the raw size here):
            # predicted IoU, stability (IoU of the masks thresholded at +offset and -offset), non-empty.
            off = self.stability_score_offset
            inter = (logits > off).flatten(1).sum(1).float()
            union = (logits > -off).flatten(1).sum(1).float().clamp_min(1)
            keep = (iou >= self.pred_iou_thresh) & (inter / union >= self.stability_score_thresh)
            keep &= (logits > 0).flatten(1).any(1)
            logits_all.append(logits[keep])
            scores_all.append(iou[keep])
        logits = torch.cat(logits_all) if logits_all else torch.zeros(0)
        empty = {"size": [int(size[0]), int(size[1])], "instances": []}
        if len(logits) == 0:
            return empty
        scores = torch.cat(scores_all)
        lh, lw = logits.shape[-2:]
        boxes = _boxes_of(logits > 0) * torch.tensor([size[1] / lw, size[0] / lh] * 2, device=logits.device)
        kept = batched_nms(boxes, scores, torch.zeros(len(boxes), dtype=torch.long, device=boxes.device),
                           self.box_nms_thresh)
        # only the survivors are upsampled to the raw size
        masks = F.interpolate(logits[kept][:, None], size=size, mode="bilinear", align_corners=False)[:, 0] > 0
        scores = scores[kept]
        big = masks.flatten(1).sum(1) > max(self.min_mask_area, 0)
        if not bool(big.any()):
            return empty
        return encode_instances(masks[big].cpu().numpy(), scores=scores[big].cpu().tolist())


def _boxes_of(masks: Any) -> Any:
    """Tight xyxy pixel boxes (x1, y1 exclusive) of boolean masks (K, H, W), as float tensors."""
    import torch

    k, h, w = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (K, H), (K, W)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ar_h, h).min(dim=1).values
    y1 = torch.where(rows, ar_h, -1).max(dim=1).values + 1
    x0 = torch.where(cols, ar_w, w).min(dim=1).values
    x1 = torch.where(cols, ar_w, -1).max(dim=1).values + 1
    return torch.stack([x0, y0, x1, y1], dim=1).float()
