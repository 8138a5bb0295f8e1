"""Components of the ``smpl_pose`` modality (4M-21's ``human_poses``): serializer, crop transform, visualizer.

Raw form (JSON)::

    {"humans": [{"box": [x0, y0, x1, y1],          # normalised to [0, 1] of the image
                 "pose": [8 ints 0..1023],          # ids of 4M-21's pose VQ-VAE (HMR2 body pose)
                 "global": [9 floats],              # global orientation, rotation matrix row-major
                 "camera": [3 floats],              # HMR2 pred_cam
                 "shape": [10 floats],              # SMPL betas
                 "order": ["shape", "global", "pose", "camera"]},   # optional: the groups' text order
                ...]}

:func:`from_hmr2` converts HMR2's output as 4M-21 stores it (pixel ``bbox_xyxy``, ``pose_tokenized``,
``pred_cam``, ``pred_smpl_params``) into this form.

Serialization (4M-21, token for token): no human → ``none``. Otherwise, per human in the raw's order,
``human v0=x0 v1=y0 v2=x1 v3=y1`` (``round(v · 999)``) then the four groups of :mod:`.groups`, each its name
and its values. The group order is the human's ``order`` when it has one, else (``order=`` of the
serializer) ``"seeded"``: a permutation seeded by the content (same raw → same text), ``"random"``:
``torch.randperm(4)`` of ``rng`` (a ``torch.Generator``; default torch's global generator, as 4M-21's
training transform) indexing ``pose, global, camera, shape``, or ``"fixed"``: that order.
:meth:`SmplPoseSerializer.from_text` records the order it read, so ``to_text(from_text(t)) == t``. A text
cut inside its last human (at max_length) parses without it (logged).

No labeler: HMR2 and the pose VQ-VAE that turns its 207 body-pose values into the 8 pose ids are not part
of fourm; label with 4M's own pipeline and convert with :func:`from_hmr2`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fourm_core.plugin_kit.seqtext import (
    SerializationError,
    TokenReader,
    TruncatedTextError,
    content_seed,
    round_coords,
    unround_coords,
    value_token,
)

from .groups import COUNTS, GROUP_ORDER, LINEAR, POSE_CODES, POSE_SPLIT

log = logging.getLogger(__name__)
MODALITY = "smpl_pose"
ORDERS = ("seeded", "random", "fixed")


def _fail(msg: str) -> SerializationError:
    return SerializationError(f"modality {MODALITY!r}: {msg}")


def validate_human(h: Any, i: int) -> dict[str, Any]:
    """One human of the raw form, checked (numbers as floats / ints); raises naming the field."""
    if not isinstance(h, dict) or not {"box", *GROUP_ORDER} <= set(h):
        raise _fail(f"human {i} must be a dict with 'box', {', '.join(repr(g) for g in GROUP_ORDER)}; got {h!r:.100}")
    out: dict[str, Any] = {}
    box = np.asarray(h["box"], dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all() or (box < 0).any() or (box > 1).any():
        raise _fail(f"human {i}: 'box' must be 4 finite numbers in [0, 1] (normalised xyxy), got {h['box']!r}")
    out["box"] = [float(v) for v in box]
    pose = list(h["pose"])
    if len(pose) != COUNTS["pose"] or not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool)
                                              and 0 <= p < POSE_CODES for p in pose):
        raise _fail(f"human {i}: 'pose' must be {COUNTS['pose']} ints 0..{POSE_CODES - 1}, got {h['pose']!r}")
    out["pose"] = [int(p) for p in pose]
    for g in LINEAR:
        v = np.asarray(h[g], dtype=np.float64).reshape(-1)
        if v.shape != (COUNTS[g],) or not np.isfinite(v).all():
            raise _fail(f"human {i}: {g!r} must be {COUNTS[g]} finite numbers, got {h[g]!r:.100}")
        out[g] = [float(x) for x in v]
    if "order" in h:
        if sorted(h["order"]) != sorted(GROUP_ORDER):
            raise _fail(f"human {i}: 'order' must be a permutation of {list(GROUP_ORDER)}, got {h['order']!r}")
        out["order"] = list(h["order"])
    return out


def validate_raw(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, dict) or not isinstance(raw.get("humans"), list):
        raise _fail(f"raw must be a dict {{'humans': [...]}}, got {raw!r:.100}")
    return [validate_human(h, i) for i, h in enumerate(raw["humans"])]


def group_tokens(group: str, values: list[float] | list[int]) -> list[str]:
    """A group's name and value tokens (see :mod:`.groups`)."""
    if group == "pose":
        codes = np.asarray(values, dtype=np.int64)
        return ["pose", *(value_token(0, c) if c < POSE_SPLIT else value_token(1, c - POSE_SPLIT) for c in codes)]
    lo, hi, scale, offset = LINEAR[group]
    q = np.rint(scale * np.clip(np.asarray(values, dtype=np.float64), lo, hi) + offset).astype(np.int64)
    return [group, *(value_token(0, v) for v in q)]


def _group_values(group: str, tokens: list[tuple[int, int]]) -> list[float] | list[int]:
    if group == "pose":
        return [v + (POSE_SPLIT if axis == 1 else 0) for axis, v in tokens]
    _, _, scale, offset = LINEAR[group]
    return [float((v - offset) / scale) for _, v in tokens]


class SmplPoseSerializer:
    """``{"humans": [...]}`` ↔ 4M-21's ``human_poses`` text (see the module docstring)."""

    def __init__(self, order: str = "seeded", rng: Any = None, bins: int = 1000):
        if order not in ORDERS:
            raise ValueError(f"modality {MODALITY!r}: order must be one of {', '.join(ORDERS)}, got {order!r}")
        self.order, self.rng, self.bins = order, rng, bins

    def _orders(self, humans: list[dict[str, Any]]) -> list[list[str]]:
        if self.order == "random":
            import torch

            perms = [torch.randperm(len(GROUP_ORDER), generator=self.rng).tolist() for _ in humans]
        elif self.order == "seeded":
            rng = np.random.default_rng(content_seed(humans))
            perms = [rng.permutation(len(GROUP_ORDER)).tolist() for _ in humans]
        else:
            perms = [list(range(len(GROUP_ORDER)))] * len(humans)
        return [h.get("order") or [GROUP_ORDER[k] for k in p] for h, p in zip(humans, perms)]

    def to_text(self, raw: Any) -> str:
        humans = validate_raw(raw)
        if not humans:
            return "none"
        boxes = round_coords([h["box"] for h in humans], self.bins)
        words: list[str] = []
        for h, box, order in zip(humans, boxes, self._orders(humans)):
            words += ["human", *(value_token(a, box[a]) for a in range(4))]
            for g in order:
                words += group_tokens(g, h[g])
        return " ".join(words)

    def grammar(self):
        """The text's grammar for constrained decoding: ``none``, or humans, each ``human``, four box tokens and
        the four groups in any order (each its name and values; pose ids as ``v0=``/``v1=`` 0..511)."""
        from fourm_core.generation.grammar import Grammar, alt, permutation, repeat, seq, value, words

        def group(g):
            one = alt(value(0, 0, POSE_SPLIT - 1), value(1, 0, POSE_SPLIT - 1)) if g == "pose" else value(0)
            return seq(words(g), repeat(one, COUNTS[g], COUNTS[g]))

        human = seq(words("human"), *(value(a, 0, self.bins - 1) for a in range(4)), permutation(*map(group, GROUP_ORDER)))
        return Grammar(alt(words("none"), repeat(human, 1)))

    def from_text(self, text: str) -> dict[str, list]:
        r = TokenReader(text, MODALITY)
        if r.tokens in ([], ["none"]):
            return {"humans": []}
        humans = []
        while not r.done():
            start = r.pos
            try:
                humans.append(self._read_human(r))
            except TruncatedTextError:
                log.warning("%s: dropped an incomplete last human (tokens %d..; text cut at max_length?)", MODALITY, start)
                break
        return {"humans": humans}

    def _read_human(self, r: TokenReader) -> dict[str, Any]:
        r.literal("human")
        h: dict[str, Any] = {"box": [float(v) for v in unround_coords([r.value(axis=a)[1] for a in range(4)], self.bins)]}
        order = []
        for _ in GROUP_ORDER:
            pos = r.pos
            g = r.literal(*(x for x in GROUP_ORDER if x not in order))
            order.append(g)
            vals = []
            for _ in range(COUNTS[g]):
                p = r.pos
                tok = r.value()
                if tok[0] not in ((0, 1) if g == "pose" else (0,)) or (g == "pose" and tok[0] == 1 and tok[1] >= POSE_SPLIT):
                    raise SerializationError(f"modality {MODALITY!r}: cannot parse token {r.tokens[p]!r} at position {p}: "
                                             f"expected a {g!r} value of the group started at position {pos}")
                vals.append(tok)
            h[g] = _group_values(g, vals)
        h["order"] = order
        return h


def from_hmr2(sample: dict[str, Any], image_size: tuple[int, int]) -> dict[str, list]:
    """HMR2's output as 4M-21 stores it → the raw form: ``bbox_xyxy`` in pixels of ``image_size`` (H, W)
    normalised (and clipped to [0, 1]), ``pose_tokenized`` → ``pose``, ``pred_smpl_params`` →
    ``global`` (``global_orient`` flattened) and ``shape`` (``betas``), ``pred_cam`` → ``camera``.
    An empty dict means no humans."""
    if not sample:
        return {"humans": []}
    try:
        boxes = np.asarray(sample["bbox_xyxy"], dtype=np.float64).reshape(-1, 4)
        params = sample["pred_smpl_params"]
        pose = np.asarray(sample["pose_tokenized"], dtype=np.int64).reshape(len(boxes), -1)
        glob = np.asarray(params["global_orient"], dtype=np.float64).reshape(len(boxes), -1)
        betas = np.asarray(params["betas"], dtype=np.float64).reshape(len(boxes), -1)
        cam = np.asarray(sample["pred_cam"], dtype=np.float64).reshape(len(boxes), -1)
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(f"HMR2 sample must have bbox_xyxy, pose_tokenized, pred_cam and pred_smpl_params "
                    f"(global_orient, betas) for every human: {exc}") from exc
    h, w = image_size
    boxes = np.clip(boxes / np.array([w, h, w, h], dtype=np.float64), 0.0, 1.0)
    return {"humans": [{"box": boxes[i].tolist(), "pose": pose[i].tolist(), "global": glob[i].tolist(),
                        "camera": cam[i].tolist(), "shape": betas[i].tolist()} for i in range(len(boxes))]}


class SmplPoseTransform:
    """Boxes follow the crop (raw pixels, ``box`` = (top, left, h, w) of a ``raw_size`` image); humans whose box
    leaves the crop are dropped, the others clipped. A flip mirrors the box; the SMPL parameters are kept as
    they are (4M-21 does not mirror them either)."""

    def __init__(self, raw_size: int = 256):
        self.raw_size = raw_size

    def crop(self, raw: Any, box: tuple[int, int, int, int], flip: bool = False, size: tuple[int, int] | None = None,
             raw_size: int | tuple[int, int] | None = None) -> dict[str, list]:
        from fourm_core.plugin_kit.boxes import crop_boxes

        humans = validate_raw(raw)
        if not humans:
            return {"humans": []}
        rs = raw_size or self.raw_size
        rs = (rs, rs) if isinstance(rs, int) else tuple(rs)
        new, keep = crop_boxes(np.array([h["box"] for h in humans]), box, rs, flip=flip, min_size=0.0)
        return {"humans": [{**h, "box": [float(v) for v in b]} for h, b, k in zip(humans, new, keep) if k]}


def visualize(raw: Any, image: np.ndarray | None = None, *, size: int = 256):
    """The humans' boxes (numbered, with their camera scale) over ``image`` or a grey canvas of ``size``²."""
    from PIL import Image, ImageDraw

    humans = validate_raw(raw)
    canvas = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB") if image is not None \
        else Image.new("RGB", (size, size), (40, 40, 40))
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    for i, hum in enumerate(humans):
        b = hum["box"]
        xy = [b[0] * (w - 1), b[1] * (h - 1), b[2] * (w - 1), b[3] * (h - 1)]
        draw.rectangle(xy, outline=(255, 160, 0), width=2)
        draw.text((xy[0] + 2, xy[1] + 1), f"human {i} s={hum['camera'][0]:.2f}", fill=(255, 160, 0))
    if not humans:
        draw.text((6, 6), "none", fill=(200, 200, 200))
    return canvas
