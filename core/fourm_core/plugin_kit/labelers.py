"""Constructor and batching boilerplate shared by the model-based labelers of the modality plugins.

A labeler validates its settings (:func:`check_batch_size`, :func:`compute_dtype`), loads its weights
(:func:`load_model`, :func:`load_processor_and_model`, both through :func:`~fourm_core.plugin_kit.hub.load_pretrained`
so a missing download names the modality and the fix), checks its inputs (:func:`require_rgb`,
:func:`check_rgb_image`, or :func:`~fourm_core.plugin_kit.images.rgb_inputs`) and runs its model batch by batch
(:func:`map_batches`). :class:`ModelCache` lets the labelers of sibling modalities (``dinov2`` and
``dinov2_global``) share one loaded model. Every error message names the labeler's modality.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from .hub import load_pretrained
from .images import rgb_inputs

T = TypeVar("T")
R = TypeVar("R")

#: compute dtypes a labeler accepts (``float16``/``bfloat16`` are meant for GPUs)
COMPUTE_DTYPES = ("float32", "float16", "bfloat16")


def check_batch_size(batch_size: int, modality: str) -> int:
    """``batch_size`` as an int; ``ValueError`` naming ``modality`` when it is below 1."""
    if batch_size < 1:
        raise ValueError(f"labeler of modality {modality!r}: batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def compute_dtype(dtype: str, modality: str) -> Any:
    """The ``torch.dtype`` named by ``dtype`` (one of :data:`COMPUTE_DTYPES`); ``ValueError`` naming ``modality``
    otherwise."""
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"labeler of modality {modality!r}: dtype must be one of {COMPUTE_DTYPES}, got {dtype!r}")
    import torch

    return getattr(torch, dtype)


def load_model(loader: Callable[..., Any], weights: str, *, modality: str, device: str, dtype: Any = None,
               **kwargs: Any) -> Any:
    """``loader(weights, **kwargs)`` through :func:`load_pretrained`, moved to ``device`` (and ``dtype`` when
    given) and switched to eval mode."""
    model = load_pretrained(loader, weights, modality=modality, **kwargs)
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval()


def load_processor_and_model(processor_loader: Callable[..., Any], model_loader: Callable[..., Any], weights: str,
                             *, modality: str, device: str, dtype: Any = None) -> tuple[Any, Any]:
    """(processor, model) of a transformers checkpoint: e.g. ``AutoImageProcessor.from_pretrained`` and
    ``AutoModelForDepthEstimation.from_pretrained``; the model as :func:`load_model` returns it."""
    processor = load_pretrained(processor_loader, weights, modality=modality)
    return processor, load_model(model_loader, weights, modality=modality, device=device, dtype=dtype)


def batches(items: Sequence[T], batch_size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``batch_size`` elements."""
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def map_batches(fn: Callable[[Sequence[T]], Iterable[R]], items: Sequence[T], batch_size: int) -> list[R]:
    """``fn`` applied to each batch of ``items`` (see :func:`batches`), its per-item results concatenated."""
    out: list[R] = []
    for chunk in batches(items, batch_size):
        out.extend(fn(chunk))
    return out


def label_rgb_batches(fn: Callable[[list[np.ndarray]], Iterable[R]], inputs: dict, modality: str,
                      batch_size: int) -> list[R]:
    """:func:`map_batches` over the checked ``inputs["rgb"]`` (:func:`~fourm_core.plugin_kit.images.rgb_inputs`)."""
    return map_batches(fn, rgb_inputs(inputs, modality), batch_size)


def require_rgb(inputs: dict, modality: str) -> list[np.ndarray]:
    """``inputs["rgb"]``; ``ValueError`` naming ``modality`` when it is missing (the images themselves are checked
    where they are preprocessed)."""
    images = inputs.get("rgb")
    if images is None:
        raise ValueError(f"labeler for {modality!r} needs inputs['rgb'] (uint8 (H, W, 3) images)")
    return images


def check_rgb_image(image: Any, modality: str, what: str = "labeler input") -> np.ndarray:
    """``image`` as an array when it is uint8 ``(H, W, 3)``; ``ValueError`` naming ``modality`` and ``what``
    otherwise."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"modality {modality!r}: {what} must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
    return img


class ModelCache(Generic[T]):
    """A thread-safe cache of loaded models (or anything expensive) keyed by e.g. ``(weights, device)``, so that
    the labelers of sibling modalities load their shared model once per process."""

    def __init__(self) -> None:
        self._items: dict[Hashable, T] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, factory: Callable[[], T]) -> T:
        """The cached value of ``key``, made by ``factory()`` on first use (under the lock: concurrent callers
        wait instead of loading the same weights twice)."""
        with self._lock:
            if key not in self._items:
                self._items[key] = factory()
            return self._items[key]

    def clear(self) -> None:
        """Forget every cached value (frees the models once nothing else holds them)."""
        with self._lock:
            self._items.clear()
