"""The plugin test kit's home (fourm_core.testing: declared dependencies, a pytest11 plugin) and the bundled
tokenizer factories, which take their layout from the spec they receive and build what they built before."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_kit_package_and_pytest_plugin_import_cheaply():
    """pytest imports the plugin at start-up (before any kit module, so that it can rewrite their asserts)."""
    code = ("import sys, fourm_core.testing, fourm_core.testing.plugin as p\n"
            "assert callable(p.fourm_photos)\n"
            "assert not [m for m in sys.modules if m.startswith('fourm_core.testing.') and m != p.__name__]\n"
            "print(','.join(m for m in ('torch', 'numpy', 'skimage', 'zarr') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the kit's package and its pytest plugin imported {out}"


def test_kit_exports_resolve():
    import fourm_core.testing as kit

    for name in kit.__all__:
        assert getattr(kit, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kit.nope  # noqa: B018
    assert set(kit.KIT_MODULES) == {f"fourm_core.testing.{m}" for m in ("crops", "jobs", "kit", "samples")}


def test_core_declares_the_kit_entry_point_and_its_extra():
    project = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"fourm_core.testing.plugin": "fourm_core.testing.plugin"}
    testing = " ".join(project["optional-dependencies"]["testing"])
    assert "pytest" in testing and "scikit-image" in testing
    registry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith(("fourm-core", "scikit-image", "torch")) for d in registry["dependencies"])


PLUGIN_USER = """
def test_photos(fourm_photos):
    assert len(fourm_photos) == 3 and fourm_photos[0].shape == (256, 256, 3)


def test_kit_asserts_are_rewritten():
    import fourm_core.testing.kit as kit

    assert hasattr(kit, "@pytest_ar"), "the kit module was imported without pytest's assertion rewriting"
"""


def test_pytest_plugin_provides_photos_and_rewrites_the_kit(tmp_path, subprocess_env):
    (tmp_path / "test_user.py").write_text(PLUGIN_USER)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "fourm_core.testing.plugin",
                          "-W", "error::pytest.PytestAssertRewriteWarning", str(tmp_path / "test_user.py")],
                         capture_output=True, text=True, cwd=tmp_path, env=subprocess_env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout


# -- tokenizer factories derive their layout from the spec ---------------------------------------------
VIT = {"dim": 32, "depth": 1, "num_heads": 2}
MLP = {"hidden_dim": 32, "depth": 1}


def _before(name):
    """The tokenizer each factory built before it received the spec (its numbers written out)."""
    from fourm_core.plugin_kit.feature_tokenizers import feature_map_tokenizer, vector_tokenizer
    from fourm_core.tokenizers import ViTVQVAE

    vit = dict(image_size=224, patch_size=16, modality=name, **VIT)
    return {
        "canny_edge": lambda: ViTVQVAE(in_channels=1, vocab_size=8192, loss="mse", decoder={"type": "canny_edge_soft"}, **vit),
        "depth": lambda: ViTVQVAE(in_channels=1, vocab_size=8192, loss="l1", **vit),
        "normal": lambda: ViTVQVAE(in_channels=3, vocab_size=8192, loss="mse", **vit),
        "semseg": lambda: ViTVQVAE(in_channels=1, vocab_size=4096, loss="ce", num_classes=133, **vit),
        "tok_rgb": lambda: ViTVQVAE(in_channels=3, vocab_size=16384, loss="mse", **vit),
        "sam_edge": lambda: ViTVQVAE(in_channels=1, codebook_size=8192, code_dim=32, loss="mse", **vit),
        "clip": lambda: feature_map_tokenizer(channels=512, grid=(14, 14), vocab_size=8192, modality=name, **VIT),
        "dinov2": lambda: feature_map_tokenizer(channels=768, grid=(16, 16), vocab_size=8192, modality=name, **VIT),
        "imagebind": lambda: feature_map_tokenizer(channels=1280, grid=(16, 16), vocab_size=8192, modality=name, **VIT),
        "dinov2_global": lambda: vector_tokenizer(dim=768, num_tokens=16, vocab_size=8192, modality=name, **MLP),
        "imagebind_global": lambda: vector_tokenizer(dim=1280, num_tokens=16, vocab_size=8192, modality=name, **MLP),
    }[name]()


@pytest.mark.parametrize("name", ["canny_edge", "depth", "normal", "semseg", "tok_rgb", "sam_edge", "clip", "dinov2",
                                  "imagebind", "dinov2_global", "imagebind_global"])
def test_tokenizer_factory_builds_what_it_built_before(name):
    from fourm_registry import get_modalities

    spec = get_modalities()[name]
    tok = spec.tokenizer.build(**(MLP if spec.kind == "vector" else VIT))
    assert tok.config == _before(name).config
    assert tok.num_tokens == spec.num_tokens and tok.vocab_size == spec.vocab_size


@pytest.mark.parametrize("name", ["caption", "color_palette", "det", "human_pose", "metadata", "sam_instance"])
def test_sequence_tokenizer_factory_takes_length_and_name_from_the_spec(name):
    from fourm_core.tokenizers import SequenceTokenizer
    from fourm_registry import get_modalities

    spec = get_modalities()[name]
    tok = spec.tokenizer.build()
    assert isinstance(tok, SequenceTokenizer)
    before = importlib.import_module(f"fourm_{name}.plugin").MAX_LENGTH  # what the ref's kwargs repeated
    assert tok.max_length == spec.max_length == before and tok.modality == name
