"""The training loader: a PyTorch dataset over one or several fourm stores, a stateful sampler, a collate.

::

    ds = FourMDataset(["a.zarr", "s3://b/c.zarr"], weights=[0.7, 0.3], modalities=model_modalities)
    sampler = FourMSampler(ds, seed=0, num_replicas=world, rank=rank)      # mixture + crops, resumable
    loader = DataLoader(ds, batch_size=B, sampler=sampler, num_workers=2,
                        collate_fn=FourMCollate(masker))                   # -> mod_dict
    ...
    state = sampler.state_dict(consumed=steps_in_this_epoch * B)           # save with the checkpoint
    sampler.load_state_dict(state)                                         # exact resume

One sample is ``{name: tensor}``:

* ``image`` / ``vector`` tokens: int64 ``(num_tokens,)`` of the sample's chosen crop;
* ``sequence``: int64 ``(max_length,)`` as stored (ids, ``[EOS]``, ``[PAD]``=0);
* ``pixels``: float32 ``(C, H, W)`` ImageNet-normalised, the rgb raw cut with the sample's crop parameters
  (``_crops/params``) and resized to the spec's ``image_size``;
* ``embedding_sequence``: float32 ``(max_length, embed_dim)`` from ``<name>/raw``.

With ``with_source=True`` a sample also holds :data:`SOURCE_KEY`: int64 ``()``, the number of its store (the
per-dataset masking of a mixture uses it; :class:`FourMCollate` returns it as ``source``). ``store_modalities``
restricts what each store's samples load (a text-only dataset of a mixture loads its text only).

A modality the sample's store lacks (or whose shard is incomplete) is left out; :class:`FourMCollate` fills
it with zeros and marks it absent in ``present`` so the masker never uses it. Stores are opened lazily in
each process (DataLoader workers, fork or spawn), never pickled.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fourm_registry import ModalitySet, ModalitySpec, get_modalities

from ..kinds import adapter_for
from .store import Store, StoreError

log = logging.getLogger(__name__)

#: the sample key holding the number of the sample's store (``with_source=True``)
SOURCE_KEY = "__store__"


def _as_modality_set(modalities: ModalitySet | Sequence[str] | None) -> ModalitySet:
    if isinstance(modalities, ModalitySet):
        return modalities
    mods = get_modalities()
    return mods if modalities is None else mods.subset(modalities)


def _source_array(spec: ModalitySpec) -> tuple[str, str]:
    """(array name, "raw"|"tokens") that feeds ``spec`` in the loader."""
    return adapter_for(spec).source_array(spec)


def fill_value(spec: ModalitySpec) -> torch.Tensor:
    """The placeholder tensor of an absent modality (its shape is what a present one has)."""
    try:
        kind = adapter_for(spec)
    except ValueError as exc:
        raise StoreError(f"modality {spec.name!r}: the loader does not know kind {spec.kind!r}") from exc
    return kind.placeholder(spec)


class FourMDataset(torch.utils.data.Dataset):
    """Samples of one or several stores, concatenated (global index = offset of the store + local index).

    :param stores: store paths or fsspec URLs.
    :param weights: mixture weights per store, used by :class:`FourMSampler` (``None``: proportional to size).
    :param modalities: the modalities to load (usually the model's); names or a ModalitySet.
    :param crop: ``"random"`` (a crop chosen per sample by the sampler's draw), ``"center"`` (crop 0), or an
        int (that crop).
    :param seed: seeds the crop choice when items are requested by plain index (no sampler draw).
    :param store_modalities: per store, the names of the modalities its samples load (``None``: all of
        ``modalities``); the others are absent from its samples.
    :param with_source: add :data:`SOURCE_KEY` (the store number) to every sample.

    Completion records are read when the dataset is built: samples of shards finished later are absent.
    """

    def __init__(self, stores: Sequence[str] | str, weights: Sequence[float] | None = None,
                 modalities: ModalitySet | Sequence[str] | None = None, *, crop: str | int = "random",
                 seed: int = 0, storage_options: Mapping[str, Any] | None = None,
                 store_modalities: Sequence[Sequence[str] | None] | None = None, with_source: bool = False):
        if isinstance(stores, (str, os.PathLike)):
            stores = [stores]
        self.urls = [os.fspath(u) for u in stores]
        if not self.urls:
            raise StoreError("FourMDataset needs at least one store")
        if weights is not None:
            weights = [float(w) for w in weights]
            if len(weights) != len(self.urls) or any(w < 0 or not np.isfinite(w) for w in weights) or sum(weights) <= 0:
                raise StoreError(
                    f"weights {weights} must be one non-negative number per store ({len(self.urls)} stores) with a "
                    f"positive sum"
                )
        if not (crop in ("random", "center") or isinstance(crop, int) and crop >= 0):
            raise StoreError(f"crop must be 'random', 'center' or a crop index, got {crop!r}")
        self.weights = weights
        self.modalities = _as_modality_set(modalities)
        self.with_source = bool(with_source)
        keep = self._store_modalities(store_modalities)
        self.crop = crop
        self.seed = int(seed)
        self.storage_options = dict(storage_options or {})
        self.sizes: list[int] = []
        self.num_crops: list[int] = []
        #: per store: {modality: bool (num_shards,) completion flags}
        self.available: list[dict[str, np.ndarray]] = []
        self.samples_per_shard: list[int] = []
        for url, wanted in zip(self.urls, keep):
            store = Store.open(url, "r", storage_options=self.storage_options)
            self.sizes.append(store.num_samples)
            self.num_crops.append(store.num_crops)
            self.samples_per_shard.append(store.samples_per_shard)
            avail = {}
            for spec in self.modalities.specs:
                name, what = _source_array(spec)
                if spec.name in wanted and store.has(name, what):
                    avail[spec.name] = store.done(name, what).copy()
            if isinstance(crop, int) and crop > 0 and store.num_crops <= crop:
                raise StoreError(f"store {url} has {store.num_crops} crops per sample; crop={crop} does not exist")
            self.available.append(avail)
        unused = [s.name for s in self.modalities.specs if not any(s.name in a for a in self.available)]
        if unused:
            log.warning("FourMDataset: no store has modalities %s; they will always be absent", unused)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self._transforms: dict[str, Any] = {}
        self._opened: list[Store] | None = None
        self._pid: int | None = None
        self._rng: np.random.Generator | None = None

    def _store_modalities(self, store_modalities: Sequence[Sequence[str] | None] | None) -> list[set[str]]:
        """Per store, the resolved names of the modalities it loads."""
        everything = set(self.modalities.names)
        if store_modalities is None:
            return [everything] * len(self.urls)
        if len(store_modalities) != len(self.urls):
            raise StoreError(f"store_modalities has {len(store_modalities)} entries for {len(self.urls)} stores")
        out = []
        for url, names in zip(self.urls, store_modalities):
            if names is None:
                out.append(everything)
                continue
            unknown = [n for n in names if n not in self.modalities]
            if unknown:
                raise StoreError(f"store {url}: modalities {unknown} are not among the loaded ones "
                                 f"({', '.join(self.modalities.names)})")
            out.append({self.modalities.resolve(n) for n in names})
        return out

    # -- pickling for DataLoader workers: stores are re-opened in each process ----------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_opened"] = None
        state["_pid"] = None
        state["_rng"] = None
        state["_transforms"] = {}
        return state

    def _stores(self) -> list[Store]:
        pid = os.getpid()
        if self._opened is None or self._pid != pid:
            self._opened = [Store.open(u, "r", storage_options=self.storage_options) for u in self.urls]
            self._pid = pid
            info = torch.utils.data.get_worker_info()
            self._rng = np.random.default_rng((self.seed, pid if info is None else info.id))
        return self._opened

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(store number, index inside that store) of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for a dataset of {len(self)} samples")
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return k, int(index - self.offsets[k])

    def _choose_crop(self, k: int, draw: int | None) -> int:
        c = self.num_crops[k]
        if c <= 1 or self.crop == "center":
            return 0
        if isinstance(self.crop, int):
            return self.crop
        if draw is None:
            self._stores()
            draw = int(self._rng.integers(0, 1 << 31))
        return int(draw) % c

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """Several samples at once (DataLoader uses this): one zarr read per array and store, not per sample."""
        keyed = [(int(k[0]), int(k[1])) if isinstance(k, (tuple, list)) else (int(k), None) for k in keys]
        out: list[dict[str, torch.Tensor]] = [{} for _ in keyed]
        by_store: dict[int, list[tuple[int, int, int]]] = {}
        for pos, (index, draw) in enumerate(keyed):
            k, i = self.locate(index)
            by_store.setdefault(k, []).append((pos, i, self._choose_crop(k, draw)))
        stores = self._stores()
        for k, items in by_store.items():
            store = stores[k]
            pos = np.array([p for p, _, _ in items])
            if self.with_source:
                for p in pos:
                    out[p][SOURCE_KEY] = torch.tensor(k, dtype=torch.int64)
            local = np.array([i for _, i, _ in items], dtype=np.int64)
            crops = np.array([c for _, _, c in items], dtype=np.int64)
            shard = local // self.samples_per_shard[k]
            params = None
            for spec in self.modalities.specs:
                flags = self.available[k].get(spec.name)
                if flags is None:
                    continue
                have = flags[shard]
                if not have.any():
                    continue
                sel = np.flatnonzero(have)
                name, what = _source_array(spec)
                if what == "tokens":
                    ids = store.read_tokens(name, local[sel], check_complete=False)  # (n, crops, T)
                    ids = torch.from_numpy(ids[np.arange(len(sel)), crops[sel]].astype(np.int64))
                    for j, s in enumerate(sel):
                        out[pos[s]][spec.name] = ids[j]
                else:  # raw data; crop-dependent kinds (pixels) get the sample's crop parameters
                    kind = adapter_for(spec)
                    transform = self._transform(spec) if kind.loader_uses_crop else None
                    if params is None and kind.loader_uses_crop:
                        if self.num_crops[k]:
                            params = store.read_crops(local)[np.arange(len(local)), crops]
                        else:
                            params = np.tile([0, 0, store.raw_size, store.raw_size, 0], (len(local), 1))
                    raws = store.read_raw_array(name, local[sel], check_complete=False)
                    for j, s in enumerate(sel):
                        crop = params[s] if kind.loader_uses_crop else None
                        out[pos[s]][spec.name] = kind.loader_tensor(spec, raws[j], crop, transform)
        return out

    def _transform(self, spec: ModalitySpec) -> Any:
        """The plugin's transform of ``spec`` (built once per process), or None."""
        if spec.name not in self._transforms:
            self._transforms[spec.name] = spec.transform.build() if spec.transform is not None else None
        return self._transforms[spec.name]


class FourMSampler(torch.utils.data.Sampler):
    """Epoch-wise order over a :class:`FourMDataset`: mixture of stores, crop draws, replicas, exact resume.

    Each epoch has ``len(dataset)`` draws. Without weights: a permutation of all samples (``shuffle``) or
    the natural order. With weights: each position picks a store with probability ``weights[k]``, and each
    store hands out its samples in a fresh permutation, cycling when exhausted. The order is a pure function
    of ``(seed, epoch)``; replica ``rank`` takes every ``num_replicas``-th item (padded by wrapping so all
    replicas see the same count). Items are ``(index, draw)`` pairs: ``draw`` picks the crop.

    ``state_dict(consumed=n)`` records the epoch and how far into it the training loop is (``n`` = samples
    this replica consumed from the current iterator; without it, the samples the sampler yielded, which is
    ahead of the loop when DataLoader workers prefetch).
    """

    def __init__(self, dataset: FourMDataset, *, shuffle: bool = True, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0):
        if not 0 <= rank < num_replicas:
            raise StoreError(f"rank {rank} must be in [0, num_replicas={num_replicas})")
        self.sizes = list(dataset.sizes)
        self.weights = dataset.weights
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self._start = 0  # position where the current iterator started
        self._yielded = 0

    @property
    def total(self) -> int:
        return int(sum(self.sizes))

    def __len__(self) -> int:
        return -(-self.total // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._start, self._yielded = int(epoch), 0, 0

    def epoch_order(self, epoch: int) -> np.ndarray:
        """``(len(self), 2)`` int64: (global index, draw) of this replica for ``epoch``."""
        rng = np.random.default_rng((self.seed, int(epoch)))
        n = self.total
        offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        if self.weights is None:
            idx = rng.permutation(n) if self.shuffle else np.arange(n)
        else:
            p = np.asarray(self.weights, dtype=np.float64)
            p = p / p.sum()
            choice = rng.choice(len(self.sizes), size=n, p=p)
            idx = np.empty(n, dtype=np.int64)
            for k, size in enumerate(self.sizes):
                where = np.flatnonzero(choice == k)
                if where.size == 0:
                    continue
                if size == 0:
                    raise StoreError(f"store {k} has no samples but mixture weight {self.weights[k]}")
                reps = -(-where.size // size)
                perm = np.concatenate([rng.permutation(size) if self.shuffle else np.arange(size) for _ in range(reps)])
                idx[where] = perm[: where.size] + offsets[k]
        draws = rng.integers(0, 1 << 31, size=n)
        order = np.stack([idx, draws], axis=1).astype(np.int64)
        per = len(self)
        if per * self.num_replicas > n:  # pad by wrapping so every replica gets the same count
            order = np.concatenate([order, order[: per * self.num_replicas - n]])
        return order[self.rank::self.num_replicas]

    def __iter__(self):
        order = self.epoch_order(self.epoch)
        start = self._start + self._yielded if self._yielded else self._start
        self._start, self._yielded = start, 0
        for row in order[start:]:
            self._yielded += 1
            yield (int(row[0]), int(row[1]))
        self.epoch += 1
        self._start, self._yielded = 0, 0

    def state_dict(self, consumed: int | None = None) -> dict[str, int]:
        position = self._start + (self._yielded if consumed is None else int(consumed))
        epoch = self.epoch
        if position >= len(self):
            epoch, position = epoch + 1, position - len(self)
        return {"epoch": int(epoch), "position": int(position), "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise StoreError(f"sampler state was saved with seed {state['seed']}, this sampler has seed {self.seed}")
        self.epoch, self._start, self._yielded = int(state["epoch"]), int(state["position"]), 0


class FourMCollate:
    """Stacks samples into ``{name: (B, ...)}`` plus ``present`` masks, then applies the masker.

    :param masker: ``fourm_core.masking.Masker`` (``masker(batch, present=, generator=) -> mod_dict``); with
        ``None`` the collate returns ``{"tensors": batch, "present": present}``.
    :param modalities: the modalities of the batch (default: ``masker.modalities``). Every one of them is in
        the batch; absent samples hold zeros and ``present[name][b] = False``.
    """

    def __init__(self, masker: Any = None, modalities: ModalitySet | None = None,
                 generator: torch.Generator | None = None):
        if modalities is None:
            modalities = getattr(masker, "modalities", None)
        if modalities is None:
            raise StoreError("FourMCollate needs the modalities of the batch (pass modalities= or a Masker)")
        self.masker = masker
        self.modalities = _as_modality_set(modalities)
        self.generator = generator
        self._fill = {s.name: fill_value(s) for s in self.modalities.specs}

    def stack(self, samples: Sequence[Mapping[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        batch, present = {}, {}
        for name, fill in self._fill.items():
            flags = [name in s for s in samples]
            tensors = []
            for s, has in zip(samples, flags):
                t = s[name] if has else fill
                if t.shape != fill.shape:
                    raise StoreError(
                        f"modality {name!r}: a sample has shape {tuple(t.shape)}, the batch expects {tuple(fill.shape)}; "
                        f"was the store tokenized with another tokenizer layout?"
                    )
                tensors.append(t)
            batch[name] = torch.stack(tensors)
            present[name] = torch.tensor(flags, dtype=torch.bool)
        return batch, present

    def __call__(self, samples: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, Any]:
        batch, present = self.stack(samples)
        if self.masker is None:
            out: dict[str, Any] = {"tensors": batch, "present": present}
            if samples and SOURCE_KEY in samples[0]:
                out["source"] = torch.stack([s[SOURCE_KEY] for s in samples])
            return out
        return self.masker(batch, present=present, generator=self.generator)
