"""The configuration the reference 4M was measured on (NOTES.md), shared by the benchmarks.

``reference_modalities()``: the 4M-7 modality set with the reference's vocabularies (rgb pixels 224/16 input
only; rgb tokens 16384; depth, normal, CLIP 8192; semseg 4096; caption and det 30000 with max length 256),
built from plain specs so that the benchmarks do not depend on which plugins are installed.
``REFERENCE_MODEL``: dim 256, 4 encoder + 4 decoder blocks, 4 heads, MLP ratio 4, GELU with biases, tied
output heads, shared modality embeddings (about 61.4 M parameters with these modalities).
"""

from __future__ import annotations

from fourm_registry import ModalitySet, ModalitySpec

_TEXT = "fourm_core.compat.serializer:PlainTextSerializer"

REFERENCE_MODEL = dict(dim=256, encoder_depth=4, decoder_depth=4, num_heads=4, mlp_ratio=4.0, act="gelu",
                       share_modality_embeddings=True, tie_output_embeddings=True)


def reference_modalities() -> ModalitySet:
    """The 4M-7 modalities with the reference's token layouts and vocabulary sizes.

    Shared with ``bench_train.py`` (its ``_modalities(256)``) when that module is importable, so that the
    training and generation benchmarks measure the same model; the specs below are the same set.
    """
    try:
        from bench_train import _modalities  # same directory (the benchmarks put it on sys.path)

        return _modalities(256)
    except ImportError:
        pass
    grid = (14, 14)
    return ModalitySet([
        ModalitySpec(name="rgb", kind="pixels", grid=grid, patch_size=16, channels=3, decoder=False),
        ModalitySpec(name="tok_rgb", kind="image", grid=grid, vocab_size=16384),
        ModalitySpec(name="depth", kind="image", grid=grid, vocab_size=8192),
        ModalitySpec(name="normal", kind="image", grid=grid, vocab_size=8192),
        ModalitySpec(name="clip", kind="image", grid=grid, vocab_size=8192),
        ModalitySpec(name="semseg", kind="image", grid=grid, vocab_size=4096),
        ModalitySpec(name="caption", kind="sequence", max_length=256, vocab_size=30000, serializer=_TEXT),
        ModalitySpec(name="det", kind="sequence", max_length=256, vocab_size=30000, serializer=_TEXT),
    ])


def reference_model():
    """A randomly initialised FourM of the reference configuration (eval mode)."""
    from fourm_core.model import build_model

    return build_model(reference_modalities(), dict(REFERENCE_MODEL)).eval()
