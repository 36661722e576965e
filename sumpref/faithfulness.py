"""Faithfulness of a summary to its article: which summary sentences the article does not support.

Contract:
- `unsupported_sentences(article, summary, max_novel_bigrams)` -> one `SentenceSupport` per
  summary sentence (a summary without sentence punctuation is one sentence). Lexical rule: a
  sentence is *unsupported* when it uses a content word (name, number, noun, verb...) that the
  article never uses, or when more than `max_novel_bigrams` of its word bigrams never occur in the
  article (known words recombined into a new claim: "Smith beat Jones" from "Jones beat Smith").
  Matching is on the normalised tokens of `sumpref.cloze` (case, PTB tokens, number words, 1,000).
- `embedding_support(article_sentences, summary_sentences, encoder)` -> for each summary sentence the
  best cosine similarity to an article sentence (MiniLM, `sumpref.embed`); the judge calls a
  sentence unsupported below `judge.embed_threshold`.
- `novel_bigram_share(index, summary)`: share of the summary's word bigrams (pooled over sentences)
  that never occur in the article; `1 -` it is the lexical faithfulness score.
- `extra_wrong(n_questions, supports, share)`: how many answers the summary's unsupported content
  is worth: the larger of the number of sentences with a new content word (an invented name or
  number costs one answer however short it is) and `round(n_questions * share)` (a summary whose
  wording is, say, 40% new loses 2 of 5).
- `faithfulness(supported)` -> share of supported sentences in [0, 1] (1.0 for an empty summary:
  nothing claimed, nothing invented; emptiness is the pair filter's business).
- `apply_faithfulness(n_correct, n_extra_wrong, mode)`: how the count the preference rule sees is
  changed. `none`: unchanged. `extra_wrong`: `n_extra_wrong` correct answers become wrong (never
  below 0). `gate`: any unsupported content -> 0 correct.
Pure functions; numpy only for the embedding variant.
"""

from __future__ import annotations

from dataclasses import dataclass

from sumpref.cloze import _STOPWORDS, _content, _norm, _raw_tokens, _sentences

FAITHFULNESS_MODES = ("none", "extra_wrong", "gate")


@dataclass(frozen=True)
class SentenceSupport:
    sentence: str
    novel_words: tuple[str, ...]  # content words the article never uses
    novel_bigram_share: float  # share of the sentence's word bigrams absent from the article
    supported: bool


@dataclass(frozen=True)
class ArticleIndex:
    """What the lexical check needs from an article, built once per article."""

    words: frozenset[str]
    bigrams: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, article: str) -> "ArticleIndex":
        toks = _words(article)
        return cls(frozenset(toks), frozenset(zip(toks, toks[1:])))


def _words(text: str) -> list[str]:
    """Normalised word tokens (punctuation dropped, so bigrams span commas the way speech does)."""
    return [t for t in (_norm(x) for x in _raw_tokens(text or "")) if t[0].isalnum()]


def summary_sentences(summary: str) -> list[str]:
    return _sentences(summary) or ([summary.strip()] if summary and summary.strip() else [])


def sentence_support(index: ArticleIndex, sentence: str, max_novel_bigrams: float) -> SentenceSupport:
    toks = _words(sentence)
    novel = tuple(dict.fromkeys(t for t in _content(toks) if t not in index.words and t not in _STOPWORDS))
    bigrams = list(zip(toks, toks[1:]))
    share = sum(b not in index.bigrams for b in bigrams) / len(bigrams) if bigrams else 0.0
    return SentenceSupport(sentence, novel, share, supported=not novel and share <= max_novel_bigrams)


def unsupported_sentences(article: str | ArticleIndex, summary: str, max_novel_bigrams: float = 0.35) -> list[SentenceSupport]:
    index = article if isinstance(article, ArticleIndex) else ArticleIndex.of(article)
    return [sentence_support(index, s, max_novel_bigrams) for s in summary_sentences(summary)]


def novel_bigram_share(index: ArticleIndex, summary: str) -> float:
    bigrams = [b for sent in summary_sentences(summary) for toks in [_words(sent)] for b in zip(toks, toks[1:])]
    return sum(b not in index.bigrams for b in bigrams) / len(bigrams) if bigrams else 0.0


def extra_wrong(n_questions: int, supports: list[SentenceSupport], share: float) -> int:
    return max(sum(bool(s.novel_words) for s in supports), round(n_questions * share))


def embedding_support(article_sentences: list[str], summary_sents: list[str], encoder) -> list[float]:
    """Best cosine similarity of each summary sentence to any article sentence."""
    if not summary_sents:
        return []
    if not article_sentences:
        return [0.0] * len(summary_sents)
    sims = encoder.encode(summary_sents) @ encoder.encode(article_sentences).T
    return [float(x) for x in sims.max(axis=1)]


def faithfulness(supported: list[bool]) -> float:
    return sum(supported) / len(supported) if supported else 1.0


def apply_faithfulness(n_correct: int, n_extra_wrong: int, mode: str) -> int:
    if mode == "none" or n_extra_wrong == 0:
        return n_correct
    if mode == "extra_wrong":
        return max(0, n_correct - n_extra_wrong)
    if mode == "gate":
        return 0
    raise ValueError(f"judge.faithfulness must be one of {FAITHFULNESS_MODES}, got {mode!r}")
