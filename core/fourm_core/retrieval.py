"""Nearest-neighbour retrieval over global embeddings (``vector`` modalities such as ``dinov2_global``).

``fourm index STORE --modality dinov2_global --out index.npz`` (or :func:`build_index`) reads the modality's
raw vectors from a zarr store and saves them L2-normalised; :meth:`Index.search` ranks them by cosine
similarity to query vectors, and :meth:`fourm_core.AnyToAny.search` predicts the query vector from any inputs.

An index file (``.npz``) holds ``vectors`` (N, D) float32 (unit norm), ``ids`` (N,) int64 (sample indices in
the store), and the metadata ``modality``, ``store``, ``format_version``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .generation.errors import GenerationError

log = logging.getLogger(__name__)

INDEX_FORMAT_VERSION = 1


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class Index:
    """Unit-norm vectors of one modality with the store sample index of each."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray | None = None, *, modality: str, store: str = ""):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise GenerationError(f"index of {modality!r}: expected a non-empty (N, D) array of vectors, got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise GenerationError(f"index of {modality!r}: vectors contain NaN/inf")
        self.vectors = _normalise(vectors)
        self.ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if self.ids.shape != (len(vectors),):
            raise GenerationError(f"index of {modality!r}: {len(vectors)} vectors but ids of shape {self.ids.shape}")
        self.modality, self.store = modality, store

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def search(self, queries: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of each query ``(Q, D)`` (or ``(D,)``) to every vector; returns
        ``(scores (Q, k), ids (Q, k))`` best first."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise GenerationError(f"index of {self.modality!r} holds {self.dim}-d vectors; queries have shape {q.shape}")
        if k < 1:
            raise GenerationError(f"k must be >= 1, got {k}")
        k = min(k, len(self))
        sims = _normalise(q) @ self.vectors.T  # (Q, N)
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        top = np.take_along_axis(part, order, axis=1)
        return np.take_along_axis(sims, top, axis=1), self.ids[top]

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz" to other suffixes
            np.savez(f, vectors=self.vectors, ids=self.ids, modality=np.array(self.modality),
                     store=np.array(self.store), format_version=np.array(INDEX_FORMAT_VERSION))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Index:
        path = Path(path)
        if not path.is_file():
            raise GenerationError(f"index file {str(path)!r} does not exist; build one with "
                                  f"`fourm index STORE --modality NAME --out {path}`")
        with np.load(path, allow_pickle=False) as data:
            missing = {"vectors", "ids", "modality", "format_version"} - set(data.files)
            if missing:
                raise GenerationError(f"{path} is not a fourm index (missing {sorted(missing)})")
            version = int(data["format_version"])
            if version > INDEX_FORMAT_VERSION:
                raise GenerationError(f"{path} is index format {version}; this fourm reads up to "
                                      f"{INDEX_FORMAT_VERSION}: upgrade fourm-core")
            return cls(data["vectors"], data["ids"], modality=str(data["modality"]),
                       store=str(data["store"]) if "store" in data.files else "")


def build_index(store_url: str, modality: str, *, batch_size: int = 256,
                indices: Sequence[int] | None = None) -> Index:
    """Read every (or the given) sample's raw ``modality`` vector from a zarr store into an :class:`Index`."""
    from fourm_registry import get_modalities

    from .data import Store

    mods = get_modalities()
    if modality not in mods:
        raise GenerationError(f"unknown modality {modality!r}; installed modalities: {', '.join(mods.names)}")
    spec = mods[modality]
    if spec.kind != "vector":
        raise GenerationError(f"cannot index {spec.name!r}: retrieval works on global-embedding ('vector') "
                              f"modalities, it is a {spec.kind!r} modality")
    store = Store.open(store_url, mode="r")
    if not store.has(spec.name, "raw"):
        raise GenerationError(f"store {store_url} has no {spec.name!r} data; run "
                              f"`fourm label {store_url} --modalities {spec.name}` first")
    if indices is None:  # every sample of the shards whose labeling finished
        done = [r for i, r in enumerate(store.shards()) if store.is_done(spec.name, "raw", i)]
        skipped = store.num_samples - sum(len(r) for r in done)
        if skipped:
            log.warning("%s: %d samples of unfinished %r shards are not indexed", store_url, skipped, spec.name)
        wanted = np.concatenate([np.arange(r.start, r.stop) for r in done]) if done else np.zeros(0, np.int64)
    else:
        wanted = np.asarray(list(indices), dtype=np.int64)
    chunks = []
    for start in range(0, len(wanted), batch_size):
        sel = wanted[start : start + batch_size]
        raws = store.read_raw(spec.name, sel.tolist())
        chunks.append(np.stack([np.asarray(r, dtype=np.float32).reshape(-1) for r in raws]))
    if not chunks:
        raise GenerationError(f"store {store_url}: no finished {spec.name!r} samples to index; run "
                              f"`fourm label {store_url} --modalities {spec.name}` first")
    vectors = np.concatenate(chunks)
    finite = np.isfinite(vectors).all(axis=1) & (np.abs(vectors).sum(axis=1) > 0)
    if not finite.all():
        log.warning("skipping %d samples of %s without a valid %r vector (not labeled yet?)",
                    int((~finite).sum()), store_url, spec.name)
    if not finite.any():
        raise GenerationError(f"store {store_url}: no sample has a {spec.name!r} vector; run "
                              f"`fourm label {store_url} --modalities {spec.name}` first")
    return Index(vectors[finite], wanted[finite], modality=spec.name, store=str(store_url))
