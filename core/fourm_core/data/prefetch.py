"""A prefetching, caching reader for stores behind fsspec (``s3://``, ``gs://``, ``https://``, ``memory://``).

zarr reads a sharded array of a remote store as many small ranged requests: the shard index, then each chunk
(sample) it needs, each a round trip. :class:`PrefetchStore` wraps the zarr store of a read-only remote
dataset and instead

* fetches a shard object **whole**, once, and serves every byte range of it from memory (the bytes are the
  stored ones: the chunks' crc32c checksums still catch damage, and :class:`CorruptDataError` still names the
  samples);
* reads **ahead**: fetching shard ``k`` of an array also starts shards ``k+1 .. k+ahead`` of it in the
  background (concurrent requests, at most ``workers`` at a time), so a job or a loader walking the shards in
  order finds the next ones already there; in a shuffled epoch the same fetches fill the cache sooner;
* keeps the objects in an **LRU cache** of ``memory_mb`` MiB and, when ``cache_dir`` is given, on local disk
  (a second epoch or a second run reads no byte from the remote store). A cache directory holds one version
  of a store: empty it when the store is rewritten.

Metadata (``zarr.json``) and listings pass through unchanged. Local paths and zip files never use it.

Switch and settings, per store (``storage_options={"fourm_prefetch": ...}``, also through
``FourMDataset(storage_options=...)``) or per process (environment)::

    "fourm_prefetch": False                          # off for this store
    "fourm_prefetch": {"ahead": 4, "memory_mb": 1024, "cache_dir": "/scratch/cache", "workers": 8}
    FOURM_PREFETCH=0                                 # off everywhere (default: on, ahead 2)
    FOURM_PREFETCH_AHEAD=4  FOURM_PREFETCH_MEMORY_MB=1024  FOURM_PREFETCH_CACHE=/scratch/cache
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.storage import WrapperStore

from .errors import StoreError

OPTION_KEY = "fourm_prefetch"
#: a chunk / shard key of zarr 3's default encoding: ``<array path>/c/<i>/<j>...``
_CHUNK_KEY = re.compile(r"^(?P<array>.+/)?c/(?P<first>\d+)(?P<rest>(/\d+)*)$")


@attrs.frozen(kw_only=True)
class PrefetchConfig:
    """How a remote store is read: shards ahead, memory cache size, optional disk cache, concurrent fetches."""

    ahead: int = 2
    memory_mb: float = 512
    cache_dir: str | None = None
    workers: int = 8

    @classmethod
    def resolve(cls, option: Any, env: Mapping[str, str] | None = None) -> PrefetchConfig | None:
        """The settings of one store from its ``fourm_prefetch`` storage option over the environment's
        defaults; ``None`` when prefetching is off."""
        env = os.environ if env is None else env
        if option is False or (option is None and env.get("FOURM_PREFETCH", "1").strip().lower() in ("0", "false", "off")):
            return None
        base = {"ahead": env.get("FOURM_PREFETCH_AHEAD"), "memory_mb": env.get("FOURM_PREFETCH_MEMORY_MB"),
                "cache_dir": env.get("FOURM_PREFETCH_CACHE")}
        fields = {k: v for k, v in base.items() if v}
        if isinstance(option, Mapping):
            unknown = sorted(set(option) - {"ahead", "memory_mb", "cache_dir", "workers"})
            if unknown:
                raise StoreError(f"storage option {OPTION_KEY!r}: unknown keys {unknown}; known: ahead, memory_mb, "
                                 f"cache_dir, workers")
            fields.update(option)
        elif option not in (None, True):
            raise StoreError(f"storage option {OPTION_KEY!r} must be true, false or a dict of settings, got {option!r}")
        try:
            cfg = cls(ahead=int(fields.get("ahead", 2)), memory_mb=float(fields.get("memory_mb", 512)),
                      cache_dir=fields.get("cache_dir") or None, workers=int(fields.get("workers", 8)))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"prefetch settings {fields}: {exc} (ahead and workers are integers, memory_mb a number)") from None
        if cfg.ahead < 0 or cfg.memory_mb < 0 or cfg.workers < 1:
            raise StoreError(f"prefetch settings {cfg}: ahead and memory_mb must be >= 0, workers >= 1")
        return cfg


def next_keys(key: str, ahead: int) -> list[str]:
    """The keys of the ``ahead`` shards after ``key`` along the first (sample) axis; [] for other keys."""
    m = _CHUNK_KEY.match(key)
    if m is None or ahead <= 0:
        return []
    head, first, rest = m.group("array") or "", int(m.group("first")), m.group("rest")
    return [f"{head}c/{first + i}{rest}" for i in range(1, ahead + 1)]


def _slice(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start:byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset:]
    if isinstance(byte_range, SuffixByteRequest):
        return data[len(data) - byte_range.suffix:] if byte_range.suffix else b""
    raise TypeError(f"unknown byte range {byte_range!r}")


class PrefetchStore(WrapperStore):
    """A read-only zarr store over ``store`` that fetches chunk objects whole, ahead, and caches them."""

    def __init__(self, store: Any, config: PrefetchConfig, *, url: str = ""):
        super().__init__(store)
        self.config = config
        self.url = url
        self._memory: OrderedDict[str, bytes | None] = OrderedDict()
        self._memory_bytes = 0
        self._pending: dict[str, asyncio.Task] = {}
        self._limit: asyncio.Semaphore | None = None
        self._disk = (Path(config.cache_dir) / hashlib.sha256(url.encode()).hexdigest()[:16]
                      if config.cache_dir else None)
        #: remote fetches of whole objects, per array path (what the caches saved shows as fewer of these)
        self.fetches: Counter[str] = Counter()

    # zarr's WrapperStore copies itself for read-only views; keep our state on the copy
    def _with_store(self, store: Any) -> PrefetchStore:
        return type(self)(store, self.config, url=self.url)

    def __repr__(self) -> str:
        return f"PrefetchStore({self._store!r}, ahead={self.config.ahead})"

    # -- zarr's read interface ---------------------------------------------------------------------
    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        if _CHUNK_KEY.match(key) is None:
            return await self._store.get(key, prototype, byte_range)
        data = await self._object(key)
        for nxt in next_keys(key, self.config.ahead):
            self._start(nxt)
        if data is None:
            return None
        return prototype.buffer.from_bytes(_slice(data, byte_range))

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def set(self, key: str, value: Buffer) -> None:
        raise StoreError(f"store {self.url}: the prefetching reader is read-only (open the store with mode 'r+' "
                         f"to write; writes never go through the cache)")

    # -- objects: memory, disk, remote --------------------------------------------------------------
    def _start(self, key: str) -> asyncio.Task | None:
        if key in self._memory or key in self._pending:
            return self._pending.get(key)
        task = asyncio.ensure_future(self._fetch(key))
        self._pending[key] = task
        task.add_done_callback(lambda t, k=key: self._pending.pop(k, None))
        return task

    async def _object(self, key: str) -> bytes | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        task = self._pending.get(key) or self._start(key)
        return await asyncio.shield(task)

    async def _fetch(self, key: str) -> bytes | None:
        data = self._disk_read(key)
        if data is None:
            if self._limit is None:
                self._limit = asyncio.Semaphore(self.config.workers)
            async with self._limit:
                buf = await self._store.get(key, default_buffer_prototype())
            self.fetches[key.rsplit("/c/", 1)[0] if "/c/" in key else ""] += 1
            data = None if buf is None else buf.to_bytes()
            if data is not None:
                self._disk_write(key, data)
        self._remember(key, data)
        return data

    def _remember(self, key: str, data: bytes | None) -> None:
        size = len(data) if data else 0
        cap = int(self.config.memory_mb * 1024 * 1024)
        if size > cap:
            return
        self._memory[key] = data
        self._memory_bytes += size
        while self._memory_bytes > cap:
            _, old = self._memory.popitem(last=False)
            self._memory_bytes -= len(old) if old else 0

    def _disk_read(self, key: str) -> bytes | None:
        if self._disk is None:
            return None
        try:
            return (self._disk / key).read_bytes()
        except OSError:
            return None

    def _disk_write(self, key: str, data: bytes) -> None:
        if self._disk is None:
            return
        path = self._disk / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # a reader never sees a partial object
        except OSError:
            pass  # a full or read-only cache directory only costs the cache


def wrap(store: Any, url: str, mode: str, option: Any) -> Any:
    """``store`` behind a :class:`PrefetchStore` when reading (``mode == "r"``) with prefetching on."""
    if mode != "r":
        return store
    config = PrefetchConfig.resolve(option)
    return store if config is None else PrefetchStore(store, config, url=url)
