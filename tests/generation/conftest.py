"""Fixtures for the generation tests: tiny random FourM models, tiny tokenizers, a saved checkpoint dir."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from fourm_registry import ModalitySet, ModalitySpec

torch.set_num_threads(1)

_TEXT = "fourm_core.compat.serializer:PlainTextSerializer"


def tiny_specs() -> ModalitySet:
    """Small token layouts so the sampler tests run in milliseconds."""
    return ModalitySet([
        ModalitySpec(name="rgb", kind="pixels", grid=(4, 4), patch_size=4, channels=3),
        ModalitySpec(name="tok_rgb", kind="image", grid=(4, 4), vocab_size=32, source="rgb"),
        ModalitySpec(name="depth", kind="image", grid=(4, 4), vocab_size=32),
        ModalitySpec(name="caption", kind="sequence", max_length=12, vocab_size=300, serializer=_TEXT),
        ModalitySpec(name="gvec", kind="vector", num_tokens=4, vocab_size=16),
    ])


def _make_input_sensitive(model) -> None:
    """A freshly initialised model's decoder output is dominated by its residual input (greedy decoding then
    repeats one token whatever the inputs); amplify the blocks' contributions and the output heads so that
    outputs depend on the context, as a trained model's do."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("decoder.") and (name.endswith("proj.weight") or name.endswith("fc2.weight")):
                p.mul_(4.0)
            if "to_logits" in name:
                p.mul_(3.0)


@pytest.fixture(scope="session")
def tiny_model():
    from fourm_core.model import build_model

    torch.manual_seed(0)
    model = build_model(tiny_specs(), {"preset": "debug", "tie_output_embeddings": False}).eval()
    _make_input_sensitive(model)
    return model


@pytest.fixture(scope="session")
def pixels():
    torch.manual_seed(1)
    return torch.randn(2, 3, 16, 16)


# -- a real checkpoint directory with installed plugins and tokenizers ------------------------------------
PIPE_MODALITIES = ("rgb", "tok_rgb", "depth", "caption", "dinov2_global")
#: the plugins (entry point names) that provide them
PIPE_PLUGINS = "rgb,depth,caption,dinov2"


CORPUS = ["a photo of an astronaut", "a cat sitting on a sofa", "a rocket on the launch pad", "coffee in a cup",
          "a woman in a white suit", "a grey cat with green eyes", "the moon over the sea"] * 5


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    """A saved tiny FourM over installed plugins, with ``tokenizers/`` holding tiny tokenizers."""
    from fourm_registry import get_modalities

    from fourm_core.model import build_model
    from fourm_core.tokenizers import MLPVQ, ModalityCodec, SequenceTokenizer, TextTokenizer, ViTVQVAE, save_codecs

    mods = get_modalities()
    missing = [m for m in PIPE_MODALITIES if m not in mods]
    if missing:
        pytest.fail(f"plugins for {missing} are not installed (pip install -e plugins/<name>)")
    specs = mods.subset(PIPE_MODALITIES)
    torch.manual_seed(0)
    text = TextTokenizer.build_for(specs, CORPUS, vocab_size=5000)
    vit = dict(image_size=224, patch_size=16, dim=16, depth=1, num_heads=1, mlp_ratio=1.0, codebook_size=64, code_dim=8)
    toks = {
        "tok_rgb": ViTVQVAE(modality="tok_rgb", in_channels=3, **vit),
        "depth": ViTVQVAE(modality="depth", in_channels=1, **vit),
        "dinov2_global": MLPVQ(modality="dinov2_global", in_dim=768, num_tokens=16, hidden_dim=16, depth=1,
                               codebook_size=32, code_dim=8),
    }
    codecs = {}
    for name, tok in toks.items():
        spec = specs[name]
        codecs[name] = ModalityCodec(spec, tok.eval(), spec.transform.build() if spec.transform else None)
    cap = specs["caption"]
    codecs["caption"] = ModalityCodec(cap, SequenceTokenizer(text_tokenizer=text, max_length=cap.max_length),
                                      cap.transform.build() if cap.transform else None, cap.serializer.build())
    vocab = {n: c.vocab_size for n, c in codecs.items()}
    model = build_model(specs, {"preset": "debug", "dim": 32, "num_heads": 2, "tie_output_embeddings": False},
                        vocab_sizes=vocab)
    _make_input_sensitive(model)
    root = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(str(root))
    save_codecs(root / "tokenizers", codecs)
    return root


@pytest.fixture(scope="session")
def photo():
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8, public domain


@pytest.fixture(scope="session")
def pipe(checkpoint_dir):
    from fourm_core import AnyToAny

    return AnyToAny.from_pretrained(checkpoint_dir)


def as_np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
