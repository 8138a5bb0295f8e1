"""Raw inputs → model tensors for a backbone: the any-to-any API's input path without its sampler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fourm_registry import ModalitySet

from ..pipeline import AnyToAny


class RawInputs(AnyToAny):
    """:meth:`AnyToAny.encode_inputs` (crop, the plugin's transform, the codec) over ``modalities`` and
    ``codecs`` alone: a backbone has an encoder but no decoder to build a sampler for."""

    def __init__(self, modalities: ModalitySet, codecs: Mapping[str, Any] | None = None):  # noqa: D107
        # deliberately not AnyToAny.__init__: no model, no sampler; only the state the input path reads
        self.modalities = modalities
        self.codecs = dict(codecs or {})
        self.pixel_twins = False
        self.defaults = {}
        self._transforms = {}
