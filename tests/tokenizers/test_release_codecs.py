"""Released tokenizers as the codecs of a released model: a photo → the released rgb tokenizer's ids, the
model's depth prediction → the released depth DiVAE's map, end to end through AnyToAny.

The shared release set's tokenizers stand in for the real ones (same classes and formats, tiny presets:
registered from ``tests/fixtures/ml4m_release_tiny_archs.json``); they load through a local Hugging Face
cache under the hub ids the plugins name, as a downloaded release would."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
ARCHS = Path(__file__).resolve().parents[1] / "fixtures" / "ml4m_release_tiny_archs.json"
pytestmark = pytest.mark.requires(
    "conformance", available=(RELEASE / "tokenizers" / "divae_depth").is_dir() and (RELEASE / "fm").is_dir(),
    reason=f"the shared release-format set {RELEASE} (fm/, tokenizers/) is not present; put shared/ beside the "
           f"checkout or set FOURM_RELEASE_DIR")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The plugins' released tokenizer ids of tok_rgb and depth, served offline from a local cache."""
    from fourm_core.compat.ml4m.release_check import register_archs
    from fourm_registry import get_modalities

    register_archs(ARCHS)
    cache = tmp_path_factory.mktemp("hub")
    ms = get_modalities()
    for name, src in (("tok_rgb", "vqvae_rgb"), ("depth", "divae_depth")):
        repo = ms[name].release_tokenizer
        snap = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("1" * 40)
        snap.mkdir(parents=True)
        for f in ("config.json", "model.safetensors"):
            shutil.copy(RELEASE / "tokenizers" / src / f, snap / f)
        (snap.parents[1] / "refs").mkdir()
        (snap.parents[1] / "refs" / "main").write_text("1" * 40)
    import huggingface_hub.constants as hf_constants

    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_CACHE", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these at import: an earlier test may have imported it already
    mp.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    yield cache
    mp.undo()


def _photo() -> np.ndarray:
    import skimage.data as sd
    from PIL import Image

    return np.asarray(Image.fromarray(sd.astronaut()).resize((224, 224)))


def test_release_codecs_pick_the_plugins_tokenizers_and_encode_a_photo(hub):
    from fourm_core.model import FourM
    from fourm_core.tokenizers.ml4m import from_pretrained
    from fourm_core.tokenizers.ml4m.codec import release_codecs

    model = FourM.from_pretrained(RELEASE / "fm")
    codecs = release_codecs(model.modalities)
    assert {"tok_rgb", "depth"} <= set(codecs)
    photo = _photo()
    ids = codecs["tok_rgb"].encode([photo])
    assert ids.shape == (1, 196) and ids.dtype == torch.int64
    # the same ids as the reference convention gives by hand: pixels / 127.5 - 1 into the released VQ-VAE
    vq = from_pretrained(RELEASE / "tokenizers" / "vqvae_rgb")
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert torch.equal(ids, vq.encode(x).reshape(1, -1))
    back = codecs["tok_rgb"].decode(ids)[0]
    assert back.shape == (224, 224, 3) and back.dtype == np.uint8


def test_photo_to_depth_with_a_released_model_end_to_end(hub):
    from fourm_core.model import FourM
    from fourm_core.pipeline import AnyToAny
    from fourm_core.tokenizers.ml4m.codec import release_codecs

    model = FourM.from_pretrained(RELEASE / "fm")
    codecs = release_codecs(model.modalities, decode_options={"steps": 2})
    api = AnyToAny(model, codecs)
    out = api({"tok_rgb": _photo()}, ["depth"], seed=0, steps=2)
    depth = out["depth"]
    assert out.tokens["depth"].shape == (1, 196)
    # the tiny set's DiVAE has 256 codes, the model's table 8192: AnyToAny limits the target to the codec's ids
    assert int(out.tokens["depth"].max()) < 256
    assert depth.shape == (224, 224, 1) and np.isfinite(depth.astype(np.float32)).all()
    assert float(depth.min()) == 0.0 and float(depth.max()) == 1.0  # relative depth, min-max scaled


def test_unknown_domain_and_unavailable_tokenizer_are_clear(hub, tmp_path, caplog):
    from fourm_core.model import FourM
    from fourm_core.tokenizers.base import TokenizerError
    from fourm_core.tokenizers.ml4m import from_pretrained
    from fourm_core.tokenizers.ml4m.codec import conventions, release_codecs

    vq = from_pretrained(RELEASE / "tokenizers" / "vqvae_rgb")
    with pytest.raises(TokenizerError, match=r"domain 'thermal' has no known input convention; known: rgb"):
        conventions("thermal", vq)
    model = FourM.from_pretrained(RELEASE / "fm")
    codecs = release_codecs(model.modalities.subset(["semseg"]))  # its id is not in the local cache
    assert codecs == {} and "released tokenizer EPFL-VILAB/4M_tokenizers_semseg_4k_224-448" in caplog.text
    with pytest.raises(Exception, match="semseg_4k"):
        release_codecs(model.modalities.subset(["semseg"]), skip_missing=False)


def test_anytoany_from_pretrained_of_a_release_picks_the_released_tokenizers(hub, tmp_path, monkeypatch):
    """A released checkpoint (here its single-file form) gets the tokenizers its plugins name, overridable per
    modality, and the released text vocabulary when it can be found."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from fourm_core.pipeline import AnyToAny

    state = load_file(str(RELEASE / "fm" / "model.safetensors"))
    with safe_open(str(RELEASE / "fm" / "model.safetensors"), "pt") as f:
        for dropped, kept in f.metadata().items():
            state[dropped] = state[kept].clone()
    cfg = json.loads((RELEASE / "fm" / "config.json").read_text())
    single = tmp_path / "4m.safetensors"
    save_file(state, str(single), metadata={k: str(v) for k, v in cfg.items()})
    monkeypatch.setenv("FOURM_TEXT_TOKENIZER_DIR", str(RELEASE / "text"))
    api = AnyToAny.from_pretrained(single, tokenizers={"semseg": RELEASE / "tokenizers" / "vqvae_semseg"},
                                   decode_options={"steps": 2})
    assert {"tok_rgb", "depth", "semseg", "caption", "metadata"} <= set(api.codecs)
    assert api.codecs["caption"].vocab_size == 30000
    out = api({"tok_rgb": _photo()}, ["semseg", "caption"], seed=0, steps=2, max_new_tokens=5,
              decode_errors="text")
    patch = json.loads((RELEASE / "tokenizers" / "vqvae_semseg" / "config.json").read_text())["patch_size"]
    assert out["semseg"].shape == (14 * patch, 14 * patch, 1)  # the 14x14 token grid at the tokenizer's patch
    assert isinstance(out["caption"], str)
