"""Three judge kinds behind one protocol: each writes an article's questions and answers them from
a summary. `make_judge(cfg)` picks the kind's class from `JUDGES` (the one table keyed by kind);
`QuestionWriter` and `SummaryJudge` are the shard workers the stages run on Ray.

Every kind produces the same columns. Questions (`questions.parquet`): `article_id, questions (JSON
list of MCQ dicts), error`. Judged rows: `answers (list[str]), n_correct, n_unsure, judge_error`.

- `qa` (default, `QAJudge`): embedded, no LLM (`sumpref.judging.qa`): the cloze questions, stored
  with the article and highlights (questions JSON is then `{"questions": [...], "article": "...",
  "highlights": "..." | null}`), answered from the summary; `n_correct` (a float for `qa`) is
  `n_questions x` the key-content coverage (`judge.count: key_content`) or the questions answered
  (`mcq`), lowered for content the article does not support as `judge.faithfulness` says. Extra
  judged columns: `n_correct_raw, coverage, faithfulness, n_unsupported`.
- `cloze` (`ClozeJudge`): embedded, no LLM (`sumpref.judging.cloze`): questions from the reference
  highlights (lead sentences without them), answered by matching options against the summary.
- `llm` (`LLMJudge`): the published method on any backend; JSON-constrained output where the
  backend supports it, the `Qk) X` text format otherwise. Unparseable output is data, not a crash.
"""

from __future__ import annotations

import hashlib
import json
import random

from typing import Callable, Literal, Protocol

from sumpref.backends import loaded_backend
from sumpref.backends.base import Backend, BackendStats, SamplingParams, raise_if_transient
from sumpref.config import ClozeJudgeConfig, JudgeConfig, LLMJudgeConfig, QAJudgeConfig
from sumpref.judging.mcq import (MCQ, UNSURE, ParseResult, parse_mcq_json, parse_mcq_text, score_answers,
                                 shuffle_questions)
from sumpref.judging.qa import QAScorer
from sumpref.prompts import judge_json_schema, judge_messages, mcq_json_schema, mcq_messages, parse_judge_answers


def article_rng(seed: int, article_id: str) -> random.Random:
    return random.Random(int(hashlib.sha256(f"{seed}:{article_id}".encode()).hexdigest()[:16], 16))


def questions_to_json(qs: list[MCQ], article: str | None = None, highlights: str | None = None) -> str:
    items = [q.to_dict() for q in qs]
    return json.dumps(items if article is None else {"questions": items, "article": article, "highlights": highlights})


def questions_from_json(s: str) -> list[MCQ]:
    obj = json.loads(s)
    return [MCQ.from_dict(d) for d in (obj["questions"] if isinstance(obj, dict) else obj)]


def article_from_json(s: str) -> str | None:
    """The article stored with `qa` questions (None for the other kinds)."""
    obj = json.loads(s)
    return obj.get("article") if isinstance(obj, dict) else None


def highlights_from_json(s: str) -> str | None:
    """The reference highlights stored with `qa` questions (None when there were none)."""
    obj = json.loads(s)
    return obj.get("highlights") if isinstance(obj, dict) else None


def _parse_llm_mcq(text: str, n: int) -> ParseResult:
    stripped = (text or "").strip()
    if stripped.startswith("{"):
        try:
            return parse_mcq_json(json.loads(stripped), n)
        except json.JSONDecodeError:
            pass
    return parse_mcq_text(text, n)


def _constraint(cfg: LLMJudgeConfig, backend: Backend, schema: dict, template: str) -> dict:
    """Constrained output wherever the backend supports it: a JSON schema, else a line template."""
    if not cfg.constrained:
        return {}
    if backend.supports_json_schema:
        return {"json_schema": schema}
    if backend.supports_template:
        return {"template": template}
    return {}


Role = Literal["questions", "answers"]


class Judge(Protocol):
    """One judge kind. Cheap to construct and pickle; `load(role)` loads what that role needs (a
    backend, a scorer) where the work runs, and is idempotent."""

    def load(self, role: Role) -> None: ...

    def write_questions(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        """Article rows (`id, article, highlights`) -> question rows (`article_id, questions, error`)."""
        ...

    def judge_summaries(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        """Rows with `questions` (JSON) and `summary` -> the rows without `questions`, with the answers
        and scores (`answers, n_correct, n_unsure, judge_error` and the kind's own columns)."""
        ...


def _judged(rows: list[dict], qs: list[list[MCQ]], answers: list[list[str]], errors: list[str | None]) -> list[dict]:
    out = []
    for r, q, a, err in zip(rows, qs, answers, errors):
        row = {k: v for k, v in r.items() if k != "questions"}
        row.update(answers=a, n_correct=score_answers(q, a), n_unsure=sum(x == UNSURE for x in a), judge_error=err)
        out.append(row)
    return out


class ClozeJudge:
    """`kind: cloze`: questions from the highlights, answered by matching options against the summary."""

    def __init__(self, cfg: ClozeJudgeConfig | QAJudgeConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed

    def load(self, role: Role) -> None:
        pass  # pure functions: nothing to load

    def _cloze_questions(self, rows: list[dict]) -> list[ParseResult]:
        from sumpref.judging.cloze import build_cloze_questions

        return [build_cloze_questions(r["article"], r.get("highlights"), self.cfg.n_questions, self.seed) for r in rows]

    def write_questions(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        return _question_rows(rows, self._cloze_questions(rows)), BackendStats()

    def judge_summaries(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        from sumpref.judging.cloze import answer_from_summary

        qs = [questions_from_json(r["questions"]) for r in rows]
        answers = [answer_from_summary(q, r["summary"] or "") for q, r in zip(qs, rows)]
        return _judged(rows, qs, answers, [None] * len(rows)), BackendStats()


class QAJudge(ClozeJudge):
    """`kind: qa`: the cloze questions, stored with the article and highlights, which its count and
    faithfulness term read when judging (`sumpref.judging.qa`)."""

    def __init__(self, cfg: QAJudgeConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.scorer: QAScorer | None = None

    def load(self, role: Role) -> None:
        if role == "answers" and self.scorer is None:
            self.scorer = QAScorer(self.cfg)
            self.scorer.load()

    def write_questions(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        return _question_rows(rows, self._cloze_questions(rows), keep_article=True), BackendStats()

    def judge_summaries(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        self.load("answers")
        out = []
        for r in rows:
            article = article_from_json(r["questions"])
            q = questions_from_json(r["questions"])
            row = {k: v for k, v in r.items() if k != "questions"}
            if article is None:  # questions written by another judge kind: nothing to check against
                row.update(answers=[], n_correct=0.0, n_unsure=0, n_correct_raw=0, coverage=None, faithfulness=None,
                           n_unsupported=0, judge_error="qa_needs_qa_questions")
            else:
                s = self.scorer.score(q, article, r["summary"] or "", highlights_from_json(r["questions"]))
                row.update(answers=s.answers, n_correct=float(s.n_correct), n_unsure=sum(x == UNSURE for x in s.answers),
                           n_correct_raw=s.n_correct_raw, coverage=s.coverage, faithfulness=s.faithfulness,
                           n_unsupported=len(s.unsupported), judge_error=None)
            out.append(row)
        return out, BackendStats()


class LLMJudge:
    """`kind: llm`: the judge model writes multiple-choice questions and answers them from the summary."""

    def __init__(self, cfg: LLMJudgeConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.backend: Backend | None = None

    def load(self, role: Role) -> None:
        if self.backend is None:
            self.backend = loaded_backend(self.cfg.backend)

    def _generate(self, messages: list, params: SamplingParams) -> tuple[list, BackendStats]:
        gens = self.backend.generate(messages, params)
        raise_if_transient(gens)
        stats, self.backend.stats = self.backend.stats, BackendStats()
        return gens, stats

    def write_questions(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        self.load("questions")
        n = self.cfg.n_questions
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=self.cfg.mcq_max_new_tokens,
                                **_constraint(self.cfg, self.backend, mcq_json_schema(n), f"mcq:{n}"))
        gens, stats = self._generate([mcq_messages(r["article"], n, json_format=bool(params.json_schema)) for r in rows],
                                     params)
        results = []
        for r, g in zip(rows, gens):
            if g[0].finish_reason == "error":
                results.append(ParseResult(error=f"generation_error:{g[0].error}"))
                continue
            parsed = _parse_llm_mcq(g[0].text, n)
            if parsed.ok:  # position de-biasing, seeded per article
                parsed = ParseResult(questions=shuffle_questions(parsed.questions, article_rng(self.seed, r["id"])))
            results.append(parsed)
        return _question_rows(rows, results), stats

    def judge_summaries(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        self.load("answers")
        qs = [questions_from_json(r["questions"]) for r in rows]
        n = self.cfg.n_questions
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=self.cfg.answer_max_new_tokens,
                                **_constraint(self.cfg, self.backend, judge_json_schema(n), f"judge:{n}"))
        gens, stats = self._generate([judge_messages(q, r["summary"] or "", json_format=bool(params.json_schema))
                                      for q, r in zip(qs, rows)], params)
        answers, errors = [], []
        for g in gens:
            a, err = parse_judge_answers(g[0].text, n)
            answers.append(a)
            # A request that failed for good drops the row like empty output does, with its reason.
            errors.append(f"generation_error:{g[0].error}" if g[0].finish_reason == "error" else err)
        return _judged(rows, qs, answers, errors), stats


def _question_rows(rows: list[dict], results: list[ParseResult], keep_article: bool = False) -> list[dict]:
    return [{"article_id": r["id"],
             "questions": (questions_to_json(p.questions, r["article"], r.get("highlights")) if keep_article
                           else questions_to_json(p.questions)) if p.ok else None,
             "error": p.error}
            for r, p in zip(rows, results)]


JUDGES: dict[str, Callable[..., Judge]] = {"qa": QAJudge, "cloze": ClozeJudge, "llm": LLMJudge}
"""The judge class of each `judge.kind`: the only place a kind is looked up."""


def make_judge(cfg: JudgeConfig, seed: int = 0) -> Judge:
    return JUDGES[cfg.kind](cfg, seed)


class _JudgeWorker:
    """A shard worker around `cfg`'s judge (`make_judge`)."""

    def __init__(self, cfg: JudgeConfig, seed: int = 0):
        self.cfg, self.judge = cfg, make_judge(cfg, seed)

    @property
    def backend(self) -> Backend | None:
        """The LLM judge's loaded backend (None for the embedded judges)."""
        return getattr(self.judge, "backend", None)

    @backend.setter
    def backend(self, backend: Backend) -> None:  # hand the judge a running engine (tests/integration/vllm_support.py)
        self.judge.backend = backend


class QuestionWriter(_JudgeWorker):
    """Shard worker: article rows (`id, article, highlights`) -> question rows, by `cfg`'s judge."""

    def load(self) -> None:
        self.judge.load("questions")

    def run(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        return self.judge.write_questions(rows)


class SummaryJudge(_JudgeWorker):
    """Shard worker: rows with `questions` (JSON) and `summary` -> answers and scores, by `cfg`'s judge."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__(cfg)

    def load(self) -> None:
        self.judge.load("answers")

    def run(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        return self.judge.judge_summaries(rows)
