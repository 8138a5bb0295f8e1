"""Diffusion decoders of the released 4M DiVAE tokenizers: architecture table, schedulers, sampling loop.

A DiVAE ``config.json`` names its decoder (``dec_type``) and its noise schedule. :func:`build_diffusion_decoder`
turns the config into the network (:mod:`.unet` / :mod:`.uvit`), whose state-dict keys are the released
``decoder.*`` keys without the ``decoder.`` prefix. :func:`build_scheduler` configures a ``diffusers`` DDPM / DDIM
scheduler from the same config, and :func:`diffusion_decode` runs the sampling loop the released tokenizers use:
start noise ``randn((B, C, H, W), generator)``, then per timestep ``model_output = decoder(x_t, t, quant)`` and
``x_{t-1} = scheduler.step(model_output, t, x_t)``.

Timesteps (T = ``num_train_timesteps``, n = ``steps``, stride ``s = T // n``, an integer):

* DDPM: ``s·(n-1), ..., s, 0`` ("leading"; 3 steps of 1000 → 666, 333, 0); each step's predecessor is ``t - s``.
* DDIM ``trailing`` (the default): ``T-1, T-1-s, ...`` down to the last value ≥ 0 (this gives n + 1 steps when n
  does not divide T: 3 steps → 999, 666, 333, 0); ``leading`` as DDPM; ``linspace``: ``round(linspace(T, 1, n)) - 1``.
  The integer stride is what the released tokenizers were sampled with; diffusers' own "trailing" uses a
  fractional stride, so the grid is computed here and handed to the scheduler.

Architectures are looked up by name in a table that :func:`register_diffusion_arch` extends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import torch
from torch import nn

from fourm_core.tokenizers.base import TokenizerError
from fourm_core.tokenizers.ml4m.unet import PatchedUNetCondCat
from fourm_core.tokenizers.ml4m.uvit import UViT

#: the DiVAE constructor defaults of every key read here
CONFIG_DEFAULTS: dict[str, Any] = {
    "dec_type": "unet_patched", "n_channels": 3, "latent_dim": 32, "image_size": 224, "image_size_dec": None,
    "conditioning": "concat", "dec_transformer_dropout": 0.2, "scheduler": "ddpm", "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction", "clip_sample": False,
    "thresholding": True, "zero_terminal_snr": True,
}
SCHEDULERS = ("ddpm", "ddim")
CONDITIONINGS = ("concat", "xattn")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "shifted_cosine:<shift>")
DDIM_SPACINGS = ("trailing", "leading", "linspace")
FAMILIES = ("unet", "uvit")


@attrs.frozen
class DiffusionArch:
    """A named decoder preset: ``family`` (``unet`` = :class:`PatchedUNetCondCat`, ``uvit`` = :class:`UViT`)
    and either fixed hyper-parameters ``kwargs`` or a ``builder`` called with the config-derived arguments."""

    family: str
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    builder: Callable[..., nn.Module] | None = None


_ARCHS: dict[str, DiffusionArch] = {}


def register_diffusion_arch(name: str, spec: Mapping[str, Any] | Callable[..., nn.Module], *,
                            family: str | None = None, replace: bool = False) -> None:
    """Make ``dec_type = name`` buildable.

    ``spec``: the hyper-parameters of the family's class (a mapping), or a callable that receives the
    config-derived keyword arguments (UNet: ``in_channels, out_channels, cond_channels, image_size``; UViT:
    ``sample_size, in_channels, out_channels, cond_dim, cond_type, mid_drop_rate``) and returns the module.
    ``family`` defaults to the name's prefix (``unet_...`` / ``uvit_...``).
    """
    if family is None:
        family = next((f for f in FAMILIES if name.startswith(f + "_")), None)
        if family is None:
            raise TokenizerError(f"diffusion architecture {name!r}: cannot tell its family from the name; pass "
                                 f"family= one of {', '.join(FAMILIES)}")
    if family not in FAMILIES:
        raise TokenizerError(f"diffusion architecture {name!r}: unknown family {family!r}; "
                             f"known: {', '.join(FAMILIES)}")
    if name in _ARCHS and not replace:
        raise TokenizerError(f"diffusion architecture {name!r} is already registered (pass replace=True)")
    _ARCHS[name] = (DiffusionArch(family, builder=spec) if callable(spec)
                    else DiffusionArch(family, kwargs=dict(spec)))


def unregister_diffusion_arch(name: str) -> None:
    """Remove a registered name (tests that register temporary presets clean up with it)."""
    _ARCHS.pop(name, None)


def diffusion_arch_names() -> list[str]:
    return sorted(_ARCHS)


def is_diffusion_arch(name: str) -> bool:
    return name in _ARCHS


_UVIT_F16 = {"patch_size": 4, "block_out_channels": (128, 256), "layers_per_block": 2,
             "downsample_before_mid": True, "mid_mlp_ratio": 4, "mid_qkv_bias": True}
_B, _L, _H = ({"mid_layers": 12, "mid_num_heads": 12, "mid_dim": 768},
              {"mid_layers": 24, "mid_num_heads": 16, "mid_dim": 1024},
              {"mid_layers": 32, "mid_num_heads": 16, "mid_dim": 1280})
for _name, _kw in {
    "uvit_b_p4_f16": {**_UVIT_F16, **_B},
    "uvit_l_p4_f16": {**_UVIT_F16, **_L},
    "uvit_h_p4_f16": {**_UVIT_F16, **_H},
    "uvit_b_p4_f16_longskip": {**_UVIT_F16, **_B, "mid_layers": 13, "mid_use_long_skip": True},
    "uvit_l_p4_f16_longskip": {**_UVIT_F16, **_L, "mid_layers": 25, "mid_use_long_skip": True},
    "uvit_b_p4_f8": {**_UVIT_F16, **_B, "downsample_before_mid": False},
    "uvit_l_p4_f8": {**_UVIT_F16, **_L, "downsample_before_mid": False},
    "uvit_b_p4_f16_extraconv": {**_UVIT_F16, **_B, "block_out_channels": (128, 256, 512),
                                "downsample_before_mid": False},
    "uvit_l_p4_f16_extraconv": {**_UVIT_F16, **_L, "block_out_channels": (128, 256, 512),
                                "downsample_before_mid": False},
}.items():
    register_diffusion_arch(_name, _kw)
register_diffusion_arch("unet_patched", {"patch_size": 4, "model_channels": 256, "num_res_blocks": 3,
                                         "attention_resolutions": (4, 8), "channel_mult": (1, 2, 2, 2),
                                         "num_heads": 1})


def _cfg(config: Mapping[str, Any], key: str) -> Any:
    value = config.get(key)
    return CONFIG_DEFAULTS[key] if value is None and key != "image_size_dec" else value


def _choice(config: Mapping[str, Any], key: str, allowed: Sequence[str]) -> str:
    value = _cfg(config, key)
    if value not in allowed:
        raise TokenizerError(f"DiVAE config {key}={value!r} is not supported; use one of {', '.join(allowed)}")
    return value


def build_diffusion_decoder(config: Mapping[str, Any]) -> nn.Module:
    """The diffusion decoder of a DiVAE config (``dec_type``, ``n_channels``, ``latent_dim``, ``image_size`` /
    ``image_size_dec``, ``conditioning``, ``dec_transformer_dropout``; other keys are ignored). UNet decoders
    always condition by concatenation (``conditioning`` only selects the UViT bottleneck's mode)."""
    name = _cfg(config, "dec_type")
    conditioning = _choice(config, "conditioning", CONDITIONINGS)
    if name not in _ARCHS:
        raise TokenizerError(f"DiVAE config dec_type={name!r}: unknown diffusion decoder; known: "
                             f"{', '.join(diffusion_arch_names())} (register_diffusion_arch adds more)")
    arch = _ARCHS[name]
    channels, latent = int(_cfg(config, "n_channels")), int(_cfg(config, "latent_dim"))
    size = config.get("image_size_dec") or _cfg(config, "image_size")
    if arch.family == "unet":
        args = {"in_channels": channels, "out_channels": channels, "cond_channels": latent, "image_size": size}
        cls: Callable[..., nn.Module] = PatchedUNetCondCat
    else:
        args = {"sample_size": size, "in_channels": channels, "out_channels": channels, "cond_dim": latent,
                "cond_type": conditioning, "mid_drop_rate": float(_cfg(config, "dec_transformer_dropout"))}
        cls = UViT
    try:
        return arch.builder(**args) if arch.builder is not None else cls(**arch.kwargs, **args)
    except TypeError as e:
        raise TokenizerError(f"diffusion architecture {name!r} ({arch.family}): bad hyper-parameters: {e}") from e


def shifted_cosine_alphas_cumprod(num_train_timesteps: int, shift: float) -> torch.Tensor:
    """Cosine schedule shifted by ``log(shift)`` in log-SNR: ``logSNR(t) = -2·(log tan(πt/2) + log shift)`` on
    ``t = linspace(0, 1, T)`` (float64), clamped to ±15, ``alphas_cumprod = sigmoid(logSNR)``, last value 0."""
    t = torch.linspace(0, 1, num_train_timesteps, dtype=torch.float64)
    log_snr = (-2 * (torch.tan(torch.pi * t / 2).log() + math.log(shift))).clamp(-15, 15).float()
    ac = log_snr.sigmoid()
    ac[-1] = 0.0
    return ac


def build_scheduler(config: Mapping[str, Any], kind: str | None = None):
    """A ``diffusers`` ``DDPMScheduler`` / ``DDIMScheduler`` configured from a DiVAE config (``kind`` overrides
    the config's ``scheduler``): ``num_train_timesteps``, ``beta_schedule`` (betas linear in [1e-4, 0.02],
    scaled_linear, squaredcos_cap_v2 capped at 0.999, or ``shifted_cosine:<shift>``), ``prediction_type``,
    ``zero_terminal_snr`` (betas rescaled so that ``alphas_cumprod[-1] = 0``), ``thresholding`` (dynamic
    thresholding of the predicted x0 at the 0.995 quantile, max 1: i.e. a clip to [-1, 1]), ``clip_sample``;
    fixed-small DDPM variance; DDIM with ``alphas_cumprod`` 1 before t = 0."""
    try:
        from diffusers import DDIMScheduler, DDPMScheduler
    except ImportError as e:  # a core dependency; a broken environment gets the fix spelled out
        raise TokenizerError("DiVAE diffusion decoding needs the diffusers package: pip install 'diffusers>=0.25'") \
            from e

    kind = kind if kind is not None else _cfg(config, "scheduler")
    if kind not in SCHEDULERS:
        raise TokenizerError(f"diffusion scheduler {kind!r} is not supported; use one of {', '.join(SCHEDULERS)}")
    num_train = _cfg(config, "num_train_timesteps")
    if not isinstance(num_train, int) or isinstance(num_train, bool) or num_train < 1:
        raise TokenizerError(f"DiVAE config num_train_timesteps={num_train!r} must be a positive integer")
    schedule = _cfg(config, "beta_schedule")
    shift = None
    if isinstance(schedule, str) and schedule.startswith("shifted_cosine:"):
        try:
            shift = float(schedule.split(":", 1)[1])
        except ValueError:
            shift = -1.0
        if not shift > 0:
            raise TokenizerError(f"DiVAE config beta_schedule={schedule!r}: the shift must be a positive number")
    elif schedule not in BETA_SCHEDULES[:3]:
        raise TokenizerError(f"DiVAE config beta_schedule={schedule!r} is not supported; use one of "
                             f"{', '.join(BETA_SCHEDULES)}")
    cls = DDPMScheduler if kind == "ddpm" else DDIMScheduler
    sched = cls(num_train_timesteps=num_train, beta_schedule="linear" if shift else schedule,
                prediction_type=_choice(config, "prediction_type", PREDICTION_TYPES),
                thresholding=bool(_cfg(config, "thresholding")), clip_sample=bool(_cfg(config, "clip_sample")),
                rescale_betas_zero_snr=bool(_cfg(config, "zero_terminal_snr")) and not shift)
    if shift:  # the schedule is defined by its alphas_cumprod (zero terminal SNR by construction)
        sched.alphas_cumprod = shifted_cosine_alphas_cumprod(num_train, shift)
    return sched


def sampling_timesteps(kind: str, steps: int, num_train_timesteps: int,
                       timestep_spacing: str | None = None) -> np.ndarray:
    """The timesteps (int64, descending) the released tokenizers sample with (module docstring)."""
    if kind not in SCHEDULERS:
        raise TokenizerError(f"diffusion scheduler {kind!r} is not supported; use one of {', '.join(SCHEDULERS)}")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= num_train_timesteps:
        raise TokenizerError(f"diffusion steps={steps!r} must be an integer in [1, {num_train_timesteps}]")
    stride = num_train_timesteps // steps
    if kind == "ddpm":
        if timestep_spacing not in (None, "leading"):
            raise TokenizerError(f"timestep_spacing={timestep_spacing!r}: DDPM sampling uses the 'leading' grid "
                                 f"(multiples of T // steps); the spacing modes {', '.join(DDIM_SPACINGS)} are "
                                 f"for scheduler='ddim'")
        spacing = "leading"
    else:
        spacing = timestep_spacing or "trailing"
        if spacing not in DDIM_SPACINGS:
            raise TokenizerError(f"timestep_spacing={spacing!r} is not supported; use one of "
                                 f"{', '.join(DDIM_SPACINGS)}")
    if spacing == "leading":
        return (np.arange(steps) * stride)[::-1].astype(np.int64)
    if spacing == "trailing":
        return np.arange(num_train_timesteps, 0, -stride).astype(np.int64) - 1
    return np.linspace(num_train_timesteps, 1, steps).round().astype(np.int64) - 1


NoiseSpec = torch.Tensor | Sequence[torch.Tensor] | Callable[[int, tuple[int, ...]], torch.Tensor] | None
Trace = Callable[[int, int, torch.Tensor, torch.Tensor], None]


def _noise_source(noise: NoiseSpec, needed: int):
    """``draw(index, shape)``: draw 0 is the start noise, draw i ≥ 1 the variance noise of the i-th DDPM step
    with t > 0. A tensor fixes draw 0 only; a sequence must hold exactly ``needed`` tensors; a callable is
    asked for every draw (it may return None). Draws not given come from the generator."""
    if isinstance(noise, Sequence) and not isinstance(noise, torch.Tensor):
        if len(noise) != needed:
            raise TokenizerError(f"diffusion_decode: noise holds {len(noise)} tensors; this sampling draws "
                                 f"{needed} (the start noise, then one per DDPM step with t > 0)")
        return lambda i, shape: noise[i]
    if callable(noise):
        return noise
    if isinstance(noise, torch.Tensor):
        return lambda i, shape: noise if i == 0 else None
    if noise is not None:
        raise TokenizerError(f"diffusion_decode: noise must be a tensor, a sequence of tensors or a callable; "
                             f"got {type(noise).__name__}")
    return lambda i, shape: None


def _checked(x: torch.Tensor | None, i: int, shape: tuple[int, ...]) -> torch.Tensor | None:
    if x is not None and tuple(x.shape) != shape:
        raise TokenizerError(f"diffusion_decode: noise draw {i} has shape {tuple(x.shape)}; expected {shape}")
    return x


def _ddpm_step_with_noise(sched, model_output: torch.Tensor, t: torch.Tensor, x: torch.Tensor,
                          z: torch.Tensor) -> torch.Tensor:
    """One DDPM step (t > 0) whose variance noise is the given ``z``: the posterior mean of
    ``q(x_{t-1} | x_t, x0)`` from the scheduler's (thresholded / clipped) x0 prediction, plus
    ``sqrt(fixed-small variance) · z``."""
    scratch = torch.Generator(device=x.device).manual_seed(0)  # the library's own draw is replaced by z
    x0 = sched.step(model_output, t, x, generator=scratch).pred_original_sample
    prev_t = sched.previous_timestep(t)
    a_t = sched.alphas_cumprod[t]
    a_prev = sched.alphas_cumprod[prev_t] if prev_t >= 0 else sched.one
    alpha_t = a_t / a_prev
    mean = (a_prev ** 0.5 * (1 - alpha_t)) / (1 - a_t) * x0 + alpha_t ** 0.5 * (1 - a_prev) / (1 - a_t) * x
    return mean + sched._get_variance(t) ** 0.5 * z.to(device=x.device, dtype=x.dtype)


@torch.no_grad()
def diffusion_decode(decoder: nn.Module, quant: torch.Tensor, config: Mapping[str, Any], *, steps: int | None = None,
                     scheduler: str | None = None, generator: torch.Generator | None = None,
                     noise: NoiseSpec = None, image_size: int | Sequence[int] | None = None,
                     timestep_spacing: str | None = None, cond_mask: torch.Tensor | None = None,
                     trace: Trace | None = None) -> torch.Tensor:
    """Sample ``(B, C, H, W)`` float32 images from the quantised latent ``quant (B, D, h, w)``.

    ``scheduler``: ``'ddpm'`` / ``'ddim'`` (``None``: the config's), built by :func:`build_scheduler`;
    ``steps`` (``None``: ``num_train_timesteps``, the released tokenizers' default; their demos decode with 25)
    / ``timestep_spacing``: the grid of :func:`sampling_timesteps`. ``image_size``: output size
    (``None``: the decoder's training size). ``generator``: the generator of the start noise
    ``randn((B, C, H, W))`` and of every DDPM variance draw, in that order (with the same seed this reproduces
    the released tokenizers' sampling). ``noise`` replaces draws for replay (see :func:`_noise_source`: a
    start-noise tensor, the list of all draws, or ``noise(index, shape)``). ``cond_mask (B, h, w)``: True
    masks condition vectors. ``trace(step_index, t, x_t, model_output)`` is called at every step.
    """
    kind = scheduler if scheduler is not None else _cfg(config, "scheduler")
    sched = build_scheduler(config, kind)
    steps = sched.config.num_train_timesteps if steps is None else steps
    grid = sampling_timesteps(kind, steps, sched.config.num_train_timesteps, timestep_spacing)
    sched.set_timesteps(steps)
    sched.timesteps = torch.from_numpy(grid.copy())
    if quant.dim() != 4:
        raise TokenizerError(f"diffusion_decode: quant must be (B, D, h, w); got shape {tuple(quant.shape)}")
    size = image_size if image_size is not None else decoder.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shape = (quant.shape[0], decoder.in_channels, h, w)
    needed = 1 + (int((grid > 0).sum()) if kind == "ddpm" else 0)
    draw = _noise_source(noise, needed)
    param = next(decoder.parameters())
    x = _checked(draw(0, shape), 0, shape)
    if x is None:
        x = torch.randn(shape, generator=generator, device=generator.device if generator is not None else "cpu")
    x = x.to(device=param.device, dtype=torch.float32)
    cond = quant.to(device=param.device, dtype=param.dtype)
    n_draw = 0
    for i, t in enumerate(sched.timesteps):
        out = decoder(x.to(param.dtype), t, cond, cond_mask=cond_mask).float()
        if trace is not None:
            trace(i, int(t), x, out)
        z = None
        if kind == "ddpm" and t > 0:
            n_draw += 1
            z = _checked(draw(n_draw, shape), n_draw, shape)
        if z is not None:
            x = _ddpm_step_with_noise(sched, out, t, x, z)
        else:
            x = sched.step(out, t, x, generator=generator).prev_sample
    return x
