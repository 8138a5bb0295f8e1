"""Per-dataset masking of a training mixture: each sample is masked with the config of the dataset it came from.

A batch of a mixture holds samples of several datasets (the loader draws each sample's dataset by weight), and
each dataset may have its own input / target modalities, Dirichlet alphas and token budgets (e.g. an image-text
set with every modality, a text-only set with caption → caption). :class:`DatasetMasker` holds one
:class:`Masker` per distinct config and masks each dataset's rows of the batch with its own, then writes the
rows back in batch order. Every modality's ``mod_dict`` entry has the same shape whatever the budget, so the
parts fit together; the encoder / decoder lengths are the largest of the maskers'.

::

    masker = DatasetMasker(modalities, [cfg_a, cfg_b], text=text)
    mod_dict = masker(batch, present=present, source=source, generator=gen)   # source: (B,) dataset index
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fourm_registry import ModalitySet

from .config import MaskingConfig, MaskingError, TextVocabInfo
from .masker import Masker


class DatasetMasker:
    """One :class:`Masker` per dataset config (equal configs share one); masks each sample with its dataset's."""

    def __init__(self, modalities: ModalitySet, configs: Sequence[MaskingConfig], *,
                 text: TextVocabInfo | None = None) -> None:
        if not configs:
            raise MaskingError("DatasetMasker needs one masking config per dataset (got none)")
        distinct: list[MaskingConfig] = []
        self.masker_of: list[int] = []  # dataset index -> masker index
        for c in configs:
            if c not in distinct:
                distinct.append(c)
            self.masker_of.append(distinct.index(c))
        self.modalities = modalities
        self.maskers = [Masker(modalities, c, text=text) for c in distinct]
        self._lookup = torch.tensor(self.masker_of, dtype=torch.long)

    @property
    def config(self) -> MaskingConfig:
        """The first dataset's config (the global one when no dataset overrides it)."""
        return self.maskers[self.masker_of[0]].config

    @property
    def num_encoder_tokens(self) -> int:
        return max(m.num_encoder_tokens for m in self.maskers)

    @property
    def num_decoder_tokens(self) -> int:
        return max(m.num_decoder_tokens for m in self.maskers)

    def __call__(self, batch: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None,
                 generator: torch.Generator | None = None, *,
                 source: torch.Tensor | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """Mask ``batch``; ``source`` (B,) holds each sample's dataset index (``None``: all from dataset 0)."""
        if len(self.maskers) == 1:
            return self.maskers[0](batch, present=present, generator=generator)
        bsz = next(iter(batch.values())).shape[0]
        if source is None:
            source = torch.zeros(bsz, dtype=torch.long)
        source = torch.as_tensor(source, dtype=torch.long).cpu()
        if source.shape != (bsz,) or bool(((source < 0) | (source >= len(self.masker_of))).any()):
            raise MaskingError(f"DatasetMasker: source must be ({bsz},) dataset indices in [0, "
                               f"{len(self.masker_of)}), got shape {tuple(source.shape)}")
        which = self._lookup[source]
        out: dict[str, dict[str, torch.Tensor]] = {}
        for k in torch.unique(which).tolist():
            rows = torch.nonzero(which == k).flatten()
            dev_rows = rows.to(next(iter(batch.values())).device)
            part = self.maskers[k]({n: t[dev_rows] for n, t in batch.items()},
                                   present=None if present is None else
                                   {n: torch.as_tensor(p)[rows.to(torch.as_tensor(p).device)] for n, p in present.items()},
                                   generator=generator)
            for name, entry in part.items():
                dst = out.setdefault(name, {})
                for key, t in entry.items():
                    if key not in dst:
                        dst[key] = t.new_empty((bsz, *t.shape[1:]))
                    elif dst[key].shape[1:] != t.shape[1:]:
                        raise MaskingError(f"DatasetMasker: modality {name!r} {key} has shape {tuple(t.shape[1:])} "
                                           f"for one dataset and {tuple(dst[key].shape[1:])} for another")
                    dst[key][rows.to(t.device)] = t
        return out
