"""Masking configuration: the YAML / dict schema (:class:`MaskingConfig` and its parts) and the text vocabulary's
special ids (:class:`TextVocabInfo`). Every attrs field is named after its YAML key, so unknown-key errors list
the keys a user can write."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from fourm_registry import FourmError
from fourm_registry.strict import attrs_kwargs

KEEP_SCHEMES = ("random", "all", "binary")
SPAN_SCHEMES = ("simple", "chunked")


class MaskingError(FourmError, ValueError):
    """A masking config or a batch handed to the masker is invalid."""


def _strict_from_dict(cls: type, data: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """``data`` as keyword arguments of the attrs class ``cls``; a key that is not a field raises, listing the
    valid keys (the field names are the YAML keys). ``None`` reads as ``{}``."""
    return attrs_kwargs(cls, data, where, error=MaskingError)


def _token_range(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise MaskingError(f"{where}: expected an int or [min, max], got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise MaskingError(f"{where}: expected an int or [min, max] of ints, got {value!r}") from None
    if lo < 0 or hi < lo:
        raise MaskingError(f"{where}: range [{lo}, {hi}] must satisfy 0 <= min <= max")
    return lo, hi


def _alphas(value: Any, where: str) -> dict[str, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"*": value}
    if not isinstance(value, Mapping):
        raise MaskingError(f"{where}: expected a number or a mapping modality -> alpha ('*' = default), got {value!r}")
    out: dict[str, float] = {}
    for k, v in value.items():
        try:
            a = float(v)
        except (TypeError, ValueError):
            raise MaskingError(f"{where}: alpha of {k!r} must be a number, got {v!r}") from None
        if not math.isfinite(a) or a < 0:
            raise MaskingError(f"{where}: alpha of {k!r} must be finite and >= 0, got {a}")
        out[str(k)] = a
    out.setdefault("*", 0.0)
    return out


@attrs.frozen(kw_only=True)
class ModalityMasking:
    """Per-modality masking settings; ``None`` means the spec's default (``spec.masking``)."""

    min_tokens: int | None = None
    max_tokens: int | None = None
    #: default keep scheme of a sequence (a mixture component may override it)
    keep: str = "random"
    #: ``simple`` (token-level spans) or ``chunked`` (spans of whole chunks, e.g. one box of ``det``)
    span: str = "simple"
    #: tokens that start a chunk (exact strings, or prefixes ending with ``*``); needs ``text.token_to_id``
    chunk_start_tokens: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        for f in ("min_tokens", "max_tokens"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise MaskingError(f"masking modality setting {f!r} must be a non-negative int or null, got {v!r}")
        if self.keep not in KEEP_SCHEMES:
            raise MaskingError(f"keep scheme {self.keep!r} is not one of {', '.join(KEEP_SCHEMES)}")
        if self.span not in SPAN_SCHEMES:
            raise MaskingError(f"span scheme {self.span!r} is not one of {', '.join(SPAN_SCHEMES)}")
        if self.span == "chunked" and not self.chunk_start_tokens:
            raise MaskingError("span 'chunked' needs chunk_start_tokens (tokens that begin a chunk), or pass "
                               "chunks= to Masker.__call__")


@attrs.frozen(kw_only=True)
class MixtureComponent:
    """One Dirichlet mixture component: alphas per modality (``'*'`` = default), keep schemes, weight."""

    name: str = ""
    weight: float = 1.0
    input_alphas: dict[str, float] = attrs.field(factory=lambda: {"*": 0.5})
    target_alphas: dict[str, float] = attrs.field(factory=lambda: {"*": 0.5})
    keep: dict[str, str] = attrs.field(factory=dict)
    full_input: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        where = f"mixture component {self.name or '?'}"
        object.__setattr__(self, "input_alphas", _alphas(self.input_alphas, f"{where}: input_alphas"))
        object.__setattr__(self, "target_alphas", _alphas(self.target_alphas, f"{where}: target_alphas"))
        if not isinstance(self.weight, (int, float)) or isinstance(self.weight, bool) or not self.weight > 0:
            raise MaskingError(f"{where}: weight must be a positive number, got {self.weight!r}")
        for k, v in dict(self.keep).items():
            if v not in KEEP_SCHEMES:
                raise MaskingError(f"{where}: keep scheme {v!r} of {k!r} is not one of {', '.join(KEEP_SCHEMES)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "mixture component") -> MixtureComponent:
        return cls(**_strict_from_dict(cls, data, where))


@attrs.frozen(kw_only=True)
class TransferConfig:
    """Fixed masking: ``inputs`` fully visible, ``targets`` fully targets, every other modality unused."""

    inputs: tuple[str, ...] = attrs.field(converter=tuple)
    targets: tuple[str, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        both = sorted(set(self.inputs) & set(self.targets))
        if both:
            raise MaskingError(f"transfer masking: {', '.join(both)} cannot be both input and target")
        if not self.inputs and not self.targets:
            raise MaskingError("transfer masking needs at least one input or target modality")


def _default_mixture() -> tuple[MixtureComponent, ...]:
    return (MixtureComponent(name="all2all", input_alphas={"*": 0.5}, target_alphas={"*": 0.5}),)


@attrs.frozen(kw_only=True)
class MaskingConfig:
    """How input and target tokens are chosen (the YAML form is documented in :mod:`fourm_core.masking`)."""

    input_tokens: tuple[int, int] = attrs.field(default=(128, 128))
    target_tokens: tuple[int, int] | None = attrs.field(default=(128, 128))
    mixture: tuple[MixtureComponent, ...] = attrs.field(factory=_default_mixture, converter=tuple)
    modalities: dict[str, ModalityMasking] = attrs.field(factory=dict)
    #: fixed in/out masking instead of the mixture (``None``: random masking); build with :meth:`for_transfer`
    transfer: TransferConfig | None = None
    fill_budget: bool = True
    allow_unknown_modalities: bool = False
    #: random masking only: the modalities that may be inputs / targets (``None``: all); the others get alpha 0
    #: (per-dataset modalities of a training mixture)
    inputs: tuple[str, ...] | None = attrs.field(default=None, converter=lambda v: None if v is None else tuple(v))
    targets: tuple[str, ...] | None = attrs.field(default=None, converter=lambda v: None if v is None else tuple(v))

    def __attrs_post_init__(self) -> None:
        if self.transfer is not None and (self.inputs is not None or self.targets is not None):
            raise MaskingError("masking: inputs/targets restrict the random masking; transfer masking has its own "
                               "transfer.inputs / transfer.targets: keep one")
        object.__setattr__(self, "input_tokens", _token_range(self.input_tokens, "masking: input_tokens"))
        if self.target_tokens is not None:
            object.__setattr__(self, "target_tokens", _token_range(self.target_tokens, "masking: target_tokens"))
        if not self.mixture:
            raise MaskingError("masking: mixture needs at least one component")
        for c in self.mixture:
            if not isinstance(c, MixtureComponent):
                raise MaskingError(f"masking: mixture entries must be MixtureComponent, got {type(c).__name__}")
        for k, v in self.modalities.items():
            if not isinstance(v, ModalityMasking):
                raise MaskingError(f"masking: modalities.{k} must be a ModalityMasking, got {type(v).__name__}")

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> MaskingConfig:
        """Build from a plain mapping (e.g. parsed YAML); unknown keys raise listing the valid ones."""
        d = _strict_from_dict(cls, data, "masking config")
        if "mixture" in d:
            mix = d["mixture"]
            if not isinstance(mix, (list, tuple)):
                raise MaskingError(f"masking: mixture must be a list of components, got {mix!r}")
            d["mixture"] = tuple(
                m if isinstance(m, MixtureComponent) else MixtureComponent.from_dict(m, f"masking: mixture[{i}]")
                for i, m in enumerate(mix))
        if "modalities" in d:
            mods = d["modalities"] or {}
            if not isinstance(mods, Mapping):
                raise MaskingError(f"masking: modalities must be a mapping name -> settings, got {mods!r}")
            d["modalities"] = {
                str(k): v if isinstance(v, ModalityMasking)
                else ModalityMasking(**_strict_from_dict(ModalityMasking, v, f"masking: modalities.{k}"))
                for k, v in mods.items()}
        if d.get("transfer") is not None and not isinstance(d["transfer"], TransferConfig):
            d["transfer"] = TransferConfig(**_strict_from_dict(TransferConfig, d["transfer"], "masking: transfer"))
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> MaskingConfig:
        """Read a YAML file holding the mapping of :meth:`from_dict`."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise MaskingError(f"masking config file {str(p)!r} does not exist")
        with p.open() as fh:
            data = yaml.safe_load(fh)
        try:
            return cls.from_dict(data or {})
        except MaskingError as exc:
            raise MaskingError(f"{p}: {exc}") from None

    @classmethod
    def for_transfer(cls, inputs: Iterable[str], targets: Iterable[str], **kwargs: Any) -> MaskingConfig:
        """Fixed in/out masking: ``inputs`` fully visible to the encoder, ``targets`` fully predicted."""
        return cls(transfer=TransferConfig(inputs=tuple(inputs), targets=tuple(targets)), **kwargs)

    @classmethod
    def from_reference(cls, data: Mapping[str, Any], *, input_tokens: Any = 128, target_tokens: Any = 128,
                       **kwargs: Any) -> MaskingConfig:
        """Read the reference's alphas-mixture YAML content.

        ``data`` is either ``{sampling_weights: [...], alphas_mixture: {mod: {input_alphas: [...],
        target_alphas: [...], keep: [...]}}}`` or the per-modality mapping directly. Modalities not listed get
        alpha 0 (as in the reference, which only masks listed modalities). Names may be reference names
        (``tok_depth@224``): the :class:`Masker` resolves them through the plugins' aliases.
        """
        per_mod = data.get("alphas_mixture", data) if isinstance(data, Mapping) else None
        if not isinstance(per_mod, Mapping) or not per_mod:
            raise MaskingError("reference alphas: expected a mapping of modality -> {input_alphas, target_alphas}")
        lengths = {len(v.get("input_alphas", ())) for v in per_mod.values()} | {
            len(v.get("target_alphas", ())) for v in per_mod.values()}
        if len(lengths) != 1:
            raise MaskingError(f"reference alphas: every modality needs the same number of alphas, got "
                               f"{sorted(lengths)}")
        k = lengths.pop()
        weights = data.get("sampling_weights") or [1.0] * k
        if len(weights) != k:
            raise MaskingError(f"reference alphas: {len(weights)} sampling_weights for {k} mixture components")
        comps = []
        for i in range(k):
            comps.append(MixtureComponent(
                name=f"component{i}", weight=float(weights[i]),
                input_alphas={"*": 0.0, **{m: float(v["input_alphas"][i]) for m, v in per_mod.items()}},
                target_alphas={"*": 0.0, **{m: float(v["target_alphas"][i]) for m, v in per_mod.items()}},
                keep={m: v["keep"][i] for m, v in per_mod.items() if "keep" in v}))
        return cls(input_tokens=input_tokens, target_tokens=target_tokens, mixture=tuple(comps), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-friendly mapping that :meth:`from_dict` reads back."""
        return {
            "input_tokens": list(self.input_tokens),
            "target_tokens": None if self.target_tokens is None else list(self.target_tokens),
            "mixture": [{"name": c.name, "weight": c.weight, "input_alphas": dict(c.input_alphas),
                         "target_alphas": dict(c.target_alphas), "keep": dict(c.keep),
                         "full_input": list(c.full_input)} for c in self.mixture],
            "modalities": {k: {**attrs.asdict(v), "chunk_start_tokens": list(v.chunk_start_tokens)}
                           for k, v in self.modalities.items()},
            "transfer": None if self.transfer is None else {"inputs": list(self.transfer.inputs),
                                                            "targets": list(self.transfer.targets)},
            "fill_budget": self.fill_budget,
            "allow_unknown_modalities": self.allow_unknown_modalities,
            # the per-dataset restrictions only when set (an unrestricted config reads as before they existed)
            **{k: list(getattr(self, k)) for k in ("inputs", "targets") if getattr(self, k) is not None},
        }


@attrs.frozen(kw_only=True)
class TextVocabInfo:
    """The special ids of the shared text vocabulary, in its fixed layout: ``[PAD]`` = 0, ``[UNK]`` = 1,
    ``[SOS]`` = 2, ``[EOS]`` = 3, sentinels ``[S_0]..[S_199]`` = 4..203."""

    pad_id: int = 0
    unk_id: int = 1
    sos_id: int = 2
    eos_id: int = 3
    sentinel_start_id: int = 4
    num_sentinels: int = 200
    vocab_size: int | None = None
    #: token string -> id (only needed for ``chunk_start_tokens``)
    token_to_id: Mapping[str, int] | None = attrs.field(default=None, eq=False, hash=False)

    def sentinel_id(self, i: int) -> int:
        """Id of ``[S_i]``."""
        return self.sentinel_start_id + i

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, name: str = "text tokenizer") -> TextVocabInfo:
        """From an object with ``token_to_id(str)`` / ``get_vocab()`` (``tokenizers.Tokenizer``, our TextTokenizer).

        Raises when its special tokens do not follow the fixed layout.
        """
        inner = getattr(tokenizer, "tokenizer", tokenizer)
        vocab = inner.get_vocab() if hasattr(inner, "get_vocab") else None
        lookup = (lambda t: vocab.get(t)) if vocab is not None else inner.token_to_id
        expected = {"[PAD]": 0, "[UNK]": 1, "[SOS]": 2, "[EOS]": 3, "[S_0]": 4, "[S_199]": 203}
        for tok, idx in expected.items():
            got = lookup(tok)
            if got != idx:
                raise MaskingError(
                    f"{name}: token {tok} has id {got}, but the fixed vocabulary layout needs {idx} "
                    f"([PAD]=0 [UNK]=1 [SOS]=2 [EOS]=3 [S_0]..[S_199]=4..203); rebuild the tokenizer with "
                    f"fourm_core.tokenizers.TextTokenizer")
        size = len(vocab) if vocab is not None else getattr(tokenizer, "vocab_size", None)
        return cls(vocab_size=size, token_to_id=vocab)
