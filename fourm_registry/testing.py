"""The contract every modality plugin's tests subclass (ours and third parties').

Usage, in a plugin's ``tests/test_<name>.py``::

    from fourm_registry.testing import ModalityPluginTests

    class TestDepth(ModalityPluginTests):
        modality = "depth"

        def example_raw(self):
            return [...]                     # >= 2 raw samples valid for the storage spec

        def make_labeler(self, tmp_path):    # only for model-based labelers: tiny weights
            ...

The class is collected by pytest through the subclass (its name does not start with ``Test``). Every
check uses the real components through the registry; nothing is mocked. Heavy imports (numpy, torch, zarr)
happen inside the tests, never when this module is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import attrs

from .manager import get_modalities
from .specs import ModalitySpec

#: side of the square raw images the kit feeds to labelers (the store's default raw_size)
RAW_SIZE = 256


def sample_photos(n: int = 3, size: int = RAW_SIZE) -> list[Any]:
    """``n`` real photos shipped by scikit-image, as uint8 (size, size, 3) arrays (short side resized, centre crop)."""
    from skimage import data

    from fourm_core.plugin_kit.images import resize_short_side_center_crop

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "motorcycle"]
    photos = []
    for i in range(n):
        name = names[i % len(names)]
        img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        photos.append(resize_short_side_center_crop(img, size))
    return photos


def check_raw(spec: ModalitySpec, raw: Any) -> None:
    """Raise ``ValueError`` naming the modality when ``raw`` does not match ``spec.storage``."""
    import numpy as np

    storage = spec.storage
    if storage is None:
        raise ValueError(f"modality {spec.name!r} declares no storage spec")
    if storage.is_json:
        try:
            json.dumps(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"modality {spec.name!r}: raw sample is not JSON-serialisable: {exc}") from exc
        return
    if not isinstance(raw, np.ndarray):
        raise ValueError(f"modality {spec.name!r}: raw sample must be a numpy array, got {type(raw).__name__}")
    if raw.dtype != np.dtype(storage.dtype):
        raise ValueError(f"modality {spec.name!r}: raw dtype {raw.dtype} != storage dtype {storage.dtype}")
    if tuple(raw.shape) != tuple(storage.shape):
        raise ValueError(f"modality {spec.name!r}: raw shape {raw.shape} != storage shape {storage.shape}")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise ValueError(f"modality {spec.name!r}: raw sample contains NaN or inf")


def raw_equal(a: Any, b: Any) -> bool:
    import numpy as np

    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class ModalityPluginTests:
    """Contract tests for one modality. Subclasses set :attr:`modality` and implement :meth:`example_raw`."""

    #: the modality name (as registered)
    modality: str = ""

    # -- what a subclass provides ------------------------------------------------------------------
    def example_raw(self) -> list[Any]:
        """At least two raw samples valid for the storage spec (real photos' labels where possible)."""
        raise NotImplementedError(f"{type(self).__name__} must implement example_raw() (the contract needs samples)")

    def make_labeler(self, tmp_path) -> Any:
        """The labeler under test. Default: the spec's labeler with its default arguments (weight-free
        labelers). Model-based plugins override this to build one from tiny weights saved under ``tmp_path``."""
        return self.spec.labeler.build()

    def labeler_inputs(self) -> dict[str, list[Any]]:
        """Inputs for the labeler: real photos as ``rgb``. Plugins whose labeler ``requires`` other modalities
        override this to add them."""
        return {"rgb": sample_photos(2)}

    def tokenizer_kwargs(self) -> dict[str, Any]:
        """Overrides for the tokenizer factory in the shape test (use tiny sizes to keep the test fast)."""
        return {}

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def spec(self) -> ModalitySpec:
        if not self.modality:
            raise AssertionError(f"{type(self).__name__} must set `modality = '<name>'`")
        return get_modalities()[self.modality]

    def _examples(self) -> list[Any]:
        raws = self.example_raw()
        assert isinstance(raws, list) and len(raws) >= 2, "example_raw() must return a list of >= 2 samples"
        return raws

    # -- the contract ----------------------------------------------------------------------------
    def test_spec_is_registered_by_its_plugin(self):
        spec = self.spec
        assert spec.name == self.modality
        assert spec.plugin, f"modality {spec.name!r} has no plugin distribution recorded"
        from importlib.metadata import distribution

        dist = distribution(spec.plugin)
        eps = [ep for ep in dist.entry_points if ep.group == "fourm"]
        assert eps, f"distribution {spec.plugin} declares no entry point in group 'fourm'"

    def test_spec_is_valid_and_listable(self):
        spec = self.spec
        assert attrs.evolve(spec) == spec  # validators pass again
        listed = spec.to_json()
        json.dumps(listed)
        for key in ("name", "kind", "plugin", "version", "num_tokens", "vocab_size", "tokenizer", "labeler", "visualizer"):
            assert key in listed
        assert spec.storage is not None or spec.source is not None, "a modality needs storage or a source"
        if spec.kind == "sequence":
            assert spec.serializer is not None

    def test_plugin_module_does_not_import_torch(self):
        from importlib.metadata import distribution

        eps = [ep for ep in distribution(self.spec.plugin).entry_points if ep.group == "fourm"]
        code = (
            "import sys, importlib\n"
            + "".join(f"importlib.import_module({ep.value!r})\n" for ep in eps)
            + "heavy = [m for m in ('torch', 'numpy', 'transformers', 'open_clip', 'zarr') if m in sys.modules]\n"
            + "print(','.join(heavy))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        assert out == "", f"importing the plugin module of {self.spec.plugin} imported {out}; import them lazily"

    def test_components_import(self):
        for field, declared in self.spec.components().items():
            if declared:
                obj = getattr(self.spec, field).load()
                assert callable(obj), f"component {field} of {self.modality!r} is not callable"

    def test_example_raw_matches_storage(self):
        if self.spec.storage is None:
            return  # raw comes from `source`; its own plugin checks it
        for raw in self._examples():
            check_raw(self.spec, raw)

    def test_storage_round_trip(self, tmp_path):
        if self.spec.storage is None:
            return
        from fourm_core.data.store import roundtrip_raw

        raws = self._examples()
        back = roundtrip_raw(self.spec, raws, tmp_path)
        assert len(back) == len(raws)
        for a, b in zip(raws, back):
            assert raw_equal(a, b), f"{self.modality}: storage round trip changed a sample"

    def test_visualizer_returns_rgb_image(self):
        from PIL import Image

        assert self.spec.visualizer is not None, f"modality {self.modality!r} declares no visualizer"
        visualize = self.spec.visualizer.load()
        for raw in self._examples():
            img = visualize(raw)
            assert isinstance(img, Image.Image) and img.mode == "RGB" and img.width > 0 and img.height > 0

    def test_transform_follows_crop_and_flip(self):
        if self.spec.transform is None:
            assert self.spec.kind not in ("image", "pixels"), "image-like modalities need a transform"
            return
        transform = self.spec.transform.build()
        box = (16, 8, RAW_SIZE - 32, RAW_SIZE - 40)
        # a modality with `source` (tok_rgb) crops its source's raw data: use that storage spec
        storage = self.spec.storage
        if storage is None and self.spec.source is not None:
            storage = get_modalities()[self.spec.source].storage
        size = (224, 224)
        if storage is not None and len(storage.shape) == 3:
            # feature maps live on a coarse grid: crop them to their own grid size, not to pixels
            size = (min(224, storage.shape[0]), min(224, storage.shape[1]))
        for raw in self._examples():
            a = transform.crop(raw, box=box, flip=False, size=size)
            b = transform.crop(raw, box=box, flip=True, size=size)
            if storage is not None and not storage.is_json:
                assert a.shape[-1] == raw.shape[-1] and a.dtype == raw.dtype
                assert a.shape == b.shape
            else:
                json.dumps(a), json.dumps(b)

    def test_labeler_output_matches_storage(self, tmp_path):
        if self.spec.labeler is None:
            return
        labeler = self.make_labeler(tmp_path)
        inputs = self.labeler_inputs()
        missing = [r for r in self.spec.requires if r not in inputs]
        assert not missing, f"labeler_inputs() must provide the required modalities {missing}"
        n = len(inputs["rgb"])
        outputs = labeler(inputs)
        assert len(outputs) == n, f"labeler of {self.modality!r} returned {len(outputs)} samples for {n} inputs"
        for raw in outputs:
            check_raw(self.spec, raw)

    def test_serializer_round_trip(self):
        if self.spec.serializer is None:
            return
        ser = self.spec.serializer.build()
        for raw in self._examples():
            text = ser.to_text(raw)
            assert isinstance(text, str)
            again = ser.to_text(ser.from_text(text))
            assert again == text, f"{self.modality}: to_text(from_text(t)) != t for t={text[:200]!r}"

    def test_tokenizer_encode_decode_shapes(self):
        if self.spec.tokenizer is None:
            return
        import torch

        from fourm_core.tokenizers import ModalityCodec, TextTokenizer

        spec = self.spec
        transform = spec.transform.build() if spec.transform else None
        serializer = spec.serializer.build() if spec.serializer else None
        raws = self._examples()
        if spec.kind == "sequence":
            corpus = [serializer.to_text(r) for r in raws]
            text = TextTokenizer.train(corpus, special_tokens=list(spec.special_tokens), vocab_size=400)
            tokenizer = spec.tokenizer.build(text_tokenizer=text, **self.tokenizer_kwargs())
        else:
            tokenizer = spec.tokenizer.build(**self.tokenizer_kwargs())
        codec = ModalityCodec(spec, tokenizer, transform=transform, serializer=serializer)
        if transform is not None and spec.kind in ("image", "vector") and not (spec.storage and spec.storage.is_json):
            size = getattr(tokenizer, "input_size", None)
            if size is not None and raws[0].ndim == 3:
                h, w = raws[0].shape[:2]
                raws = [transform.crop(r, box=(0, 0, h, w), flip=False, size=tuple(size)) for r in raws]
        with torch.no_grad():
            tokens = codec.encode(raws)
        assert tokens.dtype == torch.long and tokens.shape[0] == len(raws)
        assert tokens.shape[1] == codec.num_tokens
        assert int(tokens.min()) >= 0 and int(tokens.max()) < codec.vocab_size
        with torch.no_grad():
            back = codec.decode(tokens)
        assert len(back) == len(raws)
