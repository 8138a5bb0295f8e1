"""The label job over real photos, for the tests of model-based modality plugins.

Heavy imports (torch, zarr, the data jobs) happen inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any


def label_photo_store(tmp_path: str | PathLike[str], modality: str, weights: str, n: int = 3) -> list[Any]:
    """Run the ``fourm label`` data job for ``modality`` over a fresh store of ``n`` real photos and return the
    stored raws, each checked against the modality's storage spec.

    The photos (:func:`~fourm_core.testing.sample_photos`) are saved as PNG files in ``tmp_path/photos``,
    ingested into ``tmp_path/store.zarr`` (two samples per shard, so that ``n >= 3`` spans shards) and labeled
    with ``weights`` (e.g. a tiny checkpoint the test saved). Raises ``ValueError`` naming the modality when a
    raw does not match the storage spec, ``AssertionError`` when the store does not hold ``n`` raws.
    """
    from PIL import Image

    from fourm_core.data.jobs import ingest, label
    from fourm_core.data.store import Store
    from fourm_registry import get_modalities
    from .samples import check_raw, sample_photos

    folder = Path(tmp_path) / "photos"
    folder.mkdir()
    for i, photo in enumerate(sample_photos(n)):
        Image.fromarray(photo).save(folder / f"photo{i}.png")
    url = str(Path(tmp_path) / "store.zarr")
    ingest(folder, url, samples_per_shard=2, progress=False)
    label(url, [modality], weights={modality: weights}, progress=False)
    raws = Store.open(url, "r").read_raw(modality, range(n))
    assert len(raws) == n, f"modality {modality!r}: the store holds {len(raws)} raws for {n} photos"
    spec = get_modalities()[modality]
    for raw in raws:
        check_raw(spec, raw)
    return raws


def label_on_cpu_and_cuda(make_labeler: Callable[..., Any], weights: str, n: int = 2) -> tuple[list[Any], list[Any]]:
    """(CPU raws, CUDA raws) of ``make_labeler(weights=weights, device=...)`` on ``n`` real photos, for tests
    that compare the two devices (skip them where ``torch.cuda.is_available()`` is false)."""
    from .samples import sample_photos

    photos = sample_photos(n)
    cpu = make_labeler(weights=weights)({"rgb": photos})
    gpu = make_labeler(weights=weights, device="cuda")({"rgb": photos})
    return cpu, gpu
