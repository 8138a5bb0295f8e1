"""``fourm generate --model`` on a released checkpoint: the model directory as it comes, its modalities'
released tokenizers from the Hugging Face cache (the plugins' hub ids; here the shared set's tiny tokenizers
laid out under those ids), the released text vocabulary, and the shared set's tiny presets through
``$FOURM_TOKENIZER_ARCHS`` — a fresh process, as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
ARCHS = Path(__file__).resolve().parents[1] / "fixtures" / "ml4m_release_tiny_archs.json"
pytestmark = pytest.mark.requires(
    "conformance", available=(RELEASE / "tokenizers").is_dir() and (RELEASE / "fm").is_dir(),
    reason=f"the shared release-format set {RELEASE} (fm/, tokenizers/, text/) is not present; put shared/ beside "
           f"the checkout or set FOURM_RELEASE_DIR")


def test_fourm_generate_with_a_released_model(tmp_path):
    from PIL import Image

    from fourm_registry import get_modalities

    cache = tmp_path / "hub"
    repo = get_modalities()["depth"].release_tokenizer
    snap = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("2" * 40)
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(RELEASE / "tokenizers" / "divae_depth" / f, snap / f)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("2" * 40)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(photo)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "FOURM_TOKENIZER_ARCHS": str(ARCHS),
           "FOURM_TEXT_TOKENIZER_DIR": str(RELEASE / "text"), "OMP_NUM_THREADS": "2"}
    fourm = shutil.which("fourm", path=str(Path(sys.executable).parent)) or "fourm"
    r = subprocess.run([fourm, "generate", "--model", str(RELEASE / "fm"), "--in", f"rgb={photo}",
                        "--out", "depth,caption", "--save", str(tmp_path / "out"), "--steps", "2"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "out"
    depth = np.load(out / "depth.npy")
    assert depth.shape == (224, 224, 1) and np.isfinite(depth.astype(np.float32)).all()
    assert (out / "depth.png").is_file() and (out / "caption.txt").is_file()
    assert int(np.load(out / "depth.tokens.npy").max()) < 256  # limited to the tiny DiVAE's codes
