"""Dataset jobs: ingest a folder of photos, pseudo-label, tokenize, inspect.

Python API (the ``fourm`` commands of the same names call these)::

    ingest(src, url, *, samples_per_shard=64, raw_size=256, overwrite=False, workers=0) -> IngestReport
    label(url, ["depth", "canny_edge"], *, overwrite=False, batch_size=None, device="cpu",
          weights={"depth": "/path"}) -> dict[str, JobReport]
    tokenize(url, ["tok_rgb", "depth"], *, crops=1, tokenizers_dir=DIR (or codecs={...}), seed=0,
             overwrite=False, batch_size=16, device="cpu") -> dict[str, JobReport]
    inspect_store(url) -> dict                  # the JSON of ``fourm inspect --json`` (with ``problems``)
    repair_store(url, *, force=False) -> dict   # ``fourm inspect --repair``: un-mark damaged shards

``label`` and ``tokenize`` are resumable and distributed: the work unit is a shard; shard ``s`` belongs to
process ``s % world_size`` (Accelerate's ``PartialState``: run them under ``accelerate launch`` or
``torchrun`` for several processes); shards recorded as done are skipped, a shard interrupted part-way is
redone from its start, and its completion flag is written only after its data, so nothing is written twice
and no two processes ever write into the same zarr shard. Process 0 creates arrays and metadata, then all
processes meet at a barrier.

The jobs live in ``ingest_job``, ``label_job``, ``tokenize_job`` and ``inspect_job`` (their shared plumbing in
``jobkit``); this module is their public API and re-exports it.

Every job that writes holds the store's writer lock (:mod:`.lock`; ``force=True`` / ``--force`` takes over
another job's); ``label`` and ``tokenize`` record the identity of their labeler / tokenizer per array and
refuse to resume with another one (``overwrite`` redoes the array).
"""

from __future__ import annotations

from .ingest_job import IMAGE_EXTENSIONS, IngestReport, find_images, ingest
from .inspect_job import damage_error, format_inspect, inspect_store, repair_store
from .jobkit import JobReport
from .label_job import label
from .tokenize_job import tokenize

__all__ = [
    "IMAGE_EXTENSIONS", "IngestReport", "JobReport", "damage_error", "find_images", "format_inspect", "ingest",
    "inspect_store", "label", "repair_store", "tokenize",
]
