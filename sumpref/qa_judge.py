"""The `qa` embedded judge: cloze questions answered from the summary, and a faithfulness term.

Contract:
- Questions are `sumpref.cloze` questions (exactly `n_questions`, so "at least 3 of 5 correct"
  keeps its meaning), stored with the article text: the faithfulness check needs it at judging time.
- `QAScorer(cfg).score(questions, article, summary)` -> `QAScore`: the cloze answers, how many
  are right (`n_correct_raw`), which summary sentences the article does not support, a
  `faithfulness` score in [0, 1] and `n_correct`, the count the preference rule sees after
  `cfg.faithfulness` is applied (`sumpref.faithfulness`). Lexical support: faithfulness = share of
  the summary's word bigrams found in the article; `extra_wrong` answers = max(sentences with a
  new content word, round(n_questions x new-bigram share)). Embedding support: faithfulness =
  share of sentences whose closest article sentence has cosine >= `embed_threshold`; one extra
  wrong answer per unsupported sentence.
- `cfg.support == "embedding"` loads MiniLM in `load()` (`sumpref.embed`); lexical support needs
  no model. Article indexes and sentence embeddings are cached per article text.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sumpref.cloze import _sentences, answer_from_summary
from sumpref.config import JudgeConfig
from sumpref.faithfulness import (ArticleIndex, apply_faithfulness, embedding_support, extra_wrong, faithfulness,
                                  novel_bigram_share, summary_sentences, unsupported_sentences)
from sumpref.mcq import MCQ, score_answers


@dataclass(frozen=True)
class QAScore:
    answers: list[str]
    n_correct_raw: int
    unsupported: list[str]  # summary sentences the article does not support
    faithfulness: float
    n_correct: int


@functools.lru_cache(maxsize=256)  # one article is judged against all its summaries
def _index(article: str) -> ArticleIndex:
    return ArticleIndex.of(article)


class QAScorer:
    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg
        self.encoder = None

    def load(self) -> None:
        if self.cfg.support == "embedding" and self.encoder is None:
            from sumpref.embed import SentenceEncoder

            self.encoder = SentenceEncoder(self.cfg.embed_package)
            self.encoder.load()

    def embedding_supported(self, article: str, summary: str) -> list[tuple[str, bool]]:
        """(sentence, supported) for each summary sentence, by MiniLM cosine to the article's sentences."""
        self.load()
        sents = summary_sentences(summary)
        sims = embedding_support(_sentences(article) or [article], sents, self.encoder)
        return [(s, sim >= self.cfg.embed_threshold) for s, sim in zip(sents, sims)]

    def score(self, questions: list[MCQ], article: str, summary: str) -> QAScore:
        answers = answer_from_summary(questions, summary)
        raw = score_answers(questions, answers)
        if self.cfg.support == "lexical":
            index = _index(article)
            supports = unsupported_sentences(index, summary, self.cfg.max_novel_bigrams)
            share = novel_bigram_share(index, summary)
            unsupported = [s.sentence for s in supports if not s.supported]
            faith, n_extra = 1.0 - share, extra_wrong(len(questions), supports, share)
        else:
            support = self.embedding_supported(article, summary)
            unsupported = [s for s, ok in support if not ok]
            faith, n_extra = faithfulness([ok for _, ok in support]), len(unsupported)
        return QAScore(answers, raw, unsupported, faith, apply_faithfulness(raw, n_extra, self.cfg.faithfulness))
