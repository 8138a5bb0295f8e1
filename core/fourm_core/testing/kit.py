"""The contract every modality plugin's tests subclass (ours and third parties').

Usage, in a plugin's ``tests/test_<name>.py``::

    from fourm_core.testing import ModalityPluginTests

    class TestDepth(ModalityPluginTests):
        modality = "depth"

        def example_raw(self):
            return [...]                     # >= 2 raw samples valid for the storage spec

        def make_labeler(self, tmp_path):    # only for model-based labelers: tiny weights
            ...

What the contract checks beyond shapes, and the hooks a subclass may need for it:

* every component follows its ``typing.Protocol`` of :mod:`fourm_registry.contracts` (a transform without
  ``crop`` fails naming the modality, the component and the missing member), and every factory takes the
  context it is given (``spec=`` for the tokenizer);

* the transform: an image-like probe whose pixels encode their position (``crop_probe = "ramp"``) or
  rectangles of two values (``"marker"``, with :meth:`ModalityPluginTests.marker_values`) must land where the
  box and the flip put them; JSON modalities give :meth:`~ModalityPluginTests.crop_cases` with known
  coordinates, or set ``crop_invariant = True`` (captions, palettes); vectors must be left unchanged;
* the serializer: text -> raw -> text is the identity, and raw -> text -> raw keeps the raw up to
  :meth:`~ModalityPluginTests.assert_serialized_close` (the modality's documented loss);
* the metrics: a declared ``metrics`` factory takes ``spec=``, gives a :class:`~fourm_registry.Metric`, and
  scores each example raw against itself as perfect (``metric_best``: 1.0 or 0.0 by ``higher_is_better``);
* the tokenizer: sequences decode exactly to the serializer's round trip; image / vector tokenizers trained for
  a few steps reconstruct their samples clearly better than a constant prediction
  (:meth:`~ModalityPluginTests.reconstruction_error`, ``reconstruction_bound``).

A component the modality does not declare gives a visible skip naming it, never a silent pass.

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

from fourm_registry import ModalitySpec, get_modalities
from fourm_registry.contracts import missing_members, protocol_for

from .crops import CROP_BOX, check_marker_crop, check_ramp_crop
from .samples import RAW_SIZE, check_raw, json_close, raw_equal, sample_photos


def _kind(spec: ModalitySpec) -> Any:
    """The kind adapter of ``spec`` (imported here: the kit stays free of torch until a test runs)."""
    from fourm_core.kinds import adapter_for

    return adapter_for(spec)


def _is_global(kind: Any) -> bool:
    """A raw with no spatial extent and no boxes (vectors, embedding rows): any crop leaves it unchanged."""
    return not kind.image_like and not kind.autoregressive

#: what the kit knows as a host: the raw size of its samples, no tokenizer directory
HOST_CONTEXT = {"raw_size": RAW_SIZE, "tokenizer_dir": None}


def check_component(spec: ModalitySpec, component: str, obj: Any) -> None:
    """Raise ``AssertionError`` naming the modality, the component and the missing members when ``obj`` (the
    built component, or the visualizer itself) does not follow the protocol of ``component`` for ``spec.kind``."""
    protocol = protocol_for(component, spec.kind)
    if protocol is None:
        return
    missing = missing_members(obj, protocol)
    ref = getattr(spec, component)
    assert not missing, (
        f"modality {spec.name!r}: its {component} ({ref.target if ref else '?'} gave {type(obj).__name__}) lacks "
        f"{', '.join(repr(m) for m in missing)} of the {protocol.__name__} protocol (fourm_registry.contracts); "
        f"add {'it' if len(missing) == 1 else 'them'}")


def build_component(spec: ModalitySpec, component: str, **overrides: Any) -> Any:
    """``spec.<component>`` built as a host does (with :data:`HOST_CONTEXT`) and checked against its protocol."""
    obj = getattr(spec, component).build(context=HOST_CONTEXT, **overrides)
    check_component(spec, component, obj)
    return obj

class ModalityPluginTests:
    """Contract tests for one modality. Subclasses set :attr:`modality` and implement :meth:`example_raw`.

    A component the modality does not declare gives a visible ``pytest.skip`` naming it, never a pass.
    """

    #: the modality name (as registered)
    modality: str = ""

    #: how the transform test probes an image-like modality: ``"ramp"`` (values that encode their position
    #: survive the crop: continuous data, class ids) or ``"marker"`` (two values, e.g. binary edges or normals:
    #: rectangles of :meth:`marker_values` must land where the box puts them)
    crop_probe: str = "ramp"

    #: a JSON (``sequence``) modality whose raw describes the whole image (caption, palette): ``True`` makes
    #: the transform test check that crop and flip leave it as the full-image crop does; geometric JSON
    #: modalities (boxes, keypoints) leave it False and give :meth:`crop_cases`
    crop_invariant: bool = False

    #: training of the tiny tokenizer in the round-trip test: Adam steps and learning rate
    tokenizer_train_steps: int = 60
    tokenizer_train_lr: float = 3e-3
    #: reconstruction bound: decode(encode(x)) must have an error below this fraction of the error of the
    #: best constant prediction (0.5: the tokens carry at least half of the samples' variation)
    reconstruction_bound: float = 0.5

    #: the primary figure of a perfect prediction, which the metrics test expects for a raw scored against
    #: itself (None: 1.0 when higher is better, else 0.0)
    metric_best: float | None = None

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
        """Overrides for the tokenizer factory in the tokenizer tests (use tiny sizes to keep them fast)."""
        return {}

    def tokenizer_samples(self) -> list[Any]:
        """Raw samples the tiny tokenizer is trained on and must reconstruct (default: :meth:`example_raw`)."""
        return self._examples()

    def marker_values(self) -> tuple[Any, Any]:
        """``(background, foreground)`` pixel values (one value per channel, storage dtype) of the marker probe.
        Both must be unchanged by a horizontal flip (normals: x = 0). Default: 0 and the dtype's maximum
        (255 for uint8, 1.0 for floats)."""
        import numpy as np

        storage = self._image_storage()
        dtype = np.dtype(storage.dtype)
        hi = 255 if dtype == np.uint8 else 1.0
        c = storage.shape[2]
        return np.zeros(c, dtype), np.full(c, hi, dtype)

    def crop_cases(self) -> list[tuple[Any, tuple[int, int, int, int], bool, tuple[int, int] | None, Any]]:
        """For a geometric JSON modality: ``(raw, box, flip, size, expected)`` cases whose result is known
        (coordinates computed by hand); compared with :meth:`assert_crop_equal`."""
        raise NotImplementedError(
            f"{type(self).__name__}: modality {self.modality!r} is a JSON modality with a transform; give crop_cases() "
            f"(raws with known coordinates and their expected crops) or set crop_invariant = True when crops and "
            f"flips leave it unchanged")

    def assert_crop_equal(self, expected: Any, got: Any) -> None:
        """Equality of a JSON crop result with its expectation (default: same structure, numbers within 1e-6)."""
        assert json_close(expected, got, 1e-6), f"{self.modality}: crop gave {got!r}, expected {expected!r}"

    def serializer_raws(self) -> list[Any]:
        """Raw samples of the raw → text → raw test (default: :meth:`example_raw`)."""
        return self._examples()

    def assert_serialized_close(self, raw: Any, back: Any) -> None:
        """The modality's notion of "the serializer kept this raw": ``back = from_text(to_text(raw))``.
        Default: equal (:func:`raw_equal`). Lossy serializers (coordinate bins, score thresholds) override it
        with their documented loss."""
        assert raw_equal(raw, back), f"{self.modality}: from_text(to_text(raw)) = {back!r}, raw = {raw!r}"

    def assert_decoded_equal(self, expected: Any, got: Any) -> None:
        """Sequences: ``got = decode(encode(raw))`` against ``expected = from_text(to_text(raw))`` (default: equal;
        the shared WordPiece vocabulary is lower-cased, so a cased modality compares case-insensitively)."""
        assert raw_equal(expected, got), f"{self.modality}: decode(encode(raw)) = {got!r}, expected {expected!r}"

    def reconstruction_error(self, tokenizer: Any, x: Any, y: Any) -> tuple[float, float]:
        """``(error of y = decode(encode(x)), error of the best constant prediction)`` in the tokenizer's tensor
        space. Tokenizers trained with a cosine loss are judged by direction (mean ``1 - cos`` over the
        feature axis), the others by mean squared error."""
        import torch
        import torch.nn.functional as F

        x, y = x.float(), y.float()
        assert y.shape == x.shape, (
            f"{self.modality}: the tokenizer decodes {tuple(y.shape)} for inputs {tuple(x.shape)} (class scores?); "
            f"override reconstruction_error() with the modality's own comparison")
        if getattr(tokenizer, "config", {}).get("loss") == "cosine":
            dims = tuple(d for d in range(x.ndim) if d != 1)
            mean = x.mean(dim=dims, keepdim=True).expand_as(x)
            err = (1 - F.cosine_similarity(y, x, dim=1)).mean()
            base = (1 - F.cosine_similarity(mean, x, dim=1)).mean()
        else:
            err = ((y - x) ** 2).mean()
            base = ((x - x.mean()) ** 2).mean()
        return float(err), float(torch.clamp(base, min=1e-12))

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

    def _skip_unless(self, field: str, why: str = "") -> None:
        import pytest

        if getattr(self.spec, field) is None:
            pytest.skip(f"modality {self.modality!r} declares no {field}{why}")

    def _image_storage(self):
        """The storage spec of the array the transform crops (a ``source`` modality crops its source's raw)."""
        storage = self.spec.storage
        if storage is None and self.spec.source is not None:
            storage = get_modalities()[self.spec.source].storage
        return storage

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
        if _kind(spec).autoregressive:  # text through the shared vocabulary needs a serializer
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

    def test_components_follow_their_protocols(self):
        """Catches a component that lacks a member the core calls (a transform without ``crop``, a serializer
        without ``from_text``) or a factory that does not take its context, before a job trips over it."""
        import inspect

        spec = self.spec
        for component in ("transform", "serializer"):
            if getattr(spec, component) is not None:
                build_component(spec, component)
        if spec.visualizer is not None:
            check_component(spec, "visualizer", spec.visualizer.load())
        if spec.tokenizer is not None:
            params = inspect.signature(spec.tokenizer.load()).parameters
            takes_spec = "spec" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
            assert takes_spec, (f"modality {self.modality!r}: its tokenizer factory {spec.tokenizer.target!r} must "
                                f"take spec= (it derives vocabulary, grid and token count from the ModalitySpec)")

    def test_example_raw_matches_storage(self):
        self._skip_unless("storage", f" (its raw comes from source {self.spec.source!r}, whose plugin checks it)")
        for raw in self._examples():
            check_raw(self.spec, raw)

    def test_storage_round_trip(self, tmp_path):
        self._skip_unless("storage", f" (its raw comes from source {self.spec.source!r}, whose plugin stores it)")
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
        """Catches a transform that ignores ``box`` (offset or scale) or ``flip``, or swaps the axes: a probe
        whose content encodes position must come out exactly where the box and the flip put it."""
        if self.spec.transform is None:
            assert not _kind(self.spec).image_like, "image-like modalities need a transform"
            self._skip_unless("transform")
        transform = build_component(self.spec, "transform")
        storage = self._image_storage()
        kind = _kind(self.spec)
        if kind.image_like and storage is not None and not storage.is_json:
            self._check_image_crop(transform, storage)
        elif _is_global(kind) or self.crop_invariant:
            self._check_crop_invariant(transform)
        else:
            cases = self.crop_cases()
            assert cases, "crop_cases() returned no case"
            for raw, box, flip, size, expected in cases:
                kwargs = {} if size is None else {"size": size}
                self.assert_crop_equal(expected, transform.crop(raw, box=box, flip=flip, **kwargs))

    def _check_crop_invariant(self, transform) -> None:
        """Raws that describe the whole image: any crop / flip gives what the full-image crop gives."""
        full = (0, 0, RAW_SIZE, RAW_SIZE)
        for raw in self._examples():
            ref = transform.crop(raw, box=full, flip=False)
            if _is_global(_kind(self.spec)):
                assert raw_equal(ref, raw), f"{self.modality}: the full-image crop changed a global raw"
            for box, flip in ((CROP_BOX, False), (CROP_BOX, True), ((100, 3, 50, 70), True)):
                got = transform.crop(raw, box=box, flip=flip)
                assert raw_equal(ref, got), f"{self.modality}: crop {box} flip={flip} changed a whole-image raw"

    def _check_image_crop(self, transform, storage) -> None:
        shape = tuple(storage.shape)
        assert len(shape) == 3, f"{self.modality}: image-like storage must be (H, W, C), got {shape}"
        grid = shape[:2]
        # pixel maps are cropped to 224 px, feature maps to their own grid (what the tokenize job asks for)
        size = (min(224, grid[0]), min(224, grid[1])) if grid != (RAW_SIZE, RAW_SIZE) else (224, 224)
        if self.crop_probe == "ramp":
            check_ramp_crop(self.modality, transform, storage, grid, size)
        elif self.crop_probe == "marker":
            check_marker_crop(self.modality, transform, storage, grid, size, self.marker_values())
        else:
            raise AssertionError(f"{type(self).__name__}.crop_probe must be 'ramp' or 'marker', "
                                 f"got {self.crop_probe!r}")
        # the output keeps dtype and channels, and both flips give the same shape
        for raw in self._examples():
            a = transform.crop(raw, box=CROP_BOX, flip=False, size=size)
            b = transform.crop(raw, box=CROP_BOX, flip=True, size=size)
            assert a.shape == b.shape == (*size, raw.shape[-1]) and a.dtype == raw.dtype

    def test_labeler_output_matches_storage(self, tmp_path):
        self._skip_unless("labeler")
        labeler = self.make_labeler(tmp_path)
        check_component(self.spec, "labeler", labeler)
        inputs = self.labeler_inputs()
        missing = [r for r in self.spec.requires if r not in inputs]
        assert not missing, f"labeler_inputs() must provide the required modalities {missing}"
        n = len(inputs["rgb"])
        outputs = labeler(inputs)
        assert len(outputs) == n, f"labeler of {self.modality!r} returned {len(outputs)} samples for {n} inputs"
        for raw in outputs:
            check_raw(self.spec, raw)

    def test_serializer_text_round_trip(self):
        """Catches a parser that does not read back what the writer wrote: to_text(from_text(t)) == t."""
        self._skip_unless("serializer")
        ser = build_component(self.spec, "serializer")
        for raw in self._examples():
            text = ser.to_text(raw)
            assert isinstance(text, str)
            again = ser.to_text(ser.from_text(text))
            assert again == text, f"{self.modality}: to_text(from_text(t)) != t for t={text[:200]!r}"

    def test_serializer_keeps_the_raw(self):
        """Catches a writer that drops or garbles a field: from_text(to_text(raw)) is the raw, up to the
        modality's documented loss (:meth:`assert_serialized_close`), and a second pass changes nothing."""
        self._skip_unless("serializer")
        ser = build_component(self.spec, "serializer")
        for raw in self.serializer_raws():
            back = ser.from_text(ser.to_text(raw))
            self.assert_serialized_close(raw, back)
            assert raw_equal(ser.from_text(ser.to_text(back)), back), f"{self.modality}: a second pass changed {back!r}"

    def _codec(self):
        from fourm_core.tokenizers import ModalityCodec, TextTokenizer

        spec = self.spec
        transform = build_component(spec, "transform") if spec.transform else None
        serializer = build_component(spec, "serializer") if spec.serializer else None
        if _kind(spec).autoregressive:
            corpus = [serializer.to_text(r) for r in self._examples() + self.serializer_raws()]
            text = TextTokenizer.train(corpus, special_tokens=list(spec.special_tokens), vocab_size=400)
            tokenizer = spec.tokenizer.build(text_tokenizer=text, **self.tokenizer_kwargs())
        else:
            tokenizer = spec.tokenizer.build(**self.tokenizer_kwargs())
        return ModalityCodec(spec, tokenizer, transform=transform, serializer=serializer), transform, tokenizer

    def _tokenizer_inputs(self, raws, transform, tokenizer):
        """Raws at the tokenizer's input size (the full-image crop, as the tokenize job does)."""
        size = getattr(tokenizer, "input_size", None)
        kind = _kind(self.spec)
        if transform is not None and size is not None and kind.image_like and kind.discrete and raws[0].ndim == 3:
            full = (0, 0, RAW_SIZE, RAW_SIZE)  # boxes are in raw rgb pixels, also for feature maps
            raws = [transform.crop(r, box=full, flip=False, size=tuple(size)) for r in raws]
        return raws

    def test_tokenizer_encode_decode_shapes(self):
        self._skip_unless("tokenizer", " (its raw is fed to the model as it is)")
        import torch

        codec, transform, tokenizer = self._codec()
        raws = self._tokenizer_inputs(self._examples(), transform, tokenizer)
        with torch.no_grad():
            tokens = codec.encode(raws)
        assert tokens.dtype == torch.long and tokens.shape[0] == len(raws)
        assert tokens.shape[1] == codec.num_tokens
        assert int(tokens.min()) >= 0 and int(tokens.max()) < codec.vocab_size
        with torch.no_grad():
            back = codec.decode(tokens)
        assert len(back) == len(raws)

    def test_tokenizer_round_trip_reconstructs(self):
        """Catches a tokenizer whose tokens lose the sample (a decode returning zeros or another sample's
        values): sequences decode exactly to the serializer's round trip; a tiny image / vector tokenizer
        trained for a few steps on the samples reconstructs them with an error below ``reconstruction_bound``
        times that of the best constant prediction (zeros or the mean score >= 1 on this scale)."""
        self._skip_unless("tokenizer", " (its raw is fed to the model as it is)")
        import torch

        torch.manual_seed(0)  # the tokenizer's initial weights too: the bound is checked on one fixed run
        codec, transform, tokenizer = self._codec()
        if _kind(self.spec).autoregressive:
            ser = codec.serializer
            raws = self.serializer_raws()
            with torch.no_grad():
                back = codec.decode(codec.encode(raws))
            assert len(back) == len(raws)
            for raw, got in zip(raws, back):
                self.assert_decoded_equal(ser.from_text(ser.to_text(raw)), got)
            return
        raws = self._tokenizer_inputs(self.tokenizer_samples(), transform, tokenizer)
        x = codec.to_tensor(raws)
        tokenizer.train()
        opt = torch.optim.Adam(tokenizer.parameters(), lr=self.tokenizer_train_lr)
        for _ in range(self.tokenizer_train_steps):
            loss, _ = tokenizer.loss(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        tokenizer.eval()
        with torch.no_grad():
            tokens = codec.encode(raws)
            y = tokenizer.decode(tokens)
            back = codec.decode(tokens)
        assert len(back) == len(raws)
        for raw, got in zip(raws, back):
            assert got.shape == raw.shape and got.dtype == raw.dtype, (
                f"{self.modality}: decode gave {got.shape} {got.dtype} for {raw.shape} {raw.dtype}")
        err, base = self.reconstruction_error(tokenizer, x, y)
        assert err < self.reconstruction_bound * base, (
            f"{self.modality}: decode(encode(x)) error {err:.4g} is not below {self.reconstruction_bound} x the "
            f"constant prediction's {base:.4g} after {self.tokenizer_train_steps} training steps")

    def test_metrics_score_a_raw_against_itself_as_perfect(self):
        import math

        self._skip_unless("metrics")
        metric = build_component(self.spec, "metrics")
        raws = self._examples()
        scores = metric.update(raws, raws)
        assert len(scores) == len(raws), f"{self.modality}: metrics.update gave {len(scores)} scores for {len(raws)}"
        best = self.metric_best if self.metric_best is not None else (1.0 if metric.higher_is_better else 0.0)
        figures = metric.compute()
        assert metric.primary in figures, f"{self.modality}: compute() lacks the primary figure {metric.primary!r}"
        for got in [*(s for s in scores if not math.isnan(s)), figures[metric.primary]]:
            assert math.isclose(got, best, abs_tol=1e-6), (
                f"{self.modality}: its {metric.primary} of a raw against itself is {got}, not the perfect {best}")
        metric.reset()  # empties the totals: the same samples again give the same figures
        metric.update(raws, raws)
        assert metric.compute() == figures, f"{self.modality}: metrics.reset() did not empty the totals"
