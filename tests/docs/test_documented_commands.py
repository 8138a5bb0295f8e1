"""The documented commands are tests: every shell and python block of README.md and docs/cli.md runs, in order,
in a folder outside the checkout that holds ``photos/`` (real photos) and ``photo.jpg``, as a new user would run
them. ``FOURM_MAX_STEPS=2`` (documented in docs/cli.md) shrinks every training step count, so the walk checks
that each command works as written, not what it learns. A block that cannot run here is skipped by a
``<!-- docs-test: skip REASON -->`` comment before it in the markdown (see :mod:`markdown_blocks`).

The walk is slow (a few minutes: each command starts Python, torch and the plugins); CI runs it
(``.ci/run``: ``pytest -m slow tests/docs``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from markdown_blocks import MARKER, Block, blocks  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "README.md", REPO / "docs" / "cli.md")
#: what a block may only contain under a skip marker: hub downloads, GPUs
NEEDS_SKIP = (re.compile(r"EPFL-VILAB/"), re.compile(r"--device cuda|--multi_gpu --num_processes 8|_gpu\.yaml"))
#: the environment of the walk: tiny step counts, offline
ENV = {"FOURM_MAX_STEPS": "2", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "FOURM_LOG_LEVEL": "WARNING"}
#: seconds one block may take
BLOCK_TIMEOUT = 600


def all_blocks() -> list[Block]:
    return [b for path in DOCS for b in blocks(path)]


def test_blocks_are_found_and_skips_are_explained():
    found = all_blocks()
    run = [b for b in found if b.skip is None]
    assert any("fourm ingest" in b.text for b in run) and any(b.lang == "python" for b in run), \
        [b.label for b in found]
    for b in found:
        for pattern in NEEDS_SKIP:
            if pattern.search(b.text):
                assert b.skip, f"{b.label}: needs a GPU or the hub; mark it <!-- docs-test: skip WHY -->"


def test_marker_errors(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("<!-- docs-test: skip -->\n```bash\nfourm plugins\n```\n")
    with pytest.raises(ValueError, match="needs a reason"):
        blocks(md)
    md.write_text("<!-- docs-test: run -->\n```bash\nfourm plugins\n```\n")
    with pytest.raises(ValueError, match="unknown docs-test marker"):
        blocks(md)
    md.write_text("text\n<!-- docs-test: skip needs a GPU -->\n\n```bash\nfourm x\n```\n```python\nprint(1)\n```\n"
                  "```text\nnot run\n```\n")
    got = blocks(md)
    assert [(b.lang, b.skip, b.line) for b in got] == [("bash", "needs a GPU", 4), ("python", None, 7)]
    assert MARKER.match("<!-- docs-test: skip why -->")


def _photos(folder: Path) -> None:
    """A dozen real photo crops (scikit-image's sample photos) and one ``photo.jpg`` beside them."""
    import numpy as np
    from PIL import Image
    from skimage import data

    folder.mkdir()
    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"]
    rng = np.random.default_rng(0)
    for name in names:
        img = getattr(data, name)()
        h, w = img.shape[:2]
        for j in range(2):
            s = int(min(h, w) * rng.uniform(0.6, 1.0))
            top, left = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            Image.fromarray(img[top:top + s, left:left + s]).resize((256, 256)).save(folder / f"{name}_{j}.jpg")
    shutil.copy(folder / "astronaut_0.jpg", folder.parent / "photo.jpg")


@pytest.mark.slow
def test_documented_commands_run_as_written(tmp_path_factory):
    if shutil.which("fourm") is None:
        pytest.fail("the `fourm` command is not on PATH: pip install -r requirements-dev.txt")
    work = tmp_path_factory.mktemp("new_user")
    assert REPO not in work.parents
    _photos(work / "photos")
    env = {**os.environ, **ENV}
    timings = []
    for block in all_blocks():
        if block.skip is not None:
            continue
        script = work / f"_block_{block.line}.{'py' if block.lang == 'python' else 'sh'}"
        script.write_text(block.text)
        cmd = [sys.executable, str(script)] if block.lang == "python" else ["bash", "-euo", "pipefail", str(script)]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
        timings.append((block.label, round(time.perf_counter() - t0, 1)))
        if res.returncode != 0:
            pytest.fail(f"{block.label} failed (exit {res.returncode}):\n{block.text}\n--- output (tail)\n"
                        f"{(res.stdout + res.stderr)[-4000:]}", pytrace=False)
    print("block timings (s):", timings)
