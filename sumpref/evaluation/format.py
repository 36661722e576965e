"""Format and copying metrics of one summary: does it follow the prompt, and how much is copied?

The prompt asks for a summary of at most 2 sentences. A model can score well on content while
breaking that: running on until the token limit cuts it off mid-sentence, or copying the
article's opening verbatim (lead-3 with a broken last sentence). These metrics make that
visible for every model and baseline, next to the judge's score:

- `sentences`: sentence count (`sumpref.sentences.split_sentences`); `at_most_2_sentences`: 1 or
  2 sentences;
- `cut_at_limit`: generation stopped by `max_new_tokens`, not by end of sequence
  (`finish_reason == "length"`; extractive baselines are never cut);
- `ends_with_punctuation`: the last character (before closing quotes/brackets) is `.`, `!` or `?`;
- `lead_copy_share`: share of the summary's words that repeat the article verbatim from its first
  word on (the length of the common word prefix / summary words; lead-3 scores 1);
- `longest_copied_span`: the longest run of summary words found contiguously in the article;
- `novel_bigrams`, `novel_trigrams`: share of the summary's word n-grams the article never uses.

Words are lower-cased alphanumeric runs (punctuation ignored), the same tokens for every metric.
An empty summary has no words: its shares are NaN (no evidence), its counts 0.
"""

from __future__ import annotations

import os
import re

from sumpref.sentences import ends_sentence, split_sentences

_WORD_RE = re.compile(r"[a-z0-9]+")


def words(text: str | None) -> list[str]:
    return _WORD_RE.findall((text or "").lower())


def common_prefix(a: list[str], b: list[str]) -> int:
    """How many leading items `a` and `b` share."""
    return len(os.path.commonprefix([a, b]))


def longest_copied_span(summary: list[str], article: list[str]) -> int:
    """Longest run of consecutive summary words that occurs as consecutive words in the article."""
    where: dict[str, list[int]] = {}
    for i, w in enumerate(article):
        where.setdefault(w, []).append(i)
    best, run = 0, {}  # run: article position -> length of the match ending there
    for w in summary:
        run = {p: run.get(p - 1, 0) + 1 for p in where.get(w, ())}
        if run:
            best = max(best, max(run.values()))
    return best


def novel_ngram_share(summary: list[str], article: list[str], n: int) -> float:
    """Share of the summary's word n-grams (with multiplicity) absent from the article; a summary
    shorter than n words uses its own length; NaN without words."""
    if not summary:
        return float("nan")
    n = min(n, len(summary))
    grams = {tuple(article[i:i + n]) for i in range(len(article) - n + 1)}
    found = [tuple(summary[i:i + n]) in grams for i in range(len(summary) - n + 1)]
    return 1.0 - sum(found) / len(found)


def format_metrics(summary: str | None, article: str, finish_reason: str | None) -> dict[str, float]:
    """Every metric of this module for one summary (floats: booleans as 0/1)."""
    s, a = words(summary), words(article)
    n_sent = len(split_sentences(summary))
    return {
        "sentences": float(n_sent),
        "at_most_2_sentences": float(1 <= n_sent <= 2),
        "cut_at_limit": float(finish_reason == "length"),
        "ends_with_punctuation": float(ends_sentence(summary)),
        "lead_copy_share": common_prefix(s, a) / len(s) if s else float("nan"),
        "longest_copied_span": float(longest_copied_span(s, a)),
        "novel_bigrams": novel_ngram_share(s, a, 2),
        "novel_trigrams": novel_ngram_share(s, a, 3),
    }
