"""Train a modality's tokenizer (``fourm train-tokenizer``), under Hugging Face Accelerate.

Image / vector modalities: the plugin's tokenizer factory (``spec.tokenizer``, hyper-parameters from the
config's ``tokenizer:`` mapping) is trained on random crops of the raw data of a zarr store (``<mod>/raw``,
or ``<spec.source>/raw``) or, for ``rgb``-like modalities, of a folder of images. Output layout::

    OUT/<modality>/                 model.safetensors + config.json  (a tokenizer directory entry)
    OUT/_runs/<modality>/metrics.jsonl      one JSON object per logged step
    OUT/_runs/<modality>/recon_step<N>.png  inputs (left) next to reconstructions (right), via the visualizer
    OUT/_runs/<modality>/checkpoints/step_<N>/   accelerate save_state + train_state.json (resume)

Text: ``--modality text`` trains the shared WordPiece vocabulary from the serializer output of every
sequence modality present in the store, with the special tokens of every installed sequence plugin, and
writes ``OUT/text/tokenizer.json``.

Data order and crops are a pure function of (seed, step), so a resumed run sees exactly the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fourm_core.kinds import adapter_for
from fourm_registry import FourmError, ModalitySet, ModalitySpec

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
RUNS_DIR = "_runs"


class TokenizerTrainError(FourmError, ValueError):
    """Bad arguments, config or data for a tokenizer training run."""


@dataclasses.dataclass(frozen=True)
class TokenizerTrainConfig:
    """Training hyper-parameters (YAML keys of ``--config``; unknown keys raise)."""

    steps: int = 1000
    batch_size: int = 32  # per process
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    save_every: int = 500
    log_every: int = 10
    seed: int = 0
    crop_scale: tuple[float, float] = (0.35, 1.0)  # random-resized-crop area fraction of the raw image
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    raw_size: int = 256  # folder input: images are resized/centre-cropped to this (stores record their own)
    tokenizer: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # family hyper-parameters
    num_workers: int = 0
    cpu: bool = False
    mixed_precision: str = "no"
    num_recon_images: int = 4
    vocab_size: int = 30000  # text tokenizer only

    def __post_init__(self):
        for name in ("steps", "batch_size", "save_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise TokenizerTrainError(f"tokenizer training config: {name} must be >= 1, got {getattr(self, name)}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise TokenizerTrainError(f"tokenizer training config: crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, **overrides: Any) -> TokenizerTrainConfig:
        data = {**(data or {}), **{k: v for k, v in overrides.items() if v is not None}}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TokenizerTrainError(f"unknown tokenizer training config keys {unknown}; known keys: {', '.join(sorted(known))}")
        for key in ("crop_scale", "crop_ratio"):
            if key in data:
                data[key] = tuple(float(v) for v in data[key])
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike | None, **overrides: Any) -> TokenizerTrainConfig:
        if path is None:
            return cls.from_dict({}, **overrides)
        from .config import read_yaml

        data = read_yaml(path, TokenizerTrainError) or {}
        if not isinstance(data, dict):
            raise TokenizerTrainError(f"{path}: a tokenizer training config must be a YAML mapping")
        try:
            return cls.from_dict(data, **overrides)
        except TokenizerTrainError as exc:
            raise TokenizerTrainError(f"{path}: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# data
class RawSource(abc.ABC):
    """Random access to the raw samples of one modality: ``len(source)``, ``source[i]``."""

    raw_size: int

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, i: int) -> Any: ...


class StoreSource(RawSource):
    """``<name>/raw`` of a fourm zarr store, restricted to shards whose raw data is complete."""

    def __init__(self, url: str, name: str):
        from fourm_core.data.store import Store

        self.url, self.name = url, name
        self.store = Store.open(url, mode="r")
        if not self.store.has(name, "raw"):
            have = ", ".join(sorted(self.store.modalities())) or "none"
            raise TokenizerTrainError(f"store {url} has no {name}/raw (modalities with data: {have}); "
                                      f"run `fourm label {url} --modality {name}` first")
        self.indices = np.array([i for s, rng in enumerate(self.store.shards()) if self.store.is_done(name, "raw", s)
                                 for i in rng], dtype=np.int64)
        if self.indices.size == 0:
            raise TokenizerTrainError(f"store {url}: {name}/raw has no complete shard yet; finish `fourm label` first")
        self.raw_size = int(self.store.attrs.get("raw_size", 256))

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> Any:
        return self.store.read_raw(self.name, [int(self.indices[i])])[0]


class FolderSource(RawSource):
    """Image files of a folder (recursive), resized so the short side is ``raw_size`` and centre-cropped.
    Decoded images of small folders (up to ``cache_limit`` files) are kept in memory."""

    def __init__(self, folder: str, raw_size: int, cache_limit: int = 1024):
        self.files = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise TokenizerTrainError(f"folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        self.raw_size = raw_size
        self._cache: dict[int, np.ndarray] | None = {} if len(self.files) <= cache_limit else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        from fourm_core.data.crops import load_image

        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img = load_image(self.files[i], self.raw_size)
        if self._cache is not None:
            self._cache[i] = img
        return img


def open_source(data: str, spec: ModalitySpec, cfg: TokenizerTrainConfig) -> RawSource:
    """A store (``*.zarr``, a zarr group, an fsspec URL) or, for 3-channel image modalities, a folder of images."""
    name = spec.source or spec.name
    path = Path(data)
    if "://" not in data and not path.exists():
        raise TokenizerTrainError(f"--data {data!r} does not exist: pass a fourm zarr store (`fourm ingest` writes "
                                  f"one) or, for rgb, a folder of images")
    is_store = "://" in data or data.rstrip("/").endswith(".zarr") or (path / "zarr.json").is_file()
    if is_store:
        return StoreSource(data, name)
    if path.is_dir():
        if not adapter_for(spec).image_like or (spec.storage is not None and spec.storage.shape
                                                    and spec.storage.shape[-1] != 3):
            raise TokenizerTrainError(f"{data} is a folder: only RGB image modalities can train from image files; "
                                      f"modality {spec.name!r} needs a store (`fourm ingest` then `fourm label`)")
        return FolderSource(data, cfg.raw_size)
    raise TokenizerTrainError(f"--data {data!r} is neither a zarr store nor a folder of images")


def crop_box(rng: np.random.Generator, raw_size: int, scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """A random-resized-crop box ``(top, left, height, width)`` in raw pixel coordinates."""
    area = raw_size * raw_size
    for _ in range(10):
        s = rng.uniform(*scale)
        r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(area * s * r))), int(round(math.sqrt(area * s / r)))
        if 1 <= w <= raw_size and 1 <= h <= raw_size:
            return int(rng.integers(0, raw_size - h + 1)), int(rng.integers(0, raw_size - w + 1)), h, w
    return 0, 0, raw_size, raw_size


class CropDataset(torch.utils.data.Dataset):
    """Item ``(index, crop_seed)`` → a randomly cropped raw sample (or the raw vector)."""

    def __init__(self, source: RawSource, spec: ModalitySpec, transform: Any, size: tuple[int, int] | None,
                 cfg: TokenizerTrainConfig):
        self.source, self.spec, self.transform, self.size, self.cfg = source, spec, transform, size, cfg

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, crop_seed = item
        raw = self.source[index]
        if self.size is None or not hasattr(self.transform, "crop"):
            return raw
        rng = np.random.default_rng(crop_seed)
        box = crop_box(rng, self.source.raw_size, self.cfg.crop_scale, self.cfg.crop_ratio)
        flip = bool(self.cfg.flip and rng.random() < 0.5)
        return self.transform.crop(raw, box=box, flip=flip, size=tuple(self.size))


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(index, crop_seed)`` for steps ``start..steps-1`` of process ``rank`` of ``world``.

    Global sample position ``p = (step·world + rank)·B + j`` → epoch ``p // n`` (a seeded permutation per
    epoch), so the stream is a pure function of (seed, step): resuming at step k reproduces it exactly.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, steps: int, rank: int = 0, world: int = 1):
        self.n, self.b, self.seed, self.start, self.steps, self.rank, self.world = n, batch_size, seed, start, steps, rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))}
        return self._perms[epoch]

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            base = (step * self.world + self.rank) * self.b
            yield [(int(self._perm((base + j) // self.n)[(base + j) % self.n]), self.seed * 1_000_003 + base + j)
                   for j in range(self.b)]


# --------------------------------------------------------------------------------------------------
# visualisation
def default_visualize(raw: Any):
    """Fallback visualizer: 1 channel → grey, 3 → RGB, other counts → the first 3 principal components."""
    from PIL import Image

    arr = np.asarray(raw, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] not in (1, 3):
        flat = arr.reshape(-1, arr.shape[-1])
        flat = flat - flat.mean(0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        arr = (flat @ vt[:3].T).reshape(*arr.shape[:2], 3)
    lo, hi = float(arr.min()), float(arr.max())
    if np.asarray(raw).dtype != np.uint8:
        arr = (arr - lo) / (hi - lo + 1e-8) * 255.0
    img = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).convert("RGB")


def reconstruction_grid(inputs: list[Any], recons: list[Any], visualize) -> Any:
    """One row per sample: input (left), reconstruction (right)."""
    from PIL import Image

    pairs = [(visualize(a).convert("RGB"), visualize(b).convert("RGB")) for a, b in zip(inputs, recons)]
    w = max(a.width + b.width for a, b in pairs) + 4
    h = sum(max(a.height, b.height) for a, b in pairs) + 2 * len(pairs)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    y = 0
    for a, b in pairs:
        canvas.paste(a, (0, y))
        canvas.paste(b, (a.width + 4, y))
        y += max(a.height, b.height) + 2
    return canvas


# --------------------------------------------------------------------------------------------------
# the jobs
def _latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted((p for p in (run_dir / "checkpoints").glob("step_*") if (p / "train_state.json").is_file()),
                   key=lambda p: int(p.name.split("_")[1]))
    return ckpts[-1] if ckpts else None


def start_of(checkpoint: Path | None) -> int:
    """The step a checkpoint directory of :func:`_latest_checkpoint` resumes from (0: none)."""
    return 0 if checkpoint is None else int(json.loads((checkpoint / "train_state.json").read_text())["step"])


def _resolve_spec(modality: str, modalities: ModalitySet | None) -> tuple[ModalitySpec, ModalitySet]:
    if modalities is None:
        from fourm_registry import get_modalities

        modalities = get_modalities()
    return modalities[modality], modalities


def train_tokenizer(modality: str, data: str, out: str | os.PathLike, *, config: TokenizerTrainConfig | None = None,
                    resume: bool = False, modalities: ModalitySet | None = None) -> dict[str, Any]:
    """Train the tokenizer of ``modality`` (``"text"``: the shared text tokenizer). Returns a summary dict
    (final metrics, images/s, output paths)."""
    cfg = config or TokenizerTrainConfig()
    if modality == "text":
        return train_text_tokenizer(data, out, config=cfg, modalities=modalities)
    spec, _ = _resolve_spec(modality, modalities)
    kind = adapter_for(spec)
    if not kind.discrete or kind.autoregressive:  # a VQ tokenizer of its own: image and vector modalities
        hint = " (sequence modalities share the text tokenizer: use --modality text)" if kind.autoregressive else ""
        raise TokenizerTrainError(f"modality {spec.name!r} of kind {spec.kind!r} has no trainable tokenizer{hint}")
    if spec.tokenizer is None:
        raise TokenizerTrainError(f"modality {spec.name!r} (plugin {spec.plugin}) declares no tokenizer factory")
    return _train_vq(spec, data, Path(out), cfg, resume)


def _train_vq(spec: ModalitySpec, data: str, out: Path, cfg: TokenizerTrainConfig, resume: bool) -> dict[str, Any]:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from fourm_core.data.jobkit import progress_bar
    from fourm_core.tokenizers.codec import default_transform

    source = open_source(data, spec, cfg)  # first: a wrong --data is reported as such, whatever is in --out
    run_dir = out / RUNS_DIR / spec.name
    latest = _latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise TokenizerTrainError(f"{run_dir} already holds checkpoints (latest {latest.name}); pass --resume to "
                                  f"continue that run, or choose another --out")
    accelerator = Accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision)
    if accelerator.device.type == "cpu" and not cfg.tokenizer and cfg.steps - (start_of(latest)) >= 200:
        log.warning("training the full-size %s tokenizer for %d steps at batch %d on the CPU takes hours; "
                    "`fourm train-tokenizer --small --minutes 3` trains a small one in about 3 minutes",
                    spec.name, cfg.steps, cfg.batch_size)
    set_seed(cfg.seed)
    model = spec.tokenizer.build(**dict(cfg.tokenizer))
    transform = spec.transform.build() if spec.transform is not None else default_transform(spec, model)
    size = tuple(model.input_size) if adapter_for(spec).image_like and hasattr(model, "input_size") else None
    dataset = CropDataset(source, spec, transform, size, cfg)

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "pos_emb" in n else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    start = 0
    if latest is not None:
        accelerator.load_state(str(latest))
        start = start_of(latest)
        accelerator.print(f"resuming {spec.name} tokenizer training from {latest} (step {start})")
    sampler = StepBatchSampler(len(dataset), cfg.batch_size, cfg.seed, start, cfg.steps,
                               accelerator.process_index, accelerator.num_processes)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=transform.to_tensor,
                                         num_workers=cfg.num_workers,
                                         # private generator: creating the iterator must not consume global RNG
                                         # draws, or a resumed run would diverge from the uninterrupted one
                                         generator=torch.Generator().manual_seed(cfg.seed))
    unwrapped = accelerator.unwrap_model(model)
    recon_samples = [source[i] for i in range(min(cfg.num_recon_images, len(source)))]
    if size is not None:
        recon_samples = [transform.crop(r, box=(0, 0, source.raw_size, source.raw_size), flip=False, size=size)
                         for r in recon_samples]
    visualize = spec.visualizer.load() if spec.visualizer is not None else default_visualize

    def save_recon(step: int) -> Path | None:
        if not adapter_for(spec).image_like or not accelerator.is_main_process:  # reconstructions of images
            return None
        unwrapped.eval()
        with torch.no_grad():
            recon = transform.from_tensor(unwrapped.decode(unwrapped.encode(transform.to_tensor(recon_samples))).cpu())
        unwrapped.train()
        path = run_dir / f"recon_step{step}.png"
        reconstruction_grid(recon_samples, recon, visualize).save(path)
        return path

    def checkpoint(step: int) -> None:
        ckpt = run_dir / "checkpoints" / f"step_{step}"
        accelerator.save_state(str(ckpt))
        if accelerator.is_main_process:
            (ckpt / "train_state.json").write_text(json.dumps({"step": step, "modality": spec.name}))
        accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    metrics_file = run_dir / "metrics.jsonl"
    model.train()
    last: dict[str, float] = {}
    seen, t0 = 0, time.perf_counter()
    bar = progress_bar(cfg.steps, f"train-tokenizer {spec.name}", accelerator.is_local_main_process, unit="step",
                       initial=start)
    step = start
    for step, batch in enumerate(loader, start=start):
        batch = batch.to(accelerator.device)
        loss, metrics = model(batch)
        accelerator.backward(loss)
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += batch.shape[0] * accelerator.num_processes
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            vals = torch.stack([loss.detach(), *[metrics[k].float() for k in sorted(metrics)]])
            vals = accelerator.reduce(vals, reduction="mean")
            last = {"loss": float(vals[0]), **{k: float(v) for k, v in zip(sorted(metrics), vals[1:])}}
            elapsed = time.perf_counter() - t0
            last.update(step=done, lr=float(scheduler.get_last_lr()[0]), images_per_s=seen / max(elapsed, 1e-9))
            bar.set_postfix(loss=f"{last['loss']:.4f}", usage=f"{last.get('usage', 0):.2f}")
            if accelerator.is_main_process:
                with open(metrics_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps(last) + "\n")
        if done % cfg.save_every == 0 and done < cfg.steps:
            checkpoint(done)
            save_recon(done)
    bar.close()
    accelerator.wait_for_everyone()
    final_dir = out / spec.name
    recon_path = None
    if start < cfg.steps:
        checkpoint(cfg.steps)
    if accelerator.is_main_process:
        unwrapped.save_pretrained(final_dir)
        recon_path = save_recon(cfg.steps)
    accelerator.wait_for_everyone()
    return {"modality": spec.name, "tokenizer_dir": str(final_dir), "metrics_file": str(metrics_file),
            "recon_png": str(recon_path) if recon_path else None, "start_step": start, "steps": cfg.steps,
            "final": last}


def train_text_tokenizer(data: str, out: str | os.PathLike, *, config: TokenizerTrainConfig | None = None,
                         modalities: ModalitySet | None = None) -> dict[str, Any]:
    """Train the shared WordPiece vocabulary from the sequence modalities present in the store ``data``."""
    from fourm_core.data.store import Store
    from fourm_core.tokenizers import TextTokenizer
    from fourm_core.tokenizers.codec import TEXT_DIR, TEXT_FILE

    cfg = config or TokenizerTrainConfig()
    if modalities is None:
        from fourm_registry import get_modalities

        modalities = get_modalities()
    sequences = modalities.of_kind("sequence")
    store = Store.open(data, mode="r")
    present = [s for s in sequences.specs if store.has(s.source or s.name, "raw")]
    if not present:
        raise TokenizerTrainError(f"store {data} has no raw data of any sequence modality "
                                  f"({', '.join(sequences.names) or 'none installed'}); label captions/boxes first")
    counts: dict[str, int] = {}

    def corpus() -> Iterator[str]:
        for spec in present:
            name = spec.source or spec.name
            serializer = spec.serializer.build()
            for s, rng in enumerate(store.shards()):
                if not store.is_done(name, "raw", s):
                    continue
                for raw in store.read_raw(name, list(rng)):
                    counts[spec.name] = counts.get(spec.name, 0) + 1
                    yield serializer.to_text(raw)

    tok = TextTokenizer.build_for(sequences, corpus(), vocab_size=cfg.vocab_size)
    path = Path(out) / TEXT_DIR / TEXT_FILE
    tok.save(path)
    log.info("text tokenizer (%d tokens) trained on %s, saved to %s", tok.vocab_size, counts, path)
    return {"modality": "text", "tokenizer_file": str(path), "vocab_size": tok.vocab_size, "samples": counts}
