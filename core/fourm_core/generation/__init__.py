"""Generation with a FourM model: MaskGIT and ROAR for image/vector targets, autoregressive
decoding with a KV cache for sequences, token / temperature schedules, top-k / top-p, classifier-free and
weighted multi-condition guidance (one enlarged batch), chained targets, seeds, a step-by-step iterator.

>>> sampler = Sampler(model)
>>> result = sampler.generate({"rgb": {"tensor": pixels}}, ["depth", TargetConfig(modality="caption")], seed=0)
>>> result.tokens["depth"]          # (B, 196) token ids
"""

from .backend import ModelBackend, SequenceState
from .errors import GenerationError, TokenizerMissingError
from .sampler import GenerationResult, GenerationStep, Sampler
from .sampling import combine_guidance, filter_logits, sample_tokens
from .schedules import TOKEN_SCHEDULES, temperature_schedule, token_schedule
from .targets import KIND_DEFAULTS, SCHEMES, TargetConfig, resolve_target

__all__ = [
    "GenerationError", "GenerationResult", "GenerationStep", "KIND_DEFAULTS", "ModelBackend", "SCHEMES", "Sampler",
    "SequenceState", "TOKEN_SCHEDULES", "TargetConfig", "TokenizerMissingError", "combine_guidance",
    "filter_logits", "resolve_target", "sample_tokens", "temperature_schedule", "token_schedule",
]
