"""What a fine-tuning task reads: its datasets and loaders (:class:`FinetuneData`) and what the loss and the
metrics need to know of the target (:class:`TaskInfo`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fourm_core.kinds import adapter_for
from fourm_registry import ModalitySet, ModalitySpec, get_modalities

from .config import FinetuneConfig, FinetuneConfigError
from .data import (DenseCollate, ImageFolderData, ResumableSampler, StoreDenseData, collate, list_image_folder,
                   split_items)


@dataclass
class TaskInfo:
    """The target of a task: classes (classification) or the dense target modality and its loss."""

    loss: str
    out_channels: int
    classes: list[str] = field(default_factory=list)
    target: ModalitySpec | None = None
    out_size: tuple[int, int] | None = None
    ignore_index: int = -100


@dataclass
class FinetuneData:
    cfg: FinetuneConfig
    info: TaskInfo
    train: Any
    train_sampler: ResumableSampler
    val: Any | None
    val_sampler: ResumableSampler | None
    collate_fn: Any

    def loader(self, *, train: bool) -> torch.utils.data.DataLoader:
        ds, sampler = (self.train, self.train_sampler) if train else (self.val, self.val_sampler)
        return torch.utils.data.DataLoader(ds, batch_size=self.cfg.batch_size, sampler=sampler,
                                           num_workers=self.cfg.num_workers, collate_fn=self.collate_fn)

    def new_metric(self) -> Any | None:
        """A fresh accumulator of the dense target's plugin metric (None: classification, or no metric)."""
        spec = self.info.target
        if spec is None or spec.metrics is None:
            return None
        try:
            from fourm_core.metrics import build_metric
        except ImportError:  # the metrics helper module is optional: the plugin's ref builds it too
            return spec.metrics.build()
        return build_metric(spec)


def dense_info(cfg: FinetuneConfig, main: ModalitySpec) -> TaskInfo:
    t = cfg.task
    try:
        target = get_modalities()[t.target]
    except KeyError:
        raise FinetuneConfigError(f"finetune config: task.target {t.target!r} is not an installed modality "
                                  f"(installed: {', '.join(get_modalities().names)})") from None
    storage = target.storage
    channels = storage.shape[2] if storage is not None and storage.shape and len(storage.shape) == 3 else 1
    integer = storage is not None and not storage.is_json and np.issubdtype(np.dtype(storage.dtype), np.integer)
    loss = t.loss or ("cosine" if channels == 3 else "cross_entropy" if integer and channels == 1 else "l1")
    if loss == "cross_entropy":
        if t.num_classes is None:
            raise FinetuneConfigError(f"finetune config: a cross_entropy dense task on {target.name!r} needs "
                                      f"task.num_classes (the number of class ids of its raw maps)")
        out_channels = t.out_channels or t.num_classes
    else:
        out_channels = t.out_channels or channels
    fill = storage.fill_value if storage is not None else None
    size = t.out_size or (tuple(main.image_size) if main.image_size else tuple(g * 16 for g in main.grid))
    return TaskInfo(loss=loss, out_channels=out_channels, target=target, out_size=tuple(size),
                    ignore_index=int(fill) if loss == "cross_entropy" and fill is not None else -100)


def make_data(cfg: FinetuneConfig, inputs: ModalitySet, *, world: int = 1, rank: int = 0) -> FinetuneData:
    """The task's datasets, samplers and collate function for the backbone's ``inputs``."""
    main = inputs[cfg.inputs[0]]
    seed = cfg.seed
    if cfg.task.type == "classification":
        classes, items = list_image_folder(cfg.data.train.path)
        val_items = None
        if cfg.data.val is not None:
            val_classes, val_items = list_image_folder(cfg.data.val.path)
            if val_classes != classes:
                raise FinetuneConfigError(f"data.val {cfg.data.val.path}: class folders {val_classes} differ from "
                                          f"the training folders {classes}")
        elif cfg.data.val_fraction:
            items, val_items = split_items(items, cfg.data.val_fraction, seed)
        k = cfg.task.num_classes or len(classes)
        if k < len(classes):
            raise FinetuneConfigError(f"finetune config: task.num_classes {k} < the {len(classes)} class folders")
        info = TaskInfo(loss="cross_entropy", out_channels=k, classes=classes)
        train = ImageFolderData(items, main, train=True)
        val = ImageFolderData(val_items, main, train=False) if val_items else None
        fn = collate
    else:
        for name in cfg.inputs:
            if not adapter_for(inputs[name]).discrete and adapter_for(inputs[name]).name != "pixels":
                raise FinetuneConfigError(f"store data feeds pixels and token inputs; {name!r} is a "
                                          f"{inputs[name].kind!r} modality")
        info = dense_info(cfg, main)
        train = StoreDenseData(cfg.data.train.path, inputs, info.target, info.out_size, train=True, seed=seed)
        val = (StoreDenseData(cfg.data.val.path, inputs, info.target, info.out_size, train=False, seed=seed)
               if cfg.data.val is not None else None)
        fn = DenseCollate(train)
    sampler = ResumableSampler(len(train), seed=seed, shuffle=True, world=world, rank=rank)
    val_sampler = ResumableSampler(len(val), seed=seed, shuffle=False, world=world, rank=rank) if val else None
    return FinetuneData(cfg, info, train, sampler, val, val_sampler, fn)
