"""Grammar-constrained decoding: the text of a structured sequence modality as a token-level automaton.

A sequence plugin's serializer may declare the grammar of its text with a ``grammar()`` method returning a
:class:`Grammar` built from a few combinators over vocabulary tokens::

    from fourm_core.generation.grammar import Grammar, alt, repeat, seq, value, words

    def grammar(self):
        box = seq(value(0), value(1), value(2), value(3), words(*self.classes))
        return Grammar(repeat(box, 0, 50))

* :func:`value` ``(axis, lo, hi)``: one coordinate token ``v{axis}=N`` with ``lo <= N <= hi``;
* :func:`words` ``(*phrases)``: one of the phrases, each as the text tokenizer writes it (a class name that is
  one whole-word token of the vocabulary is that token; another is its word pieces in order);
* :func:`seq`, :func:`alt`, :func:`repeat` ``(node, min, max)``, :func:`optional`, :func:`permutation`
  (every order of its parts, each once).

``Grammar(root, once=node)``: the tokens of ``once`` (a set of single tokens) may appear at most once per
sequence (e.g. the keys of a dictionary). The text may end where ``root`` accepts: there the sampler allows
``[EOS]`` and the sentinel that closes the generation, elsewhere neither.

:func:`automaton_for` compiles a serializer's grammar against a text tokenizer into a
:class:`TokenAutomaton` (a DFA over *atoms*, the classes of token ids no symbol of the grammar tells apart;
built once per (serializer, tokenizer) and cached). During decoding, :class:`GrammarDecoder` keeps one state
per sample and gives the mask of the allowed next tokens as one gather per step
(:mod:`fourm_core.generation.grammar_decode`). A length budget is
honoured: a token is allowed only if some accepted text can still be finished in the positions left, so a
generation cut at ``max_new_tokens`` is still complete.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch

from .errors import GenerationError

log = logging.getLogger(__name__)

#: a distance larger than any sequence: "no accepted text is reachable"
_FAR = 1 << 30
#: largest number of parts :func:`permutation` expands (n! alternatives)
MAX_PERMUTATION = 6


# -- declaration ---------------------------------------------------------------------------------------------
@attrs.frozen
class Value:
    """One coordinate token ``v{axis}=N``, ``lo <= N <= hi``."""

    axis: int
    lo: int
    hi: int


@attrs.frozen
class Words:
    """One of ``phrases``, each tokenized by the text tokenizer."""

    phrases: tuple[str, ...]


@attrs.frozen
class Seq:
    parts: tuple[Any, ...]


@attrs.frozen
class Alt:
    options: tuple[Any, ...]


@attrs.frozen
class Repeat:
    node: Any
    min: int
    max: int | None


@attrs.frozen
class Permutation:
    parts: tuple[Any, ...]


def value(axis: int, lo: int = 0, hi: int = 999) -> Value:
    """One token ``v{axis}=N`` with ``lo <= N <= hi``."""
    if not (isinstance(axis, int) and isinstance(lo, int) and isinstance(hi, int)) or not 0 <= lo <= hi:
        raise GenerationError(f"grammar: value({axis!r}, {lo!r}, {hi!r}) needs integers 0 <= lo <= hi")
    return Value(axis, lo, hi)


def words(*phrases: str) -> Words:
    """One of the phrases (``"person"``, ``"traffic light"``, ...), as the text tokenizer writes it."""
    if not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
        raise GenerationError(f"grammar: words() needs non-empty strings, got {phrases!r}")
    return Words(tuple(phrases))


def seq(*parts: Any) -> Seq:
    """The parts one after the other."""
    return Seq(tuple(parts))


def alt(*options: Any) -> Alt:
    """Exactly one of the options."""
    if not options:
        raise GenerationError("grammar: alt() needs at least one option")
    return Alt(tuple(options))


def repeat(node: Any, min: int = 0, max: int | None = None) -> Repeat:  # noqa: A002 - the usual names
    """``node`` between ``min`` and ``max`` times (``None``: no upper bound)."""
    if min < 0 or (max is not None and max < min):
        raise GenerationError(f"grammar: repeat(min={min}, max={max}) needs 0 <= min <= max")
    return Repeat(node, int(min), None if max is None else int(max))


def optional(node: Any) -> Repeat:
    return Repeat(node, 0, 1)


def permutation(*parts: Any) -> Permutation:
    """Every part exactly once, in any order."""
    if not 1 <= len(parts) <= MAX_PERMUTATION:
        raise GenerationError(f"grammar: permutation() takes 1..{MAX_PERMUTATION} parts, got {len(parts)}")
    return Permutation(tuple(parts))


@attrs.frozen
class Grammar:
    """A serializer's text grammar: ``root`` and the single tokens that may appear at most ``once``."""

    root: Any
    once: Any = None


# -- compilation ---------------------------------------------------------------------------------------------
class _Nfa:
    """Thompson construction: states are ints, ``eps[s]`` their empty moves, ``moves[s]`` (symbol, target)."""

    def __init__(self, resolve):
        self.resolve = resolve  # node -> list of id sequences (Value / Words) as symbol indices
        self.eps: list[list[int]] = []
        self.moves: list[list[tuple[int, int]]] = []

    def state(self) -> int:
        self.eps.append([])
        self.moves.append([])
        return len(self.eps) - 1

    def build(self, node: Any, start: int) -> int:
        """Add ``node`` from ``start``; returns its end state."""
        if isinstance(node, (Value, Words)):
            end = self.state()
            for symbols in self.resolve(node):
                at = start
                for i, sym in enumerate(symbols):
                    nxt = end if i == len(symbols) - 1 else self.state()
                    self.moves[at].append((sym, nxt))
                    at = nxt
            return end
        if isinstance(node, Seq):
            for part in node.parts:
                start = self.build(part, start)
            return start
        if isinstance(node, Alt):
            end = self.state()
            for option in node.options:
                s = self.state()
                self.eps[start].append(s)
                self.eps[self.build(option, s)].append(end)
            return end
        if isinstance(node, Repeat):
            for _ in range(node.min):
                start = self.build(node.node, start)
            end = self.state()
            self.eps[start].append(end)
            if node.max is None:  # a loop: start -> node -> start
                s = self.state()
                self.eps[start].append(s)
                self.eps[self.build(node.node, s)].append(start)
                return end
            for _ in range(node.max - node.min):
                start = self.build(node.node, start)
                self.eps[start].append(end)
            return end
        if isinstance(node, Permutation):  # one junction per set of parts written so far
            n = len(node.parts)
            junction = {0: start}
            for used in sorted(range(1 << n), key=lambda m: bin(m).count("1"))[:-1]:
                for p in range(n):
                    if not used >> p & 1:
                        end = self.build(node.parts[p], junction[used])
                        self.eps[end].append(junction.setdefault(used | 1 << p, self.state()))
            return junction[(1 << n) - 1]
        raise GenerationError(f"grammar: {node!r} is not a grammar node (value, words, seq, alt, repeat, permutation)")

    def closure(self, states) -> frozenset[int]:
        seen, todo = set(states), list(states)
        while todo:
            for t in self.eps[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return frozenset(seen)


class _Symbols:
    """The token-id sets of a grammar under one tokenizer; each distinct set gets a symbol index."""

    def __init__(self, tokenizer: Any, vocab: int, modality: str):
        self.tok, self.vocab, self.modality = tokenizer, vocab, modality
        self.sets: list[np.ndarray] = []
        self._index: dict[bytes, int] = {}
        self._resolved: dict[Any, list[list[int]]] = {}
        reserved = set(getattr(tokenizer, "sentinel_ids", ())) | {0, 1, 2, 3}
        self.reserved = np.asarray(sorted(reserved), dtype=np.int64)

    def symbol(self, ids: np.ndarray, what: str) -> int:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if ids.size and (ids.max() >= self.vocab or np.isin(ids, self.reserved).any()):
            raise GenerationError(f"grammar of {self.modality!r}: {what} maps to token ids outside the vocabulary "
                                  f"(size {self.vocab}) or to [PAD]/[UNK]/[SOS]/[EOS]/sentinels")
        key = ids.tobytes()
        if key not in self._index:
            self._index[key] = len(self.sets)
            self.sets.append(ids)
        return self._index[key]

    def resolve(self, node: Any) -> list[list[int]]:
        """The symbol sequences of a token node (one per alternative), computed once per node."""
        if node not in self._resolved:
            self._resolved[node] = self._resolve(node)
        return self._resolved[node]

    def _resolve(self, node: Any) -> list[list[int]]:
        if isinstance(node, Value):
            ids = []
            for n in range(node.lo, node.hi + 1):
                i = self.tok.token_to_id(f"v{node.axis}={n}")
                if i is None:
                    raise GenerationError(f"grammar of {self.modality!r}: the text vocabulary has no token "
                                          f"'v{node.axis}={n}'; use the shared layout (v0=..v3= 0..999)")
                ids.append(i)
            return [[self.symbol(np.asarray(ids), f"value({node.axis}, {node.lo}, {node.hi})")]]
        pieces = self.tok.encode_ids(list(node.phrases))
        single = [p[0] for p in pieces if len(p) == 1]
        out = [[self.symbol(np.asarray(single), "words(...)")]] if single else []
        for phrase, p in zip(node.phrases, pieces):
            if not p:
                raise GenerationError(f"grammar of {self.modality!r}: the phrase {phrase!r} encodes to no tokens")
            if len(p) > 1:
                out.append([self.symbol(np.asarray([i]), repr(phrase)) for i in p])
        return out


@attrs.frozen(eq=False)
class TokenAutomaton:
    """A compiled grammar: ``atom_of_id`` ``(V,)`` (atom of each token id; ``A`` = in no symbol), ``trans``
    ``(S, A + 1)`` next state (-1: forbidden), ``accept`` ``(S,)``, ``dist`` ``(S,)`` fewest tokens to an
    accepting state, ``once`` ``(V,)`` tokens allowed at most once (or None); state 0 is the start."""

    modality: str
    atom_of_id: torch.Tensor
    trans: torch.Tensor
    accept: torch.Tensor
    dist: torch.Tensor
    once: torch.Tensor | None
    _memo: dict = attrs.field(factory=dict, init=False, repr=False)

    @property
    def num_states(self) -> int:
        return int(self.trans.shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self.atom_of_id.shape[0])

    def for_vocab(self, vocab: int) -> TokenAutomaton:
        """The same automaton over a model vocabulary of ``vocab`` ids (ids beyond the tokenizer's are forbidden)."""
        V = self.vocab_size
        if vocab == V:
            return self
        if vocab in self._memo:
            return self._memo[vocab]
        A = int(self.trans.shape[1]) - 1
        used = torch.nonzero(self.atom_of_id < A).flatten()
        if vocab < V and used.numel() and int(used.max()) >= vocab:
            raise GenerationError(f"grammar of {self.modality!r} uses token id {int(used.max())} but the model's "
                                  f"vocabulary for the target has {vocab} ids; use the model's own text tokenizer")
        atoms = torch.full((vocab,), A, dtype=torch.long)
        atoms[: min(V, vocab)] = self.atom_of_id[: min(V, vocab)]
        once = None
        if self.once is not None:
            once = torch.zeros(vocab, dtype=torch.bool)
            once[: min(V, vocab)] = self.once[: min(V, vocab)]
        self._memo[vocab] = attrs.evolve(self, atom_of_id=atoms, once=once)
        return self._memo[vocab]

    def move_masks(self) -> torch.Tensor:
        """Bool ``(S, V)``: per state, the tokens that lead to a state from which a text can still end
        (computed once)."""
        if "moves" not in self._memo:
            live = (self.trans >= 0) & (self.dist[self.trans.clamp(min=0)] < _FAR)  # (S, A + 1)
            self._memo["moves"] = live[:, self.atom_of_id]
        return self._memo["moves"]

    def accepts(self, ids: Sequence[int], *, complete: bool = True) -> bool:
        """Whether the id sequence is a text of the grammar (``complete=False``: the beginning of one)."""
        state, used = 0, set()
        A = int(self.trans.shape[1]) - 1
        for i in ids:
            i = int(i)
            atom = int(self.atom_of_id[i]) if 0 <= i < self.vocab_size else A
            state = int(self.trans[state, atom])
            if state < 0 or (self.once is not None and bool(self.once[i]) and i in used):
                return False
            used.add(i)
        return bool(self.accept[state]) if complete else int(self.dist[state]) < _FAR


def compile_grammar(grammar: Grammar, tokenizer: Any, *, modality: str = "?") -> TokenAutomaton:
    """Compile ``grammar`` against ``tokenizer`` (a :class:`~fourm_core.tokenizers.TextTokenizer`)."""
    if not isinstance(grammar, Grammar):
        raise GenerationError(f"the grammar of {modality!r} must be a fourm_core.generation.grammar.Grammar, "
                              f"got {type(grammar).__name__}")
    V = int(tokenizer.vocab_size)
    syms = _Symbols(tokenizer, V, modality)
    nfa = _Nfa(syms.resolve)
    start = nfa.state()
    final = nfa.build(grammar.root, start)
    once_ids = None
    if grammar.once is not None:
        once_syms = syms.resolve(grammar.once) if isinstance(grammar.once, (Value, Words)) else None
        if not once_syms or any(len(s) != 1 for s in once_syms):
            raise GenerationError(f"grammar of {modality!r}: once= must be value(...) or words(...) of single tokens")
        once_ids = np.concatenate([syms.sets[s[0]] for s in once_syms])
    # atoms: token ids grouped by the set of symbols that contain them
    member = np.zeros((max(len(syms.sets), 1), V), dtype=bool)
    for k, ids in enumerate(syms.sets):
        member[k, ids] = True
    covered = member.any(axis=0)
    keys = np.packbits(member, axis=0).T  # (V, bytes) signature of each id
    _, inverse = np.unique(keys[covered], axis=0, return_inverse=True)
    atom_of_id = np.full(V, -1, dtype=np.int64)
    atom_of_id[covered] = inverse.reshape(-1)
    A = int(inverse.max()) + 1 if covered.any() else 0
    atom_of_id[~covered] = A
    atoms_of_sym = [np.unique(atom_of_id[ids]).tolist() for ids in syms.sets]
    # subset construction
    first = nfa.closure([start])
    index, order, rows = {first: 0}, [first], []
    while len(rows) < len(order):
        cur = order[len(rows)]
        targets: dict[int, set[int]] = {}
        for s in cur:
            for sym, t in nfa.moves[s]:
                for a in atoms_of_sym[sym]:
                    targets.setdefault(a, set()).add(t)
        row = [-1] * (A + 1)
        for a, ts in targets.items():
            nxt = nfa.closure(ts)
            if nxt not in index:
                index[nxt] = len(order)
                order.append(nxt)
            row[a] = index[nxt]
        rows.append(row)
    trans, accept = _minimize(torch.tensor(rows, dtype=torch.long), torch.tensor([final in s for s in order]))
    dist = torch.where(accept, 0, _FAR)
    for _ in range(len(order)):  # fewest tokens to an accepting state (Bellman-Ford over the small DFA)
        via = torch.where(trans >= 0, dist[trans.clamp(min=0)] + 1, _FAR).amin(dim=1).clamp(max=_FAR)
        new = torch.minimum(dist, via)
        if torch.equal(new, dist):
            break
        dist = new
    if int(dist[0]) >= _FAR:
        raise GenerationError(f"grammar of {modality!r} accepts no text at all")
    once = None
    if once_ids is not None:
        once = torch.zeros(V, dtype=torch.bool)
        once[torch.from_numpy(once_ids)] = True
    log.debug("grammar of %r: %d states, %d atoms", modality, len(order), A)
    return TokenAutomaton(modality=modality, atom_of_id=torch.from_numpy(atom_of_id), trans=trans, accept=accept,
                          dist=dist, once=once)


def _minimize(trans: torch.Tensor, accept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Moore's partition refinement: states with the same future merge (e.g. the orders of a permutation
    that used the same parts); the start state stays 0."""
    cls = accept.long()
    while True:
        nxt = torch.where(trans >= 0, cls[trans.clamp(min=0)], -1)
        _, new = torch.unique(torch.cat([cls[:, None], nxt], dim=1), dim=0, return_inverse=True)
        if int(new.max()) == int(cls.max()):
            break
        cls = new
    # renumber the classes in order of first appearance, so the start state's class is 0
    first = torch.full((int(cls.max()) + 1,), len(cls), dtype=torch.long).scatter_reduce(
        0, cls, torch.arange(len(cls)), reduce="amin")
    rank = torch.empty_like(first)
    rank[first.argsort()] = torch.arange(len(first))
    cls = rank[cls]
    reps = first.sort().values  # one state of each class, by new number
    small = torch.where(trans[reps] >= 0, cls[trans[reps].clamp(min=0)], -1)
    return small, accept[reps]


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def automaton_for(serializer: Any, tokenizer: Any, *, modality: str | None = None) -> TokenAutomaton | None:
    """The compiled grammar of ``serializer`` under ``tokenizer``, or None when it declares none (no
    ``grammar()`` method, or one that returns None). Cached per (serializer, tokenizer)."""
    declare = getattr(serializer, "grammar", None)
    if declare is None or tokenizer is None:
        return None
    name = modality or getattr(serializer, "modality", None) or type(serializer).__name__
    try:
        per = _CACHE.setdefault(serializer, {})
    except TypeError:  # not weak-referenceable: compile every time
        per = {}
    key = (id(tokenizer), int(tokenizer.vocab_size))
    if key not in per:
        g = declare()
        per[key] = None if g is None else compile_grammar(g, tokenizer, modality=name)
    return per[key]


def codec_automaton(codec: Any) -> TokenAutomaton | None:
    """The compiled grammar of a sequence modality's codec (its serializer over its text tokenizer), or None."""
    if codec is None or not getattr(codec, "text", False):
        return None
    text_tok = getattr(codec.tokenizer, "text_tokenizer", None)
    return automaton_for(codec.serializer, text_tok, modality=codec.name)


def with_codec_grammar(cfg: Any, codec: Any) -> Any:
    """``cfg`` (a TargetConfig) with ``grammar`` set to its codec's compiled grammar where it is unset (None) or
    True; ``grammar=True`` without a declared grammar raises; False and compiled automata are kept."""
    if cfg.grammar is not None and cfg.grammar is not True:
        return cfg
    automaton = codec_automaton(codec)
    if automaton is None and cfg.grammar is True:
        raise GenerationError(f"target {cfg.modality!r}: grammar=True but its serializer declares no grammar "
                              f"(no grammar() method); leave grammar unset or False")
    return cfg.replace(grammar=automaton) if automaton is not None else cfg
