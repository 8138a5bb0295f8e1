"""Loading pretrained weights for labelers, with errors that tell the user what to do offline."""

from __future__ import annotations

import logging
import os
from typing import Callable, TypeVar

from fourm_registry.errors import ComponentError

log = logging.getLogger(__name__)
T = TypeVar("T")


class WeightsNotAvailableError(ComponentError):
    """Pretrained weights could not be loaded (not cached locally, no network, or a bad path)."""


def weights_help(weights: str, modality: str) -> str:
    return (
        f"weights {weights!r} for modality {modality!r} are not available locally. "
        f"On a machine with network access run `huggingface-cli download {weights}` (or copy the model "
        f"directory here), then pass the local directory: `fourm label STORE --modalities {modality} "
        f"--weights {modality}=/path/to/{weights.split('/')[-1]}` (Python: `weights='/path/...'`)."
    )


def load_pretrained(loader: Callable[..., T], weights: str, *, modality: str, **kwargs) -> T:
    """Call ``loader(weights, **kwargs)`` (e.g. ``AutoModel.from_pretrained``) and turn the errors a missing
    download gives (``OSError``, hub connection errors) into :class:`WeightsNotAvailableError` naming the
    weights, the modality, how to download them and how to point at a local copy.

    A local directory that does not exist is reported as such rather than looked up on the hub.
    """
    looks_local = weights.startswith((".", "/", "~")) or os.sep in weights.strip("/").split("/", 1)[-1]
    if looks_local and not os.path.exists(os.path.expanduser(weights)):
        raise WeightsNotAvailableError(
            f"weights directory {weights!r} for modality {modality!r} does not exist; pass an existing "
            f"directory saved with save_pretrained(), or a hub id such as the plugin's default"
        )
    try:
        return loader(os.path.expanduser(weights) if looks_local else weights, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        text = str(exc)
        offline_like = isinstance(exc, OSError) or "offline" in text.lower() or "connect" in text.lower()
        if not offline_like:
            raise
        raise WeightsNotAvailableError(f"{weights_help(weights, modality)} (cause: {type(exc).__name__}: {text[:300]})") from exc


def resolve_device(device: str | None) -> str:
    """``"auto"``/None → ``cuda`` when available, else ``cpu``; anything else unchanged."""
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
