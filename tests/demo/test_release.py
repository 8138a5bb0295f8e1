"""``fourm demo`` on a released 4M checkpoint directory as it comes (the shared release-format set): its
modalities' released tokenizers from the Hugging Face cache (the set's tiny DiVAE laid out under the depth
plugin's hub id), the released text vocabulary, the set's tiny presets through ``$FOURM_TOKENIZER_ARCHS``."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
ARCHS = Path(__file__).resolve().parents[1] / "fixtures" / "ml4m_release_tiny_archs.json"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires(
        "conformance", available=(RELEASE / "tokenizers").is_dir() and (RELEASE / "fm").is_dir(),
        reason=f"the shared release-format set {RELEASE} (fm/, tokenizers/, text/) is not present; put shared/ "
               f"beside the checkout or set FOURM_RELEASE_DIR"),
]


def _hub_cache(root: Path) -> Path:
    """A Hugging Face cache holding the set's tiny depth DiVAE under the depth plugin's released hub id."""
    from fourm_registry import get_modalities

    repo = get_modalities()["depth"].release_tokenizer
    snap = root / f"models--{repo.replace('/', '--')}" / "snapshots" / ("3" * 40)
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(RELEASE / "tokenizers" / "divae_depth" / f, snap / f)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("3" * 40)
    return root


def test_the_demo_serves_a_released_model(tmp_path, photo_png):
    import fourm_demo

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(_hub_cache(tmp_path / "hub")),
           "FOURM_TOKENIZER_ARCHS": str(ARCHS), "FOURM_TEXT_TOKENIZER_DIR": str(RELEASE / "text"),
           "OMP_NUM_THREADS": "2"}
    here = str(Path(fourm_demo.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "fourm_demo", "--model", str(RELEASE / "fm"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line, seen = "", []
        deadline = time.monotonic() + 300
        while "http://" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            seen.append(line)
        assert "http://" in line, "".join(seen) + (proc.stdout.read() if proc.poll() is not None else "")
        url = line[line.index("http://"):].split()[0]
        with urllib.request.urlopen(url + "api/info", timeout=60) as r:
            info = json.loads(r.read())
        targets = [t["name"] for t in info["targets"]]
        assert {"depth", "caption"} <= set(targets) and info["default_image_input"] == "rgb"
        body = json.dumps({"image": base64.b64encode(photo_png).decode(), "targets": ["depth", "caption"],
                           "steps": 2, "seed": 0}).encode()
        req = urllib.request.Request(url + "api/generate", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            res = json.loads(r.read())
        depth, caption = res["outputs"]
        assert depth["name"] == "depth" and depth["value"]["shape"] == [224, 224, 1] and depth["png"]
        assert caption["name"] == "caption" and isinstance(caption["value"], str)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
