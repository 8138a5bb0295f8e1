"""``fourm quickstart``: 4M end to end on this machine, offline, in minutes.

Stages (each logs one line; the jobs it calls draw progress bars):

1. **data**: random crops of real photos shipped by installed packages (scikit-image, scikit-learn, matplotlib)
   are written as PNGs and ingested into ``OUT/data/train.zarr`` (the ``fourm ingest`` job). Crops of a few
   *held-out photos* (never seen in training) form the evaluation set (:mod:`fourm_quickstart.photos`).
2. **label**: every labeler that runs offline: the weight-free ones (Canny edges, k-means palettes, image
   statistics) and any model-based labeler whose default weights are in the local Hugging Face cache; the
   others are skipped with a one-line notice saying how to enable them (:mod:`fourm_quickstart.plan`).
3. **tokenizers**: tiny ViT VQ-VAEs for ``tok_rgb`` and ``canny_edge`` (and for any other labeled image /
   vector modality) with the tokenizer job, time-boxed; the shared WordPiece vocabulary of the sequence
   modalities; then the tokenize job (``crops`` crops per sample) (:mod:`fourm_quickstart.stages`).
4. **train**: a small 4M with the trainer (``fourm_trainers.train``), time-boxed, with the masking mixture of
   :func:`fourm_quickstart.stages.quickstart_masking` (all2all + rgb2all with fully masked sequences +
   edges/palette → rgb).
5. **generate**: any-to-any generation through :class:`fourm_core.pipeline.AnyToAny` on the held-out crops
   (rgb → canny_edge, color_palette, metadata; canny_edge + color_palette → rgb), rendered into
   ``OUT/*.png`` next to the labelers' ground truth, and ``OUT/summary.json`` with what ran or was skipped,
   timings, losses, and quality figures against trivial baselines (edge-token accuracy vs predicting the
   most frequent token; edge-pixel F1 vs marking every pixel an edge; palette distance vs one fixed palette;
   how many palettes / metadata records parse) (:mod:`fourm_quickstart.evaluate`). The edge-pixel F1 and the
   palette distance are the plugins' own measures (``fourm_canny_edge.metrics``,
   ``fourm_color_palette.metrics``). The edge columns show the edge tokenizer's decoded edge strength (grey
   levels), next to the labeled edges passed through the same tokenizer (the best a perfect prediction could
   look like).

Time-boxing: each trainer first runs a few calibration steps, then resumes (the jobs' own resume) with as
many steps as the remaining budget allows at the measured speed.

Importing this package (or :mod:`fourm_quickstart.cli`) imports neither torch nor numpy: ``fourm --help``
stays fast. :func:`fourm_quickstart.run.run_quickstart` runs everything from Python.
"""

__version__ = "0.1.0"
__all__ = ["QuickstartConfig", "QuickstartError", "run_quickstart"]

#: public names, imported on first use (importing the package stays cheap)
_EXPORTS = {"QuickstartConfig": "config", "QuickstartError": "config", "run_quickstart": "run"}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'fourm_quickstart' has no attribute {name!r}")
