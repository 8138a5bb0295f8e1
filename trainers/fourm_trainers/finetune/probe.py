"""The raw-pixel baseline of a classification fine-tune: a linear classifier (multinomial logistic
regression, L2-regularised, full-batch L-BFGS) on the standardised pixels of the centred square of each
image, resized to ``size`` × ``size``. It tells how much of a fine-tune's accuracy the pixels give alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def pixel_features(items: Sequence[tuple[Path, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, size·size·3), labels (N,))`` of ``(file, label)`` items."""
    from PIL import Image

    feats, labels = [], []
    for path, label in items:
        with Image.open(path) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
            feats.append(np.asarray(im, dtype=np.float32).reshape(-1) / 255.0)
        labels.append(label)
    return torch.from_numpy(np.stack(feats)), torch.tensor(labels)


def linear_probe_accuracy(train: Sequence[tuple[Path, int]], val: Sequence[tuple[Path, int]], *, size: int = 32,
                          l2: float = 1e-2, steps: int = 200) -> float:
    """Held-out accuracy of the raw-pixel linear classifier trained on ``train``."""
    xtr, ytr = pixel_features(train, size)
    xva, yva = pixel_features(val, size)
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-3)
    xtr, xva = (xtr - mean) / std, (xva - mean) / std
    k = int(max(ytr.max(), yva.max())) + 1
    w = torch.zeros(xtr.shape[1], k, requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, ytr) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xva @ w + b).argmax(1) == yva).float().mean())
