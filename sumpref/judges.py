"""Two judges behind one interface: they write the questions and answer them from a summary.

Both produce the same columns. Questions (`questions.parquet`): `article_id, questions (JSON
list of MCQ dicts), error`. Judged rows: `answers (list[str]), n_correct, judge_error`.

- `qa` (default): embedded, no LLM (`sumpref.qa_judge`): the cloze questions, stored with the
  article and highlights (questions JSON is then `{"questions": [...], "article": "...",
  "highlights": "..." | null}`), answered from the summary; `n_correct` (a float for `qa`) is
  `n_questions x` the key-content coverage (`judge.count: key_content`) or the questions answered
  (`mcq`), lowered for content the article does not support as `judge.faithfulness` says. Extra
  judged columns: `n_correct_raw, coverage, faithfulness, n_unsupported`.
- `cloze`: embedded, no LLM (`sumpref.cloze`): questions from the reference highlights (lead
  sentences without them), answered by matching options against the summary.
- `llm`: the published method on any backend; JSON-constrained output where the backend
  supports it, the `Qk) X` text format otherwise. Unparseable output is data, not a crash.
"""

from __future__ import annotations

import hashlib
import json
import random

from sumpref.backends import loaded_backend
from sumpref.backends.base import BackendStats, SamplingParams, raise_if_transient
from sumpref.config import JudgeConfig
from sumpref.mcq import MCQ, UNSURE, ParseResult, parse_mcq_json, parse_mcq_text, score_answers, shuffle_questions
from sumpref.prompts import judge_json_schema, judge_messages, mcq_json_schema, mcq_messages, parse_judge_answers
from sumpref.qa_judge import QAScorer


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


def _constraint(cfg: JudgeConfig, backend, schema: dict, template: str) -> dict:
    """Constrained output wherever the backend supports it: a JSON schema, else a line template."""
    if not cfg.constrained:
        return {}
    if getattr(backend, "supports_json_schema", False):
        return {"json_schema": schema}
    if getattr(backend, "supports_template", False):
        return {"template": template}
    return {}


class QuestionWriter:
    """Shard worker: article rows (`id, article, highlights`) -> question rows."""

    def __init__(self, cfg: JudgeConfig, seed: int = 0):
        self.cfg, self.seed, self.backend = cfg, seed, None

    def load(self) -> None:
        if self.cfg.kind == "llm":
            self.backend = loaded_backend(self.cfg.backend)

    def run(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        n = self.cfg.n_questions
        if self.cfg.kind in ("cloze", "qa"):
            from sumpref.cloze import build_cloze_questions

            results = [build_cloze_questions(r["article"], r.get("highlights"), n, self.seed) for r in rows]
            stats = BackendStats()
        else:
            params = SamplingParams(n=1, temperature=0.0, max_new_tokens=self.cfg.mcq_max_new_tokens,
                                    **_constraint(self.cfg, self.backend, mcq_json_schema(n), f"mcq:{n}"))
            gens = self.backend.generate([mcq_messages(r["article"], n, json_format=bool(params.json_schema)) for r in rows], params)
            raise_if_transient(gens)
            results = []
            for r, g in zip(rows, gens):
                if g[0].finish_reason == "error":
                    results.append(ParseResult(error=f"generation_error:{g[0].error}"))
                    continue
                parsed = _parse_llm_mcq(g[0].text, n)
                if parsed.ok:  # position de-biasing, seeded per article
                    parsed = ParseResult(questions=shuffle_questions(parsed.questions, article_rng(self.seed, r["id"])))
                results.append(parsed)
            stats = self.backend.stats
            self.backend.stats = BackendStats()
        keep_article = self.cfg.kind == "qa"  # its count and faithfulness term read them when judging
        out = [{"article_id": r["id"],
                "questions": (questions_to_json(p.questions, r["article"], r.get("highlights")) if keep_article
                              else questions_to_json(p.questions)) if p.ok else None,
                "error": p.error}
               for r, p in zip(rows, results)]
        return out, stats


class SummaryJudge:
    """Shard worker: rows with `questions` (JSON) and `summary` -> answers and scores."""

    def __init__(self, cfg: JudgeConfig):
        self.cfg, self.backend, self.scorer = cfg, None, None

    def load(self) -> None:
        if self.cfg.kind == "llm":
            self.backend = loaded_backend(self.cfg.backend)
        elif self.cfg.kind == "qa":
            self.scorer = QAScorer(self.cfg)
            self.scorer.load()

    def run(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        if self.cfg.kind == "qa":
            return self._run_qa(rows), BackendStats()
        qs = [questions_from_json(r["questions"]) for r in rows]
        n = self.cfg.n_questions
        errors: list[str | None] = [None] * len(rows)
        if self.cfg.kind == "cloze":
            from sumpref.cloze import answer_from_summary

            answers = [answer_from_summary(q, r["summary"] or "") for q, r in zip(qs, rows)]
            stats = BackendStats()
        else:
            params = SamplingParams(n=1, temperature=0.0, max_new_tokens=self.cfg.answer_max_new_tokens,
                                    **_constraint(self.cfg, self.backend, judge_json_schema(n), f"judge:{n}"))
            gens = self.backend.generate([judge_messages(q, r["summary"] or "", json_format=bool(params.json_schema))
                                          for q, r in zip(qs, rows)], params)
            raise_if_transient(gens)
            answers = []
            for i, g in enumerate(gens):
                a, err = parse_judge_answers(g[0].text, n)
                answers.append(a)
                # A request that failed for good drops the row like empty output does, with its reason.
                errors[i] = f"generation_error:{g[0].error}" if g[0].finish_reason == "error" else err
            stats = self.backend.stats
            self.backend.stats = BackendStats()
        out = []
        for r, q, a, err in zip(rows, qs, answers, errors):
            row = {k: v for k, v in r.items() if k != "questions"}
            row.update(answers=a, n_correct=score_answers(q, a), n_unsure=sum(x == UNSURE for x in a), judge_error=err)
            out.append(row)
        return out, stats

    def _run_qa(self, rows: list[dict]) -> list[dict]:
        if self.scorer is None:
            self.load()
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
        return out
