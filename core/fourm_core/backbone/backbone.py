"""A 4M encoder as a feature extractor (:class:`Backbone`): chosen input modalities in, token features out.

::

    bb = Backbone.from_pretrained("EPFL-VILAB/4M-21_B", inputs=["rgb", "depth"])  # or a fourm run's final/
    out = bb.forward_features({"rgb": pixels})          # depth is optional: leave it out, or per sample
    out.tokens        # (B, N, D) encoder output after encoder_norm; out.padding_mask (B, N) True = padding
    out.pooled        # (B, D) mean of the valid tokens
    out.feature_map   # (B, D, rows, cols) the first image input's tokens on its patch grid
    bb(pixels)        # (B, D) pooled features, as a timm backbone's forward with num_classes=0

The backbone keeps the model's encoder embeddings of the chosen inputs, its encoder blocks, ``encoder_norm`` and
register tokens; the decoder, its embeddings and output tables and the embeddings of the other modalities are
dropped. Its forward is the model's own :meth:`FourM.encode` on a mod_dict whose ``input_mask`` makes every
token of a present input visible, so its features are the numbers the encoder produces inside the full model.

Inputs are tensors in the model's layout: normalised pixels ``(B, C, H, W)`` for ``pixels`` modalities, token
ids ``(B, N)`` for token modalities. :meth:`Backbone.prepare` turns raw inputs (PIL images, arrays, depth
maps ...) into those tensors through the same path as the any-to-any API (the plugin's transform, the
modality's codec). An input may be absent from a batch, or absent for some samples only (``present``
``{name: (B,) bool}``): its tokens then do not take part, as in MultiMAE's optional extra inputs.
An input may also be ``{"tensor": t, "input_mask": m}`` (``m`` (B, N), True = token not used), e.g. for
masked fine-tuning.

Fine-tuning: :meth:`Backbone.freeze`, and :func:`fourm_core.backbone.layer_decay_groups` for MAE-style
layer-wise learning-rate decay (:meth:`Backbone.layer_id` numbers the parameters).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fourm_registry import ModalitySet, UnknownModalityError

from ..errors import ModDictError
from ..kinds import adapter_for

log = logging.getLogger(__name__)

POOLS = ("mean", "none")


class BackboneError(ModDictError):
    """A backbone was built or called with inputs it cannot serve."""


@dataclass
class BackboneOutput:
    """What :meth:`Backbone.forward_features` returns."""

    #: (B, N, D) encoder output after ``encoder_norm``, one row per kept token (padding rows are meaningless)
    tokens: Tensor
    #: (B, N) bool, True = padding slot (a sample with fewer visible tokens than the batch's longest)
    padding_mask: Tensor
    #: (B, N) index into :attr:`modalities` of each slot, -1 at padding
    modality_index: Tensor
    #: (B, N) position of each slot inside its modality's tensor, -1 at padding
    position: Tensor
    #: the input modalities present in the batch, in slot order (the model's modality order)
    modalities: tuple[str, ...]
    #: (B, D) mean of the valid tokens (None when the backbone's ``pool`` is ``"none"``)
    pooled: Tensor | None
    #: per image-grid input present in the batch, in the backbone's input order: (B, D, rows, cols) its tokens
    #: on the patch grid (zeros for a sample that lacks the input)
    feature_maps: dict[str, Tensor]

    @property
    def feature_map(self) -> Tensor:
        """The feature map of the first image-grid input present (the backbone's main input comes first)."""
        if not self.feature_maps:
            raise BackboneError(f"no image-grid input in this batch (inputs present: {', '.join(self.modalities)}); "
                                f"feature maps exist for pixels / image-token inputs")
        return next(iter(self.feature_maps.values()))


def _strip_to_encoder(model: nn.Module, inputs: Sequence[str]) -> nn.Module:
    """Drop, in place, everything of ``model`` that encoding ``inputs`` does not use."""
    model.encoder_embeddings = nn.ModuleDict({m: model.encoder_embeddings[m] for m in inputs})
    model.decoder_embeddings = nn.ModuleDict()
    model.decoder = nn.ModuleList()
    model.decoder_proj_context = None
    model.decoder_norm = None
    model.mask_token = None
    model.modalities = model.modalities.subset(inputs)
    # slot order stays the model's (so the tokens come out exactly as inside the full model)
    model.encoder_modalities = tuple(m for m in model.encoder_modalities if m in inputs)
    model.decoder_modalities = ()
    model.vocab_sizes = {k: v for k, v in model.vocab_sizes.items() if k in inputs}
    return model


class Backbone(nn.Module):
    """The encoder of a :class:`~fourm_core.model.FourM` over a chosen set of input modalities.

    ``model``: a FourM (it is stripped **in place**: pass a copy to keep the full model). ``inputs``: names (or
    aliases) of encoder modalities of the model; the first is the main input (its feature map is
    :attr:`BackboneOutput.feature_map`). ``codecs``: ``{modality: ModalityCodec}`` for :meth:`prepare` of raw
    token inputs. ``pool``: ``"mean"`` (default) or ``"none"``.
    """

    def __init__(self, model: nn.Module, inputs: Sequence[str] | str, *, codecs: Mapping[str, Any] | None = None,
                 pool: str = "mean"):
        super().__init__()
        if pool not in POOLS:
            raise BackboneError(f"pool {pool!r} is not one of {', '.join(POOLS)}")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        if not inputs:
            raise BackboneError(f"a backbone needs at least one input modality; the model encodes: "
                                f"{', '.join(model.encoder_modalities)}")
        names = []
        for key in inputs:
            try:
                name = model.modalities[key].name
            except (KeyError, UnknownModalityError):
                raise BackboneError(f"input {key!r}: the model has no such modality; it encodes: "
                                    f"{', '.join(model.encoder_modalities)}") from None
            if name not in model.encoder_modalities:
                raise BackboneError(f"input {key!r}: the model does not encode {name!r} (a decoder-only modality); "
                                    f"it encodes: {', '.join(model.encoder_modalities)}")
            if name in names:
                raise BackboneError(f"input {key!r} is given twice (as {name!r})")
            names.append(name)
        self.inputs: tuple[str, ...] = tuple(names)
        self.pool = pool
        self.encoder = _strip_to_encoder(model, names)
        self.modalities: ModalitySet = self.encoder.modalities
        self.codecs = {k: v for k, v in dict(codecs or {}).items() if k in names}
        #: the feature dimension D (timm's ``num_features``)
        self.num_features = int(self.encoder.config.dim)
        self._raw: Any = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike, inputs: Sequence[str] | str, *,
                        tokenizers: str | os.PathLike | Mapping[str, str] | bool | None = None,
                        modalities: ModalitySet | None = None, pool: str = "mean",
                        map_location: str | torch.device = "cpu") -> Backbone:
        """The backbone of a fourm checkpoint or a released 4M model (directory, hub id or ``.safetensors``).

        ``tokenizers`` matter only for :meth:`prepare` of raw inputs of token modalities (e.g. a depth map for
        ``depth``): a fourm checkpoint's ``DIR/tokenizers`` (or the directory given), a released model's
        released tokenizers (a ``{modality: hub id or dir}`` mapping overrides some); ``False`` loads none."""
        from .. import checkpoint
        from ..model import FourM

        model = FourM.from_pretrained(path_or_hub_id, modalities=modalities, map_location=map_location)
        names = [model.modalities[k].name if k in model.modalities else k
                 for k in ([inputs] if isinstance(inputs, str) else inputs)]
        codecs: dict[str, Any] = {}
        discrete = ModalitySet(model.modalities[n] for n in names
                               if n in model.modalities and adapter_for(model.modalities[n]).discrete)
        if tokenizers is not False and len(discrete):
            if getattr(model, "release_config", None) is not None and not isinstance(tokenizers, (str, os.PathLike)):
                from ..tokenizers.ml4m.codec import release_codecs

                codecs = release_codecs(discrete, overrides=tokenizers or None)
            elif not isinstance(tokenizers, Mapping):
                p = Path(path_or_hub_id)
                root = p.parent if p.is_file() else checkpoint._resolve_dir(path_or_hub_id)
                tok_dir = Path(tokenizers) if tokenizers else root / "tokenizers"
                if tok_dir.is_dir():
                    from ..tokenizers import load_codecs

                    codecs = dict(load_codecs(tok_dir, discrete))
                else:
                    log.warning("%s has no tokenizers/: raw %s inputs need token ids", root, ", ".join(discrete.names))
            else:
                raise BackboneError("tokenizers={modality: id} applies to released 4M checkpoints; for a fourm "
                                    "checkpoint pass its tokenizer directory")
        return cls(model, names, codecs=codecs, pool=pool)

    # ------------------------------------------------------------------ inputs
    def prepare(self, inputs: Mapping[str, Any]) -> dict[str, Tensor]:
        """Raw inputs ``{modality: raw or list of raws}`` → the tensors :meth:`forward_features` takes, through
        the any-to-any API's input path (centre square crop, the plugin's transform, the modality's codec)."""
        from .raw import RawInputs

        if self._raw is None:
            self._raw = RawInputs(self.modalities, self.codecs)
        unknown = [k for k in inputs if k not in self.modalities]
        if unknown:
            raise BackboneError(f"inputs {unknown} are not inputs of this backbone ({', '.join(self.inputs)})")
        mod_dict, _, _ = self._raw.encode_inputs(inputs, pixel_twins=False)
        return {name: entry["tensor"] for name, entry in mod_dict.items()}

    def _mod_dict(self, inputs: Mapping[str, Any] | Tensor,
                  present: Mapping[str, Tensor] | None) -> dict[str, dict[str, Tensor]]:
        if isinstance(inputs, Tensor):
            inputs = {self.inputs[0]: inputs}
        if not isinstance(inputs, Mapping) or not inputs:
            raise BackboneError(f"inputs must be a tensor of the main input {self.inputs[0]!r} or a non-empty dict "
                                f"{{modality: tensor}} over {', '.join(self.inputs)}")
        device = self.encoder.encoder_norm.weight.device
        md: dict[str, dict[str, Tensor]] = {}
        for key, t in inputs.items():
            if key not in self.modalities:
                raise BackboneError(f"input {key!r} is not an input of this backbone; its inputs: "
                                    f"{', '.join(self.inputs)} (build it with inputs=[..., {key!r}])")
            name = self.modalities[key].name
            given_mask = None
            if isinstance(t, Mapping):  # {"tensor", "input_mask"}: only the tokens the mask leaves visible
                given_mask = t.get("input_mask")
                t = t.get("tensor")
            if not isinstance(t, Tensor):
                raise BackboneError(f"input {name!r}: expected a tensor, got {type(t).__name__}; raw data goes "
                                    f"through Backbone.prepare first")
            t = t.to(device)
            n = adapter_for(self.modalities[name]).check_model_tensor(self.modalities[name], t,
                                                                       self.encoder.vocab_sizes.get(name))
            mask = torch.zeros(t.shape[0], n, dtype=torch.bool, device=device)
            if given_mask is not None:
                if tuple(given_mask.shape) != (t.shape[0], n):
                    raise BackboneError(f"input {name!r}: input_mask must have shape ({t.shape[0]}, {n}), got "
                                        f"{tuple(given_mask.shape)}")
                mask = given_mask.to(device=device, dtype=torch.bool)
            if present is not None and name in present:
                flags = present[name].to(device=device, dtype=torch.bool)
                if flags.shape != (t.shape[0],):
                    raise BackboneError(f"present[{name!r}] must have shape ({t.shape[0]},), got {tuple(flags.shape)}")
                mask = mask | ~flags[:, None]
            md[name] = {"tensor": t, "input_mask": mask}
        return md

    # ------------------------------------------------------------------ forward
    def forward_features(self, inputs: Mapping[str, Tensor] | Tensor,
                         present: Mapping[str, Tensor] | None = None) -> BackboneOutput:
        """Encode ``inputs`` (see the module docstring); absent inputs, or inputs marked absent per sample in
        ``present``, contribute no tokens."""
        md = self._mod_dict(inputs, present)
        if all(bool(e["input_mask"].all()) for e in md.values()):
            raise BackboneError(f"no sample has any input token: every input of {', '.join(md)} is marked absent")
        enc = self.encoder.encode(md)
        valid = ~enc.padding_mask
        pooled = None
        if self.pool == "mean":
            w = valid.to(enc.hidden.dtype)[..., None]
            pooled = (enc.hidden * w).sum(1) / w.sum(1).clamp_min(1.0)
        maps: dict[str, Tensor] = {}
        b, _, d = enc.hidden.shape
        for i, name in enumerate(enc.modalities):
            spec = self.modalities[name]
            if not adapter_for(spec).image_like or not spec.grid:
                continue
            rows, cols = spec.grid
            bi, si = (enc.modality_index == i).nonzero(as_tuple=True)
            grid = enc.hidden.new_zeros(b, rows * cols, d)
            grid = grid.index_put((bi, enc.position[bi, si]), enc.hidden[bi, si])
            maps[name] = grid.transpose(1, 2).reshape(b, d, rows, cols)
        maps = {m: maps[m] for m in self.inputs if m in maps}  # the main input first
        return BackboneOutput(tokens=enc.hidden, padding_mask=enc.padding_mask, modality_index=enc.modality_index,
                              position=enc.position, modalities=enc.modalities, pooled=pooled, feature_maps=maps)

    def forward(self, inputs: Mapping[str, Tensor] | Tensor, present: Mapping[str, Tensor] | None = None) -> Tensor:
        """The pooled features (B, D) (``pool="none"``: the token features (B, N, D))."""
        out = self.forward_features(inputs, present)
        return out.pooled if out.pooled is not None else out.tokens

    # ------------------------------------------------------------------ fine-tuning helpers
    @property
    def num_layers(self) -> int:
        """Encoder blocks."""
        return len(self.encoder.encoder)

    def feature_grid(self, name: str | None = None) -> tuple[int, int]:
        """The (rows, cols) patch grid of an image input's feature map (default: the main input)."""
        spec = self.modalities[name or self.inputs[0]]
        if not spec.grid:
            raise BackboneError(f"input {spec.name!r} is a {spec.kind!r} modality without a patch grid")
        return tuple(spec.grid)

    def layer_id(self, param_name: str) -> int:
        """Depth of a parameter for layer-wise LR decay: 0 embeddings / register tokens, ``i + 1`` encoder
        block ``i``, ``num_layers + 1`` the final norm (and anything after the encoder)."""
        name = param_name.removeprefix("encoder.")
        if name.startswith(("encoder_embeddings.", "register_tokens")):
            return 0
        if name.startswith("encoder."):
            return int(name.split(".")[1]) + 1
        return self.num_layers + 1

    def freeze(self, frozen: bool = True, *, embeddings_only: bool = False) -> Backbone:
        """Stop (``frozen=True``) or restart gradient updates of the backbone; ``embeddings_only`` freezes only
        the input embeddings. Returns the backbone."""
        for name, p in self.named_parameters():
            if not embeddings_only or self.layer_id(name) == 0:
                p.requires_grad_(not frozen)
        return self
