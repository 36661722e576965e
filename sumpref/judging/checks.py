"""An LLM judge's own checks: position bias and length bias, measured by re-asking it.

Contract (both take a `JudgeConfig` and items `{article_id, article, highlights, summary}`, plus
optionally `questions`, a questions JSON as the judge stores it, to re-ask given questions instead of
writing them; the judge's own `QuestionWriter`/`SummaryJudge` run in process, so any backend works):
- `position_bias(judge, items, seed)` -> `{"agreement", "questions", "items"}`: the questions are
  re-asked with their options shuffled (and re-lettered); agreement is the share of questions
  whose chosen *option text* is the same both times (`Unsure` both times agrees). A judge
  without position bias scores 1.0.
- `length_bias(judge, items)` -> `{"mean_diff", "longer_wins", "shorter_wins", "items"}`: each
  summary is judged as written and lengthened without new content (`restate`: every sentence
  said twice); `mean_diff` is the mean n_correct(long) - n_correct(short). An unbiased judge: 0.
Items whose questions cannot be written are skipped and not counted.
"""

from __future__ import annotations

import random

from sumpref.config import JudgeConfig
from sumpref.judging.judges import (QuestionWriter, SummaryJudge, article_from_json, highlights_from_json,
                                    questions_from_json, questions_to_json)
from sumpref.judging.mcq import LETTERS, MCQ, UNSURE


def restate(summary: str) -> str:
    """The same content at about twice the length: every sentence followed by a restatement."""
    from sumpref.judging.faithfulness import summary_sentences

    return " ".join(f"{s} In other words: {s}" for s in summary_sentences(summary))


def _chosen_text(q: MCQ, answer: str) -> str:
    return q.options[LETTERS.index(answer)] if answer in LETTERS else UNSURE


def _shuffle_options(qs: list[MCQ], rng: random.Random) -> list[MCQ]:
    out = []
    for q in qs:
        order = list(range(len(LETTERS)))
        rng.shuffle(order)
        opts = tuple(q.options[i] for i in order)
        out.append(MCQ(q.question, opts, LETTERS[opts.index(q.options[LETTERS.index(q.answer)])]))
    return out


def _questions(judge: JudgeConfig, items: list[dict]) -> tuple[SummaryJudge, list[tuple[dict, str]]]:
    """The judge, loaded, and (item, questions JSON) for every item whose questions exist: given
    with the item, or written by the judge."""
    scorer = SummaryJudge(judge)
    scorer.load()
    todo = [it for it in items if not it.get("questions")]
    written = {}
    if todo:
        writer = QuestionWriter(judge)
        writer.load()
        out, _ = writer.run([{"id": it["article_id"], "article": it["article"], "highlights": it.get("highlights")} for it in todo])
        written = {id(it): w["questions"] for it, w in zip(todo, out)}
    pairs = [(it, it.get("questions") or written.get(id(it))) for it in items]
    return scorer, [(it, q) for it, q in pairs if q]


def position_bias(judge: JudgeConfig, items: list[dict], seed: int = 0) -> dict:
    scorer, pairs = _questions(judge, items)
    rng = random.Random(seed)
    rows, reshuffled = [], []
    for it, qjson in pairs:
        shuffled = _shuffle_options(questions_from_json(qjson), rng)
        rows.append({"article_id": it["article_id"], "questions": qjson, "summary": it["summary"]})
        reshuffled.append({"article_id": it["article_id"], "summary": it["summary"],
                           "questions": questions_to_json(shuffled, article_from_json(qjson), highlights_from_json(qjson))})
    first, _ = scorer.run(rows)
    second, _ = scorer.run(reshuffled)
    same = total = 0
    for r1, r2, a, b in zip(rows, reshuffled, first, second):
        q1, q2 = questions_from_json(r1["questions"]), questions_from_json(r2["questions"])
        for x, y, ax, ay in zip(q1, q2, a["answers"], b["answers"]):
            same += _chosen_text(x, ax) == _chosen_text(y, ay)
            total += 1
    return {"agreement": same / total if total else float("nan"), "questions": total, "items": len(rows)}


def length_bias(judge: JudgeConfig, items: list[dict]) -> dict:
    scorer, pairs = _questions(judge, items)
    short = [{"article_id": it["article_id"], "questions": q, "summary": it["summary"]} for it, q in pairs]
    long = [{**r, "summary": restate(r["summary"])} for r in short]
    a, _ = scorer.run(short)
    b, _ = scorer.run(long)
    diffs = [y["n_correct"] - x["n_correct"] for x, y in zip(a, b)]
    n = len(diffs)
    return {"mean_diff": sum(diffs) / n if n else float("nan"), "longer_wins": sum(d > 0 for d in diffs),
            "shorter_wins": sum(d < 0 for d in diffs), "items": n}
