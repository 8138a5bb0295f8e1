"""Released tokenizers as fourm codecs: what a released 4M model speaks, from and to fourm's raw values.

A plugin names the hub id of its modality's released tokenizer (``ModalitySpec.release_tokenizer``);
:func:`release_codecs` loads those (``huggingface_hub`` cache, offline-aware) and wraps each in a
:class:`~fourm_core.tokenizers.codec.ModalityCodec` whose transform is the plugin's own. Between the plugin's
tensors and the tokenizer sits the reference's input convention for the tokenizer's ``domain`` (its
``config.json`` says which):

==============  ==============================================  ===============================================
domain          fourm tensor → tokenizer input                  decoded output → fourm tensor
==============  ==============================================  ===============================================
rgb             ImageNet-standardised → [-1, 1]                 [-1, 1] → ImageNet-standardised
                (unless the tokenizer undoes the std itself)
depth           [0, 1] relative depth → truncated standardised  standardised → [0, 1] per image (min–max: the
                (10 % tails dropped for mean / std)             reference decodes relative depth only)
normal          [-1, 1] (as fourm's)                            as is
edge domains    {0, 1} edges → [-1, 1]                          [-1, 1] → [0, 1]
semseg_coco     class ids → ids + 1 (0 = the reference's void)  scores: the void channel dropped
features        as is (CLIP / DINOv2 / ImageBind maps, globals)  as is
==============  ==============================================  ===============================================

A modality at another resolution (``tok_rgb_448``) uses the same tokenizer at its grid (the released ones are
trained for 224–448). DiVAE decodes take ``decode_options`` (``steps``, ``scheduler``, ``generator``);
the default is 50 DDIM steps.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Callable

import torch

from fourm_registry import ModalitySet, ModalitySpec

from ...kinds import adapter_for
from ...plugin_kit.images import IMAGENET_MEAN, IMAGENET_STD
from ..base import TokenizerError
from ..codec import ModalityCodec, sequence_codec
from ..text import RELEASED_VOCAB_NAME, TextTokenizer
from .hub import from_pretrained
from .vqvae import VQ, DiVAE

log = logging.getLogger(__name__)

DEFAULT_DECODE = {"steps": 50, "scheduler": "ddim"}
_EDGE_DOMAINS = ("canny_edge", "sam_edge", "edge", "edges")
_FEATURE_DOMAINS = ("CLIP-B16", "DINOv2-B14", "DINOv2-B14-global", "ImageBind-H14", "ImageBind-H14-global")


def _std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return mean, std


def _rgb_in(x: torch.Tensor) -> torch.Tensor:
    mean, std = _std(x)
    return (x * std + mean) * 2 - 1


def _rgb_out(y: torch.Tensor) -> torch.Tensor:
    mean, std = _std(y)
    return ((y.clamp(-1, 1) + 1) / 2 - mean) / std


def truncated_standardize(depth: torch.Tensor, thresh: float = 0.1) -> torch.Tensor:
    """Per image: (depth − mean) / std over the values between the ``thresh`` and ``1 − thresh`` quantiles."""
    flat = depth.reshape(depth.shape[0], -1)
    n = flat.shape[1]
    kept = flat.sort(dim=1).values[:, int(thresh * n): int((1 - thresh) * n)]
    mean = kept.mean(dim=1)
    std = (kept.var(dim=1) + 1e-6).sqrt()
    return (depth - mean.view(-1, 1, 1, 1)) / std.view(-1, 1, 1, 1)


def _minmax(y: torch.Tensor) -> torch.Tensor:
    flat = y.reshape(y.shape[0], -1)
    lo, hi = flat.min(dim=1).values.view(-1, 1, 1, 1), flat.max(dim=1).values.view(-1, 1, 1, 1)
    return (y - lo) / (hi - lo).clamp_min(1e-6)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def conventions(domain: str | None, model: VQ) -> tuple[Callable, Callable]:
    """(fourm tensor → tokenizer input, decoded output → fourm tensor) for a tokenizer ``domain``."""
    if domain == "rgb":
        undo = bool(model.config.get("undo_std"))
        return (_identity if undo else _rgb_in), _rgb_out
    if domain == "depth":
        return truncated_standardize, _minmax
    if domain == "normal":
        return _identity, _identity
    if domain in _EDGE_DOMAINS:
        return (lambda x: x * 2 - 1), (lambda y: (y.clamp(-1, 1) + 1) / 2)
    if domain == "semseg_coco":
        return (lambda x: x.long() + 1), (lambda y: y[:, 1:])
    if domain in _FEATURE_DOMAINS or domain is None:
        return _identity, _identity
    raise TokenizerError(f"released tokenizer domain {domain!r} has no known input convention; known: rgb, depth, "
                         f"normal, {', '.join(_EDGE_DOMAINS)}, semseg_coco, {', '.join(_FEATURE_DOMAINS)}")


class ReleaseCodecTokenizer:
    """A released tokenizer behind fourm's tokenizer protocol, at a modality's grid and in its conventions."""

    def __init__(self, model: VQ, spec: ModalitySpec, *, decode_options: Mapping[str, Any] | None = None):
        self.model = model.eval()
        self.spec = spec
        self.domain = model.config.get("domain")
        self.to_reference, self.from_reference = conventions(self.domain, model)
        self.grid = tuple(spec.grid) if spec.grid is not None else tuple(model.token_shape[-2:])
        self.decode_options = {**DEFAULT_DECODE, **dict(decode_options or {})} if isinstance(model, DiVAE) else {}
        self.config = {"num_classes": model.config.get("n_labels"), "domain": self.domain}

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    @property
    def num_tokens(self) -> int:
        return self.model.heads * self.grid[0] * self.grid[1] if self.spec.grid is not None else self.model.num_tokens

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # global vectors (B, C) -> (B, C, 1, 1)
            x = x[:, :, None, None]
        tokens = self.model.encode(self.to_reference(x.to(self.model.device)))
        return tokens.reshape(tokens.shape[0], -1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        heads = (self.model.heads,) if self.model.heads > 1 else ()
        shape = (*heads, *self.grid) if self.spec.grid is not None else tuple(self.model.token_shape)
        if tokens.dim() != 2 or tokens.shape[1] != self.num_tokens:
            raise TokenizerError(f"released {self.domain} tokenizer of {self.spec.name!r}: got tokens "
                                 f"{tuple(tokens.shape)}, expected (B, {self.num_tokens})")
        ids = tokens.reshape(tokens.shape[0], *shape).to(self.model.device)
        if isinstance(self.model, DiVAE):
            patch = int(self.model.config.get("patch_size") or 16)
            out = self.model.decode_tokens(ids, image_size=self.grid[0] * patch, **self.decode_options)
        else:
            out = self.model.decode_tokens(ids)
            if self.model.config.get("n_labels") is not None:
                out = out.softmax(dim=1)
        out = self.from_reference(out)
        if not adapter_for(self.spec).image_like and out.dim() == 4:
            out = out.flatten(1)
        return out


def release_codecs(modalities: ModalitySet, *, overrides: Mapping[str, str | os.PathLike] | None = None,
                   decode_options: Mapping[str, Any] | None = None, map_location: str = "cpu",
                   skip_missing: bool = True, text: str | os.PathLike | None = RELEASED_VOCAB_NAME
                   ) -> dict[str, ModalityCodec]:
    """Codecs of every image / vector modality whose plugin names a released tokenizer (or that
    ``overrides`` maps to a hub id / directory), and of every sequence modality over the ``text`` vocabulary
    (default: the released 4M WordPiece, ``4m-wordpiece-30k``; a path or hub id; None: no text codecs).
    A tokenizer that cannot be loaded (offline, not cached) is skipped with a warning when ``skip_missing``
    (the modality then takes token ids only), else raises."""
    overrides = dict(overrides or {})
    codecs: dict[str, ModalityCodec] = {}
    seqs = [s for s in modalities.specs if adapter_for(s).autoregressive]
    if seqs and text is not None:
        try:
            vocab = TextTokenizer.from_pretrained(text)
        except Exception as exc:  # noqa: BLE001 - see skip_missing
            if not skip_missing:
                raise
            vocab = None
            log.warning("text vocabulary %s not available (%s); sequence modalities take token ids only", text, exc)
        if vocab is not None:
            codecs.update({s.name: sequence_codec(s, vocab) for s in seqs})
    cache: dict[str, VQ] = {}
    for spec in modalities.specs:
        kind = adapter_for(spec)
        if not kind.discrete or kind.autoregressive:
            continue
        source = overrides.get(spec.name) or spec.release_tokenizer
        if source is None:
            continue
        key = str(source)
        try:
            if key not in cache:
                cache[key] = from_pretrained(source, map_location=map_location)
        except Exception as exc:  # noqa: BLE001 - offline machines: say which tokenizer and go on
            if not skip_missing:
                raise
            log.warning("released tokenizer %s of %r not available (%s); %r takes token ids only",
                        source, spec.name, exc, spec.name)
            continue
        tok = ReleaseCodecTokenizer(cache[key], spec, decode_options=decode_options)
        transform = spec.transform.build() if spec.transform is not None else None
        codecs[spec.name] = ModalityCodec(spec, tok, transform)
    return codecs
