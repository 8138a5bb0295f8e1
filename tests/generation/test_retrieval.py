"""Retrieval ranks by cosine similarity: checked against hand-computed cosines and against queries that are
*not* the indexed vectors (searching with a vector just indexed finds it under almost any scoring)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fourm_core.generation import GenerationError
from fourm_core.retrieval import Index


def test_scores_are_the_cosines_best_first():
    # index [1,0] [0,1] [1,1] [-1,0]; query [2,1]: cosines 2/sqrt5, 1/sqrt5, 3/sqrt10, -2/sqrt5
    index = Index(np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], np.float32), np.array([10, 11, 12, 13]),
                  modality="clip_global")
    scores, ids = index.search(np.array([2.0, 1.0]), k=4)
    assert ids.tolist() == [[12, 10, 11, 13]]
    np.testing.assert_allclose(scores[0], [3 / math.sqrt(10), 2 / math.sqrt(5), 1 / math.sqrt(5), -2 / math.sqrt(5)],
                               atol=1e-6)
    # several queries, k < N: [0.1, -3] is nearly orthogonal to [1,0] (cos 0.1/sqrt9.01) and [-1,0] (its negative)
    scores, ids = index.search(np.array([[0.1, -3.0], [-1.0, 0.1]]), k=2)
    assert ids.tolist() == [[10, 13], [13, 11]]
    np.testing.assert_allclose(scores[0], [0.1 / math.sqrt(9.01), -0.1 / math.sqrt(9.01)], atol=1e-6)
    _, ids = index.search(np.array([1.0, 0.0]), k=99)  # k is capped at the index size
    assert ids.shape == (1, 4)


def test_noisy_queries_retrieve_their_source_among_many():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 64)).astype(np.float32)
    index = Index(vectors, np.arange(1000, 1500), modality="clip_global")
    which = rng.choice(500, size=40, replace=False)
    # noise of the same size per coordinate as the signal: cosine with the source ~0.71, with others ~0 +- 0.13
    queries = vectors[which] + rng.normal(size=(40, 64)).astype(np.float32)
    scores, ids = index.search(queries, k=3)
    assert (ids[:, 0] == 1000 + which).all()
    assert (scores[:, 0] > 0.5).all() and (scores[:, 1] < 0.5).all()
    # the ranking equals a brute-force cosine ranking computed here
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    assert (ids - 1000).tolist() == np.argsort(-sims, axis=1)[:, :3].tolist()


def test_bad_indexes_and_queries_raise():
    with pytest.raises(GenerationError, match="non-empty"):
        Index(np.zeros((0, 4)), modality="clip_global")
    with pytest.raises(GenerationError, match="NaN"):
        Index(np.array([[np.nan, 1.0]]), modality="clip_global")
    with pytest.raises(GenerationError, match="ids of shape"):
        Index(np.ones((3, 2)), np.arange(2), modality="clip_global")
    with pytest.raises(GenerationError, match="k must be >= 1"):
        Index(np.ones((3, 2)), modality="clip_global").search(np.ones(2), k=0)
