"""Faithfulness of a summary to its article: which summary sentences the article does not support.

Contract:
- `unsupported_sentences(article, summary, max_novel_bigrams)` -> one `SentenceSupport` per
  summary sentence (a summary without sentence punctuation is one sentence). Lexical rule: a
  sentence is *unsupported* when it uses a content word (name, number, noun, verb...) that the
  article never uses, or when more than `max_novel_bigrams` of its word bigrams never occur in the
  article (known words recombined into a new claim: "Smith beat Jones" from "Jones beat Smith").
  Matching is on the normalised tokens of `sumpref.judging.cloze` (case, PTB tokens, number
  words, 1,000).
- `embedding_support(article_sentences, summary_sentences, encoder)` -> for each summary sentence the
  best cosine similarity to an article sentence (MiniLM, `sumpref.judging.embed`); the judge calls a
  sentence unsupported below `judge.embed_threshold`.
- `novel_bigram_share(index, summary)`: share of the summary's word bigrams (pooled over sentences)
  that never occur in the article; `1 -` it is the lexical faithfulness score of the `extra_wrong`
  and `gate` modes.
- `novel_trigram_share(index, summary)`: share of the summary's word trigrams that never occur in
  the article (new names, numbers, words or word orders all create new trigrams, a copied clause
  none); `1 -` it is the lexical faithfulness score of the `proportional` mode.
- `proportional_penalty(n_questions, share, weight)` = `n_questions x weight x share`: answers lost
  in proportion to unsupported content, so a little invention costs a little and a lot costs a lot.
- `extra_wrong(n_questions, supports, share)`: how many answers the summary's unsupported content
  is worth: the larger of the number of sentences with a new content word (an invented name or
  number costs one answer however short it is) and `round(n_questions * share)` (a summary whose
  wording is, say, 40% new loses 2 of 5).
- `faithfulness(supported)` -> share of supported sentences in [0, 1] (1.0 for an empty summary:
  nothing claimed, nothing invented; emptiness is the pair filter's business).
- `apply_faithfulness(n_correct, n_extra_wrong, mode)`: how the count the preference rule sees is
  changed. `none`: unchanged. `extra_wrong` and `proportional`: `n_extra_wrong` correct answers
  (a fraction under `proportional`) become wrong, never below 0. `gate`: any unsupported content -> 0.
Pure functions; numpy only for the embedding variant.
"""

from __future__ import annotations

from dataclasses import dataclass

from sumpref.judging.cloze import _STOPWORDS, _content, _norm, _raw_tokens, _sentences

FAITHFULNESS_MODES = ("none", "extra_wrong", "gate", "proportional")


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
    trigrams: frozenset[tuple[str, str, str]]

    @classmethod
    def of(cls, article: str) -> "ArticleIndex":
        toks = _words(article)
        return cls(frozenset(toks), frozenset(zip(toks, toks[1:])), frozenset(zip(toks, toks[1:], toks[2:])))


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


def novel_trigram_share(index: ArticleIndex, summary: str) -> float:
    """Share of the summary's word trigrams (over the whole text, as the article's are) that never
    occur in the article; 0.0 for a summary shorter than three words."""
    toks = _words(summary)
    trigrams = list(zip(toks, toks[1:], toks[2:]))
    return sum(t not in index.trigrams for t in trigrams) / len(trigrams) if trigrams else 0.0


def proportional_penalty(n_questions: int, unsupported_share: float, weight: float) -> float:
    """How many of `n_questions` answers unsupported content costs under `proportional`:
    `n_questions x weight x unsupported_share` (a summary half of whose wording the article does
    not contain loses 2.5 of 5 at weight 1)."""
    return n_questions * weight * unsupported_share


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


def apply_faithfulness(n_correct: float, n_extra_wrong: float, mode: str) -> float:
    if mode == "none" or n_extra_wrong == 0:
        return n_correct
    if mode in ("extra_wrong", "proportional"):
        return max(0, n_correct - n_extra_wrong)
    if mode == "gate":
        return 0
    raise ValueError(f"judge.faithfulness must be one of {FAITHFULNESS_MODES}, got {mode!r}")
