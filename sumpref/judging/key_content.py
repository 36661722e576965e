"""Key-content coverage: how much of an article's salient content a summary states.

Contract:
- `KeyContent.of(article, highlights, n_lead)` -> the article's key content, built once per
  article: the content words (names, numbers, nouns, verbs...; `sumpref.judging.cloze`
  normalisation, then a light suffix strip so "scored" and "scores" meet) of two sources, the
  reference `highlights` (may be None) and the article's first `n_lead` sentences. Each word occurrence is a
  cloze item "which word goes here?"; a summary answers it when it uses the word (as often as the
  source does). An item is worth `log(1 + number of times the article uses the word)`: a word the
  article keeps coming back to is central to the story, a word it uses once is detail, and a
  word of the highlights that the article never uses is worth 0 (a summary of the article cannot
  be asked to know it).
- `coverage(key, summary, lead_weight)` -> float in [0, 1]: the worth of the answered items over
  the worth of all items, per source, combined as `(highlights + lead_weight x lead) / (1 +
  lead_weight)`; without highlights (or none of their words in the article) the lead alone.
  An empty summary covers 0; an article without content words gives 0.
Pure functions, stdlib only.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from sumpref.judging.cloze import _content, _norm, _raw_tokens, _sentences

_SUFFIXES = ("ing", "ed", "es", "s")


def stem(word: str) -> str:
    """A light suffix strip (the first of -ing, -ed, -es, -s that leaves 4 letters or more):
    enough for "scored"/"scoring"/"scores" to meet. Numbers are left alone."""
    if not word.isalpha():
        return word
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 4:
            return word[: -len(suf)]
    return word


def content_stems(text: str) -> Counter[str]:
    """Stemmed content words of a text, with counts (punctuation and stopwords dropped)."""
    toks = [t for t in (_norm(x) for x in _raw_tokens(text or "")) if t[0].isalnum()]
    return Counter(stem(t) for t in _content(toks))


@dataclass(frozen=True)
class KeyContent:
    highlights: dict[str, float]  # stem -> count x item worth
    lead: dict[str, float]
    counts: dict[str, Counter[str]]  # source name -> stem counts

    @classmethod
    def of(cls, article: str, highlights: str | None, n_lead: int = 3) -> "KeyContent":
        tf = content_stems(article)
        lead_text = " ".join(_sentences(article)[:n_lead]) or article
        sources = {"highlights": content_stems(highlights or ""), "lead": content_stems(lead_text)}
        worth = {name: {w: math.log1p(tf[w]) for w in c if tf[w]} for name, c in sources.items()}
        return cls(worth["highlights"], worth["lead"], sources)


def _answered(worth: dict[str, float], wanted: Counter[str], summary: Counter[str]) -> float:
    total = sum(wanted[w] * v for w, v in worth.items())
    return sum(min(wanted[w], summary[w]) * v for w, v in worth.items()) / total if total else math.nan


def coverage(key: KeyContent, summary: str, lead_weight: float = 0.25) -> float:
    said = content_stems(summary)
    hl = _answered(key.highlights, key.counts["highlights"], said)
    lead = _answered(key.lead, key.counts["lead"], said)
    if math.isnan(lead):
        lead = 0.0
    if math.isnan(hl):
        return lead
    return (hl + lead_weight * lead) / (1 + lead_weight)
