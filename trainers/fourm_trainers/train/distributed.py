"""Sharded training under Accelerate: preparing the model and optimizer for FSDP2 / DeepSpeed, and gathering
the full weights of a sharded model for the final ``save_pretrained``.

* **FSDP2** (``fsdp_version: 2``): the optimizer is built over the unwrapped model's parameter groups and
  prepared *together with* the model; Accelerate shards the model and points the optimizer at the sharded
  parameters by name, so the groups (decay / no decay, trunk / embeddings) survive; the decoder blocks'
  ``context_kv`` (called outside their ``forward``) is registered so that FSDP2 gathers their weights for it.
  FSDP1 is refused: it replaces the parameters with flat views, which loses those groups.
* **DeepSpeed ZeRO-2**: prepared together as well; the per-GPU micro-batch (``train_micro_batch_size_per_gpu``)
  and ``gradient_clipping`` of an ``auto`` DeepSpeed config come from the train config. The engine steps inside
  ``backward`` and clips itself, so ``grad_accum`` must be 1 (raise ``batch_size`` instead). ZeRO-3 is
  refused: its hooks gather a module's weights around that module's ``forward`` only, and the decoder blocks'
  ``context_kv`` runs outside it (FSDP2 has ``register_fsdp_forward_method`` for that; ZeRO-3 fails in backward).
* **Final weights**: a model whose parameters are ``DTensor`` shards (FSDP2) is gathered with
  ``get_model_state_dict(full_state_dict=True)`` on every process (the main one receives the tensors) and
  loaded into an unsharded copy of the model, which the main process saves. Under ZeRO-2 every process holds
  the full weights already.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..config import TrainConfig, TrainConfigError


#: methods of fourm's blocks that the model calls outside their ``forward`` (the decoder blocks' cross-attention
#: K/V, computed once per forward): FSDP2 must gather a sharded block's weights around them too
FSDP_FORWARD_METHODS = ("context_kv",)


def register_forward_methods(model: torch.nn.Module) -> int:
    """Make FSDP2 gather the weights of every sharded submodule around its :data:`FSDP_FORWARD_METHODS`
    (as it does around ``forward``); returns how many were registered."""
    from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

    n = 0
    for module in model.modules():
        if isinstance(module, FSDPModule):
            for name in FSDP_FORWARD_METHODS:
                if callable(getattr(module, name, None)):
                    register_fsdp_forward_method(module, name)
                    n += 1
    return n


def uses_deepspeed(acc: Any) -> bool:
    """Whether ``acc`` runs DeepSpeed."""
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.DEEPSPEED


def _fsdp_version(acc: Any) -> int | None:
    from accelerate.utils import DistributedType

    if acc.distributed_type != DistributedType.FSDP:
        return None
    return int(getattr(acc.state.fsdp_plugin, "fsdp_version", 1) or 1)


def prepare(acc: Any, model: torch.nn.Module, make_optimizer: Callable[[torch.nn.Module], Any],
            cfg: TrainConfig) -> tuple[Any, Any]:
    """The prepared (wrapped / sharded) model and optimizer for ``acc``'s distributed mode."""
    version = _fsdp_version(acc)
    if version == 1:
        raise TrainConfigError(
            "FSDP1 is not supported: it flattens the parameters, which loses the optimizer's parameter groups (no "
            "weight decay on norms and embeddings, the frozen trunk). Use FSDP2: `fsdp_version: 2` in the "
            "Accelerate config (trainers/fourm_trainers/configs/accelerate/fsdp2.yaml)")
    if uses_deepspeed(acc):
        _fill_deepspeed_config(acc, cfg)
    model, optimizer = acc.prepare(model, make_optimizer(model))
    if version == 2:
        register_forward_methods(acc.unwrap_model(model))
    return model, optimizer


def _fill_deepspeed_config(acc: Any, cfg: TrainConfig) -> None:
    """Set the ``auto`` values of the DeepSpeed config that the train config decides."""
    if cfg.grad_accum != 1:
        raise TrainConfigError(f"grad_accum {cfg.grad_accum} under DeepSpeed: the engine accumulates and steps "
                               f"inside backward; set grad_accum: 1 and raise batch_size (or use FSDP2)")
    ds = acc.state.deepspeed_plugin.deepspeed_config
    if ds.get("zero_optimization", {}).get("stage") == 3:
        raise TrainConfigError(
            "DeepSpeed ZeRO-3 is not supported: its backward fails on fourm's model (a partitioned weight seen with "
            "size 0; the decoder blocks' cross-attention K/V runs outside their forward, where ZeRO-3 does not "
            "gather the weights). Use ZeRO-2 (configs/accelerate/deepspeed_zero2.yaml) or FSDP2, which shards the parameters "
            "(configs/accelerate/fsdp2.yaml)")
    if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        ds["train_micro_batch_size_per_gpu"] = cfg.batch_size
    if ds.get("train_batch_size", "auto") == "auto":
        ds["train_batch_size"] = cfg.batch_size * acc.num_processes
    ds["gradient_accumulation_steps"] = 1
    if ds.get("gradient_clipping", "auto") == "auto":
        ds["gradient_clipping"] = float(cfg.clip_grad) if cfg.clip_grad is not None else 0.0


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether ``model``'s parameters are FSDP2 shards (``DTensor``)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def scalar(value: Any) -> float:
    """A Python float of a norm that may be a ``DTensor`` (FSDP2 gradient norms are)."""
    if hasattr(value, "full_tensor"):
        value = value.full_tensor()
    return float(value)


def full_state_dict(acc: Any, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The full (unsharded) weights of a sharded model, on the CPU of the main process (other processes: an
    empty dict); ``None`` when the model is not sharded (its own ``state_dict`` is complete). Every process
    must call this (it is a collective operation)."""
    if uses_deepspeed(acc):
        return None  # ZeRO-2: the weights are whole on every process (ZeRO-3 is refused by prepare)
    inner = acc.unwrap_model(model)
    if not is_sharded(inner):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(inner, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def unsharded_copy(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A plain CPU copy of a fourm model (same modalities, config and vocabularies) holding ``state``."""
    from fourm_core.model import ModelConfig

    copy = type(model)(model.modalities, ModelConfig.coerce(model.config), vocab_sizes=dict(model.vocab_sizes))
    missing, unexpected = copy.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise TrainConfigError(f"internal: the gathered weights do not fit the model (missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]})")
    return copy
