"""The configuration the reference 4M was measured on (NOTES.md), shared by the benchmarks.

``reference_modalities()``: the 4M-7 modality set with the reference's vocabularies (rgb pixels 224/16 input
only; rgb tokens 16384; depth, normal, CLIP 8192; semseg 4096; caption and det 30000 with max length 256),
built from plain specs so that the benchmarks do not depend on which plugins are installed.
``REFERENCE_MODEL``: dim 256, 4 encoder + 4 decoder blocks, 4 heads, MLP ratio 4, GELU with biases, tied
output heads, shared modality embeddings (about 61.4 M parameters with these modalities).
"""

from __future__ import annotations

from fourm_registry import ModalitySet

REFERENCE_MODEL = dict(dim=256, encoder_depth=4, decoder_depth=4, num_heads=4, mlp_ratio=4.0, act="gelu",
                       share_modality_embeddings=True, tie_output_embeddings=True)


def reference_modalities() -> ModalitySet:
    """The 4M-7 modalities with the reference's token layouts and vocabulary sizes.

    The same specs as ``bench_train.py`` builds (its ``_modalities(256)``), imported from there so that the
    training and generation benchmarks measure one model (the benchmarks run from ``bench/``).
    """
    from bench_train import _modalities

    return _modalities(256)


def reference_model():
    """A randomly initialised FourM of the reference configuration (eval mode)."""
    from fourm_core.model import build_model

    return build_model(reference_modalities(), dict(REFERENCE_MODEL)).eval()
