"""Caption figures: BLEU-1..4 and CIDEr-D, as the COCO caption evaluation computes them (its BLEU with the
"closest" reference length, its CIDEr-D with σ = 6, clipped counts and the factor 10), in pure Python.

Text is tokenised into lower-case words and numbers, punctuation dropped (close to the PTB tokenizer of the
COCO evaluation, which needs Java). With ``c_k(x)`` the counts of the k-grams of ``x`` (k = 1..4):

* BLEU: per k the clipped matches ``sum min(c_k(hyp), max over refs c_k(ref))`` over the guesses
  ``max(0, len(hyp) - k + 1)``, summed over the corpus; BLEU-n is the geometric mean of the first n
  precisions times the brevity penalty ``exp(1 - R / H)`` when the hypotheses' total length ``H`` is below
  the total ``R`` of the references closest in length to each hypothesis (a sample's own BLEU the same on
  that sample alone);
* CIDEr-D: k-gram vectors weighted by tf · (log N - log df), with ``N`` the number of samples and ``df`` the
  number of samples whose references contain the k-gram; per reference and k
  ``sum min(g_hyp, g_ref) g_ref / (|g_hyp| |g_ref|)`` times ``exp(-(l_hyp - l_ref)^2 / (2 σ^2))`` (``l``
  the bigram count, as the reference code counts length), averaged over k and references, times 10, then
  averaged over samples. It depends on the whole corpus, so ``compute()`` scores it over every sample seen.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Accumulator

MAX_N = 4
SIGMA = 6.0
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SMALL, _TINY = 1e-9, 1e-15


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers of ``text`` (punctuation dropped)."""
    return _WORD.findall(text.lower())


def ngrams(words: Sequence[str], n: int = MAX_N) -> Counter:
    """Counts of the 1..n-grams of ``words`` (tuples)."""
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def bleu_stats(hyp: list[str], refs: list[list[str]]) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(hypothesis length, closest reference length, guesses (4,), clipped matches (4,)) of one sample."""
    counts = ngrams(hyp)
    max_ref: Counter = Counter()
    for r in refs:
        max_ref |= ngrams(r)
    correct = np.zeros(MAX_N)
    for g, c in counts.items():
        correct[len(g) - 1] += min(c, max_ref.get(g, 0))
    guess = np.array([max(0, len(hyp) - k) for k in range(MAX_N)], np.float64)
    ref_len = min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
    return len(hyp), ref_len, guess, correct


def bleu_from_stats(hyp_len: float, ref_len: float, guess: np.ndarray, correct: np.ndarray) -> list[float]:
    """BLEU-1..4 of summed statistics (the smoothing constants of the COCO evaluation)."""
    out, prod = [], 1.0
    for k in range(MAX_N):
        prod *= (correct[k] + _TINY) / (guess[k] + _SMALL)
        out.append(prod ** (1.0 / (k + 1)))
    ratio = (hyp_len + _TINY) / (ref_len + _SMALL)
    if ratio < 1:
        out = [b * math.exp(1 - 1 / ratio) for b in out]
    return out


def cider_d(hyps: list[list[str]], refs: list[list[list[str]]], sigma: float = SIGMA) -> np.ndarray:
    """CIDEr-D of each sample of a corpus (the module docstring)."""
    hyp_counts = [ngrams(h) for h in hyps]
    ref_counts = [[ngrams(r) for r in rs] for rs in refs]
    df: Counter = Counter()
    for rs in ref_counts:
        df.update(set().union(*rs))
    log_n = math.log(float(len(hyps)))

    def vec(counts: Counter) -> tuple[list[dict], np.ndarray, int]:
        v: list[dict] = [{} for _ in range(MAX_N)]
        norm = np.zeros(MAX_N)
        for g, tf in counts.items():
            w = tf * (log_n - math.log(max(1.0, df[g])))
            v[len(g) - 1][g] = w
            norm[len(g) - 1] += w * w
        return v, np.sqrt(norm), sum(tf for g, tf in counts.items() if len(g) == 2)

    scores = np.zeros(len(hyps))
    for i, (hc, rcs) in enumerate(zip(hyp_counts, ref_counts)):
        vh, nh, lh = vec(hc)
        total = np.zeros(MAX_N)
        for rc in rcs:
            vr, nr, lr = vec(rc)
            penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma ** 2))
            for k in range(MAX_N):
                val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
                if nh[k] != 0 and nr[k] != 0:
                    val /= nh[k] * nr[k]
                total[k] += val * penalty
        scores[i] = total.mean() / len(rcs) * 10.0
    return scores


class CaptionMetric(Accumulator):
    """Captions (raw: a ``str``; a reference may also be a list of ``str``, several references of one image)
    scored by BLEU-1..4 and CIDEr-D over the corpus (the module docstring). Primary: ``BLEU-4`` (higher is
    better); per sample, its own BLEU-4. A reference without words is invalid: the sample is left out (its
    score is NaN); an empty prediction scores 0."""

    primary = "BLEU-4"
    higher_is_better = True

    def __init__(self, *, spec: Any = None, modality: str = "caption"):
        super().__init__(spec.name if spec is not None else modality)

    def _reset(self) -> None:
        self.hyps: list[list[str]] = []
        self.refs: list[list[list[str]]] = []
        self.totals = np.zeros(2 + 2 * MAX_N)

    def _text(self, index: int, raw: Any, what: str) -> list[list[str]]:
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
            raise self.error(index, f"the {what} must be a caption str (a reference may be a list of str), "
                                    f"got {raw!r:.80}")
        if what == "prediction" and len(texts) != 1:
            raise self.error(index, f"the prediction must be one caption str, got {len(texts)}")
        return [tokenize(t) for t in texts]

    def _update(self, preds: list[Any], refs: list[Any]) -> list[float]:
        scores = []
        for i, (p, r) in enumerate(zip(preds, refs)):
            hyp = self._text(i, p, "prediction")[0]
            rs = self._text(i, r, "reference")
            rs = [r for r in rs if r]
            if not rs:
                scores.append(float("nan"))
                continue
            hyp_len, ref_len, guess, correct = bleu_stats(hyp, rs)
            self.totals += np.concatenate([[hyp_len, ref_len], guess, correct])
            self.hyps.append(hyp)
            self.refs.append(rs)
            scores.append(bleu_from_stats(hyp_len, ref_len, guess, correct)[-1])
        return scores

    def _compute(self) -> dict[str, float]:
        if not self.hyps:
            return {**{f"BLEU-{k + 1}": float("nan") for k in range(MAX_N)}, "CIDEr": float("nan")}
        t = self.totals
        bleu = bleu_from_stats(t[0], t[1], t[2:2 + MAX_N], t[2 + MAX_N:])
        out = {f"BLEU-{k + 1}": b for k, b in enumerate(bleu)}
        out["CIDEr"] = float(cider_d(self.hyps, self.refs).mean())
        return out
