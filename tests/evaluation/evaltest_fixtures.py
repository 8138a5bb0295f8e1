"""Helpers of the evaluation tests (a module of its own name, importable from the tests and from the
subprocesses they start): the installed plugins' specs with test-local metrics, a tiny saved FourM, a store."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import attrs
import numpy as np
import pytest
import torch

torch.set_num_threads(1)

MODALITIES = ("rgb", "tok_rgb", "depth", "caption")
METRICS = {"depth": "evaltest_metrics:MeanAbsoluteError", "tok_rgb": "evaltest_metrics:MeanAbsoluteError",
           "caption": "evaltest_metrics:ExactMatch"}
CAPTIONS = ["a cat on a sofa", "a dog in the park", "a cup of coffee", "a cat on a sofa", "the moon over the sea"]
NUM_SAMPLES = 6
RAW_SIZE = 64


def eval_modalities(metrics=METRICS):
    """The installed plugins' specs of :data:`MODALITIES`, with ``metrics`` refs to the test metrics."""
    from fourm_registry import ModalitySet, get_modalities

    mods = get_modalities()
    missing = [m for m in MODALITIES if m not in mods]
    if missing:
        pytest.fail(f"plugins for {missing} are not installed (pip install -e plugins/<name>)")
    return ModalitySet([attrs.evolve(mods[n], metrics=metrics.get(n)) for n in MODALITIES])


def _photos(n: int) -> list[np.ndarray]:
    from skimage import data
    from skimage.transform import resize

    base = [data.astronaut(), data.coffee(), data.chelsea()]
    out = []
    for i in range(n):
        img = base[i % len(base)]
        side = min(img.shape[:2])
        img = img[:side, :side]
        img = resize(img, (RAW_SIZE, RAW_SIZE), anti_aliasing=True)
        out.append(np.ascontiguousarray((np.rot90(img, i // len(base)) * 255).round().astype(np.uint8)))
    return out


def make_store(url: str, specs, n: int = NUM_SAMPLES, samples_per_shard: int = 4, with_caption: bool = True) -> str:
    """A store of ``n`` photos, a depth map per photo (its inverted luminance) and captions."""
    from fourm_core.data import Store

    store = Store.create(url, n, samples_per_shard=samples_per_shard, raw_size=RAW_SIZE)
    rgb = _photos(n)
    store.write_raw(specs["rgb"], 0, rgb)
    depth = [(1.0 - r.mean(axis=2, keepdims=True) / 255.0).astype(np.float16) for r in rgb]
    store.write_raw(specs["depth"], 0, depth)
    if with_caption:
        store.write_raw(specs["caption"], 0, [CAPTIONS[i % len(CAPTIONS)] for i in range(n)])
    return url


def save_tiny_checkpoint(root, specs):
    """Save a tiny FourM over ``specs`` into ``root`` (with ``root/tokenizers/``) and return ``root``."""
    from fourm_core.model import build_model
    from fourm_core.tokenizers import ModalityCodec, SequenceTokenizer, TextTokenizer, ViTVQVAE, save_codecs

    torch.manual_seed(0)
    text = TextTokenizer.build_for(specs, CAPTIONS * 4, vocab_size=500)
    vit = dict(image_size=224, patch_size=16, dim=16, depth=1, num_heads=1, mlp_ratio=1.0, codebook_size=64, code_dim=8)
    codecs = {}
    for name, ch in (("tok_rgb", 3), ("depth", 1)):
        spec = specs[name]
        codecs[name] = ModalityCodec(spec, ViTVQVAE(modality=name, in_channels=ch, **vit).eval(),
                                     spec.transform.build() if spec.transform else None)
    cap = specs["caption"]
    codecs["caption"] = ModalityCodec(cap, SequenceTokenizer(text_tokenizer=text, max_length=cap.max_length),
                                      cap.transform.build() if cap.transform else None, cap.serializer.build())
    model = build_model(specs, {"preset": "debug", "dim": 32, "num_heads": 2, "tie_output_embeddings": False},
                        vocab_sizes={n: c.vocab_size for n, c in codecs.items()})
    model.save_pretrained(str(root))
    save_codecs(root / "tokenizers", codecs)
    return root
