"""Checks fourm's sequence serializers against 4M's own text of a release set (``<dir>/text/``).

A release set's ``text/serialization.json`` holds, per 4M modality name, examples of 4M's raw inputs with
the exact call that serialized them, the string, its token ids and token strings under the vocabulary the
file names (``tokenizer_file`` beside it, checked against ``tokenizer_sha256``), ``masking_ids`` (ids +
``[EOS]`` cut to the modality's ``max_tokens``) and the decode with special tokens kept; metadata examples
give chunks (``chunks``, ``chunk_ids``, ``masking_chunks_*``), ``span_masking`` examples a keep draw and
its input / target.

:func:`verify_serialization` runs, for every example, the serializer of the installed plugin that has the
modality's 4M name as name or alias (``human_poses`` → ``smpl_pose``), with the options the recorded call
implies (seeded draws are replayed with the same generator: Python's ``random`` for palettes, metadata
and SAM, torch's for the pose group order), and compares everything the example records. Raw 4M forms are
converted by the plugin's own helpers, found in the module of its serializer: ``from_sizes`` (palettes per
size), ``from_hmr2`` (HMR2 humans), ``shuffle_groups`` (SAM query points). Strings are compared up to runs
of whitespace (4M's ``human_poses`` text ends with a space). Besides, every recorded string must read back:
``to_text(from_text(string))`` is the string.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERIALIZATION = Path("text") / "serialization.json"
#: fields of an example compared with what fourm produces
_COMPARED = ("string", "ids", "tokens", "masking_ids", "decode_skip_special_false")
_INT = r"\s*(\d+)\s*"


class _Skip(Exception):
    """The example cannot be replayed here (e.g. a draw from a generator fourm does not share)."""


def _call_arg(call: str, name: str, default: Any) -> Any:
    """A ``name=value`` argument of a recorded call (numbers, quoted strings, True / False)."""
    m = re.search(rf"\b{name}\s*=\s*('[^']*'|\"[^\"]*\"|[\w.]+)", call)
    if m is None:
        return default
    v = m.group(1).strip("'\"")
    return {"True": True, "False": False}.get(v, int(v) if v.isdigit() else v)


def _augment_args(call: str) -> tuple[tuple[int, int, int, int], bool, tuple[int, int]]:
    """``(crop (top, left, h, w), flip, original (H, W))`` of a recorded ``image_augment(v, crop, flip, size)``."""
    m = re.search(rf"image_augment\(.*?\({_INT},{_INT},{_INT},{_INT}\)\s*,\s*(True|False)\s*,\s*\({_INT},{_INT}\)", call)
    if m is None:
        raise ValueError(f"cannot read the crop, flip and original size of the call {call!r}")
    g = m.groups()
    return tuple(int(v) for v in g[:4]), g[4] == "True", (int(g[5]), int(g[6]))


def _helper(ser: Any, name: str) -> Callable[..., Any]:
    module = importlib.import_module(type(ser).__module__)
    fn = getattr(module, name, None)
    if fn is None:
        raise ValueError(f"the plugin module {module.__name__} has no {name}() to convert 4M's raw form")
    return fn


# -- per 4M modality: (spec, example) -> our text (or chunks) ----------------------------------------------

def _caption(spec, e):
    return spec.serializer.build().to_text(e["raw"])


def _det(spec, e):
    if "raw_instances" not in e:  # the string of boxes as given: no threshold, no reordering
        rows = e["boxes"]
        ser = spec.serializer.build(threshold=float("-inf"), order="given")
        return ser.to_text({"boxes": [r[:4] for r in rows], "classes": [r[4] for r in rows], "scores": [r[5] for r in rows]})
    inst = e["raw_instances"]
    raw = {"boxes": [i["boxes"] for i in inst], "classes": [i["class_name"] for i in inst], "scores": [i["score"] for i in inst]}
    top, left, h, w = e["crop_coords_top_left_h_w"]
    crop = spec.transform.build().crop(raw, box=(top, left, h, w), flip=bool(e["flip"]), size=(h, w),
                                       raw_size=tuple(e["orig_size_hw"]))
    return spec.serializer.build(threshold=float(_call_arg(e["call"], "det_threshold", 0.6))).to_text(crop)


def _color_palette(spec, e):
    ser = spec.serializer.build()
    if "colors" in e:
        flat = e["colors"]
        return ser.to_text({"colors": [flat[i:i + 3] for i in range(0, len(flat), 3)]})
    return ser.to_text(_helper(ser, "from_sizes")(e["raw"], random.Random(e["python_random_seed"])))


def _metadata(spec, e):
    if "python_random_seed" in e:
        ser = spec.serializer.build(order="random", rng=random.Random(e["python_random_seed"]))
    else:
        ser = spec.serializer.build(order="given" if _call_arg(e["call"], "shuffle", True) is False else "seeded")
    return ser.to_chunks(e["raw"])


def _human_poses(spec, e):
    import torch

    ser = spec.serializer.build(order="random", rng=torch.Generator().manual_seed(int(e.get("torch_seed", 0))))
    if not e["raw"]:
        return ser.to_text({"humans": []})
    box, flip, orig = _augment_args(e["call"])
    raw = _helper(ser, "from_hmr2")(e["raw"], orig)
    return ser.to_text(spec.transform.build().crop(raw, box=box, flip=flip, raw_size=orig))


def _sam_instance(spec, e):
    import cv2
    import numpy as np

    call = e["call"]
    if _call_arg(call, "point_order", "random") != "grid":
        raise _Skip("query points drawn with numpy's global generator")
    size, side = int(_call_arg(call, "image_size", 224)), int(_call_arg(call, "points_per_side", 7))
    ser = spec.serializer.build(point_mode="grid", num_points=side * side, image_size=size)
    raw = e["raw"]
    polygons = [np.asarray(p, dtype=np.int32).reshape(-1, 1, 2) for p in raw["polygons_xy"]]
    boxes = np.asarray(raw["bbox_ymin_xmin_ymax_xmax"], dtype=np.float64).astype(np.int32)[:, [1, 0, 3, 2]] / size
    groups = []
    for x, y in ser.query_points():  # membership as 4M computes it (on the instance contours)
        hits = [i for i, p in enumerate(polygons) if cv2.pointPolygonTest(p, (int(x), int(y)), True) >= 0]
        groups.append({"xy": [x / size, y / size],
                       "instances": [{"box": boxes[i].tolist(), "tokens": list(raw["token_ids"][i])} for i in hits]})
    points = _helper(ser, "shuffle_groups")({"points": groups}, random.Random(e["python_random_seed"]))
    return ser.to_text(points)


_PREPARE = {"caption": _caption, "det": _det, "color_palette": _color_palette, "metadata": _metadata,
            "human_poses": _human_poses, "sam_instance": _sam_instance}
#: serializer options that rewrite a parsed text in the order it was read
_REWRITE = {"det": {"order": "given", "threshold": float("-inf")}, "metadata": {"order": "given"}}


# -- comparison ------------------------------------------------------------------------------------------

def _norm(s: str) -> str:
    return " ".join(s.split())


def _check_text(name: str, spec, e: dict, text: str | list[str], tok, max_tokens: int | None) -> list[str]:
    bad: list[str] = []
    chunks = text if isinstance(text, list) else None
    joined = " ".join(chunks) if chunks is not None else text
    ids = tok.encode_ids([joined])[0]
    ours: dict[str, Any] = {"string": joined, "ids": ids, "tokens": [tok.id_to_token(i) for i in ids],
                            "decode_skip_special_false": tok.decode_ids(e.get("ids", ids))}
    if max_tokens is not None:
        row = tok.encode([joined], max_tokens)[0].tolist()
        ours["masking_ids"] = row[:min(len(ids) + 1, max_tokens)]
    for key in _COMPARED:
        if key in e and key in ours:
            same = _norm(ours[key]) == _norm(e[key]) if key in ("string", "decode_skip_special_false") else ours[key] == e[key]
            bad += [] if same else [key]
    if chunks is not None:
        bad += [] if chunks == e.get("chunks", chunks) else ["chunks"]
        if "chunk_ids" in e:
            bad += [] if tok.encode_ids(chunks) == e["chunk_ids"] else ["chunk_ids"]
        if "joined_string" in e:
            bad += [] if _norm(joined) == _norm(e["joined_string"]) else ["joined_string"]
        for key in (k for k in e if k.startswith("masking_chunks")):  # 4M's chunked cut: ours cuts the ids
            if ours.get("masking_ids") != [i for c in e[key] for i in c]:
                bad.append(key)
    written = e.get("string")
    if written is not None and spec.serializer is not None:
        ser = spec.serializer.build(**_REWRITE.get(name, {}))
        try:
            again = ser.to_text(ser.from_text(written))
        except ValueError as exc:
            again = f"<{exc}>"
        if _norm(again) != _norm(written):
            bad.append("to_text(from_text(string))")
    return bad


def _check_span(e: dict, tok) -> list[str]:
    import torch

    from fourm_core.plugin_kit.seqtext import merge_spans, span_mask

    seq = e["sequence_ids"]
    keep = (torch.rand(len(seq), generator=torch.Generator().manual_seed(int(e["torch_seed"]))) <= e["keep_prob"]).tolist()
    sentinels = tok.sentinel_ids
    inp, tgt = span_mask(seq, keep, sentinels)
    bad = [k for k, v in (("input_ids", inp), ("target_ids", tgt)) if k in e and e[k] != v]
    bad += [k for k, v in (("input_tokens", inp), ("target_tokens", tgt)) if k in e and e[k] != [tok.id_to_token(i) for i in v]]
    if "merge_span_masking_result" in e and merge_spans(inp, tgt, sentinels) != e["merge_span_masking_result"]:
        bad.append("merge_span_masking_result")
    return bad


def check_serialization(release_dir: str | Path, modalities=None) -> tuple[int, list[str], list[str]]:
    """``(examples checked, mismatches, skipped)`` over every example of ``release_dir`` (see the module
    docstring); each mismatch or skip reads ``modality[i].field: why``."""
    from fourm_registry import get_modalities

    from ..tokenizers.text import TextTokenizer

    root = Path(release_dir)
    path = root / SERIALIZATION
    if not path.is_file():
        raise FileNotFoundError(f"release set {root}: {SERIALIZATION} not found (is this a release set directory?)")
    doc = json.loads(path.read_text(encoding="utf-8"))
    tok_path = path.parent / doc.get("tokenizer_file", "")
    mismatches, skipped = [], []
    if not tok_path.is_file():
        raise FileNotFoundError(f"release set {root}: the tokenizer {tok_path.name!r} that {SERIALIZATION} names is missing")
    if "tokenizer_sha256" in doc and hashlib.sha256(tok_path.read_bytes()).hexdigest() != doc["tokenizer_sha256"]:
        mismatches.append(f"{tok_path.name}: sha256 differs from tokenizer_sha256")
    tok = TextTokenizer.load(tok_path)
    mods = modalities if modalities is not None else get_modalities()
    max_tokens = doc.get("max_tokens", {})
    n = 0
    for name, examples in doc.get("examples", {}).items():
        for i, e in enumerate(examples):
            n += 1
            where = f"{name}[{i}]"
            if name == "span_masking":
                mismatches += [f"{where}.{k}" for k in _check_span(e, tok)]
                continue
            if name not in _PREPARE:
                skipped.append(f"{where}: no replay of 4M's {name!r} examples")
                continue
            try:
                spec = mods[name]
                text = _PREPARE[name](spec, e)
            except _Skip as exc:
                skipped.append(f"{where}: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - reported per example, the others still run
                mismatches.append(f"{where}: {type(exc).__name__}: {exc}")
                continue
            mismatches += [f"{where}.{k}" for k in _check_text(name, spec, e, text, tok, max_tokens.get(name))]
    return n, mismatches, skipped


def verify_serialization(release_dir: str | Path, modalities=None) -> tuple[bool, str]:
    """``(passed, one-line summary)``: ``N examples, M mismatches: ...`` (and what was skipped)."""
    n, bad, skipped = check_serialization(release_dir, modalities)
    summary = f"{n} examples, {len(bad)} mismatches" + (f": {', '.join(bad)}" if bad else "")
    if skipped:
        summary += f"; {len(skipped)} skipped: {', '.join(skipped)}"
    return not bad, summary
