"""Deterministic answer metrics against gold answers: exact match, token F1, contains, ROUGE-L (SQuAD
normalisation), and abstention detection.

Each function takes a prediction and the gold answers and returns the best score over the gold answers,
in [0, 1]. With no gold answers (an unanswerable question) the score is NaN: undefined, not wrong.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | {"\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014"}


def normalize(text: str) -> str:
    """Lower-case, NFKC-normalise, drop punctuation and English articles, collapse white space."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _best(pred: str, golds: Sequence[str], fn: Callable[[str, str], float]) -> float:
    if not golds:
        return math.nan
    return max(fn(pred, g) for g in golds)


def _em(pred: str, gold: str) -> float:
    return float(normalize(pred) == normalize(gold))


def _f1(pred: str, gold: str) -> float:
    p, g = normalize(pred).split(), normalize(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _contains(pred: str, gold: str) -> float:
    g = normalize(gold)
    return float(bool(g) and f" {g} " in f" {normalize(pred)} ")


def exact_match(pred: str, golds: Sequence[str]) -> float:
    return _best(pred, golds, _em)


def token_f1(pred: str, golds: Sequence[str]) -> float:
    return _best(pred, golds, _f1)


def contains(pred: str, golds: Sequence[str]) -> float:
    """1.0 when a normalised gold answer appears, as whole words, in the normalised prediction."""
    return _best(pred, golds, _contains)


class _NormalisingTokenizer:
    """rouge-score's own tokenizer keeps only [a-z0-9]; ours keeps any script (NFKC, SQuAD normalisation)."""

    def tokenize(self, text: str) -> list[str]:
        return normalize(text).split()


_ROUGE = None


def rouge_l(pred: str, golds: Sequence[str]) -> float:
    """ROUGE-L F-measure (longest common subsequence, ``rouge-score``), best over the gold answers."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_NormalisingTokenizer())
    return _best(pred, golds, lambda p, g: float(_ROUGE.score(g, p)["rougeL"].fmeasure))


# Ways a generator says it cannot answer (matched on the normalised answer).
_DECLINE = re.compile(
    r"^(i )?(do not|dont|cannot|cant|can not) (know|answer|say|tell|determine|find)"
    r"|\b(unanswerable|no answer|not (mentioned|stated|provided|given|specified|available)|unknown)\b"
    r"|\b(context|passages?|text) (does not|doesnt|do not|dont) (contain|mention|say|provide|specify)"
    r"|^(none|n a|na)$"
)


def declined(pred: str) -> bool:
    """True when the answer is empty or says the question cannot be answered from the context."""
    text = normalize(pred.replace("'", "").replace("\u2019", ""))
    return not text or bool(_DECLINE.search(text))
