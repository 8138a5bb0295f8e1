"""The released tokenizer classes: :class:`VQ` (encoder + quantizer), :class:`VQVAE` and :class:`DiVAE`.

They are built from a released ``config.json`` dict (:mod:`.config` lists the accepted keys) and carry the
released state-dict keys, so the released ``model.safetensors`` loads strictly. Shapes follow the released
API: ``encode(x)`` returns token ids (B, h, w) ((B, heads, h, w) for multi-head memcodes),
``tokens_to_embedding(ids)`` the quantised latent (B, latent_dim, h, w), ``decode_tokens(ids)`` the decoded
map. Inputs: images / feature maps (B, C, H, W) float; class maps (B, H, W) int64 when ``n_labels`` is set;
global vectors (B, C) or (B, C, 1, 1) for MLP encoders. For fourm's flat ``(B, num_tokens)`` protocol wrap a
model in :class:`fourm_core.tokenizers.ml4m.hub.ReleasedTokenizer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..base import TokenizerError
from .archs import Arch, build_mlp, lookup_arch
from .config import resolve_config
from .quantize import LucidQuantizer, Memcodes, Quantized
from .vit import ViTDecoder, ViTEncoder, _pair

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _diffusion_module():
    try:
        from . import diffusion
    except ImportError as exc:
        raise TokenizerError(f"diffusion decoder not available: fourm_core.tokenizers.ml4m.diffusion cannot be "
                             f"imported ({exc}); it is needed to build / sample a DiVAE decoder. Load the encoder "
                             f"half alone with from_pretrained(..., encoder_only=True)") from exc
    return diffusion


def _vit(arch: Arch, cls, **kw) -> nn.Module:
    p = arch.params
    return cls(dim_tokens=p["dim_tokens"], depth=p["depth"], num_heads=p["num_heads"], mlp_ratio=p["mlp_ratio"],
               qkv_bias=p["qkv_bias"], **kw)


class VQ(nn.Module):
    """Encoder + quantizer of a released tokenizer (what a DiVAE / VQ-VAE shares; also an encoder-only model)."""

    model_type = "VQ"

    def __init__(self, config: Mapping[str, Any], *, where: str = "tokenizer config"):
        super().__init__()
        # an encoder-only VQ accepts the keys of the class the config belongs to
        cfg = resolve_config(config, None if self.model_type == "VQ" else self.model_type, where=where)
        self.config: dict[str, Any] = cfg
        self.where = where
        self.n_labels = cfg["n_labels"]
        self.n_channels = cfg["n_channels"]
        self.latent_dim = cfg["latent_dim"]
        self.undo_std = bool(cfg["undo_std"])
        if self.n_labels is not None:
            self.cls_emb = nn.Embedding(self.n_labels, self.n_channels)
        self.enc_arch = lookup_arch(cfg["enc_type"], role="encoder", where=where)
        if self.enc_arch.kind == "mlp":
            self.encoder = build_mlp(self.enc_arch, dim_in=self.n_channels, dim_out=None)
            enc_dim = self.encoder.dim_out
            self.grid = (1, 1)
        else:
            res = _pair(cfg["image_size_enc"] or cfg["image_size"])
            patch = _pair(cfg["patch_size"])
            if res[0] % patch[0] or res[1] % patch[1]:
                raise TokenizerError(f"{where}: image_size {res} is not divisible by patch_size {patch}")
            self.encoder = _vit(self.enc_arch, ViTEncoder, in_channels=self.n_channels, patch_size=patch,
                                resolution=res, patch_proj=bool(cfg["patch_proj"]), post_mlp=bool(cfg["post_mlp"]))
            enc_dim = self.encoder.dim_tokens
            self.grid = (res[0] // patch[0], res[1] // patch[1])
        self.enc_dim = enc_dim
        self.quant_proj = nn.Conv2d(enc_dim, self.latent_dim, 1)
        if cfg["quant_type"] == "lucid":
            self.quantize = LucidQuantizer(dim=self.latent_dim, codebook_size=cfg["codebook_size"],
                                           norm_codes=bool(cfg["norm_codes"]))
        else:
            self.quantize = Memcodes(dim=self.latent_dim, codebook_size=cfg["codebook_size"],
                                     heads=cfg["num_codebooks"])

    # -- hub format ------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs: Any) -> VQ:
        """Load a released tokenizer of this class (a directory or a hub id) in eval mode; ``VQ`` loads the
        encoder half of any of them. Keyword arguments as :func:`fourm_core.tokenizers.ml4m.from_pretrained`."""
        from .hub import from_pretrained

        model = from_pretrained(name_or_path, encoder_only=cls is VQ, **kwargs)
        if not isinstance(model, cls):
            raise TokenizerError(f"{name_or_path}: holds a {type(model).__name__}, not a {cls.__name__}; use "
                                 f"fourm_core.tokenizers.ml4m.from_pretrained to load either")
        return model

    def save_pretrained(self, directory) -> None:
        """Write the released format (``config.json`` + ``model.safetensors``) into ``directory``."""
        from .hub import save_pretrained

        save_pretrained(self, directory)

    # -- sizes -----------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return int(self.config["codebook_size"])

    @property
    def heads(self) -> int:
        return self.quantize.heads

    @property
    def token_shape(self) -> tuple[int, ...]:
        """Per-sample token shape at the config's resolution: (h, w), or (heads, h, w) with several heads."""
        return (self.heads, *self.grid) if self.heads > 1 else self.grid

    @property
    def num_tokens(self) -> int:
        return self.heads * self.grid[0] * self.grid[1]

    @property
    def device(self) -> torch.device:
        return self.quant_proj.weight.device

    # -- encoding --------------------------------------------------------------------------------------
    def _bad(self, problem: str, expected: str) -> TokenizerError:
        return TokenizerError(f"{type(self).__name__} tokenizer ({self.where}): {problem}; expected {expected}")

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate ``x`` and bring it to the encoder's (B, C, H, W) float input (class embedding, undo_std)."""
        if not isinstance(x, torch.Tensor):
            raise self._bad(f"got a {type(x).__name__}", "a torch.Tensor")
        x = x.to(self.device)
        if self.n_labels is not None:
            exp = f"(B, H, W) int64 class ids in [0, {self.n_labels})"
            if x.dim() == 4 and x.shape[1] == 1:
                x = x[:, 0]
            if x.dim() != 3 or x.is_floating_point():
                raise self._bad(f"got a {x.dtype} tensor of shape {tuple(x.shape)}", exp)
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.n_labels):
                raise self._bad(f"class ids out of range [{int(x.min())}, {int(x.max())}]", exp)
            return self.cls_emb(x.long()).permute(0, 3, 1, 2)
        if self.enc_arch.kind == "mlp" and x.dim() == 2:
            x = x[:, :, None, None]
        exp = f"(B, {self.n_channels}, H, W) float" + (" or (B, C) vectors" if self.enc_arch.kind == "mlp" else "")
        if x.dim() != 4 or x.shape[1] != self.n_channels or not x.is_floating_point():
            raise self._bad(f"got a {x.dtype} tensor of shape {tuple(x.shape)}", exp)
        x = x.float()
        if self.undo_std:
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, -1, 1, 1)
            x = 2.0 * (x * std + mean) - 1.0
        return x

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous latent before quantisation: (B, latent_dim, h, w)."""
        return self.quant_proj(self.encoder(self.prepare_input(x)))

    def quantize_latent(self, latent: torch.Tensor) -> Quantized:
        """Quantise a latent map: quantised map, tokens and top-2 margins."""
        return self.quantize(latent)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids (B, h, w), or (B, heads, h, w) for multi-head memcodes."""
        return self.quantize_latent(self.encode_latent(x)).tokens

    def _check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        exp = (f"int64 ids in [0, {self.vocab_size}) of shape "
               + ("(B, heads={}, h, w)".format(self.heads) if self.heads > 1 else "(B, h, w)"))
        if not isinstance(tokens, torch.Tensor) or tokens.is_floating_point() or tokens.dtype == torch.bool:
            raise self._bad(f"got tokens {getattr(tokens, 'dtype', type(tokens).__name__)}", exp)
        want_dim = 4 if self.heads > 1 else 3
        if tokens.dim() != want_dim or (self.heads > 1 and tokens.shape[1] != self.heads):
            raise self._bad(f"got tokens of shape {tuple(tokens.shape)}", exp)
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise self._bad(f"token ids out of range [{int(tokens.min())}, {int(tokens.max())}]", exp)
        return tokens.long().to(self.device)

    def tokens_to_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids → quantised latent (B, latent_dim, h, w) (the decoder's input)."""
        return self.quantize.indices_to_embedding(self._check_tokens(tokens))

    def extra_repr(self) -> str:
        c = self.config
        return f"enc_type={c['enc_type']!r}, dec_type={c.get('dec_type')!r}, vocab={self.vocab_size}, grid={self.grid}"


class VQVAE(VQ):
    """Released VQ-VAE: :class:`VQ` + ``post_quant_proj`` + a ViT or MLP decoder."""

    model_type = "VQVAE"

    def __init__(self, config: Mapping[str, Any], *, where: str = "tokenizer config"):
        super().__init__(config, where=where)
        cfg = self.config
        out_channels = self.n_labels if self.n_labels is not None else self.n_channels
        self.dec_arch = lookup_arch(cfg["dec_type"], role="decoder", where=where)
        if self.dec_arch.kind == "diffusion":
            raise TokenizerError(f"{where}: dec_type {cfg['dec_type']!r} is a diffusion decoder: load it as a DiVAE")
        if self.dec_arch.kind == "mlp":
            self.decoder = build_mlp(self.dec_arch, dim_in=None, dim_out=out_channels)
            dec_dim = self.decoder.dim_in
        else:
            res = _pair(cfg["image_size_dec"] or cfg["image_size"])
            patch = _pair(cfg["patch_size_dec"] or cfg["patch_size"])
            if res[0] % patch[0] or res[1] % patch[1]:
                raise TokenizerError(f"{where}: decoder image size {res} is not divisible by its patch size {patch}")
            self.decoder = _vit(self.dec_arch, ViTDecoder, out_channels=out_channels, patch_size=patch,
                                resolution=res, patch_proj=bool(cfg["patch_proj"]), post_mlp=bool(cfg["post_mlp"]),
                                out_conv=bool(cfg["out_conv"]))
            dec_dim = self.decoder.dim_tokens
        self.post_quant_proj = nn.Conv2d(self.latent_dim, dec_dim, 1)

    def decode_quant(self, quant: torch.Tensor) -> torch.Tensor:
        """Quantised latent (B, latent_dim, h, w) → decoded map (class logits for class maps)."""
        return self.decoder(self.post_quant_proj(quant))

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids → decoded map: (B, C, H, W), class logits (B, n_labels, H, W), or (B, C, 1, 1) vectors."""
        return self.decode_quant(self.tokens_to_embedding(tokens))


class DiVAE(VQ):
    """Released DiVAE: :class:`VQ` + a diffusion decoder (UNet / UViT) sampled by DDPM / DDIM.

    The decoder and the sampler come from :mod:`fourm_core.tokenizers.ml4m.diffusion`.
    """

    model_type = "DiVAE"

    def __init__(self, config: Mapping[str, Any], *, where: str = "tokenizer config"):
        super().__init__(config, where=where)
        lookup_arch(self.config["dec_type"], role="decoder", where=where)
        if not self.config["dec_type"].startswith(("unet_", "uvit_")):
            raise TokenizerError(f"{where}: a DiVAE needs a diffusion dec_type (unet_* / uvit_*), got "
                                 f"{self.config['dec_type']!r}")
        self.decoder = _diffusion_module().build_diffusion_decoder(self.config)

    @torch.no_grad()
    def decode_quant(self, quant: torch.Tensor, *, steps: int | None = None, scheduler: str | None = None,
                     generator: torch.Generator | None = None, noise: Any = None, image_size: Any = None,
                     timestep_spacing: str | None = None) -> torch.Tensor:
        """Sample the decoded map from a quantised latent; ``steps`` defaults to ``num_train_timesteps``,
        ``scheduler`` (``'ddpm'`` / ``'ddim'``) to the config's, ``image_size`` to the decoder's."""
        return _diffusion_module().diffusion_decode(
            self.decoder, quant, self.config, steps=steps or int(self.config["num_train_timesteps"]),
            scheduler=scheduler, generator=generator, noise=noise, image_size=image_size,
            timestep_spacing=timestep_spacing)

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Token ids → sampled map; keyword arguments as :meth:`decode_quant`."""
        return self.decode_quant(self.tokens_to_embedding(tokens), **kwargs)


MODEL_CLASSES: dict[str, type[VQ]] = {"VQVAE": VQVAE, "DiVAE": DiVAE}
