"""Components of the ``canny_edge`` modality.

Raw form: uint8 ``(H, W, 1)`` with 255 on edge pixels and 0 elsewhere: OpenCV's Canny detector on the
grey-scale image after a Gaussian blur. Thresholds are either fixed (``low_threshold``/``high_threshold``) or,
by default, derived per image from its median grey level ``m``: ``low = max(0, (1 - sigma) m)``,
``high = min(255, (1 + sigma) m)`` (a common automatic choice that adapts to exposure).

Augmentation: a crop resamples the edge map bilinearly as a [0, 1] float and re-binarises it at
:data:`EDGE_THRESHOLD` (so one-pixel edges survive mild down-scaling); a flip mirrors the map.
Tensors: float32 ``(B, 1, H, W)`` in {0, 1}; :meth:`EdgeTransform.from_tensor` binarises at 0.5.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fourm_core.plugin_kit.images import crop_resize, rgb_inputs, stack_hwc, to_pil

if TYPE_CHECKING:
    from fourm_registry import ModalitySpec

MODALITY = "canny_edge"
#: after bilinear resampling, pixels at or above this fraction of an edge stay edges
EDGE_THRESHOLD = 0.3


def _check_edges(raw: Any, where: str) -> np.ndarray:
    if not isinstance(raw, np.ndarray) or raw.ndim != 3 or raw.shape[2] != 1 or raw.dtype != np.uint8:
        desc = f"{raw.dtype} {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
        raise ValueError(f"modality 'canny_edge' ({where}): expected a uint8 (H, W, 1) edge map, got {desc}")
    return raw


class CannyLabeler:
    """OpenCV Canny edges (weight-free).

    :param weights: must be None (the labeler has no weights); accepted for the labeler contract.
    :param device: accepted for the labeler contract; Canny runs on the CPU.
    :param batch_size: images per call chunk (the job's batching hint).
    :param low_threshold, high_threshold: fixed hysteresis thresholds (both or neither); None → automatic.
    :param sigma: spread of the automatic thresholds around the median grey level.
    :param blur_sigma: Gaussian blur before Canny (0 disables it).
    :param l2_gradient: use the exact gradient magnitude (OpenCV's ``L2gradient``).
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 64, *,
                 low_threshold: float | None = None, high_threshold: float | None = None, sigma: float = 0.33,
                 blur_sigma: float = 1.0, l2_gradient: bool = True) -> None:
        if weights is not None:
            raise ValueError(f"labeler of modality 'canny_edge' is weight-free; got weights={weights!r} "
                             f"(drop --weights canny_edge=...)")
        if (low_threshold is None) != (high_threshold is None):
            raise ValueError("labeler of modality 'canny_edge': give both low_threshold and high_threshold, or neither "
                             "(automatic thresholds)")
        if low_threshold is not None and not 0 <= low_threshold <= high_threshold:
            raise ValueError(f"labeler of modality 'canny_edge': need 0 <= low_threshold <= high_threshold, got "
                             f"{low_threshold}, {high_threshold}")
        if not 0 <= sigma < 1:
            raise ValueError(f"labeler of modality 'canny_edge': sigma must be in [0, 1), got {sigma}")
        if batch_size < 1:
            raise ValueError(f"labeler of modality 'canny_edge': batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = device
        self.low_threshold, self.high_threshold = low_threshold, high_threshold
        self.sigma, self.blur_sigma, self.l2_gradient = float(sigma), float(blur_sigma), bool(l2_gradient)

    def thresholds(self, gray: np.ndarray) -> tuple[float, float]:
        """The (low, high) hysteresis thresholds used for a grey-scale image."""
        if self.low_threshold is not None:
            return float(self.low_threshold), float(self.high_threshold)
        m = float(np.median(gray))
        return max(0.0, (1.0 - self.sigma) * m), min(255.0, (1.0 + self.sigma) * m)

    def edges(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) → uint8 (H, W, 1) edge map in {0, 255}."""
        import cv2

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if self.blur_sigma > 0:
            gray = cv2.GaussianBlur(gray, (0, 0), self.blur_sigma)
        low, high = self.thresholds(gray)
        return cv2.Canny(gray, low, high, L2gradient=self.l2_gradient)[..., None]

    def __call__(self, inputs: dict[str, list]) -> list[np.ndarray]:
        """``inputs["rgb"]``: uint8 (H, W, 3) arrays → uint8 (H, W, 1) edge maps."""
        return [self.edges(img) for img in rgb_inputs(inputs, MODALITY)]


class EdgeTransform:
    """Crop (bilinear, re-binarised) / flip / tensor conversion of edge maps."""

    def crop(self, raw: np.ndarray, box: tuple[int, int, int, int], flip: bool = False,
             size: tuple[int, int] = (224, 224)) -> np.ndarray:
        soft = _check_edges(raw, "crop").astype(np.float32) / 255.0
        out = crop_resize(soft, box, size, flip=flip, interpolation="linear")
        return np.where(out >= EDGE_THRESHOLD, 255, 0).astype(np.uint8)

    def to_tensor(self, raws: list[np.ndarray]):
        """uint8 (H, W, 1) → float32 tensor (B, 1, H, W) in {0, 1}."""
        import torch

        batch = stack_hwc([_check_edges(r, "to_tensor") for r in raws], "modality 'canny_edge'")
        return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)

    def from_tensor(self, x) -> list[np.ndarray]:
        """(B, 1, H, W) edge strength, or (B, 2, H, W) class probabilities {no edge, edge} (a tokenizer trained
        with ``loss="ce", num_classes=2``) → uint8 (H, W, 1) edge maps (edge strength / probability > 0.5 → 255)."""
        import torch

        if x.ndim != 4 or x.shape[1] not in (1, 2):
            raise ValueError(f"modality 'canny_edge': from_tensor expects (B, 1, H, W) edge strength or (B, 2, H, W) "
                             f"class probabilities, got {tuple(x.shape)}")
        if x.shape[1] == 2:
            x = x[:, 1:2]
        edges = (x.detach().float() > 0.5).to(torch.uint8).mul_(255)
        return list(edges.permute(0, 2, 3, 1).cpu().numpy())


def visualize(raw: np.ndarray):
    """Edges as a grey image (white edges on black)."""
    return to_pil(_check_edges(np.asarray(raw), "visualize"))


def _register_soft_edge_decoder() -> None:
    """Register the ``canny_edge_soft`` VQ-VAE decoder (on import of this module, which building the
    modality's transform does before its tokenizer is loaded)."""
    import torch
    import torch.nn.functional as F

    from fourm_core.tokenizers.vqvae import DECODERS, ViTDecoder, register_decoder

    if SOFT_EDGE_DECODER in DECODERS:
        return

    @register_decoder(SOFT_EDGE_DECODER)
    class SoftEdgeDecoder(ViTDecoder):
        """ViT decoder predicting edge *strength* in [0, 1] (a sigmoid), trained with binary cross-entropy
        against a thickened, blurred copy of the edge map.

        One-pixel edges cover a few per cent of an image: a small VQ-VAE trained on them with MSE (or plain
        cross-entropy) first learns to output "no edge" everywhere and decodes to blank maps. Dilating the
        target by ``dilate`` pixels and blurring it (Gaussian, ``blur_sigma`` pixels) gives the decoder a
        dense, smooth target whose peaks lie on the edges; decoded maps threshold at 0.5 to edges a few
        pixels wide (:meth:`EdgeTransform.from_tensor`). ``pos_weight`` up-weights edge pixels in the loss.
        """

        def __init__(self, code_dim: int, out_channels: int, grid: tuple[int, int], patch_size: int, *,
                     dilate: int = 1, blur_sigma: float = 1.0, pos_weight: float = 1.0, **vit: Any) -> None:
            super().__init__(code_dim, out_channels, grid, patch_size, **vit)
            if dilate < 0 or blur_sigma < 0 or pos_weight <= 0:
                raise ValueError(f"modality 'canny_edge' soft edge decoder: need dilate >= 0, blur_sigma >= 0, "
                                 f"pos_weight > 0; got {dilate}, {blur_sigma}, {pos_weight}")
            self.dilate, self.pos_weight = int(dilate), float(pos_weight)
            r = max(1, int(round(3 * blur_sigma))) if blur_sigma > 0 else 0
            if r:
                g = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / blur_sigma) ** 2)
                g = g / g.sum()
            else:
                g = torch.ones(1)
            self.register_buffer("kernel", g, persistent=False)

        def soft_target(self, x: torch.Tensor) -> torch.Tensor:
            """(B, 1, H, W) edges in {0, 1} → thickened, blurred edge strength in [0, 1]."""
            if self.dilate:
                k = 2 * self.dilate + 1
                x = F.max_pool2d(x, k, stride=1, padding=self.dilate)
            r = self.kernel.numel() // 2
            if r:
                c = x.shape[1]
                kh = self.kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1).to(x)
                x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), kh, groups=c)
                x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), kh.transpose(2, 3), groups=c)
            return x.clamp(0.0, 1.0)

        def forward(self, codes: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(super().forward(codes))

        def loss(self, codes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            logits = super().forward(codes)
            soft = self.soft_target(target)
            weight = 1.0 + (self.pos_weight - 1.0) * soft
            return F.binary_cross_entropy_with_logits(logits, soft, weight=weight)


#: name of the VQ-VAE decoder type of the default edge tokenizer
SOFT_EDGE_DECODER = "canny_edge_soft"
_register_soft_edge_decoder()


def make_tokenizer(*, spec: ModalitySpec, **overrides: Any):
    """Untrained edge tokenizer: ViT VQ-VAE on the spec's channel (edges in {0, 1}) with 16 px patches, one token
    per cell of the spec's grid (224 px for 14 x 14) and the spec's vocabulary; its ``canny_edge_soft`` decoder
    predicts edge strength in [0, 1] and is trained with binary cross-entropy against thickened, blurred edges
    (see ``SoftEdgeDecoder``). ``overrides`` replace any constructor argument (``decoder={"type": "vit"},
    loss="mse"`` gives a plain MSE VQ-VAE)."""
    from fourm_core.plugin_kit.feature_tokenizers import stored_channels, vit_layout
    from fourm_core.tokenizers import ViTVQVAE

    config: dict[str, Any] = dict(in_channels=stored_channels(spec), **vit_layout(spec, patch_size=16),
                                  vocab_size=spec.vocab_size, loss="mse", decoder={"type": SOFT_EDGE_DECODER})
    config.update(overrides)
    return ViTVQVAE(**config)
