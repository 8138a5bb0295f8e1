"""The strict, typed configuration of ``fourm train`` (no torch import here).

A YAML file maps onto :class:`TrainConfig`; every section is strict (an unknown key raises naming the section
and listing the valid keys)::

    out_dir: runs/debug
    model: {preset: debug}                 # a fourm_core.model preset + ModelConfig overrides
    init_from: null                        # model to fine-tune: a fourm or released 4M dir, hub id or .safetensors
    init_format: fourm                     # or ml4m: a reference checkpoint (init_ml4m_config: its config.json)
    modalities: null                       # default: every modality with tokens in the datasets + installed plugin
    datasets:                              # training stores with mixture weights (one store drawn per sample)
      - {path: data/a.zarr, weight: 1.0}
      - path: data/text.zarr               # per-dataset modalities and masking (all optional):
        weight: 0.2
        inputs: [caption]                  # only these may be inputs (default: every trained modality)
        targets: [caption]                 # only these may be targets (default: every trained modality)
        input_alphas: 1.0                  # one Dirichlet component instead of the global mixture
        target_alphas: 1.0                 # (a number, or {modality: alpha, "*": default})
        masking: {input_tokens: 128}       # other keys of `masking` overridden for this dataset
    val_datasets: [{path: data/val.zarr}]
    tokenizers: null                       # tokenizer dir (text vocabulary size; copied into out/final/tokenizers)
    masking: {input_tokens: 64, target_tokens: 64}    # fourm_core.masking.MaskingConfig
    batch_size: 8                          # per process
    grad_accum: 1
    max_steps: 300
    optimizer: {lr: 1.0e-3, min_lr: 0.0, weight_decay: 0.05, betas: [0.9, 0.95], eps: 1.0e-8}
    schedule:                              # LR and weight decay by tokens seen (train/schedules.py)
      lr: cosine                           # cosine | linear | constant | inverse_sqrt (after a linear warm-up)
      warmup_tokens: 20000
      total_tokens: null                   # default: max_steps x the nominal tokens per step
      cooldown_tokens: 0                   # inverse_sqrt: linear decay to min_lr over the last N tokens
      timescale_tokens: null               # inverse_sqrt time scale (default: warmup_tokens)
      weight_decay: constant               # constant | cosine | linear, from optimizer.weight_decay ...
      weight_decay_end: null               # ... to this at total_tokens (default: optimizer.weight_decay)
    clip_grad: 1.0
    skip_nonfinite: true                   # a step whose gradient norm is NaN/inf is skipped (and counted)
    skip_grad_norm: null                   # also skip steps whose gradient norm is >= this
    max_skipped_in_a_row: 10               # stop with an error after this many skipped steps in a row (0: never)
    mixed_precision: auto                  # auto: bf16 on GPU, no (fp32) on CPU
    activation_checkpointing: false
    freeze_trunk_steps: 0                  # fine-tuning: train only the embedding tables for N steps
    eval_every: 100                        # per-modality validation losses
    eval_batches: 4
    save_every: 100                        # accelerate save_state (also on SIGTERM/SIGINT)
    log_every: 1
    tracker: null                          # or tensorboard (JSON-lines metrics are always written)
    seed: 0
    num_workers: 0
    cpu: false                             # force the CPU even when a GPU is visible
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from fourm_registry import FourmError
from fourm_registry.strict import attrs_kwargs


class TrainConfigError(FourmError, ValueError):
    """The training configuration is invalid."""


def _strict(cls: type, data: Any, where: str) -> dict[str, Any]:
    return attrs_kwargs(cls, data, where, error=TrainConfigError)


def _positive_int(name: str, v: Any, allow_zero: bool = False) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or (v == 0 and not allow_zero):
        raise TrainConfigError(f"train config: {name} must be a {'non-negative' if allow_zero else 'positive'} int, got {v!r}")


def _names(v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return tuple(n for n in v.replace("-", ",").split(",") if n)  # also the reference's "a-b-c" form
    return tuple(str(n) for n in v)


@attrs.frozen(kw_only=True)
class DatasetEntry:
    """One store of the training mixture, with optional per-dataset modalities and masking."""

    path: str
    weight: float = 1.0
    #: the modalities this dataset's samples may use as inputs / targets (``None``: every trained modality)
    inputs: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    targets: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    #: a single Dirichlet component replacing the global mixture (a number or {modality: alpha, "*": default})
    input_alphas: Any = None
    target_alphas: Any = None
    #: keys of the global ``masking`` overridden for this dataset (e.g. input_tokens, mixture)
    masking: dict[str, Any] | None = None

    def __attrs_post_init__(self) -> None:
        where = f"train config: dataset {self.path!r}"
        if not isinstance(self.path, str) or not self.path:
            raise TrainConfigError(f"train config: dataset path must be a non-empty string, got {self.path!r}")
        if not isinstance(self.weight, (int, float)) or isinstance(self.weight, bool) or self.weight < 0:
            raise TrainConfigError(f"{where}: weight must be >= 0, got {self.weight!r}")
        if self.masking is not None and not isinstance(self.masking, Mapping):
            raise TrainConfigError(f"{where}: masking must be a mapping of masking keys, got {self.masking!r}")
        if (self.input_alphas is None) != (self.target_alphas is None):
            raise TrainConfigError(f"{where}: give input_alphas and target_alphas together (one Dirichlet "
                                   f"component), or neither")
        if self.input_alphas is not None and "mixture" in (self.masking or {}):
            raise TrainConfigError(f"{where}: input_alphas/target_alphas and masking.mixture both set the "
                                   f"mixture; keep one")
        if self.inputs is not None and self.targets is not None and not (self.inputs or self.targets):
            raise TrainConfigError(f"{where}: inputs and targets are both empty; the dataset would train nothing")

    @property
    def has_own_masking(self) -> bool:
        """Whether this dataset's masking differs from the global one."""
        return (self.inputs is not None or self.targets is not None or self.input_alphas is not None
                or bool(self.masking))

    @property
    def modalities(self) -> tuple[str, ...] | None:
        """The modalities this dataset's samples load (inputs ∪ targets; ``None``: all)."""
        if self.inputs is None or self.targets is None:
            return None
        return tuple(dict.fromkeys(self.inputs + self.targets))

    def masking_dict(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """This dataset's masking config: ``base`` with this entry's overrides (a ``MaskingConfig`` mapping)."""
        d = {**dict(base), **dict(self.masking or {})}
        if self.input_alphas is not None:
            d["mixture"] = [{"name": "dataset", "input_alphas": self.input_alphas,
                             "target_alphas": self.target_alphas}]
        if self.inputs is not None:
            d["inputs"] = list(self.inputs)
        if self.targets is not None:
            d["targets"] = list(self.targets)
        return d

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "weight": self.weight}
        for k in ("inputs", "targets"):
            if getattr(self, k) is not None:
                d[k] = list(getattr(self, k))
        for k in ("input_alphas", "target_alphas", "masking"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


@attrs.frozen(kw_only=True)
class OptimizerConfig:
    """AdamW; weight decay is not applied to norms, biases, embedding tables and position/modality embeddings."""

    lr: float = 1e-4
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.95), converter=tuple)
    eps: float = 1e-8

    def __attrs_post_init__(self) -> None:
        if not self.lr > 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise TrainConfigError(f"train config: optimizer needs lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, "
                                   f"min_lr={self.min_lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise TrainConfigError(f"train config: optimizer.betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.weight_decay < 0:
            raise TrainConfigError(f"train config: optimizer.weight_decay must be >= 0, got {self.weight_decay}")


LR_SCHEDULES = ("cosine", "linear", "constant", "inverse_sqrt")
WD_SCHEDULES = ("constant", "cosine", "linear")


def schedule_problem(lr: str, weight_decay: str, *, warmup: int, cooldown: int, timescale: int | None) -> str:
    """What is wrong with a schedule's settings ('' when nothing)."""
    if lr not in LR_SCHEDULES:
        return f"schedule.lr {lr!r} is not one of {', '.join(LR_SCHEDULES)}"
    if weight_decay not in WD_SCHEDULES:
        return f"schedule.weight_decay {weight_decay!r} is not one of {', '.join(WD_SCHEDULES)}"
    if lr == "inverse_sqrt" and not (timescale or warmup):
        return ("schedule.lr inverse_sqrt needs timescale_tokens > 0 or warmup_tokens > 0 (the time scale T of "
                "lr / sqrt((t + T) / T))")
    if cooldown and lr != "inverse_sqrt":
        return f"schedule.cooldown_tokens applies to the inverse_sqrt schedule only (lr {lr!r} already ends at min_lr)"
    return ""


@attrs.frozen(kw_only=True)
class ScheduleConfig:
    """Learning rate and weight decay as functions of the tokens seen (input + target tokens, all processes);
    the shapes are documented in :mod:`fourm_trainers.train.schedules`."""

    lr: str = "cosine"
    warmup_tokens: int = 0
    #: tokens at which the schedules end (``min_lr``, ``weight_decay_end``); default: ``max_steps`` × the
    #: nominal tokens per step
    total_tokens: int | None = None
    cooldown_tokens: int = 0
    timescale_tokens: int | None = None
    weight_decay: str = "constant"
    weight_decay_end: float | None = None

    def __attrs_post_init__(self) -> None:
        _positive_int("schedule.warmup_tokens", self.warmup_tokens, allow_zero=True)
        _positive_int("schedule.cooldown_tokens", self.cooldown_tokens, allow_zero=True)
        for f in ("total_tokens", "timescale_tokens"):
            if getattr(self, f) is not None:
                _positive_int(f"schedule.{f}", getattr(self, f))
        if self.weight_decay_end is not None and not (isinstance(self.weight_decay_end, (int, float))
                                                      and self.weight_decay_end >= 0):
            raise TrainConfigError(f"train config: schedule.weight_decay_end must be >= 0 or null, got "
                                   f"{self.weight_decay_end!r}")
        problem = schedule_problem(self.lr, self.weight_decay, warmup=self.warmup_tokens,
                                   cooldown=self.cooldown_tokens, timescale=self.timescale_tokens)
        if problem:
            raise TrainConfigError(f"train config: {problem}")
        if self.total_tokens is not None and self.warmup_tokens + self.cooldown_tokens > self.total_tokens:
            raise TrainConfigError(f"train config: schedule.warmup_tokens + cooldown_tokens "
                                   f"({self.warmup_tokens} + {self.cooldown_tokens}) exceed total_tokens "
                                   f"{self.total_tokens}")


TRACKERS = (None, "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
INIT_FORMATS = ("fourm", "ml4m")


@attrs.frozen(kw_only=True)
class TrainConfig:
    """Everything ``fourm train`` needs (see the module docstring for the YAML form)."""

    out_dir: str
    datasets: tuple[DatasetEntry, ...] = attrs.field(converter=tuple)
    model: dict[str, Any] = attrs.field(factory=lambda: {"preset": "debug"})
    init_from: str | None = None
    init_format: str = "fourm"
    init_ml4m_config: str | None = None
    modalities: tuple[str, ...] | None = attrs.field(default=None, converter=lambda v: None if v is None else tuple(v))
    val_datasets: tuple[DatasetEntry, ...] = attrs.field(default=(), converter=tuple)
    tokenizers: str | None = None
    vocab_sizes: dict[str, int] = attrs.field(factory=dict)
    masking: dict[str, Any] = attrs.field(factory=dict)
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 1000
    optimizer: OptimizerConfig = attrs.field(factory=OptimizerConfig)
    schedule: ScheduleConfig = attrs.field(factory=ScheduleConfig)
    clip_grad: float | None = 1.0
    skip_nonfinite: bool = True
    skip_grad_norm: float | None = None
    max_skipped_in_a_row: int = 10
    loss_type: str = "mod"
    mixed_precision: str = "auto"
    activation_checkpointing: bool = False
    freeze_trunk_steps: int = 0
    eval_every: int = 0
    eval_batches: int = 4
    save_every: int = 0
    log_every: int = 1
    tracker: str | None = None
    seed: int = 0
    num_workers: int = 0
    cpu: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.datasets:
            raise TrainConfigError("train config: 'datasets' needs at least one store ({path: ..., weight: ...})")
        for f in ("batch_size", "grad_accum", "max_steps", "log_every"):
            _positive_int(f, getattr(self, f))
        for f in ("freeze_trunk_steps", "eval_every", "eval_batches", "save_every", "num_workers", "seed",
                  "max_skipped_in_a_row"):
            _positive_int(f, getattr(self, f), allow_zero=True)
        if self.mixed_precision not in MIXED_PRECISION:
            raise TrainConfigError(f"train config: mixed_precision {self.mixed_precision!r} is not one of "
                                   f"{', '.join(MIXED_PRECISION)}")
        if self.tracker not in TRACKERS:
            raise TrainConfigError(f"train config: tracker {self.tracker!r} is not one of "
                                   f"{', '.join(str(t) for t in TRACKERS)}")
        if self.init_format not in INIT_FORMATS:
            raise TrainConfigError(f"train config: init_format {self.init_format!r} is not one of {', '.join(INIT_FORMATS)}")
        if self.init_format == "ml4m" and (self.init_from is None or self.init_ml4m_config is None):
            raise TrainConfigError("train config: init_format 'ml4m' needs init_from (the reference checkpoint) and "
                                   "init_ml4m_config (its config.json)")
        if self.loss_type not in ("mod", "mod_reference", "token_reference"):
            raise TrainConfigError(f"train config: loss_type {self.loss_type!r} is not one of mod, mod_reference, "
                                   f"token_reference")
        for f in ("clip_grad", "skip_grad_norm"):
            v = getattr(self, f)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
                raise TrainConfigError(f"train config: {f} must be > 0 or null, got {v!r}")
        if self.eval_every and not self.val_datasets:
            raise TrainConfigError("train config: eval_every is set but val_datasets is empty; add val_datasets "
                                   "or set eval_every: 0")
        # the sub-configs owned by core are validated here too, so a bad config fails before any work
        from fourm_core.masking import MaskingConfig
        from fourm_core.model import ModelConfig

        try:
            ModelConfig.coerce(dict(self.model))
        except (ValueError, TypeError) as exc:
            raise TrainConfigError(f"train config: model: {exc}") from None
        try:
            MaskingConfig.from_dict(self.masking)
        except ValueError as exc:
            raise TrainConfigError(f"train config: masking: {exc}") from None
        for key in ("datasets", "val_datasets"):
            for i, e in enumerate(getattr(self, key)):
                if e.has_own_masking:
                    try:
                        MaskingConfig.from_dict(e.masking_dict(self.masking))
                    except ValueError as exc:
                        raise TrainConfigError(f"train config: {key}[{i}] (dataset {e.path!r}): {exc}") from None

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping (parsed YAML); unknown keys raise listing the valid ones."""
        d = _strict(cls, data, "train config")
        for key in ("datasets", "val_datasets"):
            if key in d:
                entries = d[key] or []
                if isinstance(entries, (str, Mapping)) or not isinstance(entries, Sequence):
                    raise TrainConfigError(f"train config: {key} must be a list of {{path, weight, ...}} entries, got "
                                           f"{entries!r}")
                d[key] = tuple(e if isinstance(e, DatasetEntry)
                               else DatasetEntry(path=e) if isinstance(e, str)
                               else DatasetEntry(**_strict(DatasetEntry, e, f"train config: {key}[{i}]"))
                               for i, e in enumerate(entries))
        if "optimizer" in d and not isinstance(d["optimizer"], OptimizerConfig):
            d["optimizer"] = OptimizerConfig(**_strict(OptimizerConfig, d["optimizer"], "train config: optimizer"))
        if "schedule" in d and not isinstance(d["schedule"], ScheduleConfig):
            d["schedule"] = ScheduleConfig(**_strict(ScheduleConfig, d["schedule"], "train config: schedule"))
        for key in ("model", "masking", "vocab_sizes"):
            if key in d and d[key] is None:
                d[key] = {}
            if key in d and not isinstance(d[key], Mapping):
                raise TrainConfigError(f"train config: {key} must be a mapping, got {d[key]!r}")
        if "out_dir" not in d:
            raise TrainConfigError("train config: 'out_dir' is required (where checkpoints, metrics and the final "
                                   "model go)")
        if "datasets" not in d:
            raise TrainConfigError("train config: 'datasets' is required (a list of {path, weight})")
        try:
            return cls(**d)
        except TypeError as exc:
            raise TrainConfigError(f"train config: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
        """Read a YAML file, or a shipped config by name (:func:`config_path`); ``overrides`` are ``key=value``
        strings (dotted keys, YAML values)."""
        p = config_path(path)
        data = read_yaml(p, TrainConfigError) or {}
        if not isinstance(data, dict):
            raise TrainConfigError(f"{p}: the top level must be a mapping of config keys")
        data = apply_overrides(data, overrides)
        try:
            return cls.from_dict(data)
        except TrainConfigError as exc:
            raise TrainConfigError(f"{p}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """A YAML-friendly mapping :meth:`from_dict` reads back."""
        d = attrs.asdict(self, recurse=True)
        d["datasets"] = [e.to_dict() for e in self.datasets]
        d["val_datasets"] = [e.to_dict() for e in self.val_datasets]
        d["optimizer"]["betas"] = list(self.optimizer.betas)
        d["modalities"] = None if self.modalities is None else list(self.modalities)
        return d


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict; returns a new dict."""
    import copy

    import yaml

    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TrainConfigError(f"--set {item!r}: expected key=value (e.g. --set optimizer.lr=3e-4)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise TrainConfigError(f"--set {item!r}: the value is not valid YAML ({_yaml_problem(exc)}); quote it "
                                   f"for the shell, e.g. --set 'datasets=[{{path: data.zarr}}]'") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise TrainConfigError(f"--set {item!r}: {part!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


# ---------------------------------------------------------------------------------------- shipped configs
#: the training configs shipped inside this package (``fourm configs`` lists them)
CONFIG_DIR = Path(__file__).parent / "configs"


def shipped_configs() -> dict[str, Path]:
    """Name (file stem) -> path of every config shipped with fourm_trainers."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def config_path(name_or_path: str | Path) -> Path:
    """A config file: an existing path as given, else a shipped config by name (``debug_cpu`` or
    ``debug_cpu.yaml``, also as ``trainers/configs/debug_cpu.yaml``, where the source tree keeps them, so that
    this path works outside a checkout); a ``TrainConfigError`` listing the shipped names otherwise."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = shipped_configs()
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if stem in shipped and p.parent in (Path("."), Path("trainers/configs")):
        return shipped[stem]
    raise TrainConfigError(f"train config {str(name_or_path)!r} does not exist: pass a YAML file or the name of a "
                           f"shipped config ({', '.join(shipped) or 'none'}; `fourm configs` lists them)")


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)


def read_yaml(path: str | Path, error: type[Exception]) -> Any:
    """Parse a YAML file; a syntax error raises ``error`` naming the file, line and column."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML: {_yaml_problem(exc)}; fix the syntax") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the config: {exc.strerror or exc}") from None
