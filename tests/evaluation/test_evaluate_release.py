"""``evaluate`` on a released-format model and tokenizers (the shared release set's tiny ones): the oracle of
``tok_rgb`` is the released VQ-VAE's round trip of the reference photos, computed here by hand with the
reference's input convention (pixels / 127.5 - 1)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch

from evaltest_fixtures import METRICS, make_store

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
ARCHS = Path(__file__).resolve().parents[1] / "fixtures" / "ml4m_release_tiny_archs.json"
pytestmark = pytest.mark.requires(
    "conformance", available=(RELEASE / "tokenizers" / "vqvae_rgb").is_dir() and (RELEASE / "fm").is_dir(),
    reason=f"the shared release-format set {RELEASE} (fm/, tokenizers/) is not present; put shared/ beside the "
           f"checkout or set FOURM_RELEASE_DIR")


@pytest.fixture(scope="module")
def release_pipe(tmp_path_factory):
    """The release set's FM with its tiny rgb VQ-VAE served under the plugin's hub id; the installed specs
    carry the test metrics."""
    import huggingface_hub.constants as hf_constants

    from fourm_core.compat.ml4m.release_check import register_archs
    from fourm_core.pipeline import AnyToAny
    from fourm_registry import ModalitySet, get_modalities

    register_archs(ARCHS)
    mods = get_modalities()
    specs = ModalitySet([attrs.evolve(s, metrics=METRICS.get(s.name)) for s in mods.specs])
    cache = tmp_path_factory.mktemp("hub")
    repo = mods["tok_rgb"].release_tokenizer
    snap = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("1" * 40)
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(RELEASE / "tokenizers" / "vqvae_rgb" / f, snap / f)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("1" * 40)
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_CACHE", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    try:
        yield AnyToAny.from_pretrained(RELEASE / "fm", modalities=specs)
    finally:
        mp.undo()


def test_oracle_is_the_released_tokenizers_round_trip(release_pipe, tmp_path):
    from fourm_core import evaluate
    from fourm_core.data import Store
    from fourm_core.tokenizers.ml4m import from_pretrained

    pipe = release_pipe
    url = make_store(str(tmp_path / "s.zarr"), pipe.modalities, n=3, samples_per_shard=2, with_caption=False)
    store = Store.open(url)
    res = evaluate(pipe, url, inputs="rgb", targets="rgb", oracle=True, steps=2, batch_size=2, progress=False,
                   grids=False)
    # tok_rgb: the photos at 224, through the released VQ-VAE by hand
    vq = from_pretrained(RELEASE / "tokenizers" / "vqvae_rgb")
    refs = [pipe.square_resize(pipe.modalities["rgb"], r, (224, 224)) for r in store.read_raw("rgb", range(3))]
    x = torch.from_numpy(np.stack(refs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        back = vq.decode_tokens(vq.encode(x))
    back = ((back + 1) * 127.5).clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    expected = [float(np.abs(b.astype(np.float64) - r).mean()) for b, r in zip(back, refs)]
    entry = res.metrics["targets"]["tok_rgb"]
    assert entry["reference"] == "rgb"
    np.testing.assert_allclose(res.scores["tok_rgb"]["oracle"], expected, rtol=1e-9)
    assert entry["oracle"]["mae"] == pytest.approx(np.mean(expected), rel=1e-9)
    # the model's predictions are scored against the same references, at the same size
    assert entry["n"] == 3 and np.isfinite(res.scores["tok_rgb"]["model"]).all()
    assert entry["baseline"]["mae"] >= 0.0 and "mean" in entry["baseline_is"]
