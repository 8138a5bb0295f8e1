"""Generation with a FourM model: MaskGIT and ROAR for image/vector targets, autoregressive
decoding with a KV cache for sequences, token / temperature / guidance schedules (the released 4M sampler's),
top-k / top-p, classifier-free and weighted multi-condition guidance (negative conditions included, one
enlarged batch), partial targets (in-/out-painting, sequence completion), unconditional generation, chained
targets, seeds, a step-by-step iterator.

>>> sampler = Sampler(model)
>>> result = sampler.generate({"rgb": {"tensor": pixels}}, ["depth", TargetConfig(modality="caption")], seed=0)
>>> result.tokens["depth"]          # (B, 196) token ids
"""

from .backend import ModelBackend, SequenceState
from .chain import ScheduleStep, build_chained_schedule, chained_targets, plan_target
from .errors import GenerationError, TokenizerMissingError
from .sampler import GenerationResult, GenerationStep, Sampler
from .sampling import combine_guidance, filter_logits, sample_tokens
from .schedules import (
    GUIDANCE_SCHEDULES,
    TEMPERATURE_SCHEDULES,
    TOKEN_SCHEDULES,
    guidance_schedule,
    temperature_schedule,
    token_schedule,
)
from .targets import KIND_DEFAULTS, SCHEMES, TargetConfig, resolve_target

__all__ = [
    "GUIDANCE_SCHEDULES", "GenerationError", "GenerationResult", "GenerationStep", "KIND_DEFAULTS", "ModelBackend",
    "SCHEMES", "Sampler", "ScheduleStep", "SequenceState", "TEMPERATURE_SCHEDULES", "TOKEN_SCHEDULES",
    "TargetConfig", "TokenizerMissingError", "build_chained_schedule", "chained_targets", "combine_guidance", "filter_logits",
    "guidance_schedule", "plan_target", "resolve_target", "sample_tokens", "temperature_schedule",
    "token_schedule",
]
