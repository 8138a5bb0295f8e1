"""The reports of an evaluation: ``metrics.json``, ``metrics.md``, ``samples.jsonl`` and one
``grid_<target>.png`` per target (best / median / worst samples by the primary figure: input | prediction |
truth | oracle, each drawn by its plugin's visualizer)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.atomic import atomic_path, write_text
from .persist import part_path, read_part

#: side of a grid tile, pixels
TILE = 192
_HEADER = 18


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    v = float(value)
    if not np.isfinite(v):
        return str(v)
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def markdown_table(metrics: Mapping[str, Any]) -> str:
    """The figures as a Markdown table: one row per target and figure, primary figures in bold with the
    direction that improves them (↑ higher is better, ↓ lower)."""
    modes = [m for m in ("model", "oracle", "baseline")
             if any(m in e for e in metrics.get("targets", {}).values())]
    head = "| target | metric | " + " | ".join(modes) + " | n |"
    lines = [head, "|" + "---|" * (len(modes) + 3)]
    for name, entry in metrics.get("targets", {}).items():
        primary = entry["primary"]
        figures = [primary, *(k for k in entry["model"] if k != primary)]
        for fig in figures:
            label = f"**{fig}** {'↑' if entry['higher_is_better'] else '↓'}" if fig == primary else fig
            cells = [_fmt(entry[m].get(fig)) for m in modes]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + f" | {entry['n']} |")
    notes = []
    for name, entry in metrics.get("targets", {}).items():
        if "baseline_is" in entry:
            notes.append(f"* {name} baseline: {entry['baseline_is']}")
    if any("oracle" in e for e in metrics.get("targets", {}).values()):
        notes.append("* oracle: the reference through the target's tokenizer and back, decode(encode(truth)): "
                     "the figure a perfect model would reach")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def write_reports(result: Any, root: Path, pipe: Any, store: Any, targets: Sequence[Any],
                  in_keys: Mapping[str, str], chunks: Sequence[range], *, grids: bool = True) -> None:
    """Write every report of ``result`` into ``root``."""
    if grids:
        for t in targets:
            if result.ranks.get(t.name):
                path = root / f"grid_{t.name}.png"
                with atomic_path(path) as tmp:
                    draw_grid(result, pipe, store, t, in_keys, root, chunks).save(tmp, format="PNG")
                result.metrics["targets"][t.name]["grid"] = path.name
    write_text(root / "metrics.json", json.dumps(result.metrics, indent=2, sort_keys=False) + "\n")
    write_text(root / "metrics.md", markdown_table(result.metrics))
    rows = []
    for pos, idx in enumerate(result.samples.tolist()):
        row: dict[str, Any] = {"index": int(idx)}
        for name, per_mode in result.scores.items():
            row[name] = {m: (None if not np.isfinite(s[pos]) else float(s[pos])) for m, s in per_mode.items()}
        rows.append(json.dumps(row))
    write_text(root / "samples.jsonl", "\n".join(rows) + ("\n" if rows else ""))


def draw_grid(result: Any, pipe: Any, store: Any, target: Any, in_keys: Mapping[str, str], root: Path,
              chunks: Sequence[range]) -> Any:
    """One PIL image: a row per ranked sample (best, median, worst) with its score, columns input(s) |
    prediction | truth (| oracle)."""
    from PIL import Image, ImageDraw

    from ..pipeline import draw_raw

    ranks = result.ranks[target.name]
    scores = result.scores[target.name]
    modes = [m for m in ("model", "oracle") if m in scores]
    columns = [f"input: {n}" for n in in_keys] + ["prediction", "truth"] + (["oracle"] if "oracle" in modes else [])
    width = TILE * len(columns)
    grid = Image.new("RGB", (width, _HEADER + len(ranks) * (TILE + _HEADER)), "white")
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(columns):
        draw.text((c * TILE + 4, 3), title, fill="black")
    metric = result.metrics["targets"][target.name]["primary"]
    for r, (label, idx) in enumerate(ranks.items()):
        y = _HEADER + r * (TILE + _HEADER)
        pos = int(np.searchsorted(result.samples, idx))
        draw.rectangle((0, y, width, y + _HEADER - 1), fill=(235, 235, 235))
        title = f"{label}: sample {idx}, {metric} = {_fmt(scores['model'][pos])}"
        if "oracle" in modes:
            title += f" (oracle {_fmt(scores['oracle'][pos])})"
        draw.text((4, y + 3), title, fill="black")
        chunk = next(c for c in chunks if c.start <= idx < c.stop)

        def predicted(mode: str) -> Any:
            return read_part(part_path(root, mode, chunk.start, chunk.stop))[target.name][idx - chunk.start]

        tiles = [(pipe.modalities[pipe.resolve(n)], store.read_raw(k, [idx])[0]) for n, k in in_keys.items()]
        tiles.append((target.spec, predicted("model")))
        tiles.append((target.spec, target.prepare(pipe, store.read_raw(target.reference, [idx]))[0]))
        if "oracle" in modes:
            tiles.append((target.spec, predicted("oracle")))
        for c, (spec, raw) in enumerate(tiles):
            img = draw_raw(spec, raw, TILE)
            grid.paste(img, (c * TILE + (TILE - img.width) // 2, y + _HEADER + (TILE - img.height) // 2))
    return grid

