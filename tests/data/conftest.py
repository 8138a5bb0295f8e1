"""Fixtures of the data tests: real photos, the test plugin, tiny tokenizers, a labeled + tokenized store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from data_helpers import FIXTURES, PER_SHARD, RAW_SIZE, RUNNER, copy_store, np_equal_lists  # noqa: E402,F401


def write_photos(folder: Path) -> list[str]:
    """Real photos from scikit-image, scikit-learn and matplotlib (jpg/png/webp, nested), plus one broken file."""
    import skimage.data as sd
    from matplotlib import cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    (folder / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        Image.fromarray(getattr(sd, name)()).save(folder / f"{name}.jpg", quality=90)
    Image.fromarray(sd.camera()).save(folder / "nested" / "camera.png")
    china, flower = load_sample_images().images
    Image.fromarray(china).save(folder / "nested" / "china.webp", quality=90)
    Image.fromarray(flower).save(folder / "nested" / "deeper" / "flower.JPG", quality=90)
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        (folder / "grace_hopper.jpeg").write_bytes(f.read())
    (folder / "nested" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (folder / "notes.txt").write_text("not an image")
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    write_photos(folder)
    return folder


@pytest.fixture(scope="session")
def registry():
    """The test plugin's ModalitySet (only it and the built-ins loaded)."""
    from fourm_datatest import plugin

    from fourm_registry import PluginManager

    return PluginManager(env={"FOURM_PLUGINS": ""}, modules=[("datatest", plugin)]).modalities()


@pytest.fixture(scope="session")
def tinynet_weights(tmp_path_factory) -> str:
    import torch
    from fourm_datatest.components import build_tinynet
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tinynet.safetensors"
    save_file(build_tinynet().state_dict(), str(path))
    return str(path)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, registry) -> str:
    """A tokenizer directory with tiny untrained families for rgbtok/edges/feat and a text tokenizer."""
    import torch

    from fourm_core.tokenizers import MLPVQ, ModalityCodec, TextTokenizer, ViTVQVAE, save_codecs
    from fourm_core.tokenizers.sequence import SequenceTokenizer

    torch.manual_seed(0)
    small = dict(image_size=32, patch_size=16, dim=16, depth=1, num_heads=2, codebook_size=16, code_dim=4)
    ser = registry["stats"].serializer.build()
    corpus = [ser.to_text({"brightness": b, "contrast": c}) for b in range(0, 256, 7) for c in range(0, 90, 9)]
    text = TextTokenizer.build_for(registry, corpus, vocab_size=4600)
    codecs = {
        "rgbtok": ModalityCodec(registry["rgbtok"], ViTVQVAE(modality="rgbtok", in_channels=3, **small)),
        "edges": ModalityCodec(registry["edges"], ViTVQVAE(modality="edges", in_channels=1, **small)),
        "feat": ModalityCodec(registry["feat"], MLPVQ(modality="feat", in_dim=8, num_tokens=2, hidden_dim=16,
                                                      codebook_size=16, code_dim=4)),
        "stats": ModalityCodec(registry["stats"], SequenceTokenizer(max_length=12, text_tokenizer=text),
                               serializer=ser),
    }
    out = tmp_path_factory.mktemp("tok")
    save_codecs(out, codecs)
    return str(out)


@pytest.fixture(scope="session")
def ingested(tmp_path_factory, photos, registry) -> str:
    from fourm_core.data import ingest

    url = str(tmp_path_factory.mktemp("stores") / "ingested.zarr")
    ingest(photos, url, samples_per_shard=PER_SHARD, raw_size=RAW_SIZE, registry=registry, progress=False)
    return url


@pytest.fixture(scope="session")
def full_store(tmp_path_factory, ingested, registry, tinynet_weights, tokenizer_dir) -> str:
    """ingest → label (edges, stats, feat) → tokenize (2 crops) of the real photos."""
    from fourm_core.data import label, tokenize

    url = str(tmp_path_factory.mktemp("stores") / "full.zarr")
    shutil.copytree(ingested, url)
    label(url, ["feat", "edges", "stats"], weights={"feat": tinynet_weights}, registry=registry, progress=False)
    tokenize(url, ["rgbtok", "edges", "stats", "feat"], crops=2, tokenizers_dir=tokenizer_dir, registry=registry,
             progress=False)
    return url
