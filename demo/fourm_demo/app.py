"""The demo's back end, without HTTP: one loaded :class:`~fourm_core.pipeline.AnyToAny`, a generation request
(a JSON object) in, the outputs drawn as PNGs and their raw values as JSON out.

A request::

    {"image": "<base64, or a data: URL>", "filename": "photo.jpg", "input": "rgb",
     "texts": {"caption": "a photo of"}, "targets": ["depth", "caption"],
     "steps": 8, "temperature": 0.7, "seed": 0, "grammar": true}

Every key but ``targets`` is optional: no image and no text is unconditional generation; ``steps`` /
``temperature`` left out (or null) take each target kind's defaults; ``seed`` defaults to 0 and ``grammar`` to
true (structured sequences decode under their plugins' grammars). The answer lists, per input and per output,
its modality, kind, a PNG drawn by the plugin's visualizer (base64) and, for outputs, the raw value as JSON
(sequences as they decode: text, boxes, palettes, ...; arrays as a summary of shape, dtype and range).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fourm_registry.errors import FourmError
from fourm_registry.strict import check_keys

log = logging.getLogger(__name__)

#: the keys a generation request may carry
REQUEST_KEYS = ("image", "filename", "input", "texts", "targets", "steps", "temperature", "seed", "grammar")
#: largest accepted request body (a base64 photo is 4/3 of its file)
MAX_BODY_BYTES = 48 * 1024 * 1024
#: raw values beginning with this are sequences the model generated that their serializer could not parse
UNPARSEABLE = "unparseable:"


class DemoError(FourmError):
    """A request the page (or an API client) can fix; the message is one line that names the fix."""


class DemoApp:
    """The state of one ``fourm demo`` server: the pipeline (loaded once) and a lock that runs one generation
    at a time. ``model`` is how the page names it; ``tile`` the side of the PNGs it returns."""

    def __init__(self, pipe: Any, *, model: str = "", tile: int = 256):
        self.pipe = pipe
        self.model = model
        self.tile = int(tile)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model: str, *, device: str = "cpu", tokenizers: str | None = None, tile: int = 256) -> DemoApp:
        """``AnyToAny.from_pretrained(model)``: a fourm checkpoint directory, a released 4M directory or hub id."""
        from fourm_core.pipeline import AnyToAny

        return cls(AnyToAny.from_pretrained(model, device=device, tokenizers=tokenizers), model=str(model), tile=tile)

    # -- what the model offers -------------------------------------------------------------------
    def _kind(self, spec: Any) -> Any:
        from fourm_core.kinds import adapter_for

        return adapter_for(spec)

    def image_inputs(self) -> list[str]:
        """Modalities the model reads that an image file (or ``.npy`` array) feeds: raw pixels, or image
        modalities whose tokenizer is loaded."""
        return [s.name for s in self.pipe.modalities.specs if s.encoder and self._kind(s).image_like
                and (not self._kind(s).discrete or s.name in self.pipe.codecs)]

    def text_inputs(self) -> list[str]:
        """Sequence modalities the model reads whose tokenizer is loaded (a caption, a JSON value, ...)."""
        return [s.name for s in self.pipe.modalities.specs if s.encoder and self._kind(s).autoregressive
                and s.name in self.pipe.codecs]

    def targets(self) -> list[str]:
        """The model's decodable targets: modalities it generates whose tokenizer can decode them."""
        return [s.name for s in self.pipe.modalities.specs if s.decoder and s.name in self.pipe.codecs]

    def info(self) -> dict[str, Any]:
        """What the page offers: the inputs, the targets (with kind and description) and the defaults."""
        specs = self.pipe.modalities
        return {
            "model": self.model,
            "image_inputs": self.image_inputs(),
            "default_image_input": self._default_image_input(),
            "text_inputs": self.text_inputs(),
            "targets": [{"name": n, "kind": specs[n].kind, "description": specs[n].description or ""}
                        for n in self.targets()],
            "default_targets": self._default_targets(),
            "defaults": {"steps": None, "temperature": None, "seed": 0, "grammar": True},
        }

    def _default_image_input(self) -> str | None:
        """What a dropped image feeds unless the request names it: the photo modality (rgb), else the first."""
        images = self.image_inputs()
        rgb = [n for n in images if self._kind(self.pipe.modalities[n]).rgb_input]
        return (rgb or images or [None])[0]

    def _default_targets(self) -> list[str]:
        """What the page ticks at first: an image target that is not a twin of an image input (depth rather
        than tok_rgb from rgb), else the first target."""
        specs, images = self.pipe.modalities, set(self.image_inputs())
        targets = self.targets()
        picked = [n for n in targets if self._kind(specs[n]).image_like and specs[n].source not in images]
        return (picked or targets)[:1]

    # -- one request -----------------------------------------------------------------------------
    def respond(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """An HTTP body in, ``(status, JSON payload)`` out: 200 with the outputs, 400 with ``{"error": line}``
        for a request the user can fix, 500 with a one-line ``error`` for a bug (its traceback is logged)."""
        from fourm_registry.cli import error_line

        try:
            if len(body) > MAX_BODY_BYTES:
                raise DemoError(f"the request is {len(body) / 2**20:.0f} MiB, more than the "
                                f"{MAX_BODY_BYTES // 2**20} MiB accepted; send a smaller image")
            try:
                request = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise DemoError(f"the request is not a JSON object ({exc}); send "
                                f"{{\"targets\": [...], \"image\": base64, ...}}") from None
            return 200, self.generate(request)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line on the page
            line = error_line(exc)
            if line is not None:
                return 400, {"error": line}
            log.exception("fourm demo: the generation failed")
            return 500, {"error": f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
                                  f"the server log has the traceback"}

    def generate(self, request: Any) -> dict[str, Any]:
        """Run one request (see the module docstring); raises :class:`DemoError` naming a bad field."""
        if not isinstance(request, Mapping):
            raise DemoError(f"the request must be a JSON object, got {type(request).__name__}")
        check_keys(request, REQUEST_KEYS, "request", error=DemoError)
        targets = self._request_targets(request.get("targets"))
        inputs = self._request_inputs(request)
        steps = _number(request.get("steps"), "steps", int, minimum=1)
        temperature = _number(request.get("temperature"), "temperature", float, minimum=0.0)
        seed = _number(request.get("seed", 0), "seed", int, minimum=0)
        grammar = request.get("grammar", True)
        if not isinstance(grammar, bool):
            raise DemoError(f"grammar must be true or false, got {grammar!r}")
        options: dict[str, Any] = {"steps": steps, "temperature": temperature}
        if not grammar:
            options["grammar"] = False
        options = {k: v for k, v in options.items() if v is not None}
        with self._lock:
            start = time.perf_counter()
            out = self.pipe(inputs, targets, seed=seed, decode_errors="text", **options)
            seconds = time.perf_counter() - start
            specs = self.pipe.modalities
            return {
                "model": self.model,
                "inputs": [self._item(specs[n], raws[0]) for n, raws in out.inputs.items()],
                "outputs": [{**self._item(specs[n], out.raw[n][0]), "value": json_value(out.raw[n][0]),
                             "tokens": int(out.tokens[n].shape[-1])} for n in out],
                "settings": {"targets": targets, "seed": seed, "grammar": grammar, "steps": steps,
                             "temperature": temperature},
                "seconds": round(seconds, 3),
            }

    def _request_targets(self, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
            raise DemoError(f"targets must be a non-empty list of modality names; this model generates: "
                            f"{', '.join(self.targets()) or 'nothing (no tokenizer loaded)'}")
        names = [self.pipe.resolve(t, as_target=True) for t in value]
        undecodable = [n for n in names if n not in self.pipe.codecs]
        if undecodable:
            raise DemoError(f"target(s) {', '.join(map(repr, undecodable))} have no tokenizer to decode them; "
                            f"pick from: {', '.join(self.targets())}")
        if len(set(names)) < len(names):
            raise DemoError(f"targets name a modality twice: {value}")
        return names

    def _request_inputs(self, request: Mapping[str, Any]) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        image = request.get("image")
        if image not in (None, ""):
            images = self.image_inputs()
            name = request.get("input") or self._default_image_input()
            if name is None:
                raise DemoError("this model reads no image modality; leave the image out")
            if name not in images:
                raise DemoError(f"input {name!r} is not an image input of this model; image inputs: "
                                f"{', '.join(images)}")
            spec = self.pipe.modalities[name]
            inputs[name] = read_upload(_b64(image), str(request.get("filename") or "upload"), spec,
                                       rgb=self._kind(spec).rgb_input)
        texts = request.get("texts") or {}
        if not isinstance(texts, Mapping):
            raise DemoError(f"texts must be an object {{modality: text}}, got {type(texts).__name__}")
        readable = self.text_inputs()
        for key, text in texts.items():
            if text in (None, ""):
                continue
            name = self.pipe.resolve(key)
            if name not in readable:
                raise DemoError(f"texts: {key!r} is not a text input of this model; text inputs: "
                                f"{', '.join(readable) or 'none'}")
            if name in inputs:
                raise DemoError(f"input {name!r} is given twice")
            inputs[name] = _text_value(text)
        return inputs

    def _item(self, spec: Any, raw: Any) -> dict[str, Any]:
        buf = io.BytesIO()
        picture(spec, raw, self.tile).save(buf, format="PNG")
        item = {"name": spec.name, "kind": spec.kind, "png": base64.b64encode(buf.getvalue()).decode("ascii")}
        if isinstance(raw, str) and raw.startswith(UNPARSEABLE):
            item["warning"] = (f"the generated {spec.name} sequence could not be parsed "
                               f"({raw[len(UNPARSEABLE):].strip()}); its text is shown")
        return item


def picture(spec: Any, raw: Any, tile: int) -> Any:
    """One RGB PIL image of a raw value, at most ``tile`` a side: the plugin's visualizer (the pipeline's
    fallbacks when it has none or it fails), or the text of a sequence that did not parse."""
    from fourm_core.pipeline import draw_raw, text_tile

    if isinstance(raw, str) and raw.startswith(UNPARSEABLE):
        return text_tile(raw, tile)
    return draw_raw(spec, raw, tile)


def read_upload(data: bytes, filename: str, spec: Any, *, rgb: bool) -> Any:
    """An uploaded file as a raw input of ``spec``: a ``.npy`` array, or an image (EXIF orientation applied;
    RGB for photo modalities, palette / alpha / CMYK images converted to RGB, other modes kept)."""
    if Path(filename).suffix.lower() == ".npy":
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DemoError(f"input {spec.name!r}: {filename!r} is not a readable .npy array "
                            f"({' '.join(str(exc).split())})") from None
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB") if rgb or img.mode in ("RGBA", "P", "CMYK", "LA") else img.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        why = ("not an image format PIL recognises" if isinstance(exc, Image.UnidentifiedImageError)
               else " ".join(str(exc).split()))
        raise DemoError(f"input {spec.name!r}: cannot read {filename!r} as an image ({why}); drop a PNG, JPEG "
                        f"or WebP photo") from None


def json_value(raw: Any) -> Any:
    """A raw output as JSON: sequences' values as they are (numpy scalars made plain), arrays as a summary
    ``{"shape", "dtype", "min", "max", "mean"}``, non-finite floats as strings (JSON has no NaN)."""
    if hasattr(raw, "detach") and hasattr(raw, "numpy"):
        raw = raw.detach().cpu().numpy()
    elif hasattr(raw, "getbands"):  # a PIL image
        raw = np.asarray(raw)
    if isinstance(raw, np.ndarray):
        a = raw.astype(np.float64) if raw.size else raw
        stats = {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean())} if raw.size else {}
        return {"shape": list(raw.shape), "dtype": str(raw.dtype), **{k: json_value(v) for k, v in stats.items()}}
    if isinstance(raw, np.generic):
        raw = raw.item()
    if isinstance(raw, float):
        return raw if math.isfinite(raw) else str(raw)
    if isinstance(raw, Mapping):
        return {str(k): json_value(v) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return [json_value(v) for v in raw]
    if raw is None or isinstance(raw, (str, int, bool)):
        return raw
    return str(raw)


def _b64(value: Any) -> bytes:
    """The bytes of a base64 string or a ``data:...;base64,`` URL."""
    if not isinstance(value, str):
        raise DemoError(f"image must be a base64 string or a data: URL, got {type(value).__name__}")
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DemoError(f"image is not valid base64 ({exc}); send the file's bytes base64-encoded") from None


def _text_value(text: Any) -> Any:
    """A text input: a JSON object / list when it parses as one (boxes, poses ...), else the text itself."""
    if not isinstance(text, str):
        return text
    if text.strip()[:1] in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def _number(value: Any, name: str, typ: type, *, minimum: float) -> Any:
    """``value`` as ``typ`` (None stays None); a bool, a non-number or a value below ``minimum`` raises."""
    if value is None or value == "":
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and typ is int:
        ok = float(value).is_integer()
    if not ok or not math.isfinite(float(value)) or value < minimum:
        what = "an integer" if typ is int else "a number"
        raise DemoError(f"{name} must be {what} ≥ {minimum:g} (or left empty for the default), got {value!r}")
    return typ(value)
