"""The fine-tuned model: backbone + head from a config, the task loss, predictions as raw values, and the
``final/`` format (``transfer.safetensors`` + ``finetune.yaml``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from fourm_core.backbone import (Backbone, DenseHead, LinearHead, MLPHead, TransferModel, align_scale_shift,
                                 get_loss)

from .config import FinetuneConfig, FinetuneConfigError

WEIGHTS = "transfer.safetensors"
CONFIG = "finetune.yaml"


def build_backbone(cfg: FinetuneConfig) -> Backbone:
    """The backbone of ``cfg.init_from`` over ``cfg.inputs``, or of a fresh ``cfg.model`` (a from-scratch
    baseline) over the installed modalities of that name."""
    from fourm_core.backbone import BackboneError

    try:
        if cfg.init_from is not None:
            return Backbone.from_pretrained(cfg.init_from, list(cfg.inputs), tokenizers=False)
        from fourm_core.model import build_model
        from fourm_registry import get_modalities

        return Backbone(build_model(get_modalities().subset(cfg.inputs), dict(cfg.model)), list(cfg.inputs))
    except (BackboneError, KeyError) as exc:
        raise FinetuneConfigError(f"finetune config: inputs: {exc}") from None


def build_transfer_model(cfg: FinetuneConfig, backbone: Backbone, data: Any) -> TransferModel:
    """The backbone and the task's head (:mod:`fourm_core.backbone.heads`), the backbone frozen for a probe."""
    t, info, d = cfg.task, data.info, backbone.num_features
    if t.type == "classification":
        head = (LinearHead(d, info.out_channels, dropout=t.dropout) if t.head_name == "linear"
                else MLPHead(d, info.out_channels, dropout=t.dropout))
    else:
        head = DenseHead(d, info.out_channels, width=t.width, stages=t.stages, out_size=info.out_size)
    model = TransferModel(backbone, head)
    if cfg.freeze_backbone:
        backbone.freeze()
    return model


def task_loss(cfg: FinetuneConfig, info: Any, pred: Tensor, target: Tensor) -> Tensor:
    """The task's loss of predictions ``pred`` against the collated targets."""
    fn = get_loss(info.loss)
    if info.loss == "cross_entropy":
        if target.ndim == pred.ndim and target.shape[1] != 1:
            raise FinetuneConfigError(f"cross_entropy targets must be class ids (B, 1, H, W), got "
                                      f"{tuple(target.shape)}")
        return fn(pred, target, ignore_index=info.ignore_index, balanced=cfg.task.balanced)
    return fn(pred, target)


def class_confusion(pred: Tensor, target: Tensor, k: int, ignore_index: int) -> Tensor:
    """(k, k) counts of (true class, predicted class) over the valid pixels of a batch of class-map logits."""
    t = target.long().reshape(-1)
    p = pred.argmax(1).reshape(-1)
    keep = (t != ignore_index) & (t >= 0) & (t < k)
    return torch.bincount(t[keep] * k + p[keep], minlength=k * k).reshape(k, k).to(torch.float64)


def confusion_figures(confusion: Tensor) -> dict[str, float]:
    """``pixel_accuracy`` and ``miou`` (mean IoU over the classes that occur in targets or predictions)."""
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    seen = union > 0
    return {"pixel_accuracy": float(tp.sum() / confusion.sum().clamp_min(1)),
            "miou": float((tp[seen] / union[seen]).mean()) if bool(seen.any()) else float("nan")}


def predictions_to_raw(cfg: FinetuneConfig, info: Any, pred: Tensor, target: Tensor) -> tuple[list, list]:
    """Dense predictions and targets as raw values of the target modality (its transform's ``from_tensor``):
    class maps by argmax, ``ssi_l1`` depth aligned to the target's scale and shift first."""
    transform = info.target.transform.build()
    p = pred.float()
    if info.loss == "cross_entropy":
        p = p.argmax(1, keepdim=True).float()
    elif info.loss == "ssi_l1":
        p = align_scale_shift(p, target)
    return list(transform.from_tensor(p.cpu())), list(transform.from_tensor(target.float().cpu()))


def save_finetuned(model: TransferModel, cfg: FinetuneConfig, data: Any, directory: Path) -> Path:
    """``transfer.safetensors`` (backbone + head) and ``finetune.yaml`` (the config, the classes)."""
    import yaml
    from safetensors.torch import save_file

    from fourm_core.data.atomic import atomic_path, write_text

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    meta = {"config": cfg.to_dict(), "classes": list(data.info.classes), "out_channels": data.info.out_channels}
    write_text(directory / CONFIG, yaml.safe_dump(meta, sort_keys=False))
    return directory


def load_finetuned(directory: str | Path, *, map_location: str = "cpu") -> tuple[TransferModel, dict[str, Any]]:
    """A model saved by ``fourm finetune`` (its ``final/``) and its metadata (``config``, ``classes``). The
    backbone's architecture comes from the run's ``init_from`` (or ``model``) again; the weights from here."""
    import yaml
    from safetensors.torch import load_file

    from .setup import TaskInfo, dense_info

    d = Path(directory)
    if not (d / WEIGHTS).is_file() or not (d / CONFIG).is_file():
        raise FinetuneConfigError(f"{d} is not a fine-tuned model directory (expected {WEIGHTS} and {CONFIG})")
    meta = yaml.safe_load((d / CONFIG).read_text())
    cfg = FinetuneConfig.from_dict(meta["config"])
    backbone = build_backbone(cfg)
    if cfg.task.type == "dense":
        info = dense_info(cfg, backbone.modalities[cfg.inputs[0]])
    else:
        info = TaskInfo(loss="cross_entropy", out_channels=int(meta["out_channels"]), classes=meta["classes"])
    model = build_transfer_model(cfg, backbone, SimpleNamespace(info=info))
    state = load_file(str(d / WEIGHTS), device=map_location)
    model.load_state_dict(state, strict=True)
    return model.eval(), meta
