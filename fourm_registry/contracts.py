"""What a modality's components must look like: ``typing.Protocol`` classes, and what their factories receive.

A :class:`~fourm_registry.ComponentRef` names a *factory* (a class or a function); calling it gives the
component. The core only ever uses the members listed here, so a plugin is free in everything else.

========================  ======================================================  ==================================
component                 the object the factory returns                          the factory is called with
========================  ======================================================  ==================================
``tokenizer``             a tokenizer module (the core's ``PretrainedTokenizer``  ``spec=`` (always), the ref's
                          families, or a ``SequenceTokenizer`` for sequences)     ``kwargs``, the caller's overrides
``labeler``               :class:`Labeler`                                        ``weights=, device=, batch_size=``
                                                                                  (the label job), ``kwargs``
``transform``             :class:`Transform` (``sequence`` kind:                  ``kwargs``; ``raw_size=`` when the
                          :class:`CropTransform`)                                 ref declares it in ``context``
``serializer``            :class:`Serializer`                                     ``kwargs``; ``tokenizer_dir=`` when
                                                                                  the ref declares it in ``context``
``visualizer``            the visualizer itself (:class:`Visualizer`), not built  (not called by ``build``)
``metrics``               :class:`Metric` (a fresh accumulator per call)          ``spec=`` (always), ``kwargs``
``reader``                :class:`Reader`                                         ``spec=`` (always), ``raw_size=``
                                                                                  when declared, ``kwargs``
========================  ======================================================  ==================================

Factory context (:data:`FACTORY_CONTEXT`): a tokenizer factory always receives the :class:`ModalitySpec` it
belongs to as ``spec=`` and derives vocabulary size, grid, token count and channels from it instead of
repeating them. Other context is host knowledge only some factories need: the raw size of the store (the
pixel size crop boxes refer to, for transforms of boxes, keypoints and feature maps) and the tokenizer
directory (for serializers that load a helper tokenizer from it). A ref declares the names its factory takes
(``ComponentRef(target=..., context=("raw_size",))``); a host passes what it knows
(``ref.build(context={"raw_size": store.raw_size})``) and only declared names reach the factory. A declared
name the host does not know (a pipeline that has no store) is not passed, so the factory's default applies.

Nothing here imports torch or numpy; the protocols are ``runtime_checkable`` and
:func:`missing_members` lists what an object lacks (the plugin contract tests use it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .specs import ModalitySpec

#: the context each component's factory may receive (the names a ref may declare in ``context``); the
#: tokenizer's ``spec`` is always passed and is not declared
FACTORY_CONTEXT: Mapping[str, tuple[str, ...]] = {
    "tokenizer": ("spec",),
    "labeler": (),
    "transform": ("raw_size",),
    "serializer": ("tokenizer_dir",),
    "visualizer": (),
    "metrics": ("spec",),
    "reader": ("spec", "raw_size"),
}
#: context passed whether or not the ref declares it
ALWAYS_PASSED: Mapping[str, tuple[str, ...]] = {"tokenizer": ("spec",), "metrics": ("spec",), "reader": ("spec",)}


@runtime_checkable
class Labeler(Protocol):
    """A pseudo-labeler: ``inputs`` maps modality names (``"rgb"`` and the spec's ``requires``) to equally long
    lists of raws; it returns one raw of its modality per sample, valid for the spec's storage.
    ``batch_size`` is how many samples the label job hands it at once."""

    batch_size: int

    def __call__(self, inputs: Mapping[str, list[Any]]) -> list[Any]: ...


@runtime_checkable
class CropTransform(Protocol):
    """How a raw follows a crop of the rgb image: ``box = (top, left, height, width)`` in raw rgb pixels, then a
    horizontal ``flip``, resized to ``size`` (``(height, width)``; None: the box's size) where that applies.
    This is all a ``sequence`` modality's transform needs (its tokenizer works on the serialized text)."""

    def crop(self, raw: Any, box: tuple[int, int, int, int], flip: bool = False,
             size: tuple[int, int] | None = None) -> Any: ...


@runtime_checkable
class Transform(CropTransform, Protocol):
    """A crop transform that also converts raws to the tokenizer's (or the encoder's) tensors and back:
    ``to_tensor(raws)`` gives a batch, ``from_tensor(x)`` one raw per batch element. Every kind but
    ``sequence`` needs it."""

    def to_tensor(self, raws: Sequence[Any]) -> Any: ...

    def from_tensor(self, x: Any) -> list[Any]: ...


@runtime_checkable
class Serializer(Protocol):
    """Raw ↔ text of a ``sequence`` modality: ``from_text(to_text(raw))`` keeps the raw up to the modality's
    documented loss, and ``to_text(from_text(text)) == text``."""

    def to_text(self, raw: Any) -> str: ...

    def from_text(self, text: str) -> Any: ...


@runtime_checkable
class Visualizer(Protocol):
    """``visualize(raw)`` gives an RGB ``PIL.Image.Image`` of one raw."""

    def __call__(self, raw: Any) -> Any: ...


@runtime_checkable
class Metric(Protocol):
    """Scores predicted raws of one modality against reference raws, accumulated over a dataset.

    ``update(predictions, references)`` takes two equally long lists of raws (the modality's storage form, as
    a store holds them, or as the any-to-any API decodes them), adds them to the running totals and returns
    one score per sample: the ``primary`` figure of that sample alone (what ranks best / median / worst
    samples). ``compute()`` gives every figure over all samples seen so far, ``{name: float}``, ``primary``
    among them; ``higher_is_better`` says which way ``primary`` improves. ``reset()`` empties the totals."""

    primary: str
    higher_is_better: bool

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> list[float]: ...

    def compute(self) -> dict[str, float]: ...

    def reset(self) -> None: ...


@runtime_checkable
class Reader(Protocol):
    """Real labels in: ``read(source, image_size=(H, W))`` gives one raw of the modality, valid for its
    storage spec, from what a sample names for it: a label file (a ``pathlib.Path``, or a binary file object
    with a ``name``: a tar member, a dataset's bytes), or a JSON value (a COCO-style reference
    ``{"file": ..., "image_id": ...}``, a caption string, a raw in the modality's form). ``image_size`` is the
    original size of the sample's rgb image, which the label must match (pixel-aligned labels, boxes in
    pixels); the reader returns the label at that size and the ingest job applies the image's resize and
    centre crop to it through the modality's transform. ``suffixes`` lists the file suffixes it reads
    (``(".png", ".npy")``): a manifest string ending with one of them is a path, any other is a JSON value.
    Errors are ``ValueError``s saying what is wrong and the fix (the job adds the sample and modality)."""

    suffixes: tuple[str, ...]

    def read(self, source: Any, *, image_size: tuple[int, int]) -> Any: ...


@runtime_checkable
class TokenizerFactory(Protocol):
    """``factory(spec=spec, **overrides)``: an untrained tokenizer laid out as ``spec`` says."""

    def __call__(self, *, spec: ModalitySpec, **overrides: Any) -> Any: ...


@runtime_checkable
class LabelerFactory(Protocol):
    """``factory(weights=None, device="cpu", batch_size=..., **kwargs)`` → :class:`Labeler`."""

    def __call__(self, *, weights: str | None = None, device: str = "cpu", **kwargs: Any) -> Labeler: ...


@runtime_checkable
class TransformFactory(Protocol):
    """``factory(**kwargs)`` → :class:`Transform`; takes ``raw_size=`` when its ref declares that context."""

    def __call__(self, **kwargs: Any) -> CropTransform: ...


@runtime_checkable
class SerializerFactory(Protocol):
    """``factory(**kwargs)`` → :class:`Serializer`; takes ``tokenizer_dir=`` when its ref declares that context."""

    def __call__(self, **kwargs: Any) -> Serializer: ...


def protocol_for(component: str, kind: str) -> type | None:
    """The protocol the built ``component`` of a modality of ``kind`` must follow (None: no protocol, the
    tokenizer, whose interface the core's tokenizer families define)."""
    if component == "transform":
        return CropTransform if kind == "sequence" else Transform
    return {"labeler": Labeler, "serializer": Serializer, "visualizer": Visualizer, "metrics": Metric,
            "reader": Reader}.get(component)


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The members (methods and attributes) ``protocol`` declares, its protocol bases' included, sorted."""
    names: set[str] = set()
    for base in protocol.__mro__:
        if base is Protocol or base is object or not getattr(base, "_is_protocol", False):
            continue
        for name in (*vars(base), *getattr(base, "__annotations__", {})):
            if name == "__call__" or not name.startswith("_"):
                names.add(name)
    return tuple(sorted(names))


def missing_members(obj: Any, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks (methods must be callable); empty when it follows it."""
    missing = []
    for name in protocol_members(protocol):
        if name == "__call__":
            ok = callable(obj)
        elif callable(getattr(protocol, name, None)):
            ok = callable(getattr(obj, name, None))
        else:
            ok = hasattr(obj, name)
        if not ok:
            missing.append(name)
    return missing
