"""The registry: specs, the plugin manager and its errors, env switches (no torch needed)."""

from __future__ import annotations

import importlib.metadata as md
import sys
import textwrap

import pytest

from fourm_registry import (
    ComponentRef,
    DuplicateModalityError,
    ModalitySet,
    ModalitySpec,
    PluginLoadError,
    PluginManager,
    PluginValidationError,
    SpecError,
    StorageSpec,
    UnknownModalityError,
    modality_id,
)


def _spec(name="toy", **kw):
    base = dict(name=name, kind="image", vocab_size=64, grid=(4, 4), storage=StorageSpec(dtype="uint8", shape=(8, 8, 1)))
    base.update(kw)
    return ModalitySpec(**base)


# -- specs ---------------------------------------------------------------------------------------------
def test_modality_id_matches_reference_definition():
    # values from shared/conformance/ml4m_tiny/config.json (sha256 of the name mod 2**15)
    assert modality_id("caption") == 32652
    assert modality_id("tok_depth@224") == 20063
    assert modality_id("rgb@224") == 20716


def test_spec_derives_layout_and_defaults():
    s = _spec()
    assert s.num_tokens == 16 and s.decoder is True and s.pos_emb == "sincos"
    v = ModalitySpec(name="glob", kind="vector", vocab_size=8, num_tokens=16)
    assert v.pos_emb == "learned" and v.decoder
    p = ModalitySpec(name="px", kind="pixels", grid=(14, 14), patch_size=16, channels=3)
    assert p.decoder is False and p.image_size == (224, 224) and p.num_tokens == 196


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(name="Bad-Name"), "name"),
        (dict(kind="voxels"), "kind"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(grid=(4,)), "grid"),
        (dict(num_tokens=17), "num_tokens"),
        (dict(pos_emb="rotary"), "pos_emb"),
        (dict(aliases=("toy",)), "aliases"),
        (dict(requires=("toy",)), "requires"),
        (dict(kind="sequence", grid=None, max_length=None), "max_length"),
        (dict(kind="sequence", grid=None, max_length=8), "serializer"),
        (dict(kind="pixels", vocab_size=None, patch_size=None, channels=3), "patch_size"),
    ],
)
def test_invalid_spec_names_the_field(kwargs, field):
    with pytest.raises(SpecError) as err:
        _spec(**kwargs)
    assert repr(field) in str(err.value)


def test_storage_spec_validation():
    with pytest.raises(SpecError, match="dtype"):
        StorageSpec(dtype="complex64")
    with pytest.raises(SpecError, match="json"):
        StorageSpec(dtype="json", shape=(3,))
    with pytest.raises(SpecError, match="shape"):
        StorageSpec(dtype="uint8", shape=(0, 3))


def test_component_ref_is_lazy_and_reports_import_errors():
    ref = ComponentRef(target="json:dumps", kwargs={"sort_keys": True})
    assert ref.build(obj={"b": 1, "a": 2}) == '{"a": 2, "b": 1}'
    with pytest.raises(SpecError):
        ComponentRef(target="not a ref")
    from fourm_registry import ComponentError

    with pytest.raises(ComponentError, match="no_such_module_xyz"):
        ComponentRef(target="no_such_module_xyz:thing").load()
    with pytest.raises(ComponentError, match="has no attribute 'nope'"):
        ComponentRef(target="json:nope").load()


def test_modality_set_sorted_lookup_and_duplicates():
    a = _spec("zeta", aliases=("tok_zeta@224",), plugin="fourm-zeta")
    b = _spec("alpha", plugin="fourm-alpha")
    ms = ModalitySet([a, b])
    assert ms.names == ("alpha", "zeta")
    assert ms["tok_zeta@224"] is a and ms[a.id] is a and ms.resolve("tok_zeta@224") == "zeta"
    with pytest.raises(UnknownModalityError, match="known modalities: alpha, zeta"):
        ms["depth"]
    dup = _spec("zeta", plugin="fourm-other")
    with pytest.raises(DuplicateModalityError) as err:
        ModalitySet([a, dup])
    assert "fourm-zeta" in str(err.value) and "fourm-other" in str(err.value)
    clash = _spec("gamma", aliases=("tok_zeta@224",), plugin="fourm-gamma")
    with pytest.raises(DuplicateModalityError, match="fourm-gamma"):
        ModalitySet([a, clash])


# -- the plugin manager --------------------------------------------------------------------------------
@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """Write plugin modules into a temporary directory on sys.path; returns a writer."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def write(module: str, source: str) -> md.EntryPoint:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        written.append(module)
        return md.EntryPoint(name=module.removeprefix("plug_"), value=module, group="fourm")

    yield write
    for m in written:
        sys.modules.pop(m, None)


GOOD = """
from fourm_registry import ModalitySpec, hookimpl

@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(name="{name}", kind="vector", vocab_size=8, num_tokens=2))
"""


def test_manager_loads_in_fixed_order_and_attributes_plugins(plugin_dir):
    eps = [plugin_dir("plug_b", GOOD.format(name="mod_b")), plugin_dir("plug_a", GOOD.format(name="mod_a"))]
    pm = PluginManager(entry_points=eps, env={})
    assert [p.name for p in pm.plugins()] == ["a", "b"]
    assert pm.plugins()[0].hooks == ("fourm_register_modalities",)
    mods = pm.modalities()
    assert mods.names == ("mod_a", "mod_b")


def test_broken_import_names_entry_point_and_cause(plugin_dir):
    ep = plugin_dir("plug_broken", "import this_module_does_not_exist_42\n")
    with pytest.raises(PluginLoadError) as err:
        PluginManager(entry_points=[ep], env={}).load()
    msg = str(err.value)
    assert "'broken'" in msg and "plug_broken" in msg and "this_module_does_not_exist_42" in msg
    assert "FOURM_DISABLE_PLUGINS=broken" in msg


def test_duplicate_modality_names_both_plugins(plugin_dir):
    eps = [plugin_dir("plug_one", GOOD.format(name="same")), plugin_dir("plug_two", GOOD.format(name="same"))]
    with pytest.raises(DuplicateModalityError) as err:
        PluginManager(entry_points=eps, env={}).modalities()
    assert "'same'" in str(err.value) and "one" in str(err.value) and "two" in str(err.value)


def test_misspelt_hook_fails_loudly(plugin_dir):
    decorated = plugin_dir("plug_typo", """
        from fourm_registry import hookimpl

        @hookimpl
        def fourm_register_modality(register):
            pass
    """)
    with pytest.raises(PluginValidationError, match="fourm_register_modality"):
        PluginManager(entry_points=[decorated], env={}).load()
    undecorated = plugin_dir("plug_typo2", """
        def fourm_register_comands(cli):
            pass
    """)
    with pytest.raises(PluginValidationError, match="not a fourm hook"):
        PluginManager(entry_points=[undecorated], env={}).load()


def test_invalid_spec_names_field_and_plugin(plugin_dir):
    ep = plugin_dir("plug_bad", """
        from fourm_registry import ModalitySpec, hookimpl

        @hookimpl
        def fourm_register_modalities(register):
            register(ModalitySpec(name="badspec", kind="image", vocab_size=-3, grid=(2, 2)))
    """)
    with pytest.raises(SpecError) as err:
        PluginManager(entry_points=[ep], env={}).modalities()
    assert "'bad'" in str(err.value) and "'vocab_size'" in str(err.value)


def test_register_rejects_non_specs(plugin_dir):
    ep = plugin_dir("plug_dict", """
        from fourm_registry import hookimpl

        @hookimpl
        def fourm_register_modalities(register):
            register({"name": "x"})
    """)
    with pytest.raises(SpecError, match="pass a fourm_registry.ModalitySpec"):
        PluginManager(entry_points=[ep], env={}).modalities()


def test_env_switches(plugin_dir):
    eps = [plugin_dir("plug_x", GOOD.format(name="mod_x")), plugin_dir("plug_y", GOOD.format(name="mod_y")),
           md.EntryPoint(name="core", value="fourm_core.plugin", group="fourm")]
    only = PluginManager(entry_points=eps, env={"FOURM_PLUGINS": "y"})
    assert [p.name for p in only.plugins()] == ["core", "y"]  # built-ins always load
    assert only.modalities().names == ("mod_y",)
    blocked = PluginManager(entry_points=eps, env={"FOURM_DISABLE_PLUGINS": "x,core"})
    assert [p.name for p in blocked.plugins()] == ["y"]
    with pytest.raises(PluginLoadError, match="FOURM_PLUGINS names 'depht'.*installed plugins: core, x, y"):
        PluginManager(entry_points=eps, env={"FOURM_PLUGINS": "depht"}).load()
    # a broken plugin can be disabled instead of uninstalled
    broken = plugin_dir("plug_zz", "raise RuntimeError('boom')\n")
    assert PluginManager(entry_points=[*eps, broken], env={"FOURM_DISABLE_PLUGINS": "zz"}).modalities().names == ("mod_x", "mod_y")


def test_manager_is_lazy_on_import():
    import subprocess

    code = "import sys, fourm_registry, fourm_registry.cli; print(any(m == 'fourm_core' or m.startswith('fourm_core.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
