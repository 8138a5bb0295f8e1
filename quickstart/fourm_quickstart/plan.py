"""Which labelers can run here, offline: weight-free ones always, model-based ones when their default weights
are in a local directory or the local Hugging Face cache (never downloads)."""

from __future__ import annotations

import os

from fourm_registry import ModalitySet


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
