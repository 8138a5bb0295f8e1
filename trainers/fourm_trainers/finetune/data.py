"""Fine-tuning data: a folder of class sub-folders (classification) or a fourm store whose target modality's
raw values are the labels (dense tasks), and a resumable sampler.

Every item is requested as ``(index, draw)``: ``draw`` (from the sampler's seeded order) picks the random crop
and flip, so an epoch's batches are a pure function of (seed, epoch) and a resumed run sees what an
uninterrupted one saw, with any number of DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fourm_core.kinds import adapter_for
from fourm_core.kinds.pixels import pixel_tensor
from fourm_registry import ModalitySet, ModalitySpec

from .config import FinetuneConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: random-crop area range of training images (share of the largest centred square)
CROP_SCALE = (0.6, 1.0)


def list_image_folder(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """``(class names, [(file, class index)])`` of a folder with one sub-folder of images per class."""
    root = Path(root)
    if not root.is_dir():
        raise FinetuneConfigError(f"data folder {root} does not exist (expected one sub-folder of images per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if len(classes) < 2 or not items:
        raise FinetuneConfigError(f"data folder {root}: found {len(classes)} class sub-folder(s) and {len(items)} "
                                  f"image(s) ({', '.join(IMAGE_SUFFIXES)}); classification needs at least two "
                                  f"class folders of images")
    return classes, items


def split_items(items: list[tuple[Path, int]], fraction: float, seed: int) -> tuple[list, list]:
    """A stratified split: ``fraction`` of every class (at least one image) held out, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in sorted({c for _, c in items}):
        mine = [it for it in items if it[1] == c]
        order = rng.permutation(len(mine))
        k = max(1, int(round(fraction * len(mine))))
        val += [mine[i] for i in sorted(order[:k])]
        train += [mine[i] for i in sorted(order[k:])]
    return train, val


def _square_box(h: int, w: int, draw: int | None) -> tuple[tuple[int, int, int, int], bool]:
    """The centred square (``draw`` None) or a random square crop and flip chosen by ``draw``."""
    side = min(h, w)
    if draw is None:
        return ((h - side) // 2, (w - side) // 2, side, side), False
    rng = np.random.default_rng(draw)
    s = max(1, int(round(side * np.sqrt(rng.uniform(*CROP_SCALE)))))
    top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    return (top, left, s, s), bool(rng.integers(0, 2))


class ImageFolderData(torch.utils.data.Dataset):
    """Images of class sub-folders as ``({main input: pixels (C, H, W)}, label)``; training items get a random
    square crop and flip (the plugin's transform), evaluation items the centred square."""

    def __init__(self, items: Sequence[tuple[Path, int]], spec: ModalitySpec, *, train: bool):
        if adapter_for(spec).name != "pixels":
            raise FinetuneConfigError(f"folder data feeds a pixels input; the main input {spec.name!r} is a "
                                      f"{spec.kind!r} modality")
        self.items = list(items)
        self.spec = spec
        self.train = train
        self._transform: Any = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], Any]:
        from PIL import Image

        index, draw = key
        path, label = self.items[index]
        if self._transform is None and self.spec.transform is not None:
            self._transform = self.spec.transform.build()
        with Image.open(path) as im:
            raw = np.asarray(im.convert("RGB"))
        box, flip = _square_box(raw.shape[0], raw.shape[1], draw if self.train else None)
        size = tuple(self.spec.image_size)
        if self._transform is not None:
            img = self._transform.crop(raw, box=box, flip=flip, size=size)
        else:
            from fourm_core.plugin_kit.images import crop_resize

            img = crop_resize(raw, box, size, flip=flip)
        x = pixel_tensor(self.spec, self._transform, [img])[0]
        return {self.spec.name: x}, {self.spec.name: torch.tensor(True)}, torch.tensor(label)


class StoreDenseData(torch.utils.data.Dataset):
    """Samples of a fourm store: the inputs as the training loader gives them (absent ones marked) and the
    target modality's raw values cut with the same crop, resized to ``out_size`` and converted by its plugin's
    transform. Evaluation uses the centre crop."""

    def __init__(self, url: str, inputs: ModalitySet, target: ModalitySpec, out_size: tuple[int, int], *,
                 train: bool, seed: int):
        from fourm_core.data import FourMCollate, FourMDataset, Store

        store = Store.open(url, "r")
        if not store.has(target.name, "raw"):
            raise FinetuneConfigError(f"store {url} has no raw {target.name!r} (the dense target); label it first "
                                      f"(`fourm label {url} --modalities {target.name}`)")
        if target.transform is None or not adapter_for(target).image_like:
            raise FinetuneConfigError(f"dense target {target.name!r} must be an image-like modality with a transform "
                                      f"(depth, normal, semseg, canny_edge ...); it is a {target.kind!r} modality")
        self.inputs = FourMDataset(url, modalities=inputs, crop="random" if train else "center", seed=seed)
        self.collate_inputs = FourMCollate(None, inputs)
        self.target = target
        self.out_size = tuple(out_size)
        self._transform: Any = None

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> list[tuple[dict, dict, Any]]:
        ds = self.inputs
        samples = ds.__getitems__(list(keys))
        if self._transform is None:
            self._transform = self.target.transform.build()
        store_ix = [ds.locate(int(k[0])) for k in keys]
        stores = ds._stores()
        out = []
        for (k, i), (index, draw), sample in zip(store_ix, keys, samples):
            store = stores[k]
            c = ds._choose_crop(k, int(draw))
            if ds.num_crops[k]:
                top, left, h, w, flip = (int(v) for v in store.read_crops(np.array([i]))[0, c])
            else:
                top, left, h, w, flip = 0, 0, store.raw_size, store.raw_size, 0
            raw = store.read_raw_array(self.target.name, np.array([i]))[0]
            cut = self._transform.crop(raw, box=(top, left, h, w), flip=bool(flip), size=self.out_size)
            out.append((sample, cut))
        return out

    def __getitem__(self, key: tuple[int, int]) -> tuple[dict, dict, Any]:
        return self.__getitems__([key])[0]


def collate(samples: list) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], Any]:
    """Folder items → ``(inputs, present, labels (B,))``."""
    inputs = {k: torch.stack([s[0][k] for s in samples]) for k in samples[0][0]}
    present = {k: torch.stack([s[1][k] for s in samples]) for k in samples[0][1]}
    return inputs, present, torch.stack([s[2] for s in samples])


class DenseCollate:
    """Store items → ``(inputs, present, target tensor (B, C, H, W))`` (picklable for workers)."""

    def __init__(self, data: StoreDenseData):
        self.stack = data.collate_inputs.stack
        self.target = data.target
        self._transform: Any = None

    def __call__(self, samples: list) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], Any]:
        inputs, present = self.stack([s[0] for s in samples])
        if self._transform is None:
            self._transform = self.target.transform.build()
        return inputs, present, self._transform.to_tensor([s[1] for s in samples])


class ResumableSampler(torch.utils.data.Sampler):
    """``(index, draw)`` pairs of one epoch, from ``position`` on: a permutation seeded by (seed, epoch) (or the
    natural order without ``shuffle``), this rank's share of it (every ``world``-th), each with a crop draw."""

    def __init__(self, n: int, *, seed: int, shuffle: bool, world: int = 1, rank: int = 0):
        self.n, self.seed, self.shuffle, self.world, self.rank = n, seed, shuffle, world, rank
        self.epoch = 0
        self.position = 0

    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, epoch))
        idx = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        draws = rng.integers(0, 1 << 31, size=self.n)
        pairs = np.stack([idx, draws], axis=1)
        return pairs[self.rank::self.world]

    def __len__(self) -> int:
        return max(0, len(range(self.rank, self.n, self.world)) - self.position)

    def __iter__(self):
        for index, draw in self.order(self.epoch)[self.position:]:
            yield int(index), int(draw)
