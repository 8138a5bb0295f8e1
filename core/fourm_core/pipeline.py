"""The any-to-any API: raw inputs in, raw outputs back.

>>> pipe = AnyToAny.from_pretrained("runs/my-4m")              # model + DIR/tokenizers/
>>> out = pipe({"rgb": Image.open("photo.jpg")}, targets=["depth", "caption"], seed=0)
>>> out["depth"]             # a raw depth map (what the depth plugin's labeler would produce)
>>> out["caption"]           # a string
>>> pipe.render(out).save("grid.png")

Inputs may be PIL images, numpy arrays, torch tensors, strings or any plugin raw type (dicts of boxes ...).
A list of raws is a batch (every input then needs the same length, or a single raw that is repeated).
Image-like raws are centre-cropped to a square and resized to the model's size by the plugin's transform,
then tokenized by the plugin's codec; a ``pixels`` modality (``rgb``) gets normalised pixels (and, only with
``pixel_twins=True``, its tokenized twin too: the image modality whose ``spec.source`` is ``rgb``, which
doubles the encoder tokens). A target ``rgb`` means that tokenized twin. Token ids (integer tensors of the
token layout) are accepted for token modalities as well.

Modes: no inputs at all (unconditional, ``batch_size`` rows); ``given=`` partial targets (in- / out-painting
of an image target with a mask, a caption prefix or a template with sentinels ``[S_1]``...); ``conditions=``
weighted conditions, several of one modality included, negative weights steering away (negative prompts).

Outputs are decoded by the codecs into raw data; :meth:`AnyToAny.render` draws inputs and outputs through
each plugin's visualizer into one grid image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fourm_registry import ModalitySet, ModalitySpec

from .generation import GenerationError, GenerationResult, GenerationStep, Sampler, TargetConfig
from .generation.errors import TokenizerMissingError
from .generation.grammar import with_codec_grammar
from .pipeline_output import AnyToAnyOutput
from .kinds import adapter_for, to_numpy_image

log = logging.getLogger(__name__)

#: per-call overrides that apply to every target (TargetConfig fields)
_OVERRIDES = ("scheme", "steps", "token_schedule", "temperature", "temperature_schedule", "top_k", "top_p",
              "guidance", "guidance_schedule", "max_new_tokens", "stop_at_eos", "grammar")
#: call-wide options that only make sense for some kinds (skipped for the other targets)
_SEQUENCE_ONLY = ("max_new_tokens", "stop_at_eos", "grammar")
_ITERATIVE_ONLY = ("scheme", "steps", "token_schedule", "temperature_schedule")


def _is_batch(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and not (value and isinstance(value[0], (int, float)))


class AnyToAny:
    """A FourM model with its tokenizers: raw inputs → generated, decoded raw outputs.

    ``codecs``: ``{modality: ModalityCodec}`` (``fourm_core.tokenizers``), at least for every token modality
    you give as a raw input or ask as a target. ``defaults``: per-modality :class:`TargetConfig` overrides
    (e.g. ``{"caption": {"temperature": 0.7, "top_p": 0.9}}``). ``pixel_twins`` (default False): a raw
    ``pixels`` input (``rgb``) also feeds its tokenized twin (``tok_rgb``) when the model reads it and a codec
    exists; off by default, as the released 4M models are used (RGB → X reads the pixels only).
    """

    def __init__(self, model: Any, codecs: Mapping[str, Any] | None = None, *,
                 modalities: ModalitySet | None = None, device: str | torch.device | None = None,
                 defaults: Mapping[str, Mapping[str, Any]] | None = None, pixel_twins: bool = False):
        if device is not None:
            model = model.to(device)
        model.eval()
        self.model = model
        self.sampler = Sampler(model, modalities=modalities)
        self.modalities = self.sampler.modalities
        self.codecs = dict(codecs or {})
        self.defaults = {k: dict(v) for k, v in (defaults or {}).items()}
        self.pixel_twins = bool(pixel_twins)
        self._transforms: dict[str, Any] = {}

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike, *, device: str | torch.device = "cpu",
                        tokenizers: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
                        modalities: ModalitySet | None = None,
                        decode_options: Mapping[str, Any] | None = None) -> AnyToAny:
        """Load ``FourM.from_pretrained(path)`` and the codecs of ``path/tokenizers/`` (or ``tokenizers``).

        A released 4M checkpoint (hub id, directory or single ``.safetensors``) gets the released tokenizers its
        plugins name (``ModalitySpec.release_tokenizer``, from the Hugging Face cache or hub) and the released
        text vocabulary; ``tokenizers`` may then be a ``{modality: hub id or directory}`` mapping that overrides
        some, and ``decode_options`` the DiVAE decode settings (``steps``, ``scheduler``).
        ``modalities``: where the checkpoint's modalities are looked up (default: the installed plugins).
        Modalities without a tokenizer load fine; using them as raw inputs or decoded outputs then
        raises :class:`TokenizerMissingError` naming them.
        """
        from . import checkpoint
        from .model import FourM

        p = Path(path_or_hub_id)
        single = p.is_file() and p.suffix == ".safetensors"
        root = p.parent if single else checkpoint._resolve_dir(path_or_hub_id)  # a local dir, or the hub snapshot
        model = FourM.from_pretrained(str(p if single else root), modalities=modalities)
        specs = _model_modalities(model)
        released = getattr(model, "release_config", None) is not None
        if released and (tokenizers is None or isinstance(tokenizers, Mapping)):
            from .tokenizers.ml4m.codec import release_codecs

            codecs = release_codecs(specs, overrides=tokenizers, decode_options=decode_options)
            return cls(model, codecs, modalities=specs, device=device)
        if isinstance(tokenizers, Mapping):
            raise GenerationError("tokenizers={modality: id} applies to released 4M checkpoints; for a fourm "
                                  "checkpoint pass its tokenizer directory")
        tok_dir = Path(tokenizers) if tokenizers is not None else Path(root) / "tokenizers"
        codecs: dict[str, Any] = {}
        if tok_dir.is_dir():
            from .tokenizers import load_codecs

            wanted = ModalitySet(s for s in specs.specs if (tok_dir / s.name).is_dir()
                                 or (adapter_for(s).autoregressive and (tok_dir / "text").is_dir()))
            codecs = dict(load_codecs(tok_dir, wanted))
        else:
            log.warning("%s has no tokenizers/ directory: only token-id inputs and token outputs will work", root)
        return cls(model, codecs, modalities=specs, device=device)

    # -- naming ----------------------------------------------------------------------------------
    def resolve(self, name: str, *, as_target: bool = False) -> str:
        """Canonical modality name of ``name`` (name or alias). As a target, a ``pixels`` modality maps to its
        tokenized twin (``rgb`` → ``tok_rgb``). Unknown names list what the model knows."""
        if name not in self.modalities:
            raise GenerationError(f"the model does not know modality {name!r}; it knows: {', '.join(self.modalities.names)}")
        spec = self.modalities[name]
        if as_target and not spec.decoder:
            twins = [s.name for s in self.modalities.specs if s.source == spec.name and s.decoder]
            if twins:
                return twins[0]
            can = ", ".join(s.name for s in self.modalities.specs if s.decoder)
            raise GenerationError(f"the model cannot generate {spec.name!r} (a {spec.kind!r} input-only modality "
                                  f"with no tokenized twin); it can generate: {can}")
        return spec.name

    def codec(self, name: str) -> Any:
        try:
            return self.codecs[name]
        except KeyError:
            have = ", ".join(sorted(self.codecs)) or "none"
            raise TokenizerMissingError(
                f"no tokenizer for modality {name!r} (tokenizers loaded: {have}); train one with "
                f"`fourm train-tokenizer --modality {name} --data STORE --out TOKDIR` and pass "
                f"`AnyToAny.from_pretrained(..., tokenizers=TOKDIR)` (CLI: `--tokenizers TOKDIR`), or copy TOKDIR/{name} "
                f"into the model's tokenizers/ directory (or pass token ids instead of raw data)") from None

    def transform(self, spec: ModalitySpec) -> Any | None:
        """The plugin's transform of ``spec`` (built once), or None."""
        if spec.name not in self._transforms:
            self._transforms[spec.name] = spec.transform.build() if spec.transform is not None else None
        return self._transforms[spec.name]

    # -- inputs ----------------------------------------------------------------------------------
    def encode_inputs(self, inputs: Mapping[str, Any] | None, *, pixel_twins: bool | None = None,
                      allow_empty: bool = False) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, list], bool]:
        """Raw inputs → ``({modality: {"tensor"}}, raw lists per name, batched)`` for the sampler.

        ``pixel_twins``: also feed a ``pixels`` input's tokenized twin (default: the pipeline's setting)."""
        if inputs is None or (isinstance(inputs, Mapping) and not inputs and allow_empty):
            return {}, {}, False
        if not isinstance(inputs, Mapping) or not inputs:
            raise GenerationError("inputs must be a non-empty dict {modality: raw}, e.g. {'rgb': pil_image}")
        twins = self.pixel_twins if pixel_twins is None else bool(pixel_twins)
        batched = any(_is_batch(v) for v in inputs.values())
        lists = {k: (list(v) if _is_batch(v) else [v]) for k, v in inputs.items()}
        sizes = {len(v) for v in lists.values()} - {1}
        if len(sizes) > 1:
            raise GenerationError(f"batched inputs disagree on the batch size: "
                                  f"{ {k: len(v) for k, v in lists.items()} }")
        B = sizes.pop() if sizes else 1
        lists = {k: (v * B if len(v) == 1 else v) for k, v in lists.items()}
        mod_dict: dict[str, dict[str, torch.Tensor]] = {}
        raws: dict[str, list] = {}
        for key, values in lists.items():
            name = self.resolve(key)
            spec = self.modalities[name]
            raws[name] = values
            mod_dict[name] = {"tensor": self._encode_one(spec, values)}
            if not twins or adapter_for(spec).discrete:
                continue
            for twin in self.modalities.specs:  # opt-in: the tokenized twin of raw pixels (tok_rgb of rgb)
                if twin.source == name and twin.encoder and twin.name not in lists and twin.name in self.codecs:
                    mod_dict[twin.name] = {"tensor": self._encode_one(twin, values)}
        return mod_dict, raws, batched

    def encode_given(self, given: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
        """Partial targets for the sampler's ``given=``. A sequence target takes its text (a prefix, or a
        template with sentinels ``[S_1]``...), a list for a batch. An image / vector target takes
        ``{"value": raw or token ids, "mask": ...}`` with ``mask`` True where tokens are generated, at the token
        grid ``(h, w)``, flat ``(N,)``, or any finer resolution ``(H, W)`` (a token is generated when any of its
        pixels is); a leading batch axis is optional."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in given.items():
            name = self.resolve(key, as_target=True)
            spec = self.modalities[name]
            kind = adapter_for(spec)
            if kind.autoregressive:
                values = list(value) if _is_batch(value) else [value]
                out[name] = {"tensor": self._encode_one(spec, values)}
                continue
            if not isinstance(value, Mapping) or "value" not in value or "mask" not in value:
                raise GenerationError(f"given {name!r}: a partial {spec.kind!r} target takes "
                                      f"{{'value': image or token ids, 'mask': True where to generate}}")
            raw = value["value"]
            values = list(raw) if _is_batch(raw) else [raw]
            tokens = self._encode_one(spec, values)
            out[name] = {"tensor": tokens, "input_mask": self._token_mask(spec, value["mask"], tokens.shape[0])}
        return out

    @staticmethod
    def _token_mask(spec: ModalitySpec, mask: Any, batch: int) -> torch.Tensor:
        m = torch.as_tensor(np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)).bool()
        n = spec.num_tokens
        grid = tuple(spec.grid) if spec.grid else None
        if m.ndim >= 1 and m.shape[-1] == n and (m.ndim == 1 or (m.ndim == 2 and m.shape[0] in (1, batch))):
            flat = m.reshape(-1, n)
        elif grid is not None and m.ndim in (2, 3):
            img = m[None] if m.ndim == 2 else m
            if img.shape[-2] % grid[0] or img.shape[-1] % grid[1]:
                raise GenerationError(f"given {spec.name!r}: a mask of shape {tuple(m.shape)} does not tile the "
                                      f"{grid} token grid; give (h, w) = {grid}, ({n},) or a multiple of the grid")
            pooled = torch.nn.functional.adaptive_max_pool2d(img[:, None].float(), grid)[:, 0] > 0
            flat = pooled.reshape(img.shape[0], n)
        else:
            raise GenerationError(f"given {spec.name!r}: expected a mask of shape ({n},) or an image-like "
                                  f"(H, W) mask, got {tuple(m.shape)}")
        if flat.shape[0] not in (1, batch):
            raise GenerationError(f"given {spec.name!r}: {flat.shape[0]} masks for {batch} rows")
        return flat.expand(batch, n).clone()

    def _encode_one(self, spec: ModalitySpec, values: list[Any]) -> torch.Tensor:
        return adapter_for(spec).encode_raw(spec, values, self)

    @staticmethod
    def codec_encode(codec: Any, spec: ModalitySpec, raws: list[Any]) -> torch.Tensor:
        """``codec.encode(raws)`` as int64 on the CPU; a rejected value raises naming the modality."""
        try:
            with torch.no_grad():
                return codec.encode(raws).long().cpu()
        except GenerationError:
            raise
        except (ValueError, TypeError) as exc:
            raise GenerationError(f"input {spec.name!r}: the tokenizer rejected it: {exc}") from exc

    def codec_size(self, spec: ModalitySpec, codec: Any) -> tuple[int, int]:
        """The (H, W) the codec's tokenizer takes its input at."""
        size = getattr(getattr(codec, "tokenizer", None), "image_size", None)
        if size is not None:
            return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if spec.source and spec.source in self.modalities and self.modalities[spec.source].image_size:
            return self.modalities[spec.source].image_size
        return (spec.grid[0] * 16, spec.grid[1] * 16)

    def square_resize(self, spec: ModalitySpec, raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Centre square crop resized to ``size`` through the plugin's transform (its own interpolation)."""
        storage = spec.storage
        if storage is not None and storage.shape and len(storage.shape) == 3 and raw.shape[2] != storage.shape[2]:
            raise GenerationError(f"input {spec.name!r}: expected {storage.shape[2]} channel(s) (raw shape "
                                  f"(H, W, {storage.shape[2]})), got an array of shape {raw.shape}")
        if storage is not None and not storage.is_json and raw.dtype != np.dtype(storage.dtype):
            raw = raw.astype(storage.dtype)
        h, w = raw.shape[:2]
        side = min(h, w)
        box = ((h - side) // 2, (w - side) // 2, side, side)
        transform = self.transform(spec)
        if transform is not None:
            return transform.crop(raw, box=box, flip=False, size=size)
        from .plugin_kit.images import crop_resize

        return crop_resize(raw, box, size)

    # -- generation ------------------------------------------------------------------------------
    def _targets(self, targets: Sequence[str | TargetConfig] | str, overrides: Mapping[str, Any]) -> list[TargetConfig]:
        if isinstance(targets, str):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        unknown = sorted(set(overrides) - set(_OVERRIDES))
        if unknown:
            raise GenerationError(f"unknown generation option(s) {unknown}; valid: {', '.join(_OVERRIDES)}")
        out = []
        for t in targets:
            cfg = t if isinstance(t, TargetConfig) else TargetConfig(modality=t)
            name = self.resolve(cfg.modality, as_target=True)
            is_seq = adapter_for(self.modalities[name]).autoregressive
            call = {k: v for k, v in overrides.items() if v is not None
                    and not (is_seq and k in _ITERATIVE_ONLY) and not (not is_seq and k in _SEQUENCE_ONLY)}
            merged = {**self.defaults.get(name, {}), **call}
            unset = cfg.unset_fields()  # a field set explicitly, even to its default value, stays
            codec = self.codecs.get(name)
            model_vocab = dict(getattr(self.model, "vocab_sizes", {})).get(name)
            if (codec is not None and "vocab_limit" in unset and model_vocab is not None
                    and getattr(codec, "vocab_size", model_vocab) < model_vocab):
                merged["vocab_limit"] = int(codec.vocab_size)  # never generate ids its tokenizer cannot decode
            resolved = cfg.replace(modality=name, **{k: v for k, v in merged.items() if k in unset})
            # a sequence whose serializer declares a grammar decodes under it unless grammar=False
            out.append(with_codec_grammar(resolved, codec) if is_seq and codec is not None else resolved)
        return out

    def __call__(self, inputs: Mapping[str, Any] | None, targets: Sequence[str | TargetConfig] | str, *,
                 seed: int | None = None, decode: bool = True, decode_errors: str = "raise",
                 given: Mapping[str, Any] | None = None,
                 conditions: Sequence[tuple[Mapping[str, Any], float]] | None = None,
                 batch_size: int | None = None, pixel_twins: bool | None = None,
                 **overrides: Any) -> AnyToAnyOutput:
        """Generate ``targets`` (in order; each finished one conditions the next) from raw ``inputs``.

        ``overrides`` (``steps``, ``temperature``, ``guidance``, ``top_k``, ``top_p``, ``scheme``, ...) apply to
        every target that leaves them unset (None) and to which they apply (``scheme`` / ``steps`` to image and
        vector targets, ``max_new_tokens`` / ``stop_at_eos`` to sequences); pass :class:`TargetConfig` objects
        for per-target settings.
        ``inputs`` empty or None: unconditional generation of ``batch_size`` rows (default 1).
        ``given``: partial targets (see :meth:`encode_given`): ``{"caption": "a photo of"}`` completes a
        caption, ``{"caption": "a [S_1] on a [S_2]"}`` fills a template, ``{"tok_rgb": {"value": photo,
        "mask": mask}}`` re-generates the masked region of an image (in- / out-painting).
        ``conditions``: weighted conditions ``[(raw inputs, weight), ...]``, e.g.
        ``[({"caption": "a dog"}, 3.0), ({"caption": "a cat"}, -1.0)]``: every target samples
        ``uncond + sum_i w_i (cond_i - uncond)``; negative weights steer away from their condition.
        ``pixel_twins``: see the class docstring (default: the pipeline's setting).
        ``decode=False`` skips the codecs (outputs are token ids). ``decode_errors``: ``"raise"`` (default), or
        ``"text"``: a generated row its codec cannot decode (e.g. a sequence a briefly trained model got wrong,
        that its serializer cannot parse) becomes the string ``"unparseable: <reason>"`` and the other rows
        are kept.
        """
        if decode_errors not in ("raise", "text"):
            raise GenerationError(f"decode_errors must be 'raise' or 'text', got {decode_errors!r}")
        mod_dict, raws, batched, kwargs = self._sampler_args(inputs, given, conditions, batch_size, pixel_twins)
        result = self.sampler.generate(mod_dict, self._targets(targets, overrides), seed=seed, **kwargs)
        return self._decode(result, raws, batched, decode, decode_errors)

    def iterate(self, inputs: Mapping[str, Any] | None, targets: Sequence[str | TargetConfig] | str, *,
                seed: int | None = None, given: Mapping[str, Any] | None = None,
                conditions: Sequence[tuple[Mapping[str, Any], float]] | None = None,
                batch_size: int | None = None, pixel_twins: bool | None = None,
                **overrides: Any) -> Iterator[GenerationStep]:
        """Step-by-step generation: yields a :class:`GenerationStep` after every decoding step."""
        mod_dict, _, _, kwargs = self._sampler_args(inputs, given, conditions, batch_size, pixel_twins)
        return self.sampler.iterate(mod_dict, self._targets(targets, overrides), seed=seed, **kwargs)

    def _sampler_args(self, inputs, given, conditions, batch_size, pixel_twins):
        """Encoded inputs, raw lists, batched flag, and the sampler's keyword arguments."""
        mod_dict, raws, batched = self.encode_inputs(inputs, pixel_twins=pixel_twins, allow_empty=True)
        parts = {"given": self.encode_given(given) if given else None}
        if conditions is not None:
            encoded = []
            for item in conditions:
                if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Mapping)):
                    raise GenerationError(f"conditions: each entry is (raw inputs dict, weight), got {item!r}")
                md, _, b = self.encode_inputs(item[0], pixel_twins=pixel_twins)
                encoded.append((md, float(item[1])))
                batched = batched or b
            parts["conditions"] = encoded
        dicts = [mod_dict, parts["given"] or {}, *(m for m, _ in parts.get("conditions", ()))]
        sizes = {d["tensor"].shape[0] for md in dicts for d in md.values()}
        B = max(sizes) if sizes else (batch_size or 1)
        batched = batched or B > 1
        for md in dicts:
            for d in md.values():  # single raws repeat over the batch
                for k, v in list(d.items()):
                    if isinstance(v, torch.Tensor) and v.shape[0] == 1 and B > 1:
                        d[k] = v.expand(B, *v.shape[1:]).clone()
        return mod_dict, raws, batched, {"batch_size": batch_size, **{k: v for k, v in parts.items() if v is not None}}

    def _decode(self, result: GenerationResult, raws: dict[str, list], batched: bool, decode: bool,
                errors: str = "raise") -> AnyToAnyOutput:
        out: dict[str, list[Any]] = {}
        for name, tokens in result.tokens.items():
            if not decode:
                out[name] = list(tokens.cpu())
                continue
            codec = self.codec(name)
            with torch.no_grad():
                try:
                    out[name] = list(codec.decode(tokens.cpu()))
                except ValueError as exc:
                    if errors == "raise":
                        raise GenerationError(f"generated {name!r} tokens could not be decoded: {exc} "
                                              f"(pass decode_errors='text' to keep the other rows)") from exc
                    out[name] = [self._decode_row(codec, name, tokens[i : i + 1]) for i in range(tokens.shape[0])]
        return AnyToAnyOutput(out, dict(result.tokens), raws, batched)

    @staticmethod
    def _decode_row(codec: Any, name: str, tokens: torch.Tensor) -> Any:
        try:
            return codec.decode(tokens.cpu())[0]
        except ValueError as exc:
            log.warning("generated %r row could not be decoded: %s", name, exc)
            return f"unparseable: {str(exc)[:200]}"

    # -- retrieval -------------------------------------------------------------------------------
    def embed(self, inputs: Mapping[str, Any], modality: str, *, seed: int | None = 0, **overrides: Any) -> np.ndarray:
        """Predict the global embedding ``modality`` (a ``vector`` modality, e.g. ``dinov2_global``) from
        ``inputs`` and decode it: ``(B, D)`` float32."""
        name = self.resolve(modality, as_target=True)
        if self.modalities[name].kind != "vector":
            raise GenerationError(f"retrieval needs a global-embedding ('vector') modality; {name!r} is a "
                                  f"{self.modalities[name].kind!r} modality")
        if name in {self.resolve(k) for k in inputs}:
            raise GenerationError(f"{name!r} is both an input and the embedding to predict")
        out = self(inputs, [name], seed=seed, **overrides)
        return np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in out.raw[name]])

    def search(self, inputs: Mapping[str, Any], index: Any, k: int = 5, **overrides: Any) -> list[list[tuple[int, float]]]:
        """Predict ``index.modality`` from ``inputs`` and return, per batch item, the ``k`` nearest store samples
        as ``(sample_index, cosine_similarity)``. ``index``: a :class:`fourm_core.retrieval.Index` or its path."""
        from .retrieval import Index

        if not isinstance(index, Index):
            index = Index.load(index)
        queries = self.embed(inputs, index.modality, **overrides)
        scores, ids = index.search(queries, k)
        return [[(int(i), float(s)) for i, s in zip(row_i, row_s)] for row_i, row_s in zip(ids, scores)]

    # -- rendering -------------------------------------------------------------------------------
    def render(self, out: AnyToAnyOutput, *, tile: int = 256, include_inputs: bool = True) -> Any:
        """One PIL image: a row per batch item, a column per input then per output, each drawn by its plugin's
        visualizer (``spec.visualizer.load()(raw)``), with the modality name above each column."""
        columns: list[tuple[str, list[Any]]] = []
        if include_inputs:
            columns += [(n, v) for n, v in out.inputs.items()]
        columns += [(n, out.raw[n]) for n in out.raw]
        return render_grid(columns, self.modalities, tile=tile)


def _model_modalities(model: Any) -> ModalitySet:
    mods = getattr(model, "modalities", None)
    if isinstance(mods, ModalitySet):
        return mods
    raise GenerationError(f"{type(model).__name__} does not expose its ModalitySet as `.modalities`")


def draw_raw(spec: ModalitySpec | None, raw: Any, tile: int) -> Any:
    """Draw one raw value, at most ``tile`` a side: the plugin's visualizer, else an image array as is, else its
    text (a failing visualizer is logged and falls back)."""
    from PIL import Image

    img = None
    if spec is not None and spec.visualizer is not None:
        try:
            img = spec.visualizer.load()(raw)
        except Exception as exc:  # noqa: BLE001 - a broken visualizer must not lose the other outputs
            log.warning("visualizer of %r failed (%s: %s); drawing its text instead", spec.name, type(exc).__name__, exc)
    if img is None and spec is not None and adapter_for(spec).image_like and isinstance(raw, np.ndarray):
        from .plugin_kit.images import colormap, to_pil

        a = raw if raw.ndim == 3 else raw[..., None]
        img = to_pil(a) if a.dtype == np.uint8 and a.shape[2] in (1, 3) else to_pil(colormap(a[..., 0]))
    if img is None and not isinstance(raw, (str, dict, list, np.ndarray, torch.Tensor)):
        try:
            img = to_numpy_image(raw, spec.name if spec else "?")
            from .plugin_kit.images import to_pil

            img = to_pil(img)
        except GenerationError:
            img = None
    if img is None:
        img = text_tile(str(raw if not isinstance(raw, np.ndarray) else f"array {raw.shape}"), tile)
    img = img.convert("RGB")
    scale = tile / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)


def text_tile(text: str, tile: int) -> Any:
    """``text`` wrapped onto a white ``tile`` × ``tile`` square."""
    import textwrap

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (tile, tile), "white")
    draw = ImageDraw.Draw(img)
    lines = textwrap.wrap(text, width=max(8, tile // 7))[: tile // 12]
    draw.multiline_text((4, 4), "\n".join(lines), fill="black")
    return img


def render_grid(columns: Sequence[tuple[str, list[Any]]], modalities: ModalitySet, *, tile: int = 256) -> Any:
    """A grid image: one column per ``(modality, raws)``, one row per batch item, names on top."""
    from PIL import Image, ImageDraw

    if not columns:
        raise GenerationError("nothing to render: no inputs and no outputs")
    rows = max(len(v) for _, v in columns)
    header = 16
    grid = Image.new("RGB", (tile * len(columns), header + tile * rows), "white")
    draw = ImageDraw.Draw(grid)
    for c, (name, values) in enumerate(columns):
        spec = modalities[name] if name in modalities else None
        draw.text((c * tile + 4, 2), name, fill="black")
        for r, raw in enumerate(values):
            img = draw_raw(spec, raw, tile)
            grid.paste(img, (c * tile + (tile - img.width) // 2, header + r * tile + (tile - img.height) // 2))
    return grid
