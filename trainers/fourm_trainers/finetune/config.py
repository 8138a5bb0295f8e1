"""The strict configuration of ``fourm finetune`` (no torch import here).

::

    out_dir: runs/faces
    init_from: runs/my-4m/final       # a fourm checkpoint or a released 4M model (dir, hub id, .safetensors);
                                      # null: a fresh model of `model` (a from-scratch baseline)
    model: {preset: debug}            # only without init_from
    inputs: [rgb]                     # the backbone's inputs; the first is the main one
    input_dropout: {}                 # {modality: p}: drop an extra input per training sample with probability p
    task:
      type: classification            # or dense
      head: linear                    # classification: linear | mlp; dense: dense (ConvNeXt-style)
      num_classes: null               # classification: default = the number of class folders
      target: null                    # dense: the store modality whose raw values are the targets
      loss: null                      # default: cross_entropy (classification), else per target (see below)
      out_channels: null              # dense: default 1 (l1 / ssi_l1), 3 (cosine), num_classes (cross_entropy)
      out_size: null                  # dense: (H, W) of the prediction; default the main input's image size
      width: 64                       # dense head channels
      stages: 2                       # dense head 2x upsamplings
      dropout: 0.0
      balanced: false                 # cross_entropy: weigh the classes of each batch equally (thin edges)
    data:
      train: {path: data/faces, format: folder}        # folder: class sub-folders; store: a fourm store
      val: {path: data/faces_val, format: folder}      # or val_fraction below
      val_fraction: 0.0               # folder data without val: hold out this share of every class
    freeze_backbone: false            # a linear probe: only the head trains
    batch_size: 16
    max_steps: 200
    optimizer: {lr: 1.0e-3, min_lr: 1.0e-6, weight_decay: 0.05, layer_decay: 0.75, betas: [0.9, 0.999]}
    warmup_steps: 10
    clip_grad: 1.0
    mixed_precision: auto             # bf16 on a GPU, no (fp32) on the CPU
    eval_every: 50
    save_every: 50
    log_every: 1
    seed: 0
    num_workers: 0
    cpu: false
    tracker: null                     # or tensorboard, wandb ... (metrics.jsonl is always written)

Dense losses: ``l1`` / ``ssi_l1`` (relative depth: scale-and-shift invariant) / ``cosine`` (normals) /
``cross_entropy`` (class maps, e.g. semseg; the target's storage fill value, e.g. 255, is ignored). The default
for a target follows its raw channels: 3 → ``cosine``, an integer single-channel map → ``cross_entropy``,
otherwise ``l1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..config import TrainConfigError, apply_overrides, read_yaml
from fourm_registry.strict import attrs_kwargs

TASKS = ("classification", "dense")
HEADS = {"classification": ("linear", "mlp"), "dense": ("dense",)}
FORMATS = ("folder", "store")
LOSS_NAMES = ("cross_entropy", "l1", "ssi_l1", "cosine")
#: the fine-tuning configs shipped with fourm_trainers (``--config NAME``)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "finetune"


class FinetuneConfigError(TrainConfigError):
    """The fine-tuning configuration is invalid."""


def _strict(cls: type, data: Any, where: str) -> dict[str, Any]:
    return attrs_kwargs(cls, data, where, error=FinetuneConfigError)


def _check_int(name: str, v: Any, *, zero: bool = False) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or (v == 0 and not zero):
        raise FinetuneConfigError(f"finetune config: {name} must be a {'non-negative' if zero else 'positive'} "
                                  f"int, got {v!r}")


@attrs.frozen(kw_only=True)
class DataSource:
    """One data source: a folder of class sub-folders or a fourm store."""

    path: str
    format: str = "folder"

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise FinetuneConfigError(f"finetune config: data path must be a non-empty string, got {self.path!r}")
        if self.format not in FORMATS:
            raise FinetuneConfigError(f"finetune config: data format {self.format!r} is not one of "
                                      f"{', '.join(FORMATS)}")


@attrs.frozen(kw_only=True)
class DataConfig:
    train: DataSource
    val: DataSource | None = None
    val_fraction: float = 0.0

    def __attrs_post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise FinetuneConfigError(f"finetune config: data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_fraction and self.val is not None:
            raise FinetuneConfigError("finetune config: give data.val or data.val_fraction, not both")
        if self.val_fraction and self.train.format != "folder":
            raise FinetuneConfigError("finetune config: data.val_fraction splits folder data; for a store give "
                                      "data.val: {path: VAL_STORE, format: store}")


@attrs.frozen(kw_only=True)
class TaskConfig:
    type: str = "classification"
    head: str | None = None
    num_classes: int | None = None
    target: str | None = None
    loss: str | None = None
    out_channels: int | None = None
    out_size: tuple[int, int] | None = attrs.field(default=None,
                                                   converter=lambda v: None if v is None else tuple(v))
    width: int = 64
    stages: int = 2
    dropout: float = 0.0
    balanced: bool = False

    def __attrs_post_init__(self) -> None:
        if self.balanced and self.loss not in (None, "cross_entropy"):
            raise FinetuneConfigError(f"finetune config: task.balanced weighs cross_entropy classes; the loss is "
                                      f"{self.loss!r}")
        if self.type not in TASKS:
            raise FinetuneConfigError(f"finetune config: task.type {self.type!r} is not one of {', '.join(TASKS)}")
        if self.head is not None and self.head not in HEADS[self.type]:
            raise FinetuneConfigError(f"finetune config: task.head {self.head!r} does not fit a {self.type} task; "
                                      f"one of {', '.join(HEADS[self.type])}")
        if self.loss is not None and self.loss not in LOSS_NAMES:
            raise FinetuneConfigError(f"finetune config: task.loss {self.loss!r} is not one of {', '.join(LOSS_NAMES)}")
        if self.type == "dense" and not self.target:
            raise FinetuneConfigError("finetune config: a dense task needs task.target, the store modality whose "
                                      "raw values are the targets (e.g. depth, normal, semseg)")
        if self.type == "classification" and self.loss not in (None, "cross_entropy"):
            raise FinetuneConfigError(f"finetune config: a classification task uses cross_entropy, not {self.loss!r}")
        for name in ("num_classes", "out_channels"):
            if getattr(self, name) is not None:
                _check_int(f"task.{name}", getattr(self, name))
        _check_int("task.width", self.width)
        _check_int("task.stages", self.stages, zero=True)
        if self.out_size is not None and (len(self.out_size) != 2 or not all(isinstance(v, int) and v > 0
                                                                              for v in self.out_size)):
            raise FinetuneConfigError(f"finetune config: task.out_size must be [H, W], got {self.out_size!r}")

    @property
    def head_name(self) -> str:
        return self.head or HEADS[self.type][0]


@attrs.frozen(kw_only=True)
class FinetuneOptimizer:
    lr: float = 1e-3
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), converter=tuple)
    eps: float = 1e-8

    def __attrs_post_init__(self) -> None:
        if not self.lr > 0 or not 0 <= self.min_lr <= self.lr:
            raise FinetuneConfigError(f"finetune config: optimizer needs lr > 0 and 0 <= min_lr <= lr, got "
                                      f"lr={self.lr}, min_lr={self.min_lr}")
        if not 0 < self.layer_decay <= 1:
            raise FinetuneConfigError(f"finetune config: optimizer.layer_decay must be in (0, 1], got "
                                      f"{self.layer_decay}")
        if self.weight_decay < 0 or len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise FinetuneConfigError(f"finetune config: optimizer needs weight_decay >= 0 and two betas in [0, 1), "
                                      f"got {self.weight_decay}, {self.betas}")


@attrs.frozen(kw_only=True)
class FinetuneConfig:
    """Everything ``fourm finetune`` needs (see the module docstring for the YAML form)."""

    out_dir: str
    data: DataConfig
    inputs: tuple[str, ...] = attrs.field(default=("rgb",), converter=tuple)
    init_from: str | None = None
    model: dict[str, Any] = attrs.field(factory=lambda: {"preset": "debug"})
    input_dropout: dict[str, float] = attrs.field(factory=dict)
    task: TaskConfig = attrs.field(factory=TaskConfig)
    freeze_backbone: bool = False
    batch_size: int = 16
    max_steps: int = 200
    optimizer: FinetuneOptimizer = attrs.field(factory=FinetuneOptimizer)
    warmup_steps: int = 0
    clip_grad: float | None = 1.0
    mixed_precision: str = "auto"
    eval_every: int = 0
    save_every: int = 0
    log_every: int = 1
    seed: int = 0
    num_workers: int = 0
    cpu: bool = False
    tracker: str | None = None

    def __attrs_post_init__(self) -> None:
        from ..config import TRACKERS

        if self.tracker not in TRACKERS:
            raise FinetuneConfigError(f"finetune config: tracker {self.tracker!r} is not one of "
                                      f"{', '.join(str(t) for t in TRACKERS)}")
        if not self.inputs or not all(isinstance(m, str) and m for m in self.inputs):
            raise FinetuneConfigError(f"finetune config: inputs must be a non-empty list of modality names, got "
                                      f"{list(self.inputs)!r}")
        for f in ("batch_size", "max_steps", "log_every"):
            _check_int(f, getattr(self, f))
        for f in ("warmup_steps", "eval_every", "save_every", "seed", "num_workers"):
            _check_int(f, getattr(self, f), zero=True)
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise FinetuneConfigError(f"finetune config: mixed_precision {self.mixed_precision!r} is not one of "
                                      f"auto, no, bf16, fp16")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise FinetuneConfigError(f"finetune config: clip_grad must be > 0 or null, got {self.clip_grad!r}")
        for name, p in self.input_dropout.items():
            if name not in self.inputs[1:]:
                extra = ", ".join(self.inputs[1:]) or "none"
                raise FinetuneConfigError(f"finetune config: input_dropout names {name!r}, which is not an extra "
                                          f"input (the inputs after the main one: {extra})")
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise FinetuneConfigError(f"finetune config: input_dropout[{name!r}] must be in [0, 1], got {p!r}")
        if self.task.type == "classification" and self.data.train.format != "folder":
            raise FinetuneConfigError("finetune config: classification reads a folder of class sub-folders "
                                      "(data.train.format: folder); a store feeds dense tasks")
        if self.task.type == "dense" and self.data.train.format != "store":
            raise FinetuneConfigError("finetune config: a dense task reads its targets from a fourm store "
                                      "(data.train.format: store)")
        if self.init_from is None:
            from fourm_core.model import ModelConfig

            try:
                ModelConfig.coerce(dict(self.model))
            except (ValueError, TypeError) as exc:
                raise FinetuneConfigError(f"finetune config: model: {exc}") from None

    @property
    def has_val(self) -> bool:
        return self.data.val is not None or self.data.val_fraction > 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneConfig:
        """Build from a mapping (parsed YAML); unknown keys raise listing the valid ones."""
        d = _strict(cls, data, "finetune config")
        for key in ("out_dir", "data"):
            if key not in d:
                raise FinetuneConfigError(f"finetune config: {key!r} is required")
        dd = _strict(DataConfig, d["data"], "finetune config: data")
        if "train" not in dd:
            raise FinetuneConfigError("finetune config: data.train is required ({path: DIR_OR_STORE, format: ...})")
        for key in ("train", "val"):
            if dd.get(key) is not None and not isinstance(dd[key], DataSource):
                dd[key] = DataSource(**_strict(DataSource, dd[key], f"finetune config: data.{key}"))
        d["data"] = DataConfig(**dd)
        if "task" in d and not isinstance(d["task"], TaskConfig):
            d["task"] = TaskConfig(**_strict(TaskConfig, d["task"], "finetune config: task"))
        if "optimizer" in d and not isinstance(d["optimizer"], FinetuneOptimizer):
            d["optimizer"] = FinetuneOptimizer(**_strict(FinetuneOptimizer, d["optimizer"],
                                                         "finetune config: optimizer"))
        for key in ("model", "input_dropout"):
            if key in d and d[key] is None:
                d[key] = {}
            if key in d and not isinstance(d[key], Mapping):
                raise FinetuneConfigError(f"finetune config: {key} must be a mapping, got {d[key]!r}")
        if isinstance(d.get("inputs"), str):
            d["inputs"] = [d["inputs"]]
        try:
            return cls(**d)
        except TypeError as exc:
            raise FinetuneConfigError(f"finetune config: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> FinetuneConfig:
        """A YAML file, or a shipped config by name (``classify_cpu``); ``overrides`` are ``key=value``."""
        p = finetune_config_path(path)
        data = read_yaml(p, FinetuneConfigError) or {}
        if not isinstance(data, dict):
            raise FinetuneConfigError(f"{p}: the top level must be a mapping of config keys")
        try:
            return cls.from_dict(apply_overrides(data, overrides))
        except TrainConfigError as exc:
            raise FinetuneConfigError(f"{p}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self, recurse=True)
        d["inputs"] = list(self.inputs)
        d["optimizer"]["betas"] = list(self.optimizer.betas)
        if self.task.out_size is not None:
            d["task"]["out_size"] = list(self.task.out_size)
        return d


def finetune_config_path(name_or_path: str | Path) -> Path:
    """An existing file as given, else a config shipped in ``fourm_trainers/configs/finetune`` by name."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = {q.stem: q for q in sorted(CONFIG_DIR.glob("*.yaml"))}
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if stem in shipped and len(p.parts) == 1:
        return shipped[stem]
    raise FinetuneConfigError(f"finetune config {str(name_or_path)!r} does not exist: pass a YAML file or the name "
                              f"of a shipped one ({', '.join(shipped) or 'none'})")
