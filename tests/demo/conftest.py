"""Fixtures of the demo tests: a tiny fourm model saved with its tokenizers (a photo input, an image, a
free-text and a structured sequence target), the demo server over it on a free port, and a real photo."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

#: the model's modalities: raw pixels in; depth (image), caption (text) and color_palette (a grammar) out
MODALITIES = ("rgb", "tok_rgb", "depth", "caption", "color_palette")
CORPUS = ["a photo of an astronaut", "a cat sitting on a sofa", "a rocket on the launch pad",
          "a cup of coffee on a table", "the moon over the sea"] * 4


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory):
    """A saved tiny FourM over the installed plugins, ``tokenizers/`` holding tiny tokenizers."""
    from fourm_registry import get_modalities

    from fourm_core.model import build_model
    from fourm_core.tokenizers import ModalityCodec, SequenceTokenizer, TextTokenizer, ViTVQVAE, save_codecs

    mods = get_modalities()
    missing = [m for m in MODALITIES if m not in mods]
    if missing:
        pytest.fail(f"plugins for {missing} are not installed (pip install -e plugins/<name>)")
    specs = mods.subset(MODALITIES)
    torch.manual_seed(0)
    text = TextTokenizer.build_for(specs, CORPUS, vocab_size=5000)
    vit = dict(image_size=224, patch_size=16, dim=16, depth=1, num_heads=1, mlp_ratio=1.0, codebook_size=64, code_dim=8)
    codecs = {}
    for name, channels in (("tok_rgb", 3), ("depth", 1)):
        spec = specs[name]
        tok = ViTVQVAE(modality=name, in_channels=channels, **vit).eval()
        codecs[name] = ModalityCodec(spec, tok, spec.transform.build() if spec.transform else None)
    for name in ("caption", "color_palette"):
        spec = specs[name]
        codecs[name] = ModalityCodec(spec, SequenceTokenizer(text_tokenizer=text, max_length=spec.max_length),
                                     spec.transform.build() if spec.transform else None, spec.serializer.build())
    model = build_model(specs, {"preset": "debug", "dim": 32, "num_heads": 2, "tie_output_embeddings": False},
                        vocab_sizes={n: c.vocab_size for n, c in codecs.items()})
    root = tmp_path_factory.mktemp("demo_ckpt")
    model.save_pretrained(str(root))
    save_codecs(root / "tokenizers", codecs)
    return root


@pytest.fixture(scope="session")
def demo_app(demo_model):
    from fourm_demo.app import DemoApp

    return DemoApp.load(str(demo_model))


@pytest.fixture(scope="session")
def demo_server(demo_app):
    """The demo server on a free local port, serving in a thread."""
    from fourm_demo.server import DemoServer

    server = DemoServer(demo_app, "127.0.0.1", 0)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def photo_png() -> bytes:
    """scikit-image's astronaut (a real photo, public domain), 512 x 512, as PNG bytes."""
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(np.asarray(data.astronaut())).save(buf, format="PNG")
    return buf.getvalue()
