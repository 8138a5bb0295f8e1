"""The reference 4M release's tokenizers (VQ-VAE / DiVAE / MLP), loaded from their hub format.

* :func:`from_pretrained` (a directory or a hub id) → :class:`VQVAE` / :class:`DiVAE` (or :class:`VQ`, the
  encoder half) in eval mode, with the released API (``encode`` → (B, h, w) ids, ``tokens_to_embedding``,
  ``decode_tokens``); :func:`save_pretrained` writes the format back.
* :class:`ReleasedTokenizer` — the same model behind fourm's flat ``(B, num_tokens)`` tokenizer protocol
  (what :func:`fourm_core.tokenizers.load_tokenizer` returns for a released directory).
* :func:`register_arch` / :func:`lookup_arch` — the ``enc_type`` / ``dec_type`` name table.
* :func:`verify_tokenizer` — check a directory against stored reference outputs (``io.safetensors``).

The diffusion decoders (UNet / UViT) and their samplers live in ``.diffusion``; it is imported only when a
DiVAE decoder is built or sampled.
"""

from .archs import (ARCHS, Arch, known_arch_names, lookup_arch, register_arch, register_archs_file,
                    register_env_archs)
from .config import IGNORED_KEYS, TRAINING_KEYS, model_type, resolve_config
from .hub import ReleasedTokenizer, from_pretrained, load_released, save_pretrained
from .mlp import BottleneckMLP, StandardMLP, parse_mlp_id
from .quantize import LucidQuantizer, Memcodes, Quantized
from .verify import VerifyReport, check_tokenizer, verify_tokenizer
from .vit import ViTDecoder, ViTEncoder
from .vqvae import VQ, VQVAE, DiVAE

__all__ = [
    "ARCHS", "Arch", "BottleneckMLP", "DiVAE", "IGNORED_KEYS", "LucidQuantizer", "Memcodes", "Quantized",
    "ReleasedTokenizer", "StandardMLP", "TRAINING_KEYS", "VQ", "VQVAE", "ViTDecoder", "ViTEncoder", "from_pretrained",
    "known_arch_names", "load_released", "lookup_arch", "model_type", "parse_mlp_id", "register_arch",
    "resolve_config", "save_pretrained", "VerifyReport", "check_tokenizer", "verify_tokenizer",
    "register_archs_file", "register_env_archs",
]

register_env_archs()
