"""Tiny randomly initialised BLIP captioner for tests (no download)."""

from __future__ import annotations

from pathlib import Path

WORDS = ["a", "an", "the", "cat", "dog", "woman", "man", "photo", "of", "sitting", "on", "in", "with", "red",
         "blue", "table", "street", "rocket", "cup", "coffee", "space", "suit", "grass", "and", "is", "."]


def save_tiny_blip(directory: str | Path, *, image_size: int = 32, seed: int = 0) -> str:
    """Save a tiny ``BlipForConditionalGeneration`` and its processor (BERT word-piece tokenizer over a few
    words) to ``directory`` and return it (a path ``CaptionLabeler(weights=...)`` loads)."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS]
    ids = {t: i for i, t in enumerate(vocab)}
    tok = BertTokenizer(vocab=ids, bos_token="[DEC]")
    torch.manual_seed(seed)
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=8),
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=ids["[DEC]"],
                         eos_token_id=ids["[SEP]"], sep_token_id=ids["[SEP]"], pad_token_id=ids["[PAD]"]),
        projection_dim=32,
    )
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():  # a random decoder would often stop at once: make [SEP] unlikely, words likely
        bias = model.text_decoder.cls.predictions.decoder.bias
        bias.zero_()
        bias[: ids["[DEC]"] + 1] = -20.0
    model.config.decoder_start_token_id = ids["[DEC]"]
    model.generation_config.bos_token_id = ids["[DEC]"]
    model.generation_config.eos_token_id = ids["[SEP]"]
    model.generation_config.pad_token_id = ids["[PAD]"]
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
                              tokenizer=tok)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)
