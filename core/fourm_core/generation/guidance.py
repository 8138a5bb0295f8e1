"""The guidance batches of the sampler: which versions of the inputs run together, and how their logits
combine.

Every version ("variant") holds the same modalities with the same shapes, so the variants concatenate along
the batch axis and go through the model as ONE batch; ``uncond + sum_i w_i (cond_i - uncond)`` then combines
the chunks (:func:`~fourm_core.generation.sampling.combine_guidance`). A condition is removed by its kind's
*empty* version (an all-masked image, a sequence reduced to one visible sentinel, one visible zero row of an
embedding sequence), never by dropping the modality.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from fourm_registry import ModalitySpec

from ..kinds import adapter_for
from .errors import GenerationError
from .sampling import combine_guidance

ModDict = dict[str, dict[str, torch.Tensor]]


def empty_condition(spec: ModalitySpec, d: Mapping[str, torch.Tensor], *, pad_id: int,
                    first_sentinel_id: int) -> dict[str, torch.Tensor]:
    """The "no information" version of a condition (the unconditional pass of guidance)."""
    t, mask = adapter_for(spec).empty_condition(d["tensor"], d["input_mask"], pad_id=pad_id,
                                                first_sentinel_id=first_sentinel_id)
    return {"tensor": t, "input_mask": mask}


def build_variants(mod_dict: ModDict, *, empty: Callable[[str, Mapping[str, torch.Tensor]], dict],
                   scale: float | tuple[float, ...], conditions: Sequence[str],
                   by_modality: Sequence[str] | None = None,
                   weighted: Sequence[ModDict] | None = None) -> tuple[list[ModDict], list[float] | float | None]:
    """The mod_dicts to run together and the weights to combine them.

    * ``weighted`` (several conditions, each a mod_dict of its own modalities; ``scale`` one weight each):
      ``[base + cond_1, ..., base + cond_n, base]``; a modality of another condition is empty in each.
    * ``by_modality`` (one condition per listed modality of ``mod_dict``, ``scale`` one weight each):
      ``[cond_1, ..., cond_n, uncond]`` where ``cond_i`` keeps modality ``i`` and empties the other listed ones.
    * else classifier-free guidance: ``[mod_dict]`` when ``scale`` is 1 or nothing is removed, else
      ``[mod_dict, mod_dict with conditions emptied]``.
    """
    if weighted:
        names = list(dict.fromkeys(n for w in weighted for n in w))
        clash = sorted(set(names) & set(mod_dict))
        if clash:
            raise GenerationError(f"{', '.join(map(repr, clash))}: both an input and a weighted condition; give it "
                                  f"in one place (an input is seen by every pass, a condition only by its own)")
        template = {n: next(w[n] for w in weighted if n in w) for n in names}
        blank = {n: empty(n, template[n]) for n in names}
        uncond = {**mod_dict, **blank}
        variants = [{**mod_dict, **{n: (w[n] if n in w else blank[n]) for n in names}} for w in weighted]
        _check_shapes(template, weighted)
        return [*variants, uncond], list(_weights(scale, len(weighted)))
    if by_modality:
        listed = list(by_modality)
        uncond = {n: (empty(n, d) if n in listed else d) for n, d in mod_dict.items()}
        variants = [{n: (d if n == c else uncond[n]) for n, d in mod_dict.items()} for c in listed]
        return [*variants, uncond], list(_weights(scale, len(listed)))
    if isinstance(scale, tuple):
        raise GenerationError(f"a list of guidance scales {list(scale)} needs one condition per scale "
                              f"(condition_weights or conditions=); give one number for classifier-free guidance")
    if scale == 1.0 or not conditions:
        return [mod_dict], None
    uncond = {n: (empty(n, d) if n in conditions else d) for n, d in mod_dict.items()}
    return [mod_dict, uncond], float(scale)


def _weights(scale: float | tuple[float, ...], n: int) -> tuple[float, ...]:
    weights = scale if isinstance(scale, tuple) else (float(scale),) * n
    if len(weights) != n:
        raise GenerationError(f"multi-condition guidance: {n} conditions but {len(weights)} weights")
    return weights


def _check_shapes(template: Mapping[str, Mapping[str, torch.Tensor]], weighted: Sequence[ModDict]) -> None:
    for i, w in enumerate(weighted):
        for n, d in w.items():
            if d["tensor"].shape != template[n]["tensor"].shape:
                raise GenerationError(f"weighted condition {i} ({n!r}) has shape {tuple(d['tensor'].shape)}; the "
                                      f"other conditions of {n!r} have {tuple(template[n]['tensor'].shape)}")


def cat_variants(variants: list[ModDict]) -> ModDict:
    """The variants as one batch (concatenated along the batch axis)."""
    if len(variants) == 1:
        return variants[0]
    return {n: {k: torch.cat([v[n][k] for v in variants], dim=0) for k in variants[0][n]} for n in variants[0]}


def combine(values: torch.Tensor, n_variants: int, weights: list[float] | float | None,
            rule: Callable = combine_guidance) -> torch.Tensor:
    """Guidance over the ``n_variants`` stacked along the batch (conditional ones first, unconditional last):
    ``rule`` is :func:`combine_guidance` for logits, :func:`~fourm_core.generation.sampling.guidance_bound` for
    error bounds."""
    if n_variants == 1:
        return values
    parts = values.chunk(n_variants, dim=0)
    if isinstance(weights, list):
        return rule(list(parts[:-1]), parts[-1], weights)
    return rule(parts[0], parts[1], weights)
