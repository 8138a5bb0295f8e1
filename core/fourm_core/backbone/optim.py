"""Optimizer parameter groups for fine-tuning a backbone: weight decay rules and MAE-style layer-wise
learning-rate decay (a parameter at depth ``l`` of an encoder with ``L`` blocks trains at
``lr · layer_decay^(L + 1 − l)``: the embeddings least, the head at the full rate)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .backbone import Backbone

#: substrings of parameter names without weight decay (besides 1-D parameters: norms, biases)
NO_DECAY_KEYS = ("token_emb", "pos_emb", "mod_emb", "register_tokens", "norm")


def layer_decay_groups(model: nn.Module, *, weight_decay: float, layer_decay: float = 1.0,
                       backbone: Backbone | None = None) -> list[dict[str, Any]]:
    """AdamW groups of ``model``'s trainable parameters, each with ``weight_decay`` and an ``lr_scale``.

    ``backbone``: the :class:`Backbone` inside ``model`` (default: the first submodule that is one); its
    parameters get the layer-wise scale, every other parameter (the head) scale 1. ``layer_decay`` 1 turns
    the decay off. Multiply each group's ``lr`` by its ``lr_scale`` when setting the learning rate."""
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if backbone is None:
        backbone = next((m for m in model.modules() if isinstance(m, Backbone)), None)
    owned = {}
    if backbone is not None:
        owned = {id(p): backbone.layer_id(n) for n, p in backbone.named_parameters()}
        top = backbone.num_layers + 1
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        no_decay = p.ndim < 2 or name.endswith(".bias") or any(k in name for k in NO_DECAY_KEYS)
        layer = owned.get(id(p), -1)
        scale = 1.0 if layer < 0 else layer_decay ** (top - layer)
        g = groups.setdefault((layer, no_decay), {"params": [], "weight_decay": 0.0 if no_decay else weight_decay,
                                                  "lr_scale": scale, "layer": layer})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]
