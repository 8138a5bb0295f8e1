"""Real labels through the same geometry as their image: read a sample's image and labels, fit each label to
the image's resize and centre crop, check it against the modality's storage spec.

The rgb raw is the original image with its short side resized to the store's ``raw_size`` and the centre
square kept (:func:`~fourm_core.data.crops.centre_crop_geometry`). A reader returns its label at the
original image size; :func:`fit_label` applies the same two steps through the modality's own transform,
so each modality resamples as it crops everywhere else: nearest for class maps, bilinear for depth (whose
reader has already replaced invalid pixels), decode-resample-renormalise for normals, coordinates for
boxes and keypoints (their raws carry the pixel ``image_size`` the boxes refer to). Errors name the sample
(row, file, tar member), the modality and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from fourm_registry import ModalitySet, ModalitySpec

from .errors import StoreError
from .crops import centre_crop_geometry, load_image_sized
from .raw import conform_raw, storage_of, storage_shape
from .sources import LabelError, Sample, resolve_label


def fit_label(transform: Any, raw: Any, image_size: tuple[int, int], raw_size: int) -> Any:
    """``raw`` (at the original ``image_size`` = (H, W)) resized and centre-cropped as the image is."""
    h, w = image_size
    nh, nw, top, left = centre_crop_geometry(w, h, raw_size)
    resized = transform.crop(raw, (0, 0, h, w), False, (nh, nw))
    return transform.crop(resized, (top, left, raw_size, raw_size), False, (raw_size, raw_size))


@attrs.frozen(kw_only=True)
class LabelModality:
    """One label modality of an ingest: its spec, the name the source uses for it, the reader options."""

    spec: ModalitySpec
    column: str
    options: Mapping[str, Any] = attrs.field(factory=dict)


def plan_labels(names: Sequence[str], registry: ModalitySet, options: Mapping[str, Mapping[str, Any]] | None,
                where: str) -> list[LabelModality]:
    """The label modalities of the source's ``names`` (modality names or aliases): each must be installed,
    have a storage spec, a reader and a transform; ``options`` (reader keyword arguments by modality) must name
    only these."""
    options = dict(options or {})
    out: list[LabelModality] = []
    seen: dict[str, str] = {}
    for col in names:
        if col not in registry:
            raise LabelError(f"{where}: {col!r} is not an installed modality (installed: "
                             f"{', '.join(sorted(registry))}); rename the column or install its plugin")
        spec = registry[col]
        if spec.name == "rgb":
            raise LabelError(f"{where}: {col!r} is the image itself; name it 'image' (it is read from the image)")
        if spec.name in seen:
            raise LabelError(f"{where}: {seen[spec.name]!r} and {col!r} both name modality {spec.name!r}; keep one")
        seen[spec.name] = col
        storage_of(spec)
        if spec.reader is None:
            raise LabelError(f"{where}: modality {spec.name!r} (plugin {spec.plugin}) has no reader, so its labels "
                             f"cannot be ingested; add a `reader` component to the plugin, or label it with "
                             f"`fourm label`")
        if spec.transform is None:
            raise LabelError(f"{where}: modality {spec.name!r} (plugin {spec.plugin}) has a reader but no transform "
                             f"to crop its labels with the image; add a `transform` component to the plugin")
        out.append(LabelModality(spec=spec, column=col, options=dict(options.pop(spec.name, options.pop(col, {})))))
    if options:
        raise LabelError(f"reader options name {sorted(options)}, which are not among the label modalities of "
                         f"{where} ({sorted(seen)})")
    return out


class SamplePreparer:
    """Decode one sample: ``(rgb, {modality: raw}, None)``, or ``(None, None, reason)`` when its image is
    unreadable. A label that is missing, unreadable or invalid raises :class:`LabelError`. Picklable (the
    components are built lazily in each process)."""

    def __init__(self, labels: Sequence[LabelModality], raw_size: int, base_dir: str | None):
        self.labels = list(labels)
        self.raw_size = raw_size
        self.base_dir = base_dir
        self._components: dict[str, tuple[Any, Any]] | None = None
        self._built()  # here, so that bad reader options fail before anything is written


    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_components": None}

    def _built(self) -> dict[str, tuple[Any, Any]]:
        if self._components is None:
            ctx = {"raw_size": self.raw_size}
            built = {}
            for m in self.labels:
                try:
                    reader = m.spec.reader.build(context=ctx, **m.options)
                except (TypeError, ValueError, OSError) as exc:
                    raise LabelError(f"the reader of modality {m.spec.name!r} (plugin {m.spec.plugin}, "
                                     f"{m.spec.reader.target}) refuses the options {dict(m.options)}: {exc}") from exc
                built[m.spec.name] = (reader, m.spec.transform.build(context=ctx))
            self._components = built
        return self._components

    def __call__(self, sample: Sample) -> tuple[np.ndarray | None, dict[str, Any] | None, str | None]:
        try:
            rgb, size = load_image_sized(sample.image, self.raw_size)
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            return None, None, f"{type(exc).__name__}: {exc}"
        comps = self._built()
        raws = {}
        for m in self.labels:
            reader, transform = comps[m.spec.name]
            raws[m.spec.name] = self._one(sample, m, reader, transform, size)
        return rgb, raws, None

    def _one(self, sample: Sample, m: LabelModality, reader: Any, transform: Any, size: tuple[int, int]) -> Any:
        name = m.spec.name
        value = sample.labels.get(m.column)
        if value is None:
            raise LabelError(f"{sample.where}: no {name!r} label; every sample needs one for each label modality "
                             f"(add it, or drop the sample)")
        source = resolve_label(value, tuple(getattr(reader, "suffixes", ())), self.base_dir)
        if isinstance(source, Path) and not source.is_file():
            raise LabelError(f"{sample.where}: {name} label file {source} does not exist; fix the path in the "
                             f"source or add the file")
        what = f"{name} label {source}" if isinstance(source, Path) else f"{name} label"
        try:
            raw = reader.read(source, image_size=size)
        except LabelError:
            raise
        except (ValueError, OSError, KeyError, TypeError) as exc:
            raise LabelError(f"{sample.where}: {what}: {exc}") from exc
        if isinstance(raw, np.ndarray) and tuple(raw.shape[:2]) != tuple(size):
            raise LabelError(f"{sample.where}: {what}: the reader of {name!r} (plugin {m.spec.plugin}) returned shape "
                             f"{raw.shape} for an image of {size[1]}x{size[0]} pixels; a label map must have its "
                             f"image's size")
        try:
            fitted = fit_label(transform, raw, size, self.raw_size)
            checked = conform_raw(m.spec, storage_shape(m.spec, self.raw_size), fitted, 0)
        except (ValueError, TypeError, StoreError) as exc:
            raise LabelError(f"{sample.where}: {what} does not fit modality {name!r} (plugin {m.spec.plugin}): "
                             f"{exc}") from exc
        return fitted if storage_of(m.spec).is_json else checked
