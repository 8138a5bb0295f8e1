"""Component contracts: the Protocols of fourm_registry.contracts, the factory context a ref passes, the strict
keys helper, and the registry's independence from the core (no torch, no fourm_core, no scikit-image)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from fourm_registry import (
    ComponentError,
    ComponentRef,
    CropTransform,
    Labeler,
    ModalitySpec,
    Serializer,
    SpecError,
    StorageSpec,
    Transform,
    Visualizer,
    check_keys,
    check_mapping,
    missing_members,
    protocol_for,
)
from fourm_registry.contracts import FACTORY_CONTEXT, protocol_members


# -- the registry stands alone ---------------------------------------------------------------------------
def test_registry_imports_neither_the_core_nor_torch_nor_scikit_image():
    code = ("import sys, fourm_registry, fourm_registry.contracts, fourm_registry.strict, fourm_registry.cli\n"
            "print(','.join(m for m in ('torch', 'numpy', 'fourm_core', 'skimage') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing fourm_registry imported {out}"


def test_the_kit_is_no_longer_in_the_registry():
    """The kit needs the core and scikit-image, which the registry does not depend on: it lives in
    fourm_core.testing. (Looked up in the package's own directory: an editable install's finder may map the
    name to another checkout.)"""
    import importlib.machinery

    import fourm_registry

    assert importlib.machinery.PathFinder.find_spec("fourm_registry.testing", fourm_registry.__path__) is None


# -- protocols -------------------------------------------------------------------------------------------
class _FullTransform:
    def crop(self, raw, box, flip=False, size=None):
        return raw

    def to_tensor(self, raws):
        return raws

    def from_tensor(self, x):
        return list(x)


class _CropOnly:
    def crop(self, raw, box, flip=False, size=None):
        return raw


class _Labeler:
    batch_size = 4

    def __call__(self, inputs):
        return list(inputs["rgb"])


class _Serializer:
    def to_text(self, raw):
        return str(raw)

    def from_text(self, text):
        return text


def test_protocol_members_include_inherited_ones():
    assert protocol_members(CropTransform) == ("crop",)
    assert protocol_members(Transform) == ("crop", "from_tensor", "to_tensor")
    assert protocol_members(Labeler) == ("__call__", "batch_size")
    assert protocol_members(Serializer) == ("from_text", "to_text")
    assert protocol_members(Visualizer) == ("__call__",)


def test_missing_members_and_runtime_checks():
    assert missing_members(_FullTransform(), Transform) == []
    assert missing_members(_CropOnly(), Transform) == ["from_tensor", "to_tensor"]
    assert missing_members(_CropOnly(), CropTransform) == []
    assert missing_members(_Labeler(), Labeler) == []
    assert missing_members(lambda inputs: [], Labeler) == ["batch_size"]
    assert missing_members(_Serializer(), Serializer) == []
    assert missing_members(object(), Serializer) == ["from_text", "to_text"]
    assert missing_members(len, Visualizer) == [] and missing_members(3, Visualizer) == ["__call__"]

    class NotCallableCrop:
        crop = 3

    assert missing_members(NotCallableCrop(), CropTransform) == ["crop"]
    assert isinstance(_FullTransform(), Transform) and not isinstance(_CropOnly(), Transform)
    assert isinstance(_Labeler(), Labeler) and isinstance(_Serializer(), Serializer)


def test_protocol_for_each_component_and_kind():
    assert protocol_for("transform", "sequence") is CropTransform
    for kind in ("image", "pixels", "vector", "embedding_sequence"):
        assert protocol_for("transform", kind) is Transform
    assert protocol_for("labeler", "image") is Labeler
    assert protocol_for("serializer", "sequence") is Serializer
    assert protocol_for("visualizer", "vector") is Visualizer
    assert protocol_for("tokenizer", "image") is None


# -- factory context -------------------------------------------------------------------------------------
def _spec(**kw):
    base = dict(name="toy", kind="image", vocab_size=64, grid=(4, 4), storage=StorageSpec(dtype="uint8", shape=(8, 8, 1)))
    base.update(kw)
    return ModalitySpec(**base)


def echo(**kwargs):
    """A factory that returns what it was called with."""
    return kwargs


def no_context(*, size=3):
    return {"size": size}


def broken_inside(**kwargs):
    raise TypeError("a bug inside the factory")


_HERE = __name__


def test_refs_are_bound_to_their_spec_and_component():
    spec = _spec(tokenizer=f"{_HERE}:echo", transform=f"{_HERE}:echo")
    assert spec.tokenizer.spec is spec and spec.tokenizer.component == "tokenizer"
    assert spec.transform.component == "transform"
    moved = __import__("attrs").evolve(spec, plugin="fourm-toy")
    assert moved.tokenizer.spec is moved and moved == spec.__class__(**{**_fields(spec), "plugin": "fourm-toy"})
    assert ComponentRef(target=f"{_HERE}:echo").spec is None


def _fields(spec):
    import attrs

    return {f.name: getattr(spec, f.name) for f in attrs.fields(type(spec))}


def test_tokenizer_factory_always_gets_the_spec():
    spec = _spec(tokenizer=ComponentRef(target=f"{_HERE}:echo", kwargs={"depth": 1}))
    got = spec.tokenizer.build(dim=8)
    assert got == {"spec": spec, "depth": 1, "dim": 8}
    assert ComponentRef(target=f"{_HERE}:echo").build(dim=8) == {"dim": 8}  # unbound: no context


def test_declared_context_is_passed_only_when_the_host_knows_it():
    spec = _spec(transform=ComponentRef(target=f"{_HERE}:echo", context=("raw_size",)),
                 serializer=ComponentRef(target=f"{_HERE}:echo", context="tokenizer_dir"))
    assert spec.transform.build(context={"raw_size": 512, "tokenizer_dir": "x"}) == {"raw_size": 512}
    assert spec.transform.build() == {}  # no store known: the factory's default applies
    assert spec.serializer.build(context={"tokenizer_dir": "/toks"}) == {"tokenizer_dir": "/toks"}
    undeclared = _spec(transform=f"{_HERE}:echo")
    assert undeclared.transform.build(context={"raw_size": 512}) == {}
    assert spec.transform.build(context={"raw_size": 512}, raw_size=7) == {"raw_size": 7}  # overrides win


def test_a_factory_without_its_context_parameter_fails_naming_it():
    spec = _spec(transform=ComponentRef(target=f"{_HERE}:no_context", context=("raw_size",)), plugin="fourm-toy")
    with pytest.raises(ComponentError) as err:
        spec.transform.build(context={"raw_size": 256})
    msg = str(err.value)
    assert "transform of modality 'toy'" in msg and "fourm-toy" in msg and "'raw_size'" in msg
    spec = _spec(tokenizer=f"{_HERE}:no_context")
    with pytest.raises(ComponentError, match=r"tokenizer of modality 'toy'.*'spec'"):
        spec.tokenizer.build()
    # a TypeError from inside a factory that takes its context is not disguised
    with pytest.raises(TypeError, match="a bug inside"):
        _spec(tokenizer=f"{_HERE}:broken_inside").tokenizer.build()


def test_context_names_are_checked_per_component():
    with pytest.raises(SpecError, match=r"'toy'.*field 'transform'.*'tokenizer_dir'.*allowed: raw_size"):
        _spec(transform=ComponentRef(target=f"{_HERE}:echo", context=("tokenizer_dir",)))
    with pytest.raises(SpecError, match=r"field 'labeler'.*allowed: none"):
        _spec(labeler=ComponentRef(target=f"{_HERE}:echo", context=("raw_size",)))
    assert set(FACTORY_CONTEXT) == {"tokenizer", "labeler", "transform", "serializer", "visualizer", "metrics",
                                    "reader"}


def test_mapping_refs_take_context_and_reject_unknown_keys():
    spec = _spec(transform={"target": f"{_HERE}:echo", "context": ["raw_size"]})
    assert spec.transform.context == ("raw_size",)
    with pytest.raises(SpecError, match=r"component reference: unknown key\(s\) 'kwarg'; valid keys: target, kwargs, context"):
        _spec(transform={"target": f"{_HERE}:echo", "kwarg": {}})


# -- strict keys -----------------------------------------------------------------------------------------
def test_check_keys_message_and_error_class():
    check_keys({"a": 1}, ("a", "b"), "masking config")
    with pytest.raises(SpecError) as err:
        check_keys({"z": 1, "c": 2, "a": 3}, ["b", "a"], "masking config")
    assert str(err.value) == "masking config: unknown key(s) 'c', 'z'; valid keys: b, a"

    class MyError(ValueError):
        pass

    with pytest.raises(MyError, match=r"^train config: unknown key\(s\) 'x'; valid keys: y$"):
        check_keys({"x": 0}, iter(["y"]), "train config", error=MyError)


def test_attrs_kwargs_reads_none_rejects_non_mappings_and_unknown_fields():
    import attrs

    from fourm_registry.strict import attrs_kwargs

    @attrs.frozen
    class Section:
        lr: float = 1.0
        steps: int = 2

    assert attrs_kwargs(Section, None, "train") == {}
    assert attrs_kwargs(Section, {"lr": 0.5}, "train") == {"lr": 0.5}
    with pytest.raises(SpecError, match=r"^train: expected a mapping, got int \(3\)$"):
        attrs_kwargs(Section, 3, "train")
    with pytest.raises(KeyError, match=r"train\.optim: unknown key\(s\) 'lrr'; valid keys: lr, steps"):
        attrs_kwargs(Section, {"lrr": 1}, "train.optim", error=KeyError)
    with pytest.raises(SpecError, match=r"^a\[0\] has unknown key\(s\) 'x'; valid keys: lr$"):
        check_keys({"x": 1}, ["lr"], "a[0] has", sep=" ")


def test_check_mapping():
    data = {"a": 1}
    assert check_mapping(data, "cfg") is data
    with pytest.raises(TypeError, match=r"^cfg: expected a mapping, got list \(\[1\]\)$"):
        check_mapping([1], "cfg", error=TypeError)


# -- the kit checks the protocols ------------------------------------------------------------------------
BROKEN_PLUGIN = textwrap.dedent('''
    class NoCropTransform:
        """A transform that forgot crop()."""

        def to_tensor(self, raws):
            return raws

        def from_tensor(self, x):
            return list(x)
''')


def test_the_kit_fails_a_transform_without_crop(tmp_path, monkeypatch):
    from fourm_core.testing import ModalityPluginTests

    (tmp_path / "fourm_broken_toy.py").write_text(BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = _spec(name="broken_toy", transform="fourm_broken_toy:NoCropTransform", plugin="fourm-broken-toy")

    class TestBroken(ModalityPluginTests):
        modality = "broken_toy"

        @property
        def spec(self):
            return spec

        def example_raw(self):
            import numpy as np

            return [np.zeros((8, 8, 1), np.uint8)] * 2

    for check in (TestBroken().test_transform_follows_crop_and_flip, TestBroken().test_components_follow_their_protocols):
        with pytest.raises(AssertionError) as err:
            check()
        msg = str(err.value)
        assert "modality 'broken_toy'" in msg and "transform" in msg and "NoCropTransform" in msg, msg
        assert "'crop'" in msg and "Transform protocol" in msg, msg
