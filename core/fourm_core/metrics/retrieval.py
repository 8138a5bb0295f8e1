"""Embeddings: cosine similarity of a prediction to its reference, and recall@k retrieval over the dataset.

Each prediction's global embedding queries the references of every sample scored so far (one similarity
matrix, cosine): its rank is the number of references more similar to it than its own (0 = retrieved
first). ``R@k`` is the share of predictions whose own reference is among the ``k`` nearest; ``median_rank``
is 1-based (1 = perfect). A raw of shape ``(D,)`` is a global embedding; a feature map ``(H, W, D)`` (patch
features) is mean-pooled over its patches first, and also scores ``patch_cosine``, the mean cosine
similarity of corresponding patches (a prediction of another grid is resized bilinearly to the reference's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Accumulator, MetricError, resize_map

KS = (1, 5, 10)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def retrieval_ranks(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """0-based rank of ``keys[i]`` among all keys for ``queries[i]`` by cosine similarity (ties count
    against: a key as similar as the right one ranks before it)."""
    sim = _unit(queries.astype(np.float64)) @ _unit(keys.astype(np.float64)).T
    own = np.diag(sim)
    return (sim >= own[:, None]).sum(1) - 1


class EmbeddingMetric(Accumulator):
    """Global embeddings ``(D,)`` or patch feature maps ``(H, W, D)`` (the module docstring). Primary:
    ``cosine``, the mean cosine similarity of each prediction to its own reference (higher is better; per
    sample, its own similarity); ``compute()`` adds ``R@1``, ``R@5``, ``R@10`` and ``median_rank``.
    A zero reference embedding is an error (it has no direction)."""

    primary = "cosine"
    higher_is_better = True

    def __init__(self, *, spec: Any = None, modality: str = "embedding", ks: tuple[int, ...] = KS):
        self.ks = tuple(int(k) for k in ks)
        super().__init__(spec.name if spec is not None else modality)

    def _reset(self) -> None:
        self.queries: list[np.ndarray] = []
        self.keys: list[np.ndarray] = []
        self.patch_sum, self.patch_n = 0.0, 0

    def _array(self, index: int, raw: Any, what: str) -> np.ndarray:
        a = np.asarray(raw, dtype=np.float32)
        if a.ndim not in (1, 3) or not np.isfinite(a).all():
            raise MetricError(f"modality {self.modality!r} metrics, sample {index}: the {what} must be a finite "
                              f"(D,) embedding or (H, W, D) feature map, got shape {a.shape}")
        return a

    def _update(self, preds: list[Any], refs: list[Any]) -> list[float]:
        q, k = [], []
        for i, (p, r) in enumerate(zip(preds, refs)):
            pa, ra = self._array(i, p, "prediction"), self._array(i, r, "reference")
            if pa.ndim != ra.ndim or pa.shape[-1] != ra.shape[-1]:
                raise MetricError(f"modality {self.modality!r} metrics, sample {i}: prediction {pa.shape} and "
                                  f"reference {ra.shape} are not embeddings of one kind and width")
            if ra.ndim == 3:
                pa = resize_map(pa, ra.shape[:2])
                cos = (_unit(pa.astype(np.float64)) * _unit(ra.astype(np.float64))).sum(-1)
                self.patch_sum += float(cos.sum())
                self.patch_n += cos.size
                pa, ra = pa.reshape(-1, pa.shape[-1]).mean(0), ra.reshape(-1, ra.shape[-1]).mean(0)
            if not np.any(ra):
                raise MetricError(f"modality {self.modality!r} metrics, sample {i}: the reference embedding is "
                                  f"all zeros (no direction to compare with)")
            q.append(pa)
            k.append(ra)
        q_arr, k_arr = np.stack(q), np.stack(k)
        self.queries.append(q_arr)
        self.keys.append(k_arr)
        return list((_unit(q_arr.astype(np.float64)) * _unit(k_arr.astype(np.float64))).sum(-1))

    def _compute(self) -> dict[str, float]:
        q, k = np.concatenate(self.queries), np.concatenate(self.keys)
        cos = (_unit(q.astype(np.float64)) * _unit(k.astype(np.float64))).sum(-1)
        ranks = retrieval_ranks(q, k)
        out = {"cosine": float(cos.mean())}
        out.update({f"R@{kk}": float((ranks < kk).mean()) for kk in self.ks})
        out["median_rank"] = float(np.median(ranks + 1))
        if self.patch_n:
            out["patch_cosine"] = self.patch_sum / self.patch_n
        return out
