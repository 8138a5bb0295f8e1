"""What the quickstart does (:class:`QuickstartConfig`), the modalities it needs, and its error type."""

from __future__ import annotations

import dataclasses
from typing import Any

from fourm_registry import FourmError

#: modalities the quickstart cannot do without (plugins fourm-rgb and fourm-canny-edge)
REQUIRED = ("rgb", "tok_rgb", "canny_edge")
#: weight-free sequence modalities used when installed
OPTIONAL = ("color_palette", "metadata")
#: what the rgb → X tasks can predict (``QuickstartConfig.rgb_targets``), each scored by :mod:`.scores`
RGB_TARGETS = ("canny_edge", *OPTIONAL)
#: photos whose crops are only used for evaluation (never trained on)
HELD_OUT = ("coffee", "china", "grace_hopper")


#: why the quickstart leaves a labeled modality out of its 4M (one no task uses: not an input of edges + palette
#: → rgb, not among ``QuickstartConfig.rgb_targets``)
LEFT_OUT_REASONS = {
    "metadata": "its seven statistics, 50 bins each, in a content-seeded key order, are not learnt in the budget: a "
                "4M trained for minutes predicts one bin for every key, worse than the training medians",
}

#: tasks the quickstart trains and scores but does not show (``QuickstartConfig.auxiliary``), and why: they
#: teach the 4M what the palette's numbers and the edge codes mean (the output embeddings are the input ones),
#: which edges + palette → rgb needs, but are not themselves learnt in the budget
AUXILIARY_REASONS = {
    "rgb -> canny_edge": "not learnt in the budget: after 160-440 steps the greedy prediction is mostly blank, edge "
                         "F1 0-0.2 on held-out photos (0.33 even on fresh crops of the training photos) where "
                         "predicting every pixel an edge scores 0.42-0.48",
    "rgb -> color_palette": "not learnt in the budget: on held-out photos its palettes are farther from the truth "
                            "than the training medoid (distance 80-98 vs 73 with 6-level palettes, 90-105 vs 64-75 "
                            "with exact ones); from a dozen training photos it recognises photos more than it "
                            "reads colours",
    "rgb -> metadata": "not learnt in the budget: a 4M trained for minutes predicts one bin for every statistic",
}


class QuickstartError(FourmError, RuntimeError):
    """The quickstart cannot run (a required plugin is missing, the output directory is unusable...)."""


@dataclasses.dataclass(frozen=True)
class QuickstartConfig:
    """What the quickstart does. ``minutes`` is the wall-time budget of the whole run."""

    out: str = "quickstart-out"
    minutes: float = 9.0
    seed: int = 0
    #: training crops (random crops of the training photos)
    samples: int = 384
    #: evaluation crops per held-out photo
    eval_crops: int = 8
    #: rows drawn in each PNG grid
    show: int = 6
    #: crops per sample in the tokenize job
    token_crops: int = 1
    raw_size: int = 256
    #: tokenizer input size (patch 8 → the specs' 14 × 14 grid)
    tokenizer_size: int = 112
    #: model config for the 4M (a fourm_core.model preset name plus overrides)
    model: tuple[tuple[str, Any], ...] = (("dim", 128), ("encoder_depth", 3), ("decoder_depth", 3),
                                         ("num_heads", 4))
    batch_size: int = 16
    #: share of the budget left after data/labels for: tokenizers, 4M (the rest: tokenize, generation)
    tokenizer_share: float = 0.18
    train_share: float = 0.70
    #: minimum steps whatever the budget (a tiny budget still produces every artefact)
    min_tokenizer_steps: int = 8
    min_train_steps: int = 8
    #: exact step count of every tokenizer and of the 4M instead of the time-boxed counts (tests: counts that
    #: do not depend on the machine's speed); at least the calibration steps (10)
    steps: int | None = None
    #: exact step counts of the tokenizers / of the 4M alone (each overrides ``steps`` for its stage)
    tokenizer_steps: int | None = None
    train_steps: int | None = None
    use_model_labelers: bool = True
    #: colours of the quickstart's palettes (the colour_palette labeler's ``k``): the few dominant colours of a
    #: crop are what a small 4M can read off its pixels in minutes
    palette_colors: int = 3
    #: channel levels of the quickstart's palettes (the colour_palette labeler's ``levels``; 256: exact): with 6
    #: (0, 51, ..., 255) a palette channel is one of 6 tokens, which a 4M trained for minutes sees hundreds of
    #: times each, instead of one of 256
    palette_levels: int = 6
    #: recolour every training crop (``photos.recolor``: channels permuted, hue rotated, saturation scaled, a
    #: random tint; the labels follow, being computed after): a dozen photos then show colours all over the
    #: gamut, so that the 4M has to read colours off the pixels (and the palette) rather than recognise which
    #: training photo a crop comes from
    recolor: bool = True
    #: what the rgb → X tasks predict (any of canny_edge, color_palette, metadata); a labeled modality neither
    #: listed here nor an input of edges + palette → rgb is not learnt (recorded as skipped, with
    #: :data:`LEFT_OUT_REASONS`)
    rgb_targets: tuple[str, ...] = ("canny_edge", "color_palette")
    #: tasks trained and scored but not shown (no grid; their figures go to ``summary.json["auxiliary"]``
    #: with the reason, :data:`AUXILIARY_REASONS`, and do not count towards ``all_tasks_beat_baseline``)
    auxiliary: tuple[str, ...] = ("rgb -> canny_edge", "rgb -> color_palette")

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise QuickstartError(f"quickstart: --minutes must be > 0, got {self.minutes}")
        if self.samples < 8:
            raise QuickstartError(f"quickstart: samples must be >= 8, got {self.samples}")
        if self.eval_crops < 1 or self.show < 1:
            raise QuickstartError("quickstart: eval_crops and show must be >= 1")
        bad = [n for n in self.rgb_targets if n not in RGB_TARGETS]
        if bad:
            raise QuickstartError(f"quickstart: --rgb-targets {', '.join(bad)}: the rgb -> X tasks are "
                                  f"{', '.join(RGB_TARGETS)}")
        for what in ("steps", "tokenizer_steps", "train_steps"):
            n = getattr(self, what)
            if n is not None and n < 10:
                raise QuickstartError(f"quickstart: --{what.replace('_', '-')} must be >= 10 (the calibration "
                                      f"steps), got {n}")


def labeler_kwargs(cfg: QuickstartConfig, names: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The quickstart's labeler options (``fourm_core.data.label``'s ``labeler_kwargs``), for the training store
    and the held-out ground truth alike."""
    return ({"color_palette": {"k": cfg.palette_colors, "levels": cfg.palette_levels}} if "color_palette" in names
            else {})
