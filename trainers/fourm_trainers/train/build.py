"""What a training run is built from: modalities, vocabularies, the model, the optimizer and its LR schedule,
the Accelerator, the datasets and their loaders (public so tests and other jobs can reuse them)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..config import TrainConfig, TrainConfigError

log = logging.getLogger(__name__)

#: substrings of parameter names that get no weight decay (besides every 1-D parameter: norms and biases)
NO_DECAY_KEYS = ("token_emb", "pos_emb", "mod_emb", "mask_token", "register", "norm")
#: prefixes of the "embedding" parameters that stay trainable while the trunk is frozen
EMBEDDING_PREFIXES = ("encoder_embeddings.", "decoder_embeddings.")


# ----------------------------------------------------------------------------------------------------------
# modalities and vocabularies
# ----------------------------------------------------------------------------------------------------------


class KindRules(NamedTuple):
    """What the trainer needs of a modality, decided by its kind."""

    #: the store field that makes the modality trainable: ``"tokens"`` (pre-tokenized ids), ``"raw"`` (the raw
    #: data, read under ``spec.source or spec.name``) or ``None`` (never discovered)
    stored: str | None
    #: where its vocabulary comes from: ``"text"`` (the shared text tokenizer, ``tokenizers/text/tokenizer.json``),
    #: ``"own"`` (its own tokenizer, ``tokenizers/<name>/config.json``) or ``None`` (no tokenizer)
    tokenizer: str | None


def kind_rules(spec: Any) -> KindRules:
    """The trainer's rules for ``spec``, from its kind adapter (:mod:`fourm_core.kinds`): token kinds train
    from stored tokens, the others from raw data; sequences share the text tokenizer."""
    from fourm_core.kinds import ADAPTERS

    kind = ADAPTERS.get(spec.kind)
    if kind is None:
        return KindRules(stored=None, tokenizer=None)
    tokenizer = ("text" if kind.autoregressive else "own") if kind.discrete else None
    return KindRules(stored="tokens" if kind.discrete else "raw", tokenizer=tokenizer)


def discover_modalities(datasets: Sequence[str], requested: Sequence[str] | None) -> Any:
    """The modalities to train: the requested ones, or every installed one with tokens (or, for ``pixels``,
    raw images) in at least one dataset. Unknown names raise listing the installed ones."""
    from fourm_core.data import Store
    from fourm_registry import get_modalities

    installed = get_modalities()
    if requested is not None:
        try:
            return installed.subset(requested)
        except KeyError as exc:
            raise TrainConfigError(f"train config: modalities: {exc}") from None
    found = []
    for spec in installed.specs:
        stored = kind_rules(spec).stored
        key = spec.name if stored == "tokens" else (spec.source or spec.name)
        for url in datasets:
            store = Store.open(url, "r")
            if stored is not None and store.has(key, stored):
                found.append(spec.name)
                break
    if not found:
        raise TrainConfigError(
            f"no installed modality has tokens in the datasets {list(datasets)}; tokenize them first "
            f"(`fourm tokenize STORE --modalities ...`) or install the plugins (installed: {', '.join(installed.names)})")
    return installed.subset(found)


def vocab_sizes(cfg: TrainConfig, modalities: Any) -> tuple[dict[str, int], Any]:
    """Vocabulary sizes (sequences: the text tokenizer's) and the masker's TextVocabInfo."""
    from fourm_core.masking import TextVocabInfo

    sizes = dict(cfg.vocab_sizes)
    text = TextVocabInfo()
    if cfg.tokenizers:
        root = Path(cfg.tokenizers)
        if not root.is_dir():
            raise TrainConfigError(f"tokenizers: directory {root} does not exist (the directory given to "
                                   f"`fourm train-tokenizer --out` / `fourm tokenize --tokenizers`)")
        path = root / "text" / "tokenizer.json"
        needs = [(s, kind_rules(s).tokenizer) for s in modalities.specs]
        text_users = [s.name for s, t in needs if t == "text"]
        if text_users and not path.exists():
            raise TrainConfigError(f"tokenizers: {path} is missing but the sequence modalities {', '.join(text_users)} "
                                   f"need the text vocabulary; run `fourm train-tokenizer --modality text --data STORE "
                                   f"--out {root}`")
        missing = [s.name for s, t in needs if t == "own" and not (root / s.name / "config.json").exists()]
        if missing:
            log.warning("tokenizers: %s has no tokenizer for %s; the final model will not decode them "
                        "(train them with `fourm train-tokenizer --modality NAME --out %s`)", root, ", ".join(missing), root)
        if path.exists() and text_users:
            from fourm_core.tokenizers.text import TextTokenizer

            tok = TextTokenizer.load(path)
            text = TextVocabInfo.from_tokenizer(tok.backend, name=str(path))
            for name in text_users:
                sizes.setdefault(name, tok.vocab_size)
    return sizes, text


# ----------------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------------


def build_or_load_model(cfg: TrainConfig, modalities: Any, vocab_sizes: dict[str, int]) -> Any:
    """A fresh model, or a pretrained one extended with the modalities it does not know (new tables, the
    existing weights kept)."""
    from fourm_core.model import FourM, ModelConfig, build_model

    if cfg.init_from is None:
        return build_model(modalities, dict(cfg.model), vocab_sizes=vocab_sizes)
    if cfg.init_format == "ml4m":
        from fourm_core.compat.ml4m import load_ml4m_checkpoint

        base = load_ml4m_checkpoint(cfg.init_from, cfg.init_ml4m_config)
    else:
        base = FourM.from_pretrained(cfg.init_from)
    known = set(base.modalities.names)
    new = [n for n in modalities.names if n not in known]
    if not new:
        return base
    specs = list(base.modalities.specs) + [modalities[n] for n in new]
    from fourm_registry import ModalitySet

    sizes = {**dict(base.vocab_sizes), **{k: v for k, v in vocab_sizes.items() if k in new}}
    model = FourM(ModalitySet(specs), ModelConfig.coerce(base.config), vocab_sizes=sizes)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected:
        raise TrainConfigError(f"internal: pretrained keys {unexpected[:5]} do not fit the extended model")
    log.info("fine-tuning %s: added modalities %s (%d new tensors)", cfg.init_from, new, len(missing))
    return model


def enable_activation_checkpointing(model: torch.nn.Module) -> int:
    """Recompute every encoder/decoder block in the backward pass (trades compute for memory)."""
    from torch.utils.checkpoint import checkpoint

    n = 0
    for blocks in (getattr(model, "encoder", None), getattr(model, "decoder", None)):
        for blk in blocks or ():
            inner = blk.forward

            def fwd(*args: Any, _inner=inner, **kwargs: Any) -> Any:
                if torch.is_grad_enabled():
                    return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
                return _inner(*args, **kwargs)

            blk.forward = fwd
            n += 1
    return n


# ----------------------------------------------------------------------------------------------------------
# optimizer and learning-rate schedule
# ----------------------------------------------------------------------------------------------------------


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay / no decay (norms, biases, embeddings, positions) × trunk / embeddings."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in seen:  # tied parameters appear once
            continue
        seen.add(id(p))
        no_decay = p.ndim < 2 or any(k in name for k in NO_DECAY_KEYS) or name.endswith(".bias")
        trunk = not name.startswith(EMBEDDING_PREFIXES)
        groups.setdefault((no_decay, trunk), []).append(p)
    return [{"params": ps, "weight_decay": 0.0 if nd else weight_decay, "trunk": trunk}
            for (nd, trunk), ps in sorted(groups.items())]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, *, cpu: bool) -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups`, the fused kernel on every device (one pass over each parameter and its
    state; on the CPU the ``foreach`` kernels make several). A CPU model is also switched to the CPU training
    path of :func:`fourm_core.accel.prepare_training` (fused loss, allocator setting; the same maths)."""
    groups = param_groups(model, cfg.optimizer.weight_decay)
    if cpu:
        from fourm_core.accel import prepare_training

        prepare_training(model)
    return torch.optim.AdamW(groups, lr=cfg.optimizer.lr, betas=cfg.optimizer.betas, eps=cfg.optimizer.eps,
                             fused=True)


# the learning-rate and weight-decay schedules live in .schedules (lr_at is re-exported here for callers)
from .schedules import lr_at  # noqa: E402,F401


# ----------------------------------------------------------------------------------------------------------
# Accelerate and data
# ----------------------------------------------------------------------------------------------------------


def make_accelerator(cfg: TrainConfig) -> tuple[Any, bool, str]:
    """The Accelerator of a run, whether it runs on the CPU, and the resolved mixed precision (``auto``: bf16
    on a GPU that supports it, else fp16; ``no`` on the CPU). Seeds every RNG with ``cfg.seed``."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed

    out = Path(cfg.out_dir)
    cpu = cfg.cpu or not torch.cuda.is_available()
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "no" if cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    # a batch need not touch every modality's tables (no targets of it), so DDP must allow unused parameters
    acc = Accelerator(cpu=cpu, mixed_precision=mp, log_with=cfg.tracker,
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
                      project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")))
    set_seed(cfg.seed)
    return acc, cpu, mp


def _mixture(cfg: TrainConfig, entries: Sequence[Any], modalities: Any, *, crop: str, weighted: bool) -> Any:
    """A dataset over ``entries`` (a store each); samples carry their store number when an entry has its own
    modalities or masking, and each store loads only its entry's modalities."""
    from fourm_core.data import FourMDataset

    own = any(e.has_own_masking for e in entries)
    weights = [e.weight for e in entries]
    lenient = bool((cfg.masking or {}).get("allow_unknown_modalities", False))
    return FourMDataset([e.path for e in entries], weights=weights if weighted and len(weights) > 1 else None,
                        modalities=modalities, crop=crop, seed=cfg.seed, with_source=own,
                        store_modalities=[_loaded(e, modalities, lenient) for e in entries] if own else None)


def _loaded(entry: Any, modalities: Any, lenient: bool) -> list[str] | None:
    """The modalities an entry's samples load: its inputs and targets when both are given (``None``: all).
    Names of modalities the run does not train raise, or are dropped under ``allow_unknown_modalities``."""
    names = entry.modalities
    if names is None:
        return None
    unknown = [n for n in names if n not in modalities]
    if unknown and lenient:
        return [n for n in names if n in modalities]
    if unknown:
        raise TrainConfigError(f"train config: dataset {entry.path!r}: modalities {unknown} are not trained (the "
                               f"run trains {', '.join(modalities.names)}); fix inputs/targets or `modalities:`")
    return list(names)


def make_masker(cfg: TrainConfig, entries: Sequence[Any], modalities: Any, text: Any) -> Any:
    """The masker of a mixture: each sample is masked with its dataset's config (the global ``masking`` with
    the entry's overrides; equal configs share one masker)."""
    from fourm_core.masking import DatasetMasker, MaskingConfig, MaskingError

    configs = []
    for e in entries:
        try:
            configs.append(MaskingConfig.from_dict(e.masking_dict(cfg.masking) if e.has_own_masking else cfg.masking))
        except MaskingError as exc:
            raise TrainConfigError(f"train config: dataset {e.path!r}: {exc}") from None
    try:
        return DatasetMasker(modalities, configs, text=text)
    except MaskingError as exc:
        where = "" if len(entries) == 1 else " (one of the datasets' masking)"
        raise TrainConfigError(f"train config: masking{where}: {exc}") from None


def train_data(cfg: TrainConfig, modalities: Any, *, world: int, rank: int) -> tuple[Any, Any]:
    """The training dataset (weighted mixture of ``cfg.datasets``, one store drawn per sample, random crops)
    and this rank's sampler."""
    from fourm_core.data import FourMSampler

    dataset = _mixture(cfg, cfg.datasets, modalities, crop="random", weighted=True)
    return dataset, FourMSampler(dataset, seed=cfg.seed, num_replicas=world, rank=rank)


def val_data(cfg: TrainConfig, modalities: Any, *, world: int, rank: int) -> tuple[Any, Any]:
    """The validation dataset (``cfg.val_datasets``, centre crops) and this rank's unshuffled sampler."""
    from fourm_core.data import FourMSampler

    dataset = _mixture(cfg, cfg.val_datasets, modalities, crop="center", weighted=False)
    return dataset, FourMSampler(dataset, shuffle=False, seed=cfg.seed, num_replicas=world, rank=rank)


def make_loader(dataset: Any, sampler: Any, batch_size: int, num_workers: int) -> Any:
    """A DataLoader of ``dataset`` in ``sampler``'s order, collated per modality."""
    from fourm_core.data import FourMCollate

    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                       collate_fn=FourMCollate(None, dataset.modalities),
                                       persistent_workers=False)
