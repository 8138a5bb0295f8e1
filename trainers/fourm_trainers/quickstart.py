"""``fourm quickstart``: 4M end to end on this machine, offline, in minutes.

Stages (each logs one line; the jobs it calls draw progress bars):

1. **data**: random crops of real photos shipped by installed packages (scikit-image, scikit-learn, matplotlib)
   are written as PNGs and ingested into ``OUT/data/train.zarr`` (the ``fourm ingest`` job). Crops of a few
   *held-out photos* (never seen in training) form the evaluation set.
2. **label**: every labeler that runs offline: the weight-free ones (Canny edges, k-means palettes, image
   statistics) and any model-based labeler whose default weights are in the local Hugging Face cache; the
   others are skipped with a one-line notice saying how to enable them.
3. **tokenizers**: tiny ViT VQ-VAEs for ``tok_rgb`` and ``canny_edge`` (and for any other labeled image /
   vector modality) with the tokenizer job, time-boxed; the shared WordPiece vocabulary of the sequence
   modalities; then the tokenize job (``crops`` crops per sample).
4. **train**: a small 4M with the trainer (``fourm_trainers.train``), time-boxed, with the masking mixture of
   :func:`quickstart_masking` (all2all + rgb2all with fully masked sequences + edges/palette → rgb).
5. **generate**: any-to-any generation through :class:`fourm_core.pipeline.AnyToAny` on the held-out crops
   (rgb → canny_edge, color_palette, metadata; canny_edge + color_palette → rgb), rendered into
   ``OUT/*.png`` next to the labelers' ground truth, and ``OUT/summary.json`` with what ran or was skipped,
   timings, losses, and quality figures against trivial baselines (edge-token accuracy vs predicting the
   most frequent token; edge-pixel F1 vs marking every pixel an edge; palette distance vs one fixed palette;
   how many palettes / metadata records parse). The edge columns show the edge tokenizer's decoded edge
   strength (grey levels), next to the labeled edges passed through the same tokenizer (the best a perfect
   prediction could look like).

Time-boxing: each trainer first runs a few calibration steps, then resumes (the jobs' own resume) with as
many steps as the remaining budget allows at the measured speed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fourm_registry import FourmError, ModalitySet, ModalitySpec

log = logging.getLogger(__name__)

#: modalities the quickstart cannot do without (plugins fourm-rgb and fourm-canny-edge)
REQUIRED = ("rgb", "tok_rgb", "canny_edge")
#: weight-free sequence modalities used when installed
OPTIONAL = ("color_palette", "metadata")
#: photos whose crops are only used for evaluation (never trained on)
HELD_OUT = ("coffee", "china", "grace_hopper")


class QuickstartError(FourmError, RuntimeError):
    """The quickstart cannot run (a required plugin is missing, the output directory is unusable...)."""


@dataclasses.dataclass(frozen=True)
class QuickstartConfig:
    """What the quickstart does. ``minutes`` is the wall-time budget of the whole run."""

    out: str = "quickstart-out"
    minutes: float = 8.0
    seed: int = 0
    #: training crops (random crops of the training photos)
    samples: int = 384
    #: evaluation crops per held-out photo
    eval_crops: int = 8
    #: rows drawn in each PNG grid
    show: int = 6
    #: crops per sample in the tokenize job
    token_crops: int = 2
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
    use_model_labelers: bool = True

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise QuickstartError(f"quickstart: --minutes must be > 0, got {self.minutes}")
        if self.samples < 8:
            raise QuickstartError(f"quickstart: samples must be >= 8, got {self.samples}")
        if self.eval_crops < 1 or self.show < 1:
            raise QuickstartError("quickstart: eval_crops and show must be >= 1")
        if self.steps is not None and self.steps < 10:
            raise QuickstartError(f"quickstart: --steps must be >= 10 (the calibration steps), got {self.steps}")


# --------------------------------------------------------------------------------------------------
# photos
def _as_rgb(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = (255 * (a - a.min()) / max(float(a.max() - a.min()), 1e-9)).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    return np.ascontiguousarray(a[..., :3])


def load_photos() -> dict[str, np.ndarray]:
    """Real photos shipped by installed packages, as RGB uint8 arrays (grey ones replicated to 3 channels).

    scikit-image (CC0 / public domain), scikit-learn's sample images (CC-BY 2.0), matplotlib's Grace Hopper
    (public domain). Photos a package version lacks are skipped.
    """
    import skimage.data as sd

    photos: dict[str, np.ndarray] = {}
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "retina", "colorwheel", "coins", "camera", "horse", "brick", "grass", "gravel", "moon"):
        fn = getattr(sd, name, None)
        if fn is None:
            continue
        try:
            photos[name] = _as_rgb(fn())
        except Exception as exc:  # noqa: BLE001 - a missing data file must not stop the quickstart
            log.warning("quickstart: skipping skimage photo %r (%s)", name, exc)
    try:
        left, right, _ = sd.stereo_motorcycle()
        photos["motorcycle"] = _as_rgb(left)
    except Exception as exc:  # noqa: BLE001
        log.warning("quickstart: skipping skimage stereo_motorcycle (%s)", exc)
    try:
        from sklearn.datasets import load_sample_images

        for fname, img in zip(load_sample_images().filenames, load_sample_images().images):
            photos[Path(fname).stem] = _as_rgb(img)
    except Exception as exc:  # noqa: BLE001
        log.warning("quickstart: skipping scikit-learn sample images (%s)", exc)
    try:
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photos["grace_hopper"] = _as_rgb(np.asarray(Image.open(f).convert("RGB")))
    except Exception as exc:  # noqa: BLE001
        log.warning("quickstart: skipping matplotlib's grace_hopper.jpg (%s)", exc)
    if len(photos) < 4:
        raise QuickstartError(f"quickstart: only {len(photos)} sample photos found; install scikit-image, "
                              f"scikit-learn and matplotlib (pip install scikit-image scikit-learn matplotlib)")
    return photos


def random_crops(photo: np.ndarray, n: int, size: int, rng: np.random.Generator,
                 scale: tuple[float, float] = (0.25, 1.0)) -> list[np.ndarray]:
    """``n`` random square crops (side a random fraction of the short side, area in ``scale``), randomly
    mirrored, resized to ``size`` × ``size``."""
    from PIL import Image

    h, w = photo.shape[:2]
    short = min(h, w)
    out = []
    for _ in range(n):
        side = max(16, int(round(short * math.sqrt(rng.uniform(*scale)))))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = photo[top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BICUBIC)))
    return out


def centre_and_random_crops(photo: np.ndarray, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The centre square first, then ``n - 1`` random crops of at least half the short side."""
    h, w = photo.shape[:2]
    s = min(h, w)
    from PIL import Image

    centre = photo[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    first = [np.asarray(Image.fromarray(np.ascontiguousarray(centre)).resize((size, size), Image.BICUBIC))]
    return first + (random_crops(photo, n - 1, size, rng, scale=(0.3, 0.8)) if n > 1 else [])


# --------------------------------------------------------------------------------------------------
# labelers that run offline
def hub_repo(weights: str) -> str | None:
    """The Hugging Face repository that holds ``weights`` (a hub id, ``hf-hub:org/name``, or an open_clip
    ``ARCH:TAG`` resolved through open_clip's pretrained table), or None when it has none."""
    if weights.startswith("hf-hub:"):
        weights = weights[len("hf-hub:"):]
    elif ":" in weights and "/" not in weights.split(":", 1)[0]:  # open_clip "ARCH:TAG"
        try:
            import open_clip

            weights = str(open_clip.get_pretrained_cfg(*weights.split(":", 1)).get("hf_hub", "")).rstrip("/")
        except Exception:  # noqa: BLE001 - open_clip missing or unknown tag
            return None
    return weights if weights.count("/") == 1 and not weights.startswith((".", "/", "~")) else None


def weights_available(weights: str) -> bool:
    """True when ``weights`` (a local directory, a hub id, or an open_clip ``ARCH:TAG``) is available without
    network access (a local directory, or a file of the repository in the Hugging Face cache). Never downloads."""
    if os.path.isdir(os.path.expanduser(weights)):
        return True
    repo = hub_repo(weights)
    if repo is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    for f in ("config.json", "model.safetensors", "pytorch_model.bin", "open_clip_config.json",
              "open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        try:
            if isinstance(try_to_load_from_cache(repo, f), str):
                return True
        except Exception:  # noqa: BLE001 - a malformed id is simply not available
            return False
    return False


def plan_labelers(modalities: ModalitySet, *, use_models: bool = True) -> tuple[list[str], list[dict[str, str]]]:
    """Which modalities can be labeled offline: ``(runnable names in dependency order, skipped)``; each
    skipped entry is ``{"modality", "reason", "enable"}``."""
    runnable: list[str] = []
    skipped: list[dict[str, str]] = []
    for spec in modalities.specs:
        if spec.labeler is None or spec.storage is None:
            continue
        if spec.default_weights:
            if not use_models:
                skipped.append({"modality": spec.name, "reason": "model-based labelers disabled",
                                "enable": "run without --no-model-labelers"})
                continue
            if not weights_available(spec.default_weights):
                w = spec.default_weights
                repo = hub_repo(w)
                get = f"`huggingface-cli download {repo}`" if repo else f"download {w!r}"
                skipped.append({
                    "modality": spec.name, "reason": f"weights {w} not cached",
                    "enable": f"{get}, or `fourm label STORE --modalities {spec.name} --weights {spec.name}=DIR`"})
                continue
        runnable.append(spec.name)
    # requirements (e.g. text_embedding needs caption) must be labeled too, else the labeler cannot run
    changed = True
    while changed:
        changed = False
        for name in list(runnable):
            missing = [r for r in modalities[name].requires if r != "rgb" and r not in runnable]
            if missing:
                runnable.remove(name)
                skipped.append({"modality": name, "reason": f"needs {', '.join(missing)}, which cannot be labeled here",
                                "enable": f"make {', '.join(missing)} available first"})
                changed = True
    return runnable, skipped


# --------------------------------------------------------------------------------------------------
# small helpers
class _Clock:
    """Stage timings and the remaining budget."""

    def __init__(self, minutes: float):
        self.t0 = time.perf_counter()
        self.budget = minutes * 60.0
        self.stages: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget - self.elapsed()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(time.perf_counter() - t, 2)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _first_last(records: list[dict[str, Any]], key: str = "loss") -> dict[str, float | None]:
    vals = [r[key] for r in records if key in r and r.get("split") is None]
    return {"first": vals[0] if vals else None, "last": vals[-1] if vals else None}


def _steps_for(seconds: float, rate: float, done: int, minimum: int) -> int:
    return max(minimum, done + int(max(0.0, seconds) * rate))


# --------------------------------------------------------------------------------------------------
# stage 1: data
def build_data(cfg: QuickstartConfig, data_dir: Path, rng: np.random.Generator) -> dict[str, Any]:
    """Write training crops as PNGs, ingest them into ``data_dir/train.zarr``; return the evaluation crops."""
    from PIL import Image

    from fourm_core.data import ingest

    photos = load_photos()
    held = [n for n in HELD_OUT if n in photos]
    train_names = [n for n in photos if n not in held]
    if not held:  # a package lacks every held-out photo: hold out the last one found
        held, train_names = train_names[-1:], train_names[:-1]
    per = [cfg.samples // len(train_names) + (1 if i < cfg.samples % len(train_names) else 0)
           for i in range(len(train_names))]
    folder = data_dir / "photos"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    from tqdm.auto import tqdm

    with tqdm(total=cfg.samples, desc="crops", unit="crop", dynamic_ncols=True) as bar:
        for name, n in zip(train_names, per):
            for i, crop in enumerate(random_crops(photos[name], n, cfg.raw_size, rng)):
                Image.fromarray(crop).save(folder / f"{name}_{i:03d}.png", compress_level=1)
                bar.update(1)
    url = str(data_dir / "train.zarr")
    report = ingest(str(folder), url, raw_size=cfg.raw_size, samples_per_shard=64, overwrite=True)
    eval_crops, eval_names = [], []
    for name in held:
        crops = centre_and_random_crops(photos[name], cfg.eval_crops, cfg.raw_size, rng)
        eval_crops += crops
        eval_names += [f"{name}_{i}" for i in range(len(crops))]
    # interleave photos so that the first rows of a grid show every held-out photo
    order = sorted(range(len(eval_crops)), key=lambda i: (i % cfg.eval_crops, i // cfg.eval_crops))
    return {"url": url, "num_samples": report.num_samples, "train_photos": train_names, "held_out_photos": held,
            "eval_rgb": [eval_crops[i] for i in order], "eval_names": [eval_names[i] for i in order],
            "crops_dir": str(folder)}


# --------------------------------------------------------------------------------------------------
# stage 3: tokenizers
def _tokenizer_overrides(spec: ModalitySpec, size: int) -> dict[str, Any]:
    """Tiny ViT VQ-VAE geometry keeping the spec's token grid (patch = size / grid)."""
    if spec.kind == "vector":
        return {"vocab_size": 256}
    gh, gw = spec.grid
    patch = max(1, size // gh)
    # small vocabularies: few codes fill up (and become predictable for the 4M) within the quickstart's steps
    vocab = {"tok_rgb": 512, "canny_edge": 128}.get(spec.name, 256)
    return dict(image_size=[patch * gh, patch * gw], patch_size=patch, dim=64, depth=1, num_heads=2,
                vocab_size=vocab, code_dim=16)


def train_tokenizers_timeboxed(names: Sequence[str], url: str, tok_dir: Path, seconds: float, cfg: QuickstartConfig,
                               modalities: ModalitySet) -> dict[str, Any]:
    """Train each image/vector tokenizer for its share of ``seconds`` (calibrate, then resume)."""
    from .tokenizer_train import TokenizerTrainConfig, train_tokenizer

    # thin edges are the hardest to tokenize: the edge tokenizer gets the largest share (tok_rgb only needs
    # the patches' colours, which it learns in a few dozen steps)
    weights = {n: (1.5 if n == "canny_edge" else 1.0) for n in names}
    total_w = sum(weights.values()) or 1.0
    out: dict[str, Any] = {}
    calib = 8
    for n in names:
        spec = modalities[n]
        budget = seconds * weights[n] / total_w
        t0 = time.perf_counter()
        base = dict(batch_size=32, lr=2e-3, warmup_steps=0, crop_scale=(0.4, 1.0), save_every=10**9, log_every=calib,
                    seed=cfg.seed, cpu=True, num_recon_images=cfg.show, num_workers=1, tokenizer=_tokenizer_overrides(spec, cfg.tokenizer_size))
        first = train_tokenizer(n, url, tok_dir, config=TokenizerTrainConfig(steps=calib, **base), modalities=modalities)
        rate = float(first["final"].get("images_per_s", 0.0)) / base["batch_size"]  # steps / s
        left = budget - (time.perf_counter() - t0)
        steps = cfg.steps if cfg.steps is not None else _steps_for(left * 0.95, rate, calib, cfg.min_tokenizer_steps)
        summary = train_tokenizer(n, url, tok_dir, config=TokenizerTrainConfig(steps=steps, **{**base, "log_every": 10}),
                                  resume=True, modalities=modalities)
        records = _read_jsonl(Path(summary["metrics_file"]))
        recon = summary.get("recon_png")
        out[n] = {"steps": steps, "seconds": round(time.perf_counter() - t0, 1),
                  "recon_loss": _first_last(records, "recon_loss") if any("recon_loss" in r for r in records)
                  else _first_last(records), "codebook_usage": records[-1].get("usage") if records else None,
                  "recon_png": recon}
        log.info("quickstart: tokenizer %s: %d steps in %.0f s, loss %s", n, steps, out[n]["seconds"], out[n]["recon_loss"])
    return out


# --------------------------------------------------------------------------------------------------
# stage 4: 4M training
#: input alpha of a sequence in components where it should (almost) always be fully masked: > 0 so that the
#: sequence's ``min_tokens`` = 1 applies (one visible sentinel, as the sampler conditions), tiny so that the
#: Dirichlet share rarely gives it more
_TINY_ALPHA = 1e-3


def quickstart_masking(names: Sequence[str], sequences: Sequence[str], *, input_tokens: tuple[int, int],
                       target_tokens: tuple[int, int]) -> dict[str, Any]:
    """The quickstart's masking mixture (a :class:`fourm_core.masking.MaskingConfig` mapping).

    * ``all2all`` (weight 0.2): every modality is input and target (alphas 0.5), as in the reference;
    * ``rgb2all`` (weight 0.6): the photo's pixels are the input, every other modality a target, and each
      sequence is **entirely** masked: its encoder input is the single sentinel ``[S_1]`` and its target
      ``[S_1] tokens... [EOS] [S_2]``, exactly what the autoregressive sampler conditions on at inference
      (rgb → palette, metadata). Without such samples a small model only sees short spans of a sequence
      as targets and learns to close a span after 1–3 tokens;
    * ``edges+palette2rgb`` (weight 0.2): ``canny_edge`` and ``color_palette`` (kept whole) are the
      input, ``tok_rgb`` the target (the edges + palette → rgb demo).

    Every sequence gets ``min_tokens: 1``: the masker gives a sequence with a zero input budget no encoder
    token at all while the sampler always shows ``[S_1]`` (see ``tests/quickstart/test_masking_layout.py``);
    with one token of input budget a fully masked sequence is laid out as the sampler expects.
    """
    seq = [n for n in sequences if n in names]
    comps: list[dict[str, Any]] = [
        {"name": "all2all", "weight": 0.2, "input_alphas": {"*": 0.5}, "target_alphas": {"*": 0.5}},
        {"name": "rgb2all", "weight": 0.6,
         "input_alphas": {"*": 0.0, "rgb": 1.0, **{n: _TINY_ALPHA for n in seq}},
         "target_alphas": {"*": 0.5, "rgb": 0.0, **{n: 1.0 for n in seq}}},
    ]
    if "canny_edge" in names and "tok_rgb" in names:
        cond = ["canny_edge"] + (["color_palette"] if "color_palette" in names else [])
        comps.append({"name": "edges+palette2rgb", "weight": 0.2,
                      "input_alphas": {"*": 0.0, **{n: 1.0 for n in cond}},
                      "target_alphas": {"*": 0.0, "tok_rgb": 1.0},
                      "keep": {n: "all" for n in cond if n in seq}})
    return {"input_tokens": list(input_tokens), "target_tokens": list(target_tokens), "mixture": comps,
            "modalities": {n: {"min_tokens": 1} for n in seq}}

def train_fourm_timeboxed(url: str, tok_dir: Path, run_dir: Path, names: Sequence[str], vocab: dict[str, int],
                          seconds: float, cfg: QuickstartConfig, sequences: Sequence[str] = ()) -> dict[str, Any]:
    """Train a small 4M for about ``seconds`` (a few calibration steps, then resume with the rest)."""
    from .config import TrainConfig
    from .train import train

    tokens_per_step = 256
    base = {
        "out_dir": str(run_dir), "datasets": [{"path": url}], "modalities": list(names), "tokenizers": str(tok_dir),
        "model": {"preset": "debug", **dict(cfg.model)}, "vocab_sizes": vocab,
        "masking": quickstart_masking(names, sequences, input_tokens=(64, 128), target_tokens=(64, 128)),
        "batch_size": cfg.batch_size, "optimizer": {"lr": 2e-3, "min_lr": 1e-4, "weight_decay": 0.05},
        "schedule": {"warmup_tokens": 20 * cfg.batch_size * tokens_per_step}, "clip_grad": 1.0,
        "log_every": 5, "seed": cfg.seed, "cpu": True, "mixed_precision": "no",
    }
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    calib = 10
    first = train(TrainConfig.from_dict({**base, "max_steps": 10**6}), stop_after=calib)
    rate = float(first["steps_per_s"])
    left = seconds - (time.perf_counter() - t0)
    steps = cfg.steps if cfg.steps is not None else _steps_for(left * 0.97, rate, calib, cfg.min_train_steps)
    summary = train(TrainConfig.from_dict({**base, "max_steps": steps}), resume=True)
    records = _read_jsonl(run_dir / "metrics.jsonl")
    per_mod = {k.split("/", 1)[1]: _first_last(records, k) for k in sorted({k for r in records for k in r})
               if k.startswith("loss/")}
    return {"steps": steps, "seconds": round(time.perf_counter() - t0, 1), "steps_per_s": summary["steps_per_s"],
            "tokens_per_s": summary["tokens_per_s"], "loss": _first_last(records), "loss_per_modality": per_mod,
            "final": summary.get("final"), "model": base["model"], "batch_size": cfg.batch_size,
            "masking": base["masking"]}


# --------------------------------------------------------------------------------------------------
# stage 5: generation and quality
def palette_distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Symmetric mean nearest-colour distance between two palettes (RGB units, 0..441)."""
    pa = np.asarray(a["colors"], dtype=np.float64).reshape(-1, 3)
    pb = np.asarray(b["colors"], dtype=np.float64).reshape(-1, 3)
    d = np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1))
    return float(0.5 * (d.min(1).mean() + d.min(0).mean()))


def _panel(title: str, image: Any) -> Any:
    from PIL import Image, ImageDraw

    bar = 18
    out = Image.new("RGB", (image.width, image.height + bar), (235, 235, 235))
    out.paste(image, (0, bar))
    ImageDraw.Draw(out).text((4, 3), title, fill=(0, 0, 0))
    return out


def side_by_side(panels: Sequence[tuple[str, Any]], gap: int = 12) -> Any:
    """Titled panels next to each other (top-aligned)."""
    from PIL import Image

    imgs = [_panel(t, im) for t, im in panels]
    w = sum(i.width for i in imgs) + gap * (len(imgs) - 1)
    h = max(i.height for i in imgs)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    x = 0
    for i in imgs:
        canvas.paste(i, (x, 0))
        x += i.width + gap
    return canvas


def generate_and_evaluate(model_dir: str, data: dict[str, Any], url: str, names: Sequence[str], out: Path,
                          cfg: QuickstartConfig) -> dict[str, Any]:
    """Run the any-to-any pipeline on the held-out crops, write the PNG grids, measure quality."""
    from fourm_core.data import Store
    from fourm_core.generation import TargetConfig
    from fourm_core.pipeline import AnyToAny, render_grid

    pipe = AnyToAny.from_pretrained(model_dir, device="cpu")
    mods = pipe.modalities
    rgb = data["eval_rgb"]
    truth: dict[str, list[Any]] = {}
    for n in names:
        spec = mods[n]
        if spec.labeler is not None and n in ("canny_edge", "color_palette", "metadata"):
            truth[n] = list(spec.labeler.build()({"rgb": rgb}))
    results: dict[str, Any] = {"eval_crops": len(rgb), "held_out_photos": data["held_out_photos"], "pngs": []}
    show = min(cfg.show, len(rgb))

    # rgb → canny_edge (+ color_palette, metadata)
    targets = [TargetConfig(modality="canny_edge", steps=8, temperature=0.0)]
    targets += [TargetConfig(modality=n, temperature=0.0) for n in ("color_palette", "metadata") if n in names]
    t = time.perf_counter()
    pred = _generate(pipe, {"rgb": rgb}, targets, cfg.seed)
    results["rgb_to_x_seconds"] = round(time.perf_counter() - t, 2)
    gt_tokens = pipe.encode_inputs({"canny_edge": truth["canny_edge"]})[0]["canny_edge"]["tensor"]  # (B, 196)
    pred_tokens = pred.tokens["canny_edge"].cpu()
    train_tokens = Store.open(url, "r").read_tokens("canny_edge", slice(None))
    train_tokens = np.asarray(train_tokens).reshape(-1)
    mode_token = int(np.bincount(train_tokens).argmax())
    acc = float((pred_tokens == gt_tokens).float().mean())
    base_acc = float((gt_tokens == mode_token).float().mean())
    # edge pixels: F1 of predicted vs labeled edges (a decoded view of the same tokens)
    results["edge_token_accuracy"] = {"model": round(acc, 4), "baseline_most_frequent_token": round(base_acc, 4),
                                      "most_frequent_token": mode_token,
                                      "beats_baseline": acc > base_acc}
    if "color_palette" in pred.raw:
        d_model = [palette_distance(p, g) for p, g in zip(pred.raw["color_palette"], truth["color_palette"])
                   if isinstance(p, dict) and "colors" in p]
        store = Store.open(url, "r")
        train_pal = store.read_raw("color_palette", range(store.num_samples))
        # the trivial baseline: one fixed palette for every image, the training medoid (best single guess)
        sub = train_pal[:: max(1, len(train_pal) // 96)]
        medoid = min(sub, key=lambda p: sum(palette_distance(p, q) for q in sub))
        d_base = [palette_distance(medoid, g) for g in truth["color_palette"]]
        results["palette_distance"] = {
            "model": round(float(np.mean(d_model)), 2) if d_model else None,
            "baseline_fixed_medoid_palette": round(float(np.mean(d_base)), 2),
            "parsed": f"{len(d_model)}/{len(rgb)}", "units": "RGB, symmetric mean nearest-colour distance"}
    if "metadata" in pred.raw:
        ok = sum(isinstance(m, dict) and len(m) > 0 for m in pred.raw["metadata"])
        results["metadata_parsed"] = f"{ok}/{len(rgb)}"

    # edge pixels: how well the decoded prediction overlaps the labeled edges, vs an all-edges guess
    results["edge_pixels"] = edge_overlap(pred.raw["canny_edge"], truth["canny_edge"])

    sub = _subset(pred, show)
    # draw the edge decoder's soft output (edge strength in [0, 1]): the thresholded map loses faint strokes
    soft = pipe.codec("canny_edge").tokenizer.decode(sub.tokens["canny_edge"].cpu()).detach().float()
    if soft.shape[1] == 2:  # a cross-entropy edge tokenizer: probabilities of {no edge, edge}
        soft = soft[:, 1:2]
    sub.raw["canny_edge"] = [np.clip(a.permute(1, 2, 0).numpy() * 255.0, 0, 255).astype(np.uint8) for a in soft]
    with _quiet("fourm_core.pipeline"):  # unparseable rows are drawn as their text on purpose
        grid = pipe.render(sub, tile=160)
    gt_cols = [(n, truth[n][:show]) for n in ("canny_edge", "color_palette", "metadata") if n in truth]
    # the labeled edges through the edge tokenizer: what a perfect 4M prediction would decode to
    gt_recon = pipe.codec("canny_edge").tokenizer.decode(
        pipe.encode_inputs({"canny_edge": truth["canny_edge"][:show]})[0]["canny_edge"]["tensor"]).detach().float()
    if gt_recon.shape[1] == 2:
        gt_recon = gt_recon[:, 1:2]
    gt_cols.insert(1, ("canny_edge (tokenized)", [np.clip(a.permute(1, 2, 0).numpy() * 255.0, 0, 255).astype(np.uint8)
                                                  for a in gt_recon]))
    png = out / "rgb_to_edges_palette_metadata.png"
    side_by_side([("held-out input -> 4M predictions (AnyToAny; edges: decoder's edge strength)", grid),
                  ("labelers' ground truth", _render_columns(gt_cols, mods, tile=160))]).save(png)
    results["pngs"].append(str(png))

    # canny_edge + color_palette → rgb
    cond = {"canny_edge": truth["canny_edge"]}
    if "color_palette" in truth and "color_palette" in names:
        cond["color_palette"] = truth["color_palette"]
    t = time.perf_counter()
    pred2 = _generate(pipe, cond, [TargetConfig(modality="tok_rgb", steps=8, temperature=0.5)], cfg.seed)
    results["x_to_rgb_seconds"] = round(time.perf_counter() - t, 2)
    grid2 = pipe.render(_subset(pred2, show), tile=160)
    recon = pipe.codec("tok_rgb").decode(pipe.encode_inputs({"tok_rgb": rgb[:show]})[0]["tok_rgb"]["tensor"])
    png2 = out / "edges_palette_to_rgb.png"
    side_by_side([("held-out inputs -> 4M prediction (AnyToAny)", grid2),
                  ("real photo / its tok_rgb reconstruction", render_grid(
                      [("rgb", rgb[:show]), ("tok_rgb", list(recon))], mods, tile=160))]).save(png2)
    results["pngs"].append(str(png2))
    rgb_mae = float(np.mean([np.abs(p.astype(np.float32) - _resize(r, p.shape[:2]).astype(np.float32)).mean()
                             for p, r in zip(pred2.raw["tok_rgb"], rgb)]))
    results["edges_palette_to_rgb_mae"] = round(rgb_mae, 2)
    return results


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    lg = logging.getLogger(logger)
    level = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(level)


def _generate(pipe: Any, inputs: dict[str, Any], targets: list[Any], seed: int) -> Any:
    """``pipe(inputs, targets)``; a sequence a briefly trained model got wrong (it does not parse) becomes the
    text ``"unparseable: ..."`` instead of failing the whole batch."""
    with _quiet("fourm_core.pipeline"):
        return pipe(inputs, targets=targets, seed=seed, decode_errors="text")


def _render_columns(cols: list[tuple[str, list[Any]]], mods: ModalitySet, tile: int) -> Any:
    """``render_grid`` for columns some of which (edge strength maps) are drawn as grey images."""
    from PIL import Image

    from fourm_core.pipeline import render_grid

    if all(n in mods for n, _ in cols):
        return render_grid(cols, mods, tile=tile)
    # render each column on its own and paste them side by side (bottom-aligned: same row positions)
    parts = []
    for n, v in cols:
        if n in mods:
            parts.append(render_grid([(n, v)], mods, tile=tile))
        else:
            parts.append(side_by_side([(n, _stack([Image.fromarray(a[..., 0]).convert("RGB").resize((tile, tile))
                                                     for a in v]))], gap=0))
    h = max(p.height for p in parts)
    canvas = Image.new("RGB", (sum(p.width for p in parts), h), (255, 255, 255))
    x = 0
    for p in parts:
        canvas.paste(p, (x, h - p.height))
        x += p.width
    return canvas


def _stack(images: list[Any]) -> Any:
    from PIL import Image

    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), (255, 255, 255))
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height
    return out


def edge_overlap(pred: Sequence[Any], truth: Sequence[np.ndarray], tolerance: int = 2) -> dict[str, Any]:
    """F1 of predicted vs labeled edge pixels, counting a pixel as matched within ``tolerance`` pixels
    (decoded edges are a few pixels wide), and the F1 of the trivial guess "every pixel is an edge"."""
    import cv2

    k = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    f1s, base = [], []
    for p, t in zip(pred, truth):
        if not isinstance(p, np.ndarray):
            continue
        t = t[..., 0] > 0
        p = _resize(np.repeat(p, 3, -1) if p.shape[-1] == 1 else p, t.shape)[..., 0] > 0
        prec = (p & (cv2.dilate(t.astype(np.uint8), k) > 0)).sum() / max(p.sum(), 1)
        rec = (t & (cv2.dilate(p.astype(np.uint8), k) > 0)).sum() / max(t.sum(), 1)
        f1s.append(2 * prec * rec / max(prec + rec, 1e-9))
        dens = t.mean()
        base.append(2 * dens / (dens + 1))  # all pixels: precision = density, recall = 1
    return {"f1_model": round(float(np.mean(f1s)), 4) if f1s else None,
            "f1_baseline_all_edges": round(float(np.mean(base)), 4) if base else None,
            "tolerance_px": tolerance}


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BILINEAR))


def _subset(out: Any, n: int) -> Any:
    """The first ``n`` rows of an AnyToAnyOutput (for drawing)."""
    from fourm_core.pipeline import AnyToAnyOutput

    return AnyToAnyOutput({k: v[:n] for k, v in out.raw.items()}, {k: v[:n] for k, v in out.tokens.items()},
                          {k: v[:n] for k, v in out.inputs.items()}, True)


# --------------------------------------------------------------------------------------------------
# the whole run
def run_quickstart(cfg: QuickstartConfig, *, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every stage into ``cfg.out``; returns the summary (also written to ``OUT/summary.json``)."""
    import torch

    from fourm_core.data import label, tokenize
    from fourm_registry import get_modalities

    say = echo or (lambda s: log.info("%s", s))
    clock = _Clock(cfg.minutes)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):
        stale.unlink()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    installed = get_modalities()
    missing = [n for n in REQUIRED if n not in installed]
    if missing:
        raise QuickstartError(f"quickstart needs the modalities {', '.join(REQUIRED)}; missing {', '.join(missing)}: "
                              f"install the plugins (pip install -e plugins/rgb -e plugins/canny_edge) and check "
                              f"FOURM_PLUGINS / FOURM_DISABLE_PLUGINS")
    summary: dict[str, Any] = {"config": {k: (dict(v) if k == "model" else v) for k, v in dataclasses.asdict(cfg).items()},
                               "torch_threads": torch.get_num_threads(), "ran": [], "skipped": []}

    with clock.stage("data"):
        data = build_data(cfg, out / "data", rng)
    url = data["url"]
    say(f"[1/5] data: {data['num_samples']} crops of {len(data['train_photos'])} photos -> {url}; "
        f"{len(data['eval_rgb'])} held-out crops of {', '.join(data['held_out_photos'])} ({clock.stages['data']:.0f} s)")
    summary["data"] = {k: v for k, v in data.items() if not k.startswith("eval_rgb")}

    with clock.stage("label"):
        runnable, skipped = plan_labelers(installed, use_models=cfg.use_model_labelers)
        for s in skipped:
            say(f"      skip label {s['modality']} ({s['reason']}); to enable: {s['enable']}")
        label(url, runnable)
    summary["skipped"] += [{"stage": "label", **s} for s in skipped]
    summary["ran"].append({"stage": "label", "modalities": runnable})
    say(f"[2/5] label: {', '.join(runnable)} ({clock.stages['label']:.0f} s); skipped {len(skipped)} "
        f"(see above)")

    # what the 4M learns: rgb (+ its tokens) and every labeled modality with a decoder
    image_like = ["tok_rgb"] + [n for n in runnable if installed[n].kind in ("image", "vector") and installed[n].tokenizer]
    sequences = [n for n in runnable if installed[n].kind == "sequence"]
    others = [n for n in runnable if n not in image_like and n not in sequences]
    for n in others:
        summary["skipped"].append({"stage": "train", "modality": n, "reason": f"kind {installed[n].kind} (labeled only)"})
    tok_dir = out / "tokenizers"
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    with clock.stage("tokenizers"):
        fixed_left = clock.left() - 60.0  # tokenize + generation + margin
        tok_info = train_tokenizers_timeboxed(image_like, url, tok_dir, max(10.0, fixed_left * cfg.tokenizer_share
                                                                            / (cfg.tokenizer_share + cfg.train_share)),
                                              cfg, installed)
        if sequences:
            from .tokenizer_train import TokenizerTrainConfig, train_text_tokenizer

            text = train_text_tokenizer(url, tok_dir, config=TokenizerTrainConfig(vocab_size=6000),
                                        modalities=installed)
            tok_info["text"] = {"vocab_size": text["vocab_size"], "samples": text["samples"]}
    summary["tokenizers"] = tok_info
    say(f"[3/5] tokenizers: " + ", ".join(f"{n} {v['steps']} steps loss {_fmt(v['recon_loss'])}"
                                           for n, v in tok_info.items() if "steps" in v)
        + (f"; text vocabulary {tok_info['text']['vocab_size']}" if "text" in tok_info else "")
        + f" ({clock.stages['tokenizers']:.0f} s)")

    names = image_like + sequences
    with clock.stage("tokenize"):
        tokenize(url, names, crops=cfg.token_crops, tokenizers_dir=str(tok_dir), seed=cfg.seed)
    say(f"[3/5] tokenize: {', '.join(names)} x {cfg.token_crops} crops ({clock.stages['tokenize']:.0f} s)")

    from fourm_core.tokenizers import load_codecs

    codecs = load_codecs(tok_dir, installed.subset(names))
    vocab = {n: int(c.vocab_size) for n, c in codecs.items() if installed[n].kind != "sequence"}
    with clock.stage("train"):
        train_info = train_fourm_timeboxed(url, tok_dir, out / "model", ["rgb", *names], vocab,
                                           max(10.0, clock.left() - 30.0), cfg, sequences)
    summary["train"] = train_info
    say(f"[4/5] train 4M: {train_info['steps']} steps, loss {_fmt(train_info['loss'])} "
        f"({train_info['tokens_per_s']:.0f} tokens/s, {clock.stages['train']:.0f} s)")

    with clock.stage("generate"):
        gen = generate_and_evaluate(train_info["final"], data, url, names, out, cfg)
    summary["generation"] = gen
    summary["ran"] += [{"stage": "generate", "tasks": ["rgb -> canny_edge, color_palette, metadata",
                                                       "canny_edge + color_palette -> rgb"]}]
    ea = gen["edge_token_accuracy"]
    say(f"[5/5] generate: edge-token accuracy {ea['model']:.3f} vs {ea['baseline_most_frequent_token']:.3f} "
        f"(most frequent token)" + (f"; palette distance {gen['palette_distance']['model']} vs "
                                    f"{gen['palette_distance']['baseline_fixed_medoid_palette']} (fixed palette)"
                                    if "palette_distance" in gen else "")
        + f" ({clock.stages['generate']:.0f} s)")
    summary["timings_s"] = {**clock.stages, "total": round(clock.elapsed(), 1)}
    summary["budget_s"] = clock.budget
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    say(f"done in {clock.elapsed():.0f} s: {', '.join(Path(p).name for p in gen['pngs'])} and summary.json in {out}")
    return summary


def _fmt(fl: dict[str, Any]) -> str:
    f, l = fl.get("first"), fl.get("last")
    return "?" if f is None else f"{f:.3f} -> {l:.3f}"
