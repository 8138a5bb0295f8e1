"""Declarative descriptions of modalities: what a plugin registers.

Everything here is plain data (attrs frozen classes) validated at construction. Components such as the
tokenizer or the pseudo-labeler are *referenced* by an import string (``"pkg.module:attr"``) and only
imported on use, so listing plugins never imports torch.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from .contracts import ALWAYS_PASSED, FACTORY_CONTEXT
from .errors import ComponentError, DuplicateModalityError, SpecError, UnknownModalityError
from .strict import check_keys

#: How the core treats a modality (the token layouts are listed in :class:`ModalitySpec`).
KINDS = ("image", "pixels", "sequence", "vector", "embedding_sequence")
#: Kinds whose targets the decoder can predict.
DECODABLE_KINDS = ("image", "sequence", "vector")
#: Storage dtypes: numpy dtype names, plus ``json`` (one JSON document per sample, variable length).
STORAGE_DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "bool", "json")
#: The components a spec may reference, in listing order.
COMPONENTS = ("tokenizer", "labeler", "visualizer", "serializer", "transform", "metrics", "reader")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def modality_id(name: str) -> int:
    """uint15 id of a modality name: SHA-256 of the UTF-8 name as a big integer, modulo 2**15 (as the reference)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest(), "big") % (1 << 15)


def _fail(spec_name: str | None, field: str, message: str) -> SpecError:
    where = f"modality {spec_name!r}" if spec_name else "a modality spec"
    return SpecError(f"invalid {where}: field {field!r}: {message}")


def _tuple_of_str(value: Iterable[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen(kw_only=True)
class ComponentRef:
    """A lazy reference to a factory: ``target`` is ``"package.module:attribute"``.

    ``kwargs`` are the default keyword arguments :meth:`build` passes to the factory. ``context`` names the
    host context the factory takes (``raw_size`` for a transform, ``tokenizer_dir`` for a serializer; see
    :data:`fourm_registry.contracts.FACTORY_CONTEXT`). A :class:`ModalitySpec` binds each of its refs to itself
    and to the component it is (``component``, ``spec``), so that a tokenizer factory receives ``spec=``.
    """

    target: str = attrs.field()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict, converter=lambda d: dict(d or {}), eq=False, hash=False)
    context: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    #: which component of ``spec`` this ref is (set by the spec)
    component: str | None = attrs.field(default=None, eq=False, hash=False, repr=False)
    #: the spec this ref belongs to (set by the spec)
    spec: ModalitySpec | None = attrs.field(default=None, eq=False, hash=False, repr=False)

    @target.validator
    def _check_target(self, attribute, value):
        if not isinstance(value, str) or not _REF_RE.match(value):
            raise SpecError(f"component reference {value!r} must look like 'package.module:attribute'")

    @property
    def _where(self) -> str:
        if self.spec is None:
            return f"component {self.target!r}"
        return (f"the {self.component} of modality {self.spec.name!r} (plugin {self.spec.plugin or '?'}, "
                f"factory {self.target!r})")

    def load(self) -> Any:
        """Import and return the referenced object (not called)."""
        module_name, _, attr_path = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise ComponentError(
                f"cannot import component {self.target!r}: {type(exc).__name__}: {exc}. "
                f"Is the distribution that provides {module_name!r} installed with its dependencies?"
            ) from exc
        for part in attr_path.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError as exc:
                raise ComponentError(f"component {self.target!r}: {module_name!r} has no attribute {part!r}") from exc
        return obj

    def factory_context(self, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The context :meth:`build` passes: ``spec=`` for a tokenizer, plus the declared names ``context``
        (what the host knows) provides."""
        passed: dict[str, Any] = {}
        if self.spec is not None and "spec" in ALWAYS_PASSED.get(self.component or "", ()):
            passed["spec"] = self.spec
        for name in self.context:
            if context is not None and name in context:
                passed[name] = context[name]
        return passed

    def build(self, *, context: Mapping[str, Any] | None = None, **overrides: Any) -> Any:
        """Call the referenced factory with its context (:meth:`factory_context`), then ``kwargs`` updated by
        ``overrides``.

        ``context`` holds what the host knows (e.g. ``raw_size`` of the store, the tokenizer directory); only
        the names this ref declares are passed. A factory that does not take a name it is passed fails with a
        :class:`ComponentError` naming the modality, the component and the parameter.
        """
        factory = self.load()
        passed = self.factory_context(context)
        try:
            return factory(**{**passed, **self.kwargs, **overrides})
        except TypeError as exc:
            rejected = _rejected_keywords(factory, passed)
            if not rejected:
                raise
            raise ComponentError(
                f"{self._where} does not take the keyword(s) {', '.join(map(repr, rejected))}, which the "
                f"{self.component or 'component'} contract passes to it; add the parameter(s) to the factory "
                f"(or drop them from the ref's context)"
            ) from exc


def _rejected_keywords(factory: Any, passed: Mapping[str, Any]) -> list[str]:
    """The names of ``passed`` the signature of ``factory`` does not accept (to explain a TypeError)."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    return [name for name in passed if name not in params or params[name].kind is inspect.Parameter.POSITIONAL_ONLY]


_REF_KEYS = ("target", "kwargs", "context")


def _to_ref(value: Any) -> ComponentRef | None:
    if value is None or isinstance(value, ComponentRef):
        return value
    if isinstance(value, str):
        return ComponentRef(target=value)
    if isinstance(value, Mapping):
        check_keys(value, _REF_KEYS, "component reference")
        return ComponentRef(target=value.get("target", ""), kwargs=value.get("kwargs", {}),
                            context=value.get("context", ()))
    raise SpecError(f"component must be None, 'module:attr' or ComponentRef, got {type(value).__name__}")


def _optional_ref():
    return attrs.field(default=None, converter=_to_ref)


@attrs.frozen(kw_only=True)
class StorageSpec:
    """How one sample of a modality's raw data is stored in a zarr store.

    ``dtype`` is a numpy dtype name or ``"json"`` (a JSON document per sample: captions, boxes, ...).
    ``shape`` is the fixed per-sample shape (``()`` for json). Image-like raw data is stored channels-last
    ``(H, W, C)`` at the store's raw resolution.
    """

    dtype: str = attrs.field()
    shape: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    compression_level: int = attrs.field(default=3)
    fill_value: float | int | None = None

    @dtype.validator
    def _check_dtype(self, attribute, value):
        if value not in STORAGE_DTYPES:
            raise SpecError(f"storage dtype {value!r} is not one of {', '.join(STORAGE_DTYPES)}")

    @shape.validator
    def _check_shape(self, attribute, value):
        if not all(isinstance(s, int) and s > 0 for s in value):
            raise SpecError(f"storage shape {value!r} must be positive integers")
        if self.dtype == "json" and value:
            raise SpecError("storage dtype 'json' takes no shape (one document per sample)")

    @compression_level.validator
    def _check_level(self, attribute, value):
        if not 0 <= value <= 22:
            raise SpecError(f"compression_level {value} must be in 0..22 (zstd)")

    @property
    def is_json(self) -> bool:
        return self.dtype == "json"


@attrs.frozen(kw_only=True)
class MaskingDefaults:
    """Per-modality defaults of the input/target token budgets (may be overridden by a masking config)."""

    min_tokens: int = 0
    max_tokens: int | None = None
    #: span masking for sequences: mean span length used by the sentinel masking
    span_length: float = 3.0


@attrs.frozen(kw_only=True)
class ModalitySpec:
    """Everything the core needs to know about a modality.

    Token layout by kind:

    ========================  ===========================================================================
    ``image``                 ``grid=(H, W)`` of token ids in ``[0, vocab_size)``; ``num_tokens = H*W``
    ``pixels``                raw image, ``grid`` of ``patch_size`` patches, ``channels``; encoder only
    ``sequence``              ``max_length`` ids of the shared text vocabulary; ``vocab_size`` is that
                              vocabulary's size (it may be overridden by the text tokenizer in use)
    ``vector``                ``num_tokens`` ids (K tokens of an MLP VQ), learned positions
    ``embedding_sequence``    ``max_length`` continuous vectors of size ``embed_dim``; encoder only
    ========================  ===========================================================================
    """

    name: str = attrs.field()
    kind: str = attrs.field()
    vocab_size: int | None = None
    grid: tuple[int, int] | None = attrs.field(default=None, converter=lambda g: None if g is None else tuple(g))
    max_length: int | None = None
    num_tokens: int | None = None
    patch_size: int | None = None
    channels: int | None = None
    embed_dim: int | None = None
    #: ``"sincos"`` or ``"learned"``; default: learned for ``vector``, sin-cos otherwise
    pos_emb: str | None = attrs.field(default=None)
    encoder: bool = True
    decoder: bool | None = None
    aliases: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    description: str = ""

    tokenizer: ComponentRef | None = _optional_ref()
    labeler: ComponentRef | None = _optional_ref()
    visualizer: ComponentRef | None = _optional_ref()
    serializer: ComponentRef | None = _optional_ref()
    transform: ComponentRef | None = _optional_ref()
    #: scores predicted raws against reference raws over a dataset (:class:`~fourm_registry.contracts.Metric`)
    metrics: ComponentRef | None = _optional_ref()
    #: real labels in: a label file (or a JSON reference) -> a raw of this modality
    #: (:class:`~fourm_registry.contracts.Reader`)
    reader: ComponentRef | None = _optional_ref()

    storage: StorageSpec | None = None
    requires: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    #: take raw data from another modality's ``raw`` array instead of this one's (e.g. ``tok_rgb`` tokenizes ``rgb``)
    source: str | None = None
    special_tokens: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    masking: MaskingDefaults = attrs.field(factory=MaskingDefaults)

    plugin: str | None = None
    version: str | None = None
    license: str | None = None
    default_weights: str | None = None
    #: hub id of the reference's released tokenizer of this modality (what released 4M models speak), e.g.
    #: ``EPFL-VILAB/4M_tokenizers_depth_8k_224-448``; None when the reference released none
    release_tokenizer: str | None = None

    @name.validator
    def _check_name(self, attribute, value):
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise _fail(None, "name", f"{value!r} must be lowercase letters, digits and '_' (e.g. 'depth')")

    @kind.validator
    def _check_kind(self, attribute, value):
        if value not in KINDS:
            raise _fail(self.name, "kind", f"{value!r} is not one of {', '.join(KINDS)}")

    @pos_emb.validator
    def _check_pos(self, attribute, value):
        if value not in (None, "sincos", "learned"):
            raise _fail(self.name, "pos_emb", f"{value!r} must be 'sincos' or 'learned'")

    def __attrs_post_init__(self):
        n, k = self.name, self.kind
        positive = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0  # noqa: E731
        if k in ("image", "sequence", "vector") and not positive(self.vocab_size):
            raise _fail(n, "vocab_size", f"a {k!r} modality needs a positive vocab_size, got {self.vocab_size!r}")
        if k in ("pixels", "embedding_sequence") and self.vocab_size is not None:
            raise _fail(n, "vocab_size", f"a {k!r} modality has no vocabulary; leave vocab_size unset")
        if k in ("image", "pixels"):
            if self.grid is None or len(self.grid) != 2 or not all(positive(g) for g in self.grid):
                raise _fail(n, "grid", f"a {k!r} modality needs grid=(rows, cols) of positive ints, got {self.grid!r}")
        if k == "pixels":
            if not positive(self.patch_size):
                raise _fail(n, "patch_size", "a 'pixels' modality needs a positive patch_size")
            if not positive(self.channels):
                raise _fail(n, "channels", "a 'pixels' modality needs a positive channel count")
        if k in ("sequence", "embedding_sequence") and not positive(self.max_length):
            raise _fail(n, "max_length", f"a {k!r} modality needs a positive max_length")
        if k == "embedding_sequence" and not positive(self.embed_dim):
            raise _fail(n, "embed_dim", "an 'embedding_sequence' modality needs a positive embed_dim")
        if k == "vector" and not positive(self.num_tokens):
            raise _fail(n, "num_tokens", "a 'vector' modality needs num_tokens (K tokens per vector)")
        expected = self._derived_num_tokens()
        if self.num_tokens is None:
            object.__setattr__(self, "num_tokens", expected)
        elif expected is not None and self.num_tokens != expected:
            raise _fail(n, "num_tokens", f"{self.num_tokens} disagrees with the layout, which gives {expected}")
        if self.decoder is None:
            object.__setattr__(self, "decoder", k in DECODABLE_KINDS)
        elif self.decoder and k not in DECODABLE_KINDS:
            raise _fail(n, "decoder", f"a {k!r} modality is encoder-only")
        if not (self.encoder or self.decoder):
            raise _fail(n, "encoder", "a modality must be used by the encoder, the decoder or both")
        if self.pos_emb is None:
            object.__setattr__(self, "pos_emb", "learned" if k == "vector" else "sincos")
        if k == "sequence" and self.serializer is None:
            raise _fail(n, "serializer", "a 'sequence' modality needs a text serializer ('module:attr')")
        for alias in self.aliases:
            if not isinstance(alias, str) or not alias or alias == n:
                raise _fail(n, "aliases", f"alias {alias!r} must be a non-empty string other than the name")
        for req in self.requires:
            if not _NAME_RE.match(req) or req == n:
                raise _fail(n, "requires", f"{req!r} must name another modality")
        if self.source is not None and (not _NAME_RE.match(self.source) or self.source == n):
            raise _fail(n, "source", f"{self.source!r} must name another modality")
        if self.storage is not None and not isinstance(self.storage, StorageSpec):
            raise _fail(n, "storage", f"must be a StorageSpec, got {type(self.storage).__name__}")
        if not isinstance(self.masking, MaskingDefaults):
            raise _fail(n, "masking", f"must be a MaskingDefaults, got {type(self.masking).__name__}")
        for component in COMPONENTS:
            ref = getattr(self, component)
            if ref is None:
                continue
            allowed = tuple(c for c in FACTORY_CONTEXT[component] if c not in ALWAYS_PASSED.get(component, ()))
            bad = [c for c in ref.context if c not in allowed]
            if bad:
                raise _fail(n, component, f"context {', '.join(map(repr, bad))} is not host context of a "
                                          f"{component} factory; allowed: {', '.join(allowed) or 'none'}")
            object.__setattr__(self, component, attrs.evolve(ref, component=component, spec=self))

    def _derived_num_tokens(self) -> int | None:
        if self.kind in ("image", "pixels"):
            return self.grid[0] * self.grid[1]
        if self.kind in ("sequence", "embedding_sequence"):
            return self.max_length
        return None

    @property
    def id(self) -> int:
        """uint15 modality id (hash of the name)."""
        return modality_id(self.name)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """Pixel size of a ``pixels`` modality (grid × patch size)."""
        if self.kind != "pixels":
            return None
        return (self.grid[0] * self.patch_size, self.grid[1] * self.patch_size)

    def components(self) -> dict[str, bool]:
        """Which components this modality declares (for listings)."""
        return {c: getattr(self, c) is not None for c in COMPONENTS}

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly summary (used by ``fourm modalities --json`` and checkpoint configs)."""
        return {
            "name": self.name,
            "id": self.id,
            "kind": self.kind,
            "plugin": self.plugin,
            "version": self.version,
            "num_tokens": self.num_tokens,
            "vocab_size": self.vocab_size,
            "grid": list(self.grid) if self.grid else None,
            "max_length": self.max_length,
            "encoder": self.encoder,
            "decoder": self.decoder,
            "aliases": list(self.aliases),
            "requires": list(self.requires),
            "source": self.source,
            "tokenizer": self.tokenizer is not None,
            "labeler": self.labeler is not None,
            "visualizer": self.visualizer is not None,
            "serializer": self.serializer is not None,
            "default_weights": self.default_weights,
            "release_tokenizer": self.release_tokenizer,
            "license": self.license,
            "description": self.description,
        }


class ModalitySet(Mapping[str, ModalitySpec]):
    """An immutable set of modalities sorted by name; look up by name, alias or uint15 id."""

    def __init__(self, specs: Iterable[ModalitySpec] = ()):
        by_name: dict[str, ModalitySpec] = {}
        by_key: dict[str | int, ModalitySpec] = {}
        for spec in specs:
            if not isinstance(spec, ModalitySpec):
                raise TypeError(f"ModalitySet takes ModalitySpec objects, got {type(spec).__name__}")
            keys: list[str | int] = [spec.name, spec.id, *spec.aliases]
            for key in keys:
                other = by_key.get(key)
                if other is not None:
                    what = "id" if isinstance(key, int) else ("name" if key in (spec.name, other.name) else "alias")
                    raise DuplicateModalityError(
                        f"modality {what} {key!r} is registered twice: {other.name!r} by plugin "
                        f"{other.plugin or '?'} and {spec.name!r} by plugin {spec.plugin or '?'}; "
                        f"uninstall one of them or rename the modality"
                    )
                by_key[key] = spec
            by_name[spec.name] = spec
        self._specs = tuple(by_name[k] for k in sorted(by_name))
        self._by_key = by_key

    def __getitem__(self, key: str | int) -> ModalitySpec:
        try:
            return self._by_key[key]
        except (KeyError, TypeError):
            known = ", ".join(self.names) or "(none: is any modality plugin installed?)"
            raise UnknownModalityError(f"unknown modality {key!r}; known modalities: {known}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __repr__(self) -> str:
        return f"ModalitySet({', '.join(self.names)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModalitySet) and self._specs == other._specs

    def __hash__(self) -> int:
        return hash(self._specs)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._specs)

    @property
    def specs(self) -> tuple[ModalitySpec, ...]:
        return self._specs

    def resolve(self, key: str | int) -> str:
        """Canonical name of a name / alias / id."""
        return self[key].name

    def subset(self, keys: Iterable[str | int]) -> ModalitySet:
        """The modalities named (by name, alias or id) in ``keys``."""
        return ModalitySet(self[k] for k in keys)

    def of_kind(self, *kinds: str) -> ModalitySet:
        return ModalitySet(s for s in self._specs if s.kind in kinds)

    def with_spec(self, spec: ModalitySpec) -> ModalitySet:
        """A new set with ``spec`` added (raises on a duplicate)."""
        return ModalitySet((*self._specs, spec))
