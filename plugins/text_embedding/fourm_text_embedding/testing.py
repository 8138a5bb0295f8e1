"""Tiny randomly initialised T5 encoder (+ a word-level tokenizer) for tests (no download)."""

from __future__ import annotations

from pathlib import Path

WORDS = ["a", "an", "the", "cat", "dog", "astronaut", "photo", "of", "on", "in", "with", "red", "cup", "coffee",
         "rocket", "sitting", "flag", "white", "suit", "sofa", "sleeping", "."]


def save_tiny_t5(directory: str | Path, *, d_model: int = 4096, seed: int = 0) -> str:
    """Save a tiny ``T5EncoderModel`` (1 layer, 2 heads of 16, d_ff 16; ``d_model`` as the modality stores,
    ~1 M parameters) and a word-level fast tokenizer to ``directory``; return it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(vocab), d_model=d_model, d_kv=16, d_ff=16, num_layers=1, num_heads=2,
                      relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    model = T5EncoderModel(config).eval()
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return str(directory)
