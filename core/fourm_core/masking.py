"""Input/target masking for 4M training: Dirichlet token budgets, span masking, transfer masking.

API (stable; the data loader, model, trainers and generation use it)
====================================================================

.. code-block:: python

    from fourm_core.masking import MaskingConfig, Masker, TextVocabInfo

    cfg = MaskingConfig.from_yaml("masking.yaml")            # or MaskingConfig.from_dict({...}) / MaskingConfig()
    cfg = MaskingConfig.transfer(inputs=["rgb"], targets=["depth"])   # fixed in/out masking (fine-tuning)
    masker = Masker(modalities, cfg, text=TextVocabInfo())    # modalities: fourm_registry.ModalitySet
    mod_dict = masker(batch, present=None, generator=None)
    out = model(mod_dict, num_encoder_tokens=masker.num_encoder_tokens,
                num_decoder_tokens=masker.num_decoder_tokens)

``batch`` maps modality names (or aliases) to batched tensors with a leading batch axis B:

=======================  ===================================================================================
``image`` / ``vector``   int64 ``(B, N)`` token ids
``pixels``               float ``(B, C, H, W)``; masks are over the ``grid`` patches
``sequence``             int64 ``(B, max_length)``: tokens, then ``[EOS]``, then ``[PAD]`` = 0 padding
``embedding_sequence``   float ``(B, L, D)``: rows, zero rows at the end (absent rows)
=======================  ===================================================================================

``present`` (optional) maps names to ``BoolTensor (B,)``: False marks samples that lack the modality; such a
sample's modality is fully masked (never input, never target). Modalities of ``modalities`` missing from the
batch are simply not used (and not returned).

The result is the reference ``mod_dict`` layout (``shared/conformance/ml4m_tiny/FORMAT.md`` §3):
``{name: {"tensor", "input_mask", "target_mask", "decoder_attention_mask"}}``, boolean masks with
**True = masked / not used**, ``decoder_attention_mask`` int32:

* image / vector / pixels: ``tensor`` is the input unchanged; ``input_mask`` / ``target_mask`` ``(B, N)``
  never both False on the same token; ``decoder_attention_mask`` holds, at the first target slot, the
  number of targets (0 elsewhere), so the targets of a modality attend to each other.
* sequence: ``tensor`` int64 ``(B, 2*(max_length+1))``: the encoder input (masked spans replaced by sentinels
  ``[S_1], [S_2], ...``) at the start, the decoder target (``[S_1]``, span tokens, ``[S_2]``, ..., final
  sentinel) from index ``input_budget`` of that modality (``max_length`` in transfer masking); ``[PAD]``
  elsewhere. ``decoder_attention_mask`` is 1 over the target (causal inside the modality).
* embedding_sequence: ``tensor`` ``(B, L, D)`` with the kept rows first (a zero row per masked span),
  ``input_mask`` over them; never a target.

Vocabulary layout (fixed, shared text vocabulary): ``[PAD]`` = 0, ``[UNK]`` = 1, ``[SOS]`` = 2, ``[EOS]`` = 3,
sentinels ``[S_0]..[S_199]`` = 4..203. As in the reference, span numbering starts at ``[S_1]``.

Configuration (YAML or dict; unknown keys raise listing the valid ones)::

    input_tokens: 128            # or [min, max]: per-sample total input budget
    target_tokens: 128           # or [min, max], or null: every non-input token is a target
    fill_budget: true            # give input budget a sequence could not use to image-like modalities
    mixture:                     # Dirichlet mixture components, one drawn per sample (by weight)
      - name: rgb2all
        weight: 1.0
        input_alphas: {"*": 0.0, rgb: 1000.0}     # a number, or per modality with "*" as default
        target_alphas: {"*": 0.5, rgb: 0.0}
      - name: all2all
        input_alphas: 0.5
        target_alphas: 0.5
        keep: {caption: random}                 # sequence keep scheme per modality: random | all | binary
        full_input: []                          # modalities always fully visible (outside the budget)
    modalities:                  # per-modality settings (defaults from spec.masking)
      caption: {min_tokens: 0, max_tokens: null, keep: random, span: simple}
      det: {span: chunked, chunk_start_tokens: ["v0=*"]}   # chunks start at these tokens (prefix with *)
    transfer: null               # or {inputs: [rgb], targets: [depth]}: fixed in/out masking
    allow_unknown_modalities: false   # true: names not in the ModalitySet are ignored instead of raising

:meth:`MaskingConfig.from_reference` reads the reference's ``alphas_mixture`` YAML files.

Token counts: ``masker.num_encoder_tokens`` / ``masker.num_decoder_tokens`` (also
:func:`count_tokens`) are the encoder/decoder lengths to call the model with.

Budgets: per sample, a total ``n`` is drawn from the range, then split over the modalities by a Dirichlet
draw (modalities with alpha 0, absent, or unusable get exactly 0), with per-modality minimum and maximum, and
any budget a modality cannot hold (capacity) is redistributed to the others by their Dirichlet share. For
image-like modalities the input and target never overlap and the totals equal the budgets whenever the
eligible modalities have enough tokens; sequences use at most their budget (span masking decides).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from fourm_registry import FourmError, ModalitySet, ModalitySpec

__all__ = [
    "KEEP_SCHEMES",
    "Masker",
    "MaskingConfig",
    "MaskingError",
    "MixtureComponent",
    "ModalityMasking",
    "TextVocabInfo",
    "TransferConfig",
    "count_tokens",
]

KEEP_SCHEMES = ("random", "all", "binary")
SPAN_SCHEMES = ("simple", "chunked")
#: decay of the keep probability while a span-masked sequence is over its input budget (as the reference)
KEEP_PROB_DECAY = 0.9
_IMAGE_LIKE = ("image", "vector", "pixels")


class MaskingError(FourmError, ValueError):
    """A masking config or a batch handed to the masker is invalid."""


# ----------------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------------


def _strict_from_dict(cls: type, data: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise MaskingError(f"{where}: expected a mapping, got {type(data).__name__} ({data!r})")
    valid = [f.name for f in attrs.fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise MaskingError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")
    return dict(data)


def _token_range(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise MaskingError(f"{where}: expected an int or [min, max], got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise MaskingError(f"{where}: expected an int or [min, max] of ints, got {value!r}") from None
    if lo < 0 or hi < lo:
        raise MaskingError(f"{where}: range [{lo}, {hi}] must satisfy 0 <= min <= max")
    return lo, hi


def _alphas(value: Any, where: str) -> dict[str, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"*": value}
    if not isinstance(value, Mapping):
        raise MaskingError(f"{where}: expected a number or a mapping modality -> alpha ('*' = default), got {value!r}")
    out: dict[str, float] = {}
    for k, v in value.items():
        try:
            a = float(v)
        except (TypeError, ValueError):
            raise MaskingError(f"{where}: alpha of {k!r} must be a number, got {v!r}") from None
        if not math.isfinite(a) or a < 0:
            raise MaskingError(f"{where}: alpha of {k!r} must be finite and >= 0, got {a}")
        out[str(k)] = a
    out.setdefault("*", 0.0)
    return out


@attrs.frozen(kw_only=True)
class ModalityMasking:
    """Per-modality masking settings; ``None`` means the spec's default (``spec.masking``)."""

    min_tokens: int | None = None
    max_tokens: int | None = None
    #: default keep scheme of a sequence (a mixture component may override it)
    keep: str = "random"
    #: ``simple`` (token-level spans) or ``chunked`` (spans of whole chunks, e.g. one box of ``det``)
    span: str = "simple"
    #: tokens that start a chunk (exact strings, or prefixes ending with ``*``); needs ``text.token_to_id``
    chunk_start_tokens: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        for f in ("min_tokens", "max_tokens"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise MaskingError(f"masking modality setting {f!r} must be a non-negative int or null, got {v!r}")
        if self.keep not in KEEP_SCHEMES:
            raise MaskingError(f"keep scheme {self.keep!r} is not one of {', '.join(KEEP_SCHEMES)}")
        if self.span not in SPAN_SCHEMES:
            raise MaskingError(f"span scheme {self.span!r} is not one of {', '.join(SPAN_SCHEMES)}")
        if self.span == "chunked" and not self.chunk_start_tokens:
            raise MaskingError("span 'chunked' needs chunk_start_tokens (tokens that begin a chunk), or pass "
                               "chunks= to Masker.__call__")


@attrs.frozen(kw_only=True)
class MixtureComponent:
    """One Dirichlet mixture component: alphas per modality (``'*'`` = default), keep schemes, weight."""

    name: str = ""
    weight: float = 1.0
    input_alphas: dict[str, float] = attrs.field(factory=lambda: {"*": 0.5})
    target_alphas: dict[str, float] = attrs.field(factory=lambda: {"*": 0.5})
    keep: dict[str, str] = attrs.field(factory=dict)
    full_input: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        where = f"mixture component {self.name or '?'}"
        object.__setattr__(self, "input_alphas", _alphas(self.input_alphas, f"{where}: input_alphas"))
        object.__setattr__(self, "target_alphas", _alphas(self.target_alphas, f"{where}: target_alphas"))
        if not isinstance(self.weight, (int, float)) or isinstance(self.weight, bool) or not self.weight > 0:
            raise MaskingError(f"{where}: weight must be a positive number, got {self.weight!r}")
        for k, v in dict(self.keep).items():
            if v not in KEEP_SCHEMES:
                raise MaskingError(f"{where}: keep scheme {v!r} of {k!r} is not one of {', '.join(KEEP_SCHEMES)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "mixture component") -> MixtureComponent:
        return cls(**_strict_from_dict(cls, data, where))


@attrs.frozen(kw_only=True)
class TransferConfig:
    """Fixed masking: ``inputs`` fully visible, ``targets`` fully targets, every other modality unused."""

    inputs: tuple[str, ...] = attrs.field(converter=tuple)
    targets: tuple[str, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        both = sorted(set(self.inputs) & set(self.targets))
        if both:
            raise MaskingError(f"transfer masking: {', '.join(both)} cannot be both input and target")
        if not self.inputs and not self.targets:
            raise MaskingError("transfer masking needs at least one input or target modality")


def _default_mixture() -> tuple[MixtureComponent, ...]:
    return (MixtureComponent(name="all2all", input_alphas={"*": 0.5}, target_alphas={"*": 0.5}),)


@attrs.frozen(kw_only=True)
class MaskingConfig:
    """How input and target tokens are chosen (see the module docstring for the YAML form)."""

    input_tokens: tuple[int, int] = attrs.field(default=(128, 128))
    target_tokens: tuple[int, int] | None = attrs.field(default=(128, 128))
    mixture: tuple[MixtureComponent, ...] = attrs.field(factory=_default_mixture, converter=tuple)
    modalities: dict[str, ModalityMasking] = attrs.field(factory=dict)
    #: fixed in/out masking (YAML key ``transfer``); build with :meth:`transfer`
    fixed: TransferConfig | None = None
    fill_budget: bool = True
    allow_unknown_modalities: bool = False

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "input_tokens", _token_range(self.input_tokens, "masking: input_tokens"))
        if self.target_tokens is not None:
            object.__setattr__(self, "target_tokens", _token_range(self.target_tokens, "masking: target_tokens"))
        if not self.mixture:
            raise MaskingError("masking: mixture needs at least one component")
        for c in self.mixture:
            if not isinstance(c, MixtureComponent):
                raise MaskingError(f"masking: mixture entries must be MixtureComponent, got {type(c).__name__}")
        for k, v in self.modalities.items():
            if not isinstance(v, ModalityMasking):
                raise MaskingError(f"masking: modalities.{k} must be a ModalityMasking, got {type(v).__name__}")

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> MaskingConfig:
        """Build from a plain mapping (e.g. parsed YAML); unknown keys raise listing the valid ones."""
        if isinstance(data, Mapping) and "transfer" in data:
            data = {("fixed" if k == "transfer" else k): v for k, v in data.items()}
        try:
            d = _strict_from_dict(cls, data, "masking config")
        except MaskingError as exc:
            raise MaskingError(str(exc).replace("fixed", "transfer")) from None
        if "mixture" in d:
            mix = d["mixture"]
            if not isinstance(mix, (list, tuple)):
                raise MaskingError(f"masking: mixture must be a list of components, got {mix!r}")
            d["mixture"] = tuple(
                m if isinstance(m, MixtureComponent) else MixtureComponent.from_dict(m, f"masking: mixture[{i}]")
                for i, m in enumerate(mix))
        if "modalities" in d:
            mods = d["modalities"] or {}
            if not isinstance(mods, Mapping):
                raise MaskingError(f"masking: modalities must be a mapping name -> settings, got {mods!r}")
            d["modalities"] = {
                str(k): v if isinstance(v, ModalityMasking)
                else ModalityMasking(**_strict_from_dict(ModalityMasking, v, f"masking: modalities.{k}"))
                for k, v in mods.items()}
        if d.get("fixed") is not None and not isinstance(d["fixed"], TransferConfig):
            d["fixed"] = TransferConfig(**_strict_from_dict(TransferConfig, d["fixed"], "masking: transfer"))
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> MaskingConfig:
        """Read a YAML file holding the mapping of :meth:`from_dict`."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise MaskingError(f"masking config file {str(p)!r} does not exist")
        with p.open() as fh:
            data = yaml.safe_load(fh)
        try:
            return cls.from_dict(data or {})
        except MaskingError as exc:
            raise MaskingError(f"{p}: {exc}") from None

    @classmethod
    def transfer(cls, inputs: Iterable[str], targets: Iterable[str], **kwargs: Any) -> MaskingConfig:
        """Fixed in/out masking: ``inputs`` fully visible to the encoder, ``targets`` fully predicted."""
        return cls(fixed=TransferConfig(inputs=tuple(inputs), targets=tuple(targets)), **kwargs)

    @classmethod
    def from_reference(cls, data: Mapping[str, Any], *, input_tokens: Any = 128, target_tokens: Any = 128,
                       **kwargs: Any) -> MaskingConfig:
        """Read the reference's alphas-mixture YAML content.

        ``data`` is either ``{sampling_weights: [...], alphas_mixture: {mod: {input_alphas: [...],
        target_alphas: [...], keep: [...]}}}`` or the per-modality mapping directly. Modalities not listed get
        alpha 0 (as in the reference, which only masks listed modalities). Names may be reference names
        (``tok_depth@224``): the :class:`Masker` resolves them through the plugins' aliases.
        """
        per_mod = data.get("alphas_mixture", data) if isinstance(data, Mapping) else None
        if not isinstance(per_mod, Mapping) or not per_mod:
            raise MaskingError("reference alphas: expected a mapping of modality -> {input_alphas, target_alphas}")
        lengths = {len(v.get("input_alphas", ())) for v in per_mod.values()} | {
            len(v.get("target_alphas", ())) for v in per_mod.values()}
        if len(lengths) != 1:
            raise MaskingError(f"reference alphas: every modality needs the same number of alphas, got {sorted(lengths)}")
        k = lengths.pop()
        weights = data.get("sampling_weights") or [1.0] * k
        if len(weights) != k:
            raise MaskingError(f"reference alphas: {len(weights)} sampling_weights for {k} mixture components")
        comps = []
        for i in range(k):
            comps.append(MixtureComponent(
                name=f"component{i}", weight=float(weights[i]),
                input_alphas={"*": 0.0, **{m: float(v["input_alphas"][i]) for m, v in per_mod.items()}},
                target_alphas={"*": 0.0, **{m: float(v["target_alphas"][i]) for m, v in per_mod.items()}},
                keep={m: v["keep"][i] for m, v in per_mod.items() if "keep" in v}))
        return cls(input_tokens=input_tokens, target_tokens=target_tokens, mixture=tuple(comps), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-friendly mapping that :meth:`from_dict` reads back."""
        return {
            "input_tokens": list(self.input_tokens),
            "target_tokens": None if self.target_tokens is None else list(self.target_tokens),
            "mixture": [{"name": c.name, "weight": c.weight, "input_alphas": dict(c.input_alphas),
                         "target_alphas": dict(c.target_alphas), "keep": dict(c.keep),
                         "full_input": list(c.full_input)} for c in self.mixture],
            "modalities": {k: {**attrs.asdict(v), "chunk_start_tokens": list(v.chunk_start_tokens)}
                           for k, v in self.modalities.items()},
            "transfer": None if self.fixed is None else {"inputs": list(self.fixed.inputs),
                                                         "targets": list(self.fixed.targets)},
            "fill_budget": self.fill_budget,
            "allow_unknown_modalities": self.allow_unknown_modalities,
        }


@attrs.frozen(kw_only=True)
class TextVocabInfo:
    """The special ids of the shared text vocabulary (fixed layout; see the module docstring)."""

    pad_id: int = 0
    unk_id: int = 1
    sos_id: int = 2
    eos_id: int = 3
    sentinel_start_id: int = 4
    num_sentinels: int = 200
    vocab_size: int | None = None
    #: token string -> id (only needed for ``chunk_start_tokens``)
    token_to_id: Mapping[str, int] | None = attrs.field(default=None, eq=False, hash=False)

    def sentinel_id(self, i: int) -> int:
        """Id of ``[S_i]``."""
        return self.sentinel_start_id + i

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, name: str = "text tokenizer") -> TextVocabInfo:
        """From an object with ``token_to_id(str)`` / ``get_vocab()`` (``tokenizers.Tokenizer``, our TextTokenizer).

        Raises when its special tokens do not follow the fixed layout.
        """
        inner = getattr(tokenizer, "tokenizer", tokenizer)
        vocab = inner.get_vocab() if hasattr(inner, "get_vocab") else None
        lookup = (lambda t: vocab.get(t)) if vocab is not None else inner.token_to_id
        expected = {"[PAD]": 0, "[UNK]": 1, "[SOS]": 2, "[EOS]": 3, "[S_0]": 4, "[S_199]": 203}
        for tok, idx in expected.items():
            got = lookup(tok)
            if got != idx:
                raise MaskingError(
                    f"{name}: token {tok} has id {got}, but the fixed vocabulary layout needs {idx} "
                    f"([PAD]=0 [UNK]=1 [SOS]=2 [EOS]=3 [S_0]..[S_199]=4..203); rebuild the tokenizer with "
                    f"fourm_core.tokenizers.TextTokenizer")
        size = len(vocab) if vocab is not None else getattr(tokenizer, "vocab_size", None)
        return cls(vocab_size=size, token_to_id=vocab)


# ----------------------------------------------------------------------------------------------------------
# random helpers (all draws go through an optional torch.Generator)
# ----------------------------------------------------------------------------------------------------------


def _rand(shape: tuple[int, ...], gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=device)


def _log_gamma(alpha: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """log of Gamma(alpha, 1) samples (alpha > 0), Marsaglia-Tsang, vectorised; exact in log space for tiny alpha."""
    dev = alpha.device
    boost = alpha < 1
    a = torch.where(boost, alpha + 1, alpha).double()
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(a)
    todo = torch.ones_like(a, dtype=torch.bool)
    for _ in range(64):
        x = torch.randn(a.shape, generator=gen, device=dev, dtype=torch.float64)
        u = torch.rand(a.shape, generator=gen, device=dev, dtype=torch.float64).clamp_min(1e-300)
        v = (1 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = todo & ok
        out = torch.where(take, torch.log(d) + torch.log(v.clamp_min(1e-300)), out)
        todo = todo & ~ok
        if not bool(todo.any()):
            break
    out = torch.where(todo, torch.log(d), out)  # practically unreachable (acceptance > 95 % per try)
    u = torch.rand(a.shape, generator=gen, device=dev, dtype=torch.float64).clamp_min(1e-300)
    return torch.where(boost, out + torch.log(u) / alpha.double().clamp_min(1e-300), out)


def _dirichlet(alpha: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Dirichlet proportions per row; entries with alpha 0 get exactly 0; rows of zeros stay zero. (B, M)"""
    pos = alpha > 0
    logg = _log_gamma(torch.where(pos, alpha, torch.ones_like(alpha)), gen)
    logg = torch.where(pos, logg, torch.full_like(logg, -math.inf))
    p = torch.softmax(logg, dim=-1).float()
    # tiny alphas underflow most shares to exactly 0 in float32; keep every eligible modality strictly positive so
    # that budget the dominant modality cannot hold still flows to the others (alpha-0 entries stay exactly 0)
    p = torch.where(pos, p.clamp_min(1e-30), torch.zeros_like(p))
    return torch.where(pos.any(-1, keepdim=True), p, torch.zeros_like(p))


def _randint(lo: int, hi: int, n: int, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    if lo == hi:
        return torch.full((n,), lo, dtype=torch.long, device=device)
    return torch.randint(lo, hi + 1, (n,), generator=gen, device=device)


def _allocate(total: torch.Tensor, p: torch.Tensor, base: torch.Tensor, cap: torch.Tensor,
              gen: torch.Generator | None) -> torch.Tensor:
    """Split ``total`` (B,) tokens over modalities by proportions ``p`` (B, M), starting from ``base`` and never
    exceeding ``cap``. Budget a modality cannot hold goes to the others with room, by their share."""
    budget = torch.minimum(base, cap).clamp_min(0)
    m = p.shape[1]
    for _ in range(2 * m + 4):
        room = cap - budget
        w = p * (room > 0)
        ws = w.sum(1)
        excess = (total - budget.sum(1)).clamp_min(0)
        active = (excess > 0) & (ws > 0)
        if not bool(active.any()):
            break
        share = torch.floor(excess[:, None] * w / ws.clamp_min(1e-12)[:, None]).long()
        budget = budget + torch.minimum(share, room) * active[:, None]
        # hand out what flooring left, one token each to the modalities drawn by a Gumbel top-k over the shares
        room = cap - budget
        w = p * (room > 0)
        excess = (total - budget.sum(1)).clamp_min(0) * active
        gumbel = -torch.log(-torch.log(_rand(tuple(w.shape), gen, w.device).clamp(1e-12, 1 - 1e-7)))
        score = torch.where(w > 0, torch.log(w.clamp_min(1e-30)) + gumbel, torch.full_like(w, -math.inf))
        order = torch.argsort(score, dim=1, descending=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(m, device=w.device).expand_as(order))
        budget = budget + ((rank < excess[:, None]) & (w > 0)).long()
    return budget


# ----------------------------------------------------------------------------------------------------------
# the masker
# ----------------------------------------------------------------------------------------------------------


@attrs.frozen
class _Mod:
    """Resolved per-modality settings (internal)."""

    name: str
    spec: ModalitySpec
    kind: str
    n: int  # token slots (image grid, vector K, sequence max_length, embedding rows)
    min_tokens: int
    max_tokens: int
    keep: str
    span: str
    chunk_ids: tuple[int, ...] = ()
    chunk_prefixes: tuple[str, ...] = ()

    @property
    def can_input(self) -> bool:
        return bool(self.spec.encoder)

    @property
    def can_target(self) -> bool:
        return bool(self.spec.decoder) and self.kind in ("image", "vector", "sequence")


def count_tokens(modalities: ModalitySet, config: MaskingConfig) -> tuple[int, int]:
    """``(num_encoder_tokens, num_decoder_tokens)`` a model must be called with for batches of this config."""
    m = Masker(modalities, config)
    return m.num_encoder_tokens, m.num_decoder_tokens


class Masker:
    """Turns a batch of token tensors into a masked ``mod_dict`` (see the module docstring)."""

    def __init__(self, modalities: ModalitySet, config: MaskingConfig | None = None, *,
                 text: TextVocabInfo | None = None) -> None:
        if not isinstance(modalities, ModalitySet):
            raise MaskingError(f"Masker needs a fourm_registry.ModalitySet, got {type(modalities).__name__}")
        self.modalities = modalities
        self.config = config if config is not None else MaskingConfig()
        self.text = text if text is not None else TextVocabInfo()
        cfg = self.config
        mod_cfg = {self._resolve(k, "modalities"): v for k, v in cfg.modalities.items()}
        mod_cfg = {k: v for k, v in mod_cfg.items() if k is not None}
        self.mods: list[_Mod] = []
        for spec in modalities.specs:
            mc = mod_cfg.get(spec.name, ModalityMasking())
            n = int(spec.num_tokens or 0)
            mn = mc.min_tokens if mc.min_tokens is not None else spec.masking.min_tokens
            mx = mc.max_tokens if mc.max_tokens is not None else spec.masking.max_tokens
            mx = n + 2 if mx is None else mx  # sequences: a full target is max_length + 2 entries
            if spec.kind == "sequence" and (n + 1) // 2 + 1 >= self.text.num_sentinels:
                raise MaskingError(
                    f"modality {spec.name!r}: max_length {n} may need {(n + 1) // 2 + 1} sentinels but the vocabulary "
                    f"has [S_0]..[S_{self.text.num_sentinels - 1}]; use max_length <= {2 * (self.text.num_sentinels - 2) - 1}")
            chunk_ids: list[int] = []
            prefixes: list[str] = []
            if mc.span == "chunked" and spec.kind == "sequence":
                for tok in mc.chunk_start_tokens:
                    if tok.endswith("*"):
                        prefixes.append(tok[:-1])
                        continue
                    if self.text.token_to_id is None or tok not in self.text.token_to_id:
                        raise MaskingError(
                            f"modality {spec.name!r}: chunk start token {tok!r} is not in the text vocabulary "
                            f"(pass text=TextVocabInfo.from_tokenizer(tokenizer))")
                    chunk_ids.append(int(self.text.token_to_id[tok]))
                if prefixes:
                    if self.text.token_to_id is None:
                        raise MaskingError(f"modality {spec.name!r}: chunk start prefixes need the text vocabulary "
                                           f"(pass text=TextVocabInfo.from_tokenizer(tokenizer))")
                    chunk_ids.extend(i for t, i in self.text.token_to_id.items() if any(t.startswith(p) for p in prefixes))
            self.mods.append(_Mod(name=spec.name, spec=spec, kind=spec.kind, n=n, min_tokens=int(mn),
                                  max_tokens=int(mx), keep=mc.keep, span=mc.span if spec.kind == "sequence" else "simple",
                                  chunk_ids=tuple(sorted(set(chunk_ids))), chunk_prefixes=tuple(prefixes)))
        self.index = {m.name: i for i, m in enumerate(self.mods)}
        nm = len(self.mods)
        # mixture tables (K, M)
        k = len(cfg.mixture)
        self.weights = torch.tensor([c.weight for c in cfg.mixture], dtype=torch.float64)
        self.alpha_in = torch.zeros(k, nm, dtype=torch.float64)
        self.alpha_tg = torch.zeros(k, nm, dtype=torch.float64)
        self.keep_code = torch.zeros(k, nm, dtype=torch.long)
        self.full_input = torch.zeros(k, nm, dtype=torch.bool)
        for ci, comp in enumerate(cfg.mixture):
            a_in = self._per_mod(comp.input_alphas, f"mixture[{ci}].input_alphas")
            a_tg = self._per_mod(comp.target_alphas, f"mixture[{ci}].target_alphas")
            keep = {self._resolve(n, f"mixture[{ci}].keep"): s for n, s in comp.keep.items()}
            full = {self._resolve(n, f"mixture[{ci}].full_input") for n in comp.full_input} - {None}
            for mi, m in enumerate(self.mods):
                self.alpha_in[ci, mi] = a_in[mi] if m.can_input and m.name not in full else 0.0
                self.alpha_tg[ci, mi] = a_tg[mi] if m.can_target and m.name not in full else 0.0
                self.keep_code[ci, mi] = KEEP_SCHEMES.index(keep.get(m.name, m.keep))
                if m.name in full:
                    if not m.can_input:
                        raise MaskingError(f"mixture[{ci}].full_input: modality {m.name!r} is not an encoder modality")
                    self.full_input[ci, mi] = True
        self.transfer_in: set[str] = set()
        self.transfer_tg: set[str] = set()
        if cfg.fixed is not None:
            self.transfer_in = {self._resolve(n, "transfer.inputs") for n in cfg.fixed.inputs} - {None}
            self.transfer_tg = {self._resolve(n, "transfer.targets") for n in cfg.fixed.targets} - {None}
            for n in self.transfer_in:
                if not self.mods[self.index[n]].can_input:
                    raise MaskingError(f"transfer masking: modality {n!r} ({self.mods[self.index[n]].kind}) cannot be an "
                                       f"encoder input")
            for n in self.transfer_tg:
                if not self.mods[self.index[n]].can_target:
                    raise MaskingError(f"transfer masking: modality {n!r} ({self.mods[self.index[n]].kind}) cannot be "
                                       f"a decoder target; decodable kinds are image, vector and sequence")
        else:
            mins = sum(m.min_tokens for m in self.mods if m.can_input)
            if mins > cfg.input_tokens[0]:
                raise MaskingError(f"masking: the per-modality min_tokens sum to {mins}, more than the smallest input "
                                   f"budget {cfg.input_tokens[0]}; lower min_tokens or raise input_tokens")
            mins_t = sum(m.min_tokens for m in self.mods if m.can_target)
            if cfg.target_tokens is not None and mins_t > cfg.target_tokens[0]:
                raise MaskingError(f"masking: the per-modality min_tokens sum to {mins_t}, more than the smallest target "
                                   f"budget {cfg.target_tokens[0]}; lower min_tokens or raise target_tokens")

    # -- config resolution -----------------------------------------------------------------------------
    def _resolve(self, name: str, where: str) -> str | None:
        if name in self.modalities:
            return self.modalities.resolve(name)
        if self.config.allow_unknown_modalities:
            return None
        raise MaskingError(f"masking config {where}: unknown modality {name!r}; the masker's modalities are "
                           f"{', '.join(self.modalities.names) or '(none)'} (set allow_unknown_modalities: true to "
                           f"ignore names of modalities not being trained)")

    def _per_mod(self, alphas: Mapping[str, float], where: str) -> list[float]:
        out = [alphas.get("*", 0.0)] * len(self.mods)
        for name, a in alphas.items():
            if name == "*":
                continue
            r = self._resolve(name, where)
            if r is not None:
                out[self.index[r]] = a
        return out

    # -- token counts ----------------------------------------------------------------------------------
    def _input_slots(self, m: _Mod) -> int:
        return m.n

    def _target_slots(self, m: _Mod) -> int:
        return m.n + 1 if m.kind == "sequence" else m.n

    @property
    def num_encoder_tokens(self) -> int:
        """Encoder length the model must be called with (upper bound of visible input tokens per sample)."""
        if self.config.fixed is not None:
            return sum(self._input_slots(m) for m in self.mods if m.name in self.transfer_in)
        full = max((sum(self._input_slots(m) for mi, m in enumerate(self.mods) if self.full_input[ci, mi])
                    for ci in range(self.full_input.shape[0])), default=0)
        return self.config.input_tokens[1] + full

    @property
    def num_decoder_tokens(self) -> int:
        """Decoder length the model must be called with (upper bound of target slots per sample)."""
        if self.config.fixed is not None:
            return sum(self._target_slots(m) for m in self.mods if m.name in self.transfer_tg)
        if self.config.target_tokens is None:
            return sum(self._target_slots(m) for m in self.mods if m.can_target)
        return self.config.target_tokens[1]

    # -- validation ------------------------------------------------------------------------------------
    def _check_batch(self, batch: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int, torch.device]:
        if not isinstance(batch, Mapping) or not batch:
            raise MaskingError("masker: the batch must be a non-empty mapping modality -> tensor")
        data: dict[str, torch.Tensor] = {}
        bsz: int | None = None
        device = None
        for key, t in batch.items():
            if key not in self.modalities:
                raise MaskingError(f"masker: batch has unknown modality {key!r}; known: {', '.join(self.modalities.names)}")
            name = self.modalities.resolve(key)
            m = self.mods[self.index[name]]
            if not isinstance(t, torch.Tensor):
                raise MaskingError(f"masker: modality {name!r} must be a torch.Tensor, got {type(t).__name__}")
            s = m.spec
            if m.kind in ("image", "vector"):
                ok = t.ndim == 2 and t.shape[1] == m.n and not t.is_floating_point()
                want = f"int64 (B, {m.n})"
            elif m.kind == "pixels":
                h, w = s.image_size
                ok = t.ndim == 4 and tuple(t.shape[1:]) == (s.channels, h, w) and t.is_floating_point()
                want = f"float (B, {s.channels}, {h}, {w})"
            elif m.kind == "sequence":
                ok = t.ndim == 2 and t.shape[1] == m.n and not t.is_floating_point()
                want = f"int64 (B, {m.n}) (tokens, [EOS], then [PAD]=0)"
            else:
                ok = t.ndim == 3 and t.shape[1] == m.n and t.shape[2] == s.embed_dim and t.is_floating_point()
                want = f"float (B, {m.n}, {s.embed_dim})"
            if not ok:
                raise MaskingError(f"masker: modality {name!r} ({m.kind}) must be {want}, got "
                                   f"{str(t.dtype).replace('torch.', '')} {tuple(t.shape)}")
            if bsz is None:
                bsz, device = t.shape[0], t.device
            elif t.shape[0] != bsz:
                raise MaskingError(f"masker: modality {name!r} has batch size {t.shape[0]}, others have {bsz}")
            if m.kind in ("image", "vector", "sequence") and t.numel():
                lo, hi = int(t.min()), int(t.max())
                vocab = s.vocab_size if m.kind != "sequence" else self.text.vocab_size
                if lo < 0 or (vocab is not None and hi >= vocab):
                    raise MaskingError(f"masker: modality {name!r} has token ids in [{lo}, {hi}] outside the "
                                       f"vocabulary [0, {vocab}); were the tokens made with another tokenizer?")
            data[name] = t
        pres: dict[str, torch.Tensor] = {}
        for key, t in (present or {}).items():
            if key not in self.modalities:
                raise MaskingError(f"masker: present has unknown modality {key!r}; known: {', '.join(self.modalities.names)}")
            name = self.modalities.resolve(key)
            t = torch.as_tensor(t, device=device)
            if t.dtype != torch.bool or t.shape != (bsz,):
                raise MaskingError(f"masker: present[{name!r}] must be a BoolTensor of shape ({bsz},), got "
                                   f"{str(t.dtype).replace('torch.', '')} {tuple(t.shape)}")
            pres[name] = t
        return data, pres, int(bsz), device

    # -- main ------------------------------------------------------------------------------------------
    def __call__(self, batch: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None,
                 generator: torch.Generator | None = None, *,
                 chunks: Mapping[str, torch.Tensor] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """Mask ``batch``; see the module docstring. ``chunks`` optionally gives, per sequence modality, a
        LongTensor (B, max_length) of non-decreasing chunk indices for chunked span masking."""
        data, pres, bsz, dev = self._check_batch(batch, present)
        gen = generator
        names = [m.name for m in self.mods]
        nm = len(names)
        # availability and token counts per sample
        avail = torch.zeros(bsz, nm, dtype=torch.bool, device=dev)
        length = torch.zeros(bsz, nm, dtype=torch.long, device=dev)
        seq_state: dict[str, dict[str, torch.Tensor]] = {}
        for name, t in data.items():
            i = self.index[name]
            m = self.mods[i]
            p = pres.get(name, torch.ones(bsz, dtype=torch.bool, device=dev))
            if m.kind == "sequence":
                nonpad = t != self.text.pad_id
                bad = (nonpad[:, 1:] & ~nonpad[:, :-1]).any(1)
                if bool(bad.any()):
                    b = int(bad.nonzero()[0])
                    raise MaskingError(f"masker: sequence modality {name!r}, sample {b}: [PAD] ({self.text.pad_id}) "
                                       f"before a token; sequences must be tokens, [EOS], then [PAD] padding")
                n_tok = nonpad.sum(1)
            elif m.kind == "embedding_sequence":
                nonzero = (t != 0).any(-1)
                n_tok = (torch.cumsum(nonzero.flip(1).long(), 1) > 0).sum(1)  # rows up to the last non-zero one
            else:
                n_tok = torch.full((bsz,), m.n, dtype=torch.long, device=dev)
            length[:, i] = torch.where(p, n_tok, torch.zeros_like(n_tok))
            avail[:, i] = p & (n_tok > 0)

        can_in = torch.tensor([m.can_input for m in self.mods], device=dev)
        can_tg = torch.tensor([m.can_target for m in self.mods], device=dev)
        max_tok = torch.tensor([m.max_tokens for m in self.mods], device=dev)
        min_tok = torch.tensor([m.min_tokens for m in self.mods], device=dev)
        seq_like = torch.tensor([m.kind in ("sequence", "embedding_sequence") for m in self.mods], device=dev)

        cfg = self.config
        if cfg.fixed is not None:
            tin = torch.tensor([n in self.transfer_in for n in names], device=dev)
            ttg = torch.tensor([n in self.transfer_tg for n in names], device=dev)
            in_budget = torch.where(tin & avail, length, 0)
            keep_prob = torch.ones(bsz, nm, device=dev)
            full_in = tin[None].expand(bsz, nm)
        else:
            comp = torch.multinomial(self.weights.to(dev), bsz, replacement=True, generator=gen).to(dev)
            a_in = self.alpha_in.to(dev)[comp] * (avail & can_in)
            full_in = self.full_input.to(dev)[comp] & avail
            cap_in = torch.minimum(max_tok, length) * (avail & can_in)
            p_in = _dirichlet(a_in, gen)
            total_in = _randint(*cfg.input_tokens, bsz, gen, dev)
            base = torch.minimum(min_tok, cap_in) * (a_in > 0)
            in_budget = _allocate(total_in, p_in, base, cap_in, gen)
            in_budget = torch.where(full_in, length, in_budget)
            u = _rand((bsz, nm), gen, dev)
            code = self.keep_code.to(dev)[comp]
            keep_prob = torch.where(code == 0, u, torch.where(code == 1, torch.ones_like(u), (u < 0.5).float()))
            keep_prob = torch.where(full_in, torch.ones_like(u), keep_prob)

        # sequences: span masking of the input (decides the target length)
        in_used = torch.where(seq_like, torch.zeros_like(in_budget), in_budget)
        tgt_len = torch.zeros_like(length)
        for name, t in data.items():
            i = self.index[name]
            m = self.mods[i]
            if m.kind not in ("sequence", "embedding_sequence"):
                continue
            if m.kind == "sequence":
                ids = t.long()
                chunk = None
                if chunks is not None and name in chunks:
                    chunk = torch.as_tensor(chunks[name], device=dev).long()
                    if chunk.shape != ids.shape:
                        raise MaskingError(f"masker: chunks[{name!r}] must have shape {tuple(ids.shape)}, got "
                                           f"{tuple(chunk.shape)}")
                elif m.span == "chunked":
                    starts = torch.isin(ids, torch.tensor(list(m.chunk_ids) + [self.text.eos_id], device=dev))
                    chunk = torch.cumsum(starts.long(), 1)
            else:
                ids = torch.arange(1, m.n + 1, device=dev).expand(bsz, m.n)
                chunk = None
            st = _span_mask(ids, length[:, i], in_budget[:, i], keep_prob[:, i], chunk, gen,
                            self.text.sentinel_start_id)
            seq_state[name] = st
            in_used[:, i] = st["in_len"]
            tgt_len[:, i] = st["tgt_len"] if m.kind == "sequence" else 0

        if cfg.fixed is not None:
            tgt_budget = torch.where(ttg & avail, torch.where(seq_like, tgt_len, length), 0)
        else:
            if cfg.fill_budget:
                # budget a sequence did not use goes to image-like modalities with room
                cap_fill = torch.where(seq_like, in_used, cap_in)
                cap_fill = torch.where(full_in, in_budget, cap_fill)
                base = torch.where(seq_like, in_used, in_budget)
                in_fill = _allocate(total_in + (in_budget * full_in).sum(1), p_in, base, cap_fill, gen)
                in_budget = torch.where(seq_like, in_budget, in_fill)
            a_tg = self.alpha_tg.to(dev)[comp] * (avail & can_tg)
            img_room = (length - in_budget).clamp_min(0)
            cap_tg = torch.minimum(max_tok, torch.where(seq_like, tgt_len, img_room)) * (avail & can_tg)
            if cfg.target_tokens is None:
                tgt_budget = cap_tg * (a_tg > 0)
            else:
                p_tg = _dirichlet(a_tg, gen)
                total_tg = _randint(*cfg.target_tokens, bsz, gen, dev)
                base = torch.minimum(min_tok, cap_tg) * (a_tg > 0)
                tgt_budget = _allocate(total_tg, p_tg, base, cap_tg, gen)

        out: dict[str, dict[str, torch.Tensor]] = {}
        for name, t in data.items():
            i = self.index[name]
            m = self.mods[i]
            if m.kind in _IMAGE_LIKE:
                out[name] = _image_mask(t, m.n, in_budget[:, i], tgt_budget[:, i], gen)
            elif m.kind == "sequence":
                offset = torch.full((bsz,), m.n, device=dev) if cfg.fixed is not None else in_budget[:, i]
                out[name] = _sequence_layout(seq_state[name], m.n, offset, tgt_budget[:, i], gen,
                                             self.text.pad_id, self.text.sentinel_start_id)
            else:
                out[name] = _embedding_layout(t, seq_state[name])
        return out


# ----------------------------------------------------------------------------------------------------------
# per-kind layouts (vectorised over the batch)
# ----------------------------------------------------------------------------------------------------------


def _image_mask(tensor: torch.Tensor, n: int, n_in: torch.Tensor, n_tg: torch.Tensor, gen: torch.Generator | None
                ) -> dict[str, torch.Tensor]:
    """Random disjoint input/target sets of ``n`` tokens (patches for pixels) of the given sizes. n_in, n_tg: (B,)"""
    bsz = n_in.shape[0]
    dev = n_in.device
    order = torch.argsort(_rand((bsz, n), gen, dev), dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=dev).expand(bsz, n))  # (B, N)
    is_in = rank < n_in[:, None]
    is_tg = (rank >= n_in[:, None]) & (rank < (n_in + n_tg)[:, None])
    dam = torch.zeros(bsz, n, dtype=torch.int32, device=dev)
    first = torch.argmax(is_tg.int(), dim=1, keepdim=True)  # first target slot (0 when none)
    dam.scatter_(1, first, is_tg.sum(1, keepdim=True).int())
    return {"tensor": tensor, "input_mask": ~is_in, "target_mask": ~is_tg, "decoder_attention_mask": dam}


def _span_mask(ids: torch.Tensor, length: torch.Tensor, budget: torch.Tensor, keep_prob: torch.Tensor,
               chunk: torch.Tensor | None, gen: torch.Generator | None, sentinel0: int) -> dict[str, torch.Tensor]:
    """Span masking of a batch of sequences (B, L): decide which tokens stay input, lowering the keep probability
    (x0.9 per step, as the reference) until the input (kept tokens + one sentinel per span) fits the budget."""
    bsz, seq_len = ids.shape
    dev = ids.device
    pos = torch.arange(seq_len, device=dev)
    valid = pos[None] < length[:, None]
    u = _rand((bsz, seq_len), gen, dev)
    if chunk is not None:  # one draw per chunk, shared by its tokens
        u = torch.gather(u, 1, chunk.clamp(0, seq_len - 1))
    no_input = budget <= 0
    thr = torch.where(no_input, torch.full_like(keep_prob, -1.0), keep_prob.float())

    def spans(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        masked = valid & (u > th[:, None])
        prev = torch.cat([torch.zeros(bsz, 1, dtype=torch.bool, device=dev), masked[:, :-1]], 1)
        start = masked & ~prev
        in_len = (valid & ~masked).sum(1) + start.sum(1)
        return masked, start, in_len

    masked, start, in_len = spans(thr)
    for step in range(200):
        over = (in_len > budget) & ~no_input
        if not bool(over.any()):
            break
        thr = torch.where(over, thr * KEEP_PROB_DECAY if step < 150 else torch.full_like(thr, -1.0), thr)
        masked, start, in_len = spans(thr)
    in_len = torch.where(no_input, torch.zeros_like(in_len), in_len)
    span_idx = torch.cumsum(start.long(), 1)  # 1-based span number inside a span
    nspans = start.sum(1)
    # encoder input: kept tokens, a sentinel per span
    in_emit = valid & (~masked | start) & ~no_input[:, None]
    in_val = torch.where(masked, sentinel0 + span_idx, ids)
    in_pos = torch.cumsum(in_emit.long(), 1) - 1
    # decoder target: per span a sentinel then its tokens, then a final sentinel
    cnt = (valid & masked).long() * (1 + start.long())
    tok_pos = torch.cumsum(cnt, 1) - 1
    tgt_len = cnt.sum(1) + 1
    return {"ids": ids, "valid": valid, "masked": masked, "start": start, "in_emit": in_emit, "in_val": in_val,
            "in_pos": in_pos, "tok_pos": tok_pos, "span_idx": span_idx, "nspans": nspans, "in_len": in_len,
            "tgt_len": tgt_len}


def _sequence_layout(st: dict[str, torch.Tensor], max_length: int, offset: torch.Tensor, tgt_budget: torch.Tensor,
                     gen: torch.Generator | None, pad_id: int, sentinel0: int) -> dict[str, torch.Tensor]:
    """Write input and (possibly truncated) target of a span-masked sequence into the reference layout."""
    ids, valid, masked, start = st["ids"], st["valid"], st["masked"], st["start"]
    bsz, seq_len = ids.shape
    dev = ids.device
    width = 2 * (max_length + 1)
    tmax = 2 * seq_len + 2  # entries of the full target (+1 dummy column for scatters)
    # full target entries (B, tmax): values and sentinel flags
    tgt_val = torch.full((bsz, tmax + 1), pad_id, dtype=torch.long, device=dev)
    tgt_sent = torch.zeros(bsz, tmax + 1, dtype=torch.bool, device=dev)
    tok_emit = valid & masked
    tok_col = torch.where(tok_emit, st["tok_pos"], tmax)
    tgt_val.scatter_(1, tok_col, ids)
    sen_col = torch.where(start, st["tok_pos"] - 1, tmax)
    tgt_val.scatter_(1, sen_col, sentinel0 + st["span_idx"])
    tgt_sent.scatter_(1, sen_col, torch.ones_like(start))
    total = st["tgt_len"]
    fin_col = (total - 1)[:, None]
    tgt_val.scatter_(1, fin_col, (sentinel0 + st["nspans"] + 1)[:, None])
    tgt_sent.scatter_(1, fin_col, torch.ones(bsz, 1, dtype=torch.bool, device=dev))
    tgt_val, tgt_sent = tgt_val[:, :tmax], tgt_sent[:, :tmax]
    # truncation to the target budget, at a sentinel (the reference's rule)
    col = torch.arange(tmax, device=dev)[None]
    nsent = st["nspans"] + 1
    j = torch.floor(_rand((bsz,), gen, dev) * (nsent - 1).clamp_min(1)).long()
    cum = torch.cumsum(tgt_sent.long(), 1)
    start_j = torch.argmax(((cum == (j + 1)[:, None]) & tgt_sent).int(), 1)
    long_enough = total - start_j >= tgt_budget
    late = tgt_sent & (col >= (total - tgt_budget)[:, None])
    start_late = torch.argmax(late.int(), 1)
    need = total > tgt_budget
    t_start = torch.where(need, torch.where(long_enough, start_j, start_late), torch.zeros_like(total))
    t_len = torch.where(need, torch.where(long_enough, tgt_budget, total - start_late), total)
    keep = (col >= t_start[:, None]) & (col < (t_start + t_len)[:, None])
    # assemble (B, width)
    tensor = torch.full((bsz, width + 1), pad_id, dtype=torch.long, device=dev)
    in_mask = torch.ones(bsz, width + 1, dtype=torch.bool, device=dev)
    tg_mask = torch.ones(bsz, width + 1, dtype=torch.bool, device=dev)
    in_col = torch.where(st["in_emit"], st["in_pos"], width)
    tensor.scatter_(1, in_col, st["in_val"])
    in_mask.scatter_(1, in_col, torch.zeros_like(st["in_emit"]))
    out_col = torch.where(keep, offset[:, None] + col - t_start[:, None], width).clamp_max(width)
    tensor.scatter_(1, out_col, tgt_val)
    tg_mask.scatter_(1, out_col, torch.zeros_like(keep))
    tensor, in_mask, tg_mask = tensor[:, :width], in_mask[:, :width], tg_mask[:, :width]
    return {"tensor": tensor, "input_mask": in_mask, "target_mask": tg_mask,
            "decoder_attention_mask": (~tg_mask).int()}


def _embedding_layout(t: torch.Tensor, st: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Kept rows first, a zero row per masked span; input only."""
    bsz, n, d = t.shape
    dev = t.device
    out = torch.zeros(bsz, n + 1, d, dtype=t.dtype, device=dev)
    in_col = torch.where(st["in_emit"], st["in_pos"], n)
    rows = torch.where(st["masked"][..., None], torch.zeros_like(t), t)  # sentinel slots carry zeros
    out.scatter_(1, in_col[..., None].expand(bsz, n, d), rows)
    in_mask = torch.ones(bsz, n + 1, dtype=torch.bool, device=dev)
    in_mask.scatter_(1, in_col, torch.zeros_like(st["in_emit"]))
    return {"tensor": out[:, :n], "input_mask": in_mask[:, :n],
            "target_mask": torch.ones(bsz, n, dtype=torch.bool, device=dev),
            "decoder_attention_mask": torch.zeros(bsz, n, dtype=torch.int32, device=dev)}
