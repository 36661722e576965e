"""The `qa` embedded judge: cloze questions, key-content coverage, and a faithfulness term.

Contract:
- Questions are `sumpref.judging.cloze` questions (exactly `n_questions`), stored with the article text
  and the highlights: the count and the faithfulness check need them at judging time.
- `QAScorer(cfg).score(questions, article, summary, highlights)` -> `QAScore`: the cloze answers
  and how many are right (`n_correct_raw`, an integer); `coverage`, the summary's share of the
  article's key content (`sumpref.judging.key_content`, with `cfg.lead_weight`); which summary sentences
  the article does not support; a `faithfulness` score in [0, 1]; and `n_correct`, the count the
  preference rule sees.
- The count before faithfulness: `cfg.count == "key_content"`: `n_questions x coverage` (a float
  rounded to 2 decimals, so "at least 3 of 5" = "at least 60% of the key content"); `"mcq"`:
  `n_correct_raw`.
- Faithfulness (`cfg.faithfulness`, `sumpref.judging.faithfulness.apply_faithfulness`), lexical support:
  `proportional` subtracts `n_questions x cfg.faithfulness_weight x` the summary's novel word
  trigram share, and faithfulness = 1 - that share; `extra_wrong`/`gate` use max(sentences with a
  new content word, round(n_questions x new-bigram share)) extra wrong answers, faithfulness = 1 -
  new-bigram share. Embedding support: faithfulness = share of sentences whose closest article
  sentence has cosine >= `embed_threshold`; `proportional` uses 1 - it as the share, the other
  modes one extra wrong answer per unsupported sentence. The count never goes below 0.
- `cfg.support == "embedding"` loads MiniLM in `load()` (`sumpref.judging.embed`, through
  `sumpref.similarity`'s loader); lexical support needs
  no model. Article indexes, key content and sentence embeddings are cached per article.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sumpref.config import QAJudgeConfig
from sumpref.judging.cloze import N_LEAD_SENTENCES, _sentences, answer_from_summary
from sumpref.judging.faithfulness import (ArticleIndex, apply_faithfulness, embedding_support, extra_wrong,
                                          faithfulness, novel_bigram_share, novel_trigram_share, proportional_penalty,
                                          summary_sentences, unsupported_sentences)
from sumpref.judging.key_content import KeyContent, coverage
from sumpref.judging.mcq import MCQ, score_answers


@dataclass(frozen=True)
class QAScore:
    answers: list[str]
    n_correct_raw: int  # written questions answered correctly
    coverage: float  # share of the article's key content the summary states, in [0, 1]
    unsupported: list[str]  # summary sentences the article does not support
    faithfulness: float
    n_correct: float  # what the preference rule sees


@functools.lru_cache(maxsize=256)  # one article is judged against all its summaries
def _index(article: str) -> ArticleIndex:
    return ArticleIndex.of(article)


@functools.lru_cache(maxsize=256)
def _key(article: str, highlights: str | None) -> KeyContent:
    return KeyContent.of(article, highlights, N_LEAD_SENTENCES)


class QAScorer:
    def __init__(self, cfg: QAJudgeConfig):
        self.cfg = cfg
        self.encoder = None

    def load(self) -> None:
        if self.cfg.support == "embedding" and self.encoder is None:
            from sumpref.judging.embed import SentenceEncoder

            self.encoder = SentenceEncoder()
            self.encoder.load()

    def embedding_supported(self, article: str, summary: str) -> list[tuple[str, bool]]:
        """(sentence, supported) for each summary sentence, by MiniLM cosine to the article's sentences."""
        self.load()
        sents = summary_sentences(summary)
        sims = embedding_support(_sentences(article) or [article], sents, self.encoder)
        return [(s, sim >= self.cfg.embed_threshold) for s, sim in zip(sents, sims)]

    def _unsupported(self, article: str, summary: str, n: int) -> tuple[list[str], float, float]:
        """(unsupported sentences, faithfulness, answers the unsupported content costs)."""
        cfg = self.cfg
        if cfg.support == "lexical":
            index = _index(article)
            supports = unsupported_sentences(index, summary, cfg.max_novel_bigrams)
            unsupported = [s.sentence for s in supports if not s.supported]
            if cfg.faithfulness == "proportional":
                share = novel_trigram_share(index, summary)
                return unsupported, 1.0 - share, proportional_penalty(n, share, cfg.faithfulness_weight)
            share = novel_bigram_share(index, summary)
            return unsupported, 1.0 - share, extra_wrong(n, supports, share)
        support = self.embedding_supported(article, summary)
        unsupported = [s for s, ok in support if not ok]
        faith = faithfulness([ok for _, ok in support])
        cost = proportional_penalty(n, 1.0 - faith, cfg.faithfulness_weight) if cfg.faithfulness == "proportional" else len(unsupported)
        return unsupported, faith, cost

    def score(self, questions: list[MCQ], article: str, summary: str, highlights: str | None = None) -> QAScore:
        n = self.cfg.n_questions
        answers = answer_from_summary(questions, summary)
        raw = score_answers(questions, answers)
        cov = coverage(_key(article, highlights), summary, self.cfg.lead_weight)
        count = n * cov if self.cfg.count == "key_content" else raw
        unsupported, faith, cost = self._unsupported(article, summary, n)
        n_correct = apply_faithfulness(count, cost, self.cfg.faithfulness)
        return QAScore(answers, raw, cov, unsupported, faith, round(n_correct, 2))  # an int stays an int
