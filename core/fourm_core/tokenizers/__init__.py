"""Tokenizer families: every modality becomes discrete tokens through one of these.

* :class:`ViTVQVAE` – image-like modalities of any channel count (grid of VQ ids)
* :class:`MLPVQ` – global vectors (K tokens per vector)
* :class:`EMAVectorQuantizer`, :class:`FSQ` – the quantizers they use
* :class:`TextTokenizer` – the shared WordPiece vocabulary; :class:`SequenceTokenizer` on top of it
* :class:`ModalityCodec`, :func:`load_codecs`, :func:`save_codecs` – raw values ↔ tokens per modality
"""

from .base import FAMILIES, PretrainedTokenizer, Tokenizer, TokenizerError, load_tokenizer, register_family
from .codec import ArrayTransform, CodecError, ModalityCodec, load_codecs, save_codecs
from .mlp_vq import MLPVQ
from .quantizers import FSQ, EMAVectorQuantizer, QuantizerOutput, codebook_stats
from .sequence import SequenceTokenizer
from .text import TextTokenizer, TextTokenizerError
from .vqvae import DECODERS, ViTDecoder, ViTVQVAE, register_decoder

__all__ = [
    "ArrayTransform", "CodecError", "DECODERS", "EMAVectorQuantizer", "FAMILIES", "FSQ", "MLPVQ", "ModalityCodec",
    "PretrainedTokenizer", "QuantizerOutput", "SequenceTokenizer", "TextTokenizer", "TextTokenizerError", "Tokenizer",
    "TokenizerError", "ViTDecoder", "ViTVQVAE", "codebook_stats", "load_codecs", "load_tokenizer", "register_decoder",
    "register_family", "save_codecs",
]
