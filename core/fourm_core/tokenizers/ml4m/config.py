"""The ``config.json`` of a released tokenizer: which keys are accepted, their defaults, and which class it is.

The released files are flat JSON objects: the constructor arguments of the tokenizer plus the defaults of its
class. Three groups of keys are accepted:

* **used** (:data:`BASE_KEYS` + :data:`VQVAE_KEYS` / :data:`DIVAE_KEYS`): they shape the model; missing ones
  take the defaults below (those of the released classes);
* **training-only** (:data:`TRAINING_KEYS`): EMA / codebook-replacement / dropout / guidance settings and
  checkpoint-loading switches; accepted and ignored (they do not change inference);
* **ignored** (:data:`IGNORED_KEYS`): keys the released classes absorb without using, e.g. ``domain`` of
  training-argument dumps. Extend the tuple to accept more.

Any other key is an error naming the key and the file. A config is a DiVAE when its ``dec_type`` is a diffusion
decoder (``unet_*`` / ``uvit_*``) or, without ``dec_type``, when it has any diffusion key; else a VQ-VAE
(ViT or MLP decoder).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fourm_registry.strict import check_keys

from ..base import TokenizerError
from .archs import DIFFUSION_PREFIXES

#: encoder / quantizer keys shared by every tokenizer, with their defaults
BASE_KEYS: dict[str, Any] = {
    "image_size": 224, "image_size_enc": None, "n_channels": 3, "n_labels": None, "enc_type": "vit_b_enc",
    "patch_proj": True, "post_mlp": False, "patch_size": 16, "quant_type": "lucid", "codebook_size": 16384,
    "num_codebooks": 1, "latent_dim": 32, "norm_codes": True, "undo_std": False,
}
#: the VQ-VAE decoder's keys
VQVAE_KEYS: dict[str, Any] = {"dec_type": "vit_b_dec", "out_conv": False, "image_size_dec": None,
                              "patch_size_dec": None}
#: the DiVAE decoder's and diffusion sampler's keys
DIVAE_KEYS: dict[str, Any] = {
    "dec_type": "unet_patched", "num_train_timesteps": 1000, "scheduler": "ddpm",
    "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction", "clip_sample": False,
    "thresholding": True, "conditioning": "concat", "zero_terminal_snr": True, "image_size_dec": None,
}
#: accepted, no effect at inference
TRAINING_KEYS: tuple[str, ...] = (
    "norm_latents", "sync_codebook", "ema_decay", "threshold_ema_dead_code", "code_replacement_policy",
    "commitment_weight", "kmeans_init", "ckpt_path", "ignore_keys", "freeze_enc",
    "cls_free_guidance_dropout", "masked_cfg", "masked_cfg_low", "masked_cfg_high", "dec_transformer_dropout",
)
#: absorbed and unused by the released classes
IGNORED_KEYS: tuple[str, ...] = ("domain",)
#: keys only a DiVAE config has (they make a config without dec_type a DiVAE)
DIFFUSION_KEYS = tuple(k for k in DIVAE_KEYS if k not in VQVAE_KEYS)
#: VQ-VAE decoder keys a DiVAE absorbs without using
_DIVAE_ABSORBED = ("out_conv", "patch_size_dec")

QUANT_TYPES = ("lucid", "memcodes")


def model_type(config: Mapping[str, Any]) -> str:
    """``"DiVAE"`` or ``"VQVAE"`` for a released config (see the module docstring)."""
    dec = config.get("dec_type")
    if isinstance(dec, str):
        return "DiVAE" if dec.startswith(DIFFUSION_PREFIXES) else "VQVAE"
    return "DiVAE" if any(k in config for k in DIFFUSION_KEYS) else "VQVAE"


def _int(cfg: dict, key: str, where: str, *, allow_none: bool = False, pair: bool = False) -> None:
    v = cfg[key]
    if v is None and allow_none:
        return
    ok = isinstance(v, int) and not isinstance(v, bool) and v > 0
    if pair and isinstance(v, (list, tuple)):
        ok = len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
    if not ok:
        raise TokenizerError(f"{where}: {key} must be a positive integer{' or [h, w]' if pair else ''}"
                             f"{' or null' if allow_none else ''}, got {v!r}")


def resolve_config(config: Mapping[str, Any], kind: str | None = None, *, where: str = "tokenizer config"
                   ) -> dict[str, Any]:
    """Validate a released config and return it with every used key filled in (training / ignored keys kept).

    ``kind`` (``"VQVAE"`` / ``"DiVAE"``, default: :func:`model_type`) selects the decoder keys.
    """
    if not isinstance(config, Mapping):
        raise TokenizerError(f"{where}: a tokenizer config must be a JSON object, got {type(config).__name__}")
    kind = kind or model_type(config)
    if kind not in ("VQVAE", "DiVAE"):
        raise TokenizerError(f"{where}: unknown tokenizer class {kind!r}; choose VQVAE or DiVAE")
    own = VQVAE_KEYS if kind == "VQVAE" else DIVAE_KEYS
    extra = _DIVAE_ABSORBED if kind == "DiVAE" else ()
    valid = [*BASE_KEYS, *own, *TRAINING_KEYS, *IGNORED_KEYS, *extra]
    if kind == "VQVAE":
        stray = sorted(k for k in config if k in DIFFUSION_KEYS)
        if stray:
            raise TokenizerError(f"{where}: {', '.join(map(repr, stray))} are diffusion (DiVAE) settings, but "
                                 f"dec_type {config.get('dec_type')!r} is not a diffusion decoder (unet_* / uvit_*)")
    check_keys(config, valid, f"{where} ({kind})", error=TokenizerError)
    cfg = {**BASE_KEYS, **own, **dict(config)}
    for key in ("n_channels", "patch_size", "codebook_size", "num_codebooks", "latent_dim"):
        _int(cfg, key, where, pair=key == "patch_size")
    _int(cfg, "image_size", where, pair=True)
    _int(cfg, "image_size_enc", where, allow_none=True, pair=True)
    _int(cfg, "image_size_dec", where, allow_none=True, pair=True)
    _int(cfg, "n_labels", where, allow_none=True)
    if kind == "VQVAE":
        _int(cfg, "patch_size_dec", where, allow_none=True, pair=True)
    if cfg["quant_type"] not in QUANT_TYPES:
        raise TokenizerError(f"{where}: quant_type {cfg['quant_type']!r} is not supported; choose one of "
                             f"{', '.join(QUANT_TYPES)}")
    if cfg["quant_type"] == "lucid" and cfg["num_codebooks"] != 1:
        raise TokenizerError(f"{where}: num_codebooks {cfg['num_codebooks']} with quant_type 'lucid' is not supported "
                             f"(the released lucid tokenizers use one codebook; multi-head codebooks are 'memcodes')")
    if cfg["quant_type"] == "memcodes" and cfg["latent_dim"] % cfg["num_codebooks"]:
        raise TokenizerError(f"{where}: latent_dim {cfg['latent_dim']} is not divisible by num_codebooks "
                             f"{cfg['num_codebooks']} (memcodes splits the latent into heads)")
    if cfg["undo_std"] and (cfg["n_labels"] is not None or cfg["n_channels"] != 3):
        raise TokenizerError(f"{where}: undo_std un-standardises RGB images (ImageNet mean / std); it needs "
                             f"n_channels 3 and no n_labels, got n_channels {cfg['n_channels']}, "
                             f"n_labels {cfg['n_labels']}")
    return cfg
