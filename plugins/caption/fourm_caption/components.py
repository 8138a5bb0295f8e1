"""Components of the ``caption`` modality.

Raw form (JSON): a ``str``. Serialization: the text with runs of whitespace collapsed to one space and
stripped (the shared WordPiece tokenizer lower-cases and splits it). Captions do not follow crops or flips.
"""

from __future__ import annotations

import logging
import textwrap
from typing import Any

from fourm_core.plugin_kit.seqtext import SerializationError

log = logging.getLogger(__name__)
MODALITY = "caption"
DEFAULT_WEIGHTS = "Salesforce/blip-image-captioning-large"


def normalize_caption(text: Any) -> str:
    if not isinstance(text, str):
        raise SerializationError(f"modality {MODALITY!r}: a caption must be a str, got {type(text).__name__}")
    return " ".join(text.split())


class CaptionSerializer:
    """Captions are their own text (whitespace normalised)."""

    def to_text(self, raw: Any) -> str:
        return normalize_caption(raw)

    def from_text(self, text: str) -> str:
        return normalize_caption(text)


class CaptionTransform:
    """Captions describe the whole image: crops and flips leave them unchanged (as in 4M)."""

    def crop(self, raw: Any, box: tuple[int, int, int, int], flip: bool = False, size: tuple[int, int] | None = None,
             **_: Any) -> str:
        return normalize_caption(raw)


class CaptionLabeler:
    """A BLIP captioner (``BlipForConditionalGeneration`` + its processor), batched, on ``device``.

    ``prompt`` (e.g. ``"a photography of"``) conditions the caption; BLIP repeats it at the start of its
    output, which is kept. Decoding: ``num_beams`` beam search (1 = greedy), at most ``max_new_tokens``.
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 16, *,
                 max_new_tokens: int = 40, num_beams: int = 3, prompt: str | None = None):
        from transformers import AutoProcessor, BlipForConditionalGeneration

        from fourm_core.plugin_kit.hub import resolve_device
        from fourm_core.plugin_kit.labelers import load_processor_and_model

        self.weights = weights or DEFAULT_WEIGHTS
        self.device = resolve_device(device)
        self.batch_size, self.max_new_tokens, self.num_beams, self.prompt = batch_size, max_new_tokens, num_beams, prompt
        self.processor, self.model = load_processor_and_model(
            AutoProcessor.from_pretrained, BlipForConditionalGeneration.from_pretrained, self.weights,
            modality=MODALITY, device=self.device)

    def __call__(self, inputs: dict[str, list[Any]]) -> list[str]:
        import torch

        from fourm_core.plugin_kit.labelers import batches, check_rgb_image

        out: list[str] = []
        for chunk in batches(inputs["rgb"], self.batch_size):
            batch = [check_rgb_image(im, MODALITY) for im in chunk]
            kw: dict[str, Any] = {"images": batch, "return_tensors": "pt"}
            if self.prompt:
                kw["text"] = [self.prompt] * len(batch)
            enc = self.processor(**kw).to(self.device)
            with torch.inference_mode():
                ids = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams)
            out += [normalize_caption(t) for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out


def visualize(raw: Any, *, width: int = 384, chars_per_line: int = 56):
    """The caption as wrapped black text on a white image."""
    from PIL import Image, ImageDraw

    lines = textwrap.wrap(normalize_caption(raw), chars_per_line) or ["(empty caption)"]
    img = Image.new("RGB", (width, 16 * len(lines) + 10), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((6, 5 + 16 * i), line, fill=(0, 0, 0))
    return img
